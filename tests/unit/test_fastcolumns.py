"""The fast column writers must write exactly the bytes clickhouse-driver writes."""

from __future__ import annotations

import random

import numpy as np
import pytest
from clickhouse_driver.bufferedwriter import BufferedSocketWriter

from warehouse import fastcolumns


class FakeSocket:
    def __init__(self) -> None:
        self.out = bytearray()

    def sendall(self, data: bytes) -> None:
        self.out += data


def library_strings(items: list[str]) -> bytes:
    """What clickhouse-driver's own writer sends for these strings."""
    sock = FakeSocket()
    buf = BufferedSocketWriter(sock, 1 << 16)
    buf.write_strings(items, encoding="utf-8")
    buf.flush()
    return bytes(sock.out)


@pytest.mark.parametrize("seed", range(12))
def test_string_encoding_matches_the_library(seed: int) -> None:
    rng = random.Random(seed)
    pool = ["", "north", "stb-0001", "é ü 🎬", "x" * 127, "y" * 128, "z" * 20_000]
    n = rng.choice([1, 7, 1000, 5000])
    kind = rng.randrange(3)
    if kind == 0:
        items = [rng.choice(pool)] * n                       # one value
    elif kind == 1:
        items = [rng.choice(pool) for _ in range(n)]         # a few values
    else:
        items = [f"req-{rng.random()}" for _ in range(n)]    # all distinct: library path
    array = np.empty(n, dtype=object)
    array[:] = items
    encoded = fastcolumns.encode_strings(array)
    if kind == 2 and n > 64:
        assert encoded is None
    else:
        assert encoded == library_strings(items)


def test_varint() -> None:
    assert [fastcolumns.varint(n) for n in (0, 1, 127, 128, 300, 2**21)] == [
        b"\x00", b"\x01", b"\x7f", b"\x80\x01", b"\xac\x02", b"\x80\x80\x80\x01"]
