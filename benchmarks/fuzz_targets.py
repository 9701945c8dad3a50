"""Raw-bytes fuzz targets (atheris, coverage-guided) for every parser that reads outside input.

Each target feeds bytes to one public entry point and allows only the error that entry point
documents; anything else (a crash, another exception, an input that runs past libFuzzer's
-timeout) is a finding. Structured fuzzing of the same parsers lives in the hypothesis tests.

    python -m benchmarks.fuzz_targets NAME [libFuzzer flags, e.g. -runs=10000 -max_total_time=60]
    python -m benchmarks fuzz            # every target for a while, inputs tried per target
"""

from __future__ import annotations

import atexit
import io
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import atheris

with atheris.instrument_imports():
    from agent.downlink import InvalidDownlink, parse
    from collector.decoder import Accepted, Decoder
    from crm.errors import ExtractRefused, SegmentError
    from crm.segment_parser import parse as parse_segment
    from crm.settings import ImportSettings
    from crm.subscribers import read_extract
    from warehouse.xmltv_import import XmltvError, import_xmltv

NOW = 1_795_000_000_000
_TOPICS = ["stb/v1/north/box-1/events", "stb/v1/north/BOX_2.a/events", "stb/v1/UP/box/events", "x", ""]


def wire(data: bytes) -> None:
    """The collector's decoder: every payload is stored or dead-lettered, never an exception."""
    fdp = atheris.FuzzedDataProvider(data)
    decoder = Decoder()
    accepted = []
    for _ in range(fdp.ConsumeIntInRange(1, 4)):
        topic = _TOPICS[fdp.ConsumeIntInRange(0, len(_TOPICS) - 1)]
        result = decoder.accept(topic, fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 4096)), NOW)
        if isinstance(result, Accepted):
            accepted.append(result)
    decoded = decoder.decode(accepted)
    assert len(decoded.sources) + len(decoded.dead_letters) == len(accepted)


def _scratch(prefix: str) -> str:
    """A folder removed when this process exits normally. Made on first use, not at import (the
    unit tests import this module); under atheris libFuzzer's exit skips atexit, so
    benchmarks.fuzz points TMPDIR into its own work folder, which it removes."""
    folder = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, folder, True)
    return folder


class _NullAgent:
    """What the local socket hands events to; record() checks them as the real agent does."""

    def __init__(self) -> None:
        from agent.core import Agent
        from agent.settings import AgentSettings, DeviceSettings, MessagesSettings, SpoolSettings

        folder = _scratch("fuzz-agent-")
        self.agent = Agent(AgentSettings(device=DeviceSettings(id="fuzz"), messages=MessagesSettings(enabled=False),
                                         spool=SpoolSettings(dir=folder, fsync="off", max_bytes=64 * 1024)))


_ingest: Any = None


def agent_socket(data: bytes) -> None:
    """The agent's local datagram handler: malformed input is counted, never raised."""
    global _ingest
    if _ingest is None:
        from agent.ingest_socket import IngestSocket

        _ingest = IngestSocket(_NullAgent().agent)
    _ingest.handle(data)


def downlink(data: bytes) -> None:
    try:
        parse(data)
    except InvalidDownlink:
        pass


class _Sink:
    def insert_columns(self, table: str, columns: Any) -> None: ...


def xmltv(data: bytes) -> None:
    try:
        import_xmltv(io.BytesIO(data), _Sink(), progress=False)
    except XmltvError:
        pass


def segment(data: bytes) -> None:
    try:
        parse_segment(data.decode("utf-8", errors="replace"))
    except SegmentError:
        pass


_extract_dir: Path | None = None


def subscribers(data: bytes) -> None:
    global _extract_dir
    if _extract_dir is None:
        _extract_dir = Path(_scratch("fuzz-extract-"))
    path = _extract_dir / "extract.csv"
    path.write_bytes(b"household_id,status,activated,ended,products,monthly_fee,region,birth_month,"
                     b"contact_opt_in\n" + data if data[:1] != b"!" else data[1:])  # with or without a header
    try:
        read_extract(path, ImportSettings())
    except ExtractRefused:
        pass


TARGETS: dict[str, Callable[[bytes], None]] = {
    "wire": wire, "agent_socket": agent_socket, "downlink": downlink, "xmltv": xmltv, "segment": segment,
    "subscribers": subscribers,
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        print(f"usage: python -m benchmarks.fuzz_targets {{{','.join(TARGETS)}}} [libFuzzer flags]",
              file=sys.stderr)
        sys.exit(2)
    name = sys.argv.pop(1)
    started = time.monotonic()
    atheris.Setup(sys.argv, TARGETS[name])
    print(f"fuzzing {name} (started {time.monotonic() - started:.1f} s after import)", file=sys.stderr, flush=True)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
