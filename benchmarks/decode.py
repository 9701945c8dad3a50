"""Decoder CPU per event: `accept` every message + `decode` in 50,000-row batches, as the
pipeline does, with the native extension (collector/_fastdecode.c) and with the pure-Python path
in the same run. No broker, no store: this isolates the decode stage of `benchmarks ingest`.

Two payload shapes: `view` (firmware_sim.loadgen's traffic, the ingest benchmark's) and `mixed`
(every kind, all fields present, short strings). CPU time (process_time), best of 5: the
machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

import msgpack

from benchmarks.common import Result, table
from collector import fastdecode
from collector.decoder import Accepted, Decoder
from firmware_sim.loadgen import Traffic
from proto.telemetry import KINDS

BATCH_ROWS = 50_000
Messages = list[tuple[str, bytes]]


def mixed(messages: int, per_message: int, now: int) -> Messages:
    rng = random.Random(1)
    out = []
    for m in range(messages):
        device = f"stb-{m:06d}"
        events = []
        for _ in range(per_message):
            spec = rng.choice(list(KINDS.values()))
            events.append([spec.code, now - rng.randint(0, 10**6),
                           *[rng.randint(0, min(f.max, 10**6)) if f.type is int else rng.choice(["home", "guide"])
                             for f in spec.fields]])
        out.append((f"stb/v1/north/{device}/events", msgpack.packb(
            {"v": 1, "dev": device, "hh": m, "fw": "4.2.0", "seq0": m * 1000, "sent": now, "ev": events})))
    return out


def drain(decoder: Decoder, messages: Messages, now: int) -> tuple[float, int]:
    """CPU seconds to accept and decode everything, and the rows decoded."""
    started = time.process_time()
    batch: list[Accepted] = []
    rows = total = 0
    for topic, payload in messages:
        result = decoder.accept(topic, payload, now)
        assert isinstance(result, Accepted)
        batch.append(result)
        rows += result.event_count
        if rows >= BATCH_ROWS:
            total += decoder.decode(batch).rows
            batch, rows = [], 0
    if batch:
        total += decoder.decode(batch).rows
    return time.process_time() - started, total


def run(args: argparse.Namespace) -> Result:
    events = 20_000 if args.quick else 200_000
    now = int(time.time() * 1000)
    shapes: dict[str, Callable[[int, int], Messages]] = {
        "view": lambda n, k: list(Traffic(devices=n, messages_per_device=1, events_per_message=k,
                                          sent_ms=now).messages()),
        "mixed": lambda n, k: mixed(n, k, now),
    }
    result = Result("decode", {"events": events, "batch_rows": BATCH_ROWS, "repeats": 5,
                               "native_built": fastdecode.AVAILABLE})
    decoders = {"python": Decoder(native=False), "native": Decoder()} if fastdecode.AVAILABLE else {
        "python": Decoder(native=False)}
    for shape, make in shapes.items():
        for per_message in (50, 1):
            n = events // per_message if per_message > 1 else events // 4
            messages = make(n, per_message)
            for name, decoder in decoders.items():
                runs = [drain(decoder, messages, now) for _ in range(5)]
                assert all(rows == n * per_message for _, rows in runs)
                best = min(seconds for seconds, _ in runs)
                result.add(shape=shape, events_per_message=per_message, decoder=name,
                           us_per_event=best / (n * per_message) * 1e6, us_per_message=best / n * 1e6)
    by = {(r["shape"], r["events_per_message"], r["decoder"]): r["us_per_message"] for r in result.rows}
    if fastdecode.AVAILABLE:
        result.headline = {
            "view_50_native_us_per_event": round(by["view", 50, "native"] / 50, 3),
            "view_1_native_us_per_message": round(by["view", 1, "native"], 3),
            "view_50_speedup": round(by["view", 50, "python"] / by["view", 50, "native"], 1),
            "view_1_speedup": round(by["view", 1, "python"] / by["view", 1, "native"], 1),
        }
    else:
        result.headline = {"native_built": False}
    print()
    print(table(result.rows, ["shape", "events_per_message", "decoder", "us_per_event", "us_per_message"]))
    return result
