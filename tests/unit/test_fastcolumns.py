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


@pytest.mark.parametrize("runs", [1, 3, 1000])
def test_runs_of_one_object_match_the_library(runs: int) -> None:
    """How the decoder builds per-message columns: one object per message, repeated."""
    per_run = [f"stb-{i % 7:04d}-é" for i in range(runs)]  # equal values in different runs too
    array = np.repeat(np.array(per_run, dtype=object), 50)
    assert fastcolumns._encode_runs(array, "utf-8") is not None  # the pointer path was taken
    assert fastcolumns.encode_strings(array) == library_strings(array.tolist())


def test_a_non_contiguous_or_mixed_array_takes_a_safe_path() -> None:
    array = np.repeat(np.array(["a", "b"], dtype=object), 100)[::2]  # a strided view
    assert fastcolumns._addresses(array) is None
    assert fastcolumns.encode_strings(array) == library_strings(array.tolist())
    mixed = np.repeat(np.array(["a", 7], dtype=object), 100)
    assert fastcolumns.encode_strings(mixed) is None  # not text: the library decides


def test_string_column_with_none_is_written_as_the_library_writes_it() -> None:
    from clickhouse_driver.columns.service import get_column_by_spec
    from clickhouse_driver.context import Context

    fastcolumns.install()
    context = Context()
    context.client_settings = {"strings_as_bytes": False, "strings_encoding": "utf-8", "use_numpy": True,
                               "input_format_null_as_default": False}
    column = get_column_by_spec("String", {"context": context})
    for items in (["x", None, "y"] * 10, ["x", "y"] * 10):
        sock = FakeSocket()
        buf = BufferedSocketWriter(sock, 1 << 16)
        column.write_data(np.array(items, dtype=object), buf)
        buf.flush()
        assert bytes(sock.out) == library_strings(["" if i is None else i for i in items])
