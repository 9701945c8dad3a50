"""Reading and validating a subscriber (BOSS) extract: CSV (UTF-8, header) or Parquet.

    extract = read_extract(path, ImportSettings())      # raises ExtractRefused for a missing column
    extract.columns        # parsed and typed, ready to insert (only valid rows)
    extract.bad_rows       # the first `report_rows` problems; extract.bad_count all of them

Nothing here touches the store: validation finishes before anything is written, which is
what makes the import all-or-nothing. Columns (docs/CRM.md): household_id, status, activated
are required; ended, products, monthly_fee, region, birth_month, contact_opt_in are optional.
Direct identifiers (name, phone, email, ...) are dropped before parsing: they never reach
memory we keep, the store, a rejects file or a log line.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np

from crm.errors import BadRow, ExtractRefused
from crm.settings import ImportSettings

COLUMNS: Final = ("household_id", "status", "activated", "ended", "products", "monthly_fee", "region",
                  "birth_month", "contact_opt_in")
REQUIRED: Final = ("household_id", "status", "activated")
STATUSES: Final = ("active", "suspended", "ended")
_UINT64_MAX: Final = 2**64 - 1
_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")
_FEE: Final = re.compile(r"(\d{1,12})(?:\.(\d{1,2}))?")
_CODE: Final = re.compile(r"[a-z0-9][a-z0-9_.+-]{0,31}")
_MAX_REGION: Final = 64


@dataclass
class Extract:
    """The valid rows of an extract, column by column, and what was wrong with the rest."""

    columns: dict[str, np.ndarray]
    rows_read: int
    dropped_identifiers: list[str]
    ignored_columns: list[str]
    bad_rows: list[BadRow] = field(default_factory=list)
    bad_count: int = 0
    rejected: list[tuple[int, dict[str, str], list[BadRow]]] = field(default_factory=list)

    @property
    def valid_rows(self) -> int:
        return len(self.columns["household_id"])


def normalise_header(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


def read_extract(path: str | Path, settings: ImportSettings, *, keep_rejected: bool = False,
                 progress: bool = False) -> Extract:
    """Parse and validate every row; never raises for bad rows (see `bad_count`), only for a file
    that cannot be read as an extract at all. `progress`: a tqdm bar on stderr (rows read)."""
    from tqdm import tqdm

    path = Path(path)
    if not path.is_file():
        raise ExtractRefused(f"cannot read {path}: no such file")
    rows = _parquet_rows(path) if path.suffix.lower() in (".parquet", ".pq") else _csv_rows(path)
    rows = iter(tqdm(rows, unit=" rows", desc=f"validating {path.name}", disable=not progress, mininterval=0.5))
    try:
        header = next(rows)[1]
    except StopIteration:
        raise ExtractRefused(f"{path.name}: empty file (no header)") from None
    names = [normalise_header(h) for h in header]
    identifiers = set(settings.identifier_columns)
    dropped = sorted({n for n in names if n in identifiers})
    ignored = sorted({n for n in names if n not in COLUMNS and n not in identifiers})
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise ExtractRefused(f"{path.name}: missing required column(s) {', '.join(missing)}")
    dupes = sorted({n for n in names if names.count(n) > 1 and n in COLUMNS})
    if dupes:
        raise ExtractRefused(f"{path.name}: column(s) {', '.join(dupes)} appear more than once")
    keep = [(i, n) for i, n in enumerate(names) if n in COLUMNS]
    out = Extract({}, 0, dropped, ignored)
    parsed: list[tuple[object, ...]] = []
    seen: dict[int, int] = {}
    for line, values in rows:
        out.rows_read += 1
        if len(values) != len(names):
            problems = [BadRow(line, "*", f"{len(values)} fields, the header has {len(names)}")]
            raw = {}
        else:
            raw = {n: values[i].strip() for i, n in keep}
            row, problems = parse_row(line, raw)
            if row is not None:
                first = seen.setdefault(int(row[0]), line)  # type: ignore[call-overload]
                if first != line:
                    problems = [BadRow(line, "household_id", f"duplicate of line {first}")]
                else:
                    parsed.append(row)
        if problems:
            out.bad_count += 1
            room = settings.report_rows - len(out.bad_rows)
            out.bad_rows.extend(problems[:max(room, 0)])
            if keep_rejected:
                out.rejected.append((line, raw, problems))
    out.columns = _columns(parsed)
    return out


def parse_row(line: int, raw: dict[str, str]) -> tuple[tuple[object, ...] | None, list[BadRow]]:
    """One row's typed values in COLUMNS order, or None and what is wrong (every problem found)."""
    bad: list[BadRow] = []

    def fail(column: str, reason: str) -> None:
        bad.append(BadRow(line, column, reason))

    text = raw.get("household_id", "")
    hid = int(text) if text.isdigit() and text.isascii() else -1
    if not 1 <= hid <= _UINT64_MAX:
        fail("household_id", "not an integer in 1..2^64-1" if text else "empty")
    status = raw.get("status", "").lower()
    if status not in STATUSES:
        fail("status", f"{_show(status)} is not active, suspended or ended")
    activated = _date(raw.get("activated", ""), "activated", fail, required=True)
    ended = _date(raw.get("ended", ""), "ended", fail, required=False)
    if activated and ended and ended < activated:
        fail("ended", "before activated")
    if status == "ended" and not ended and not any(b.column == "ended" for b in bad):
        fail("ended", "status ended needs an end date")
    products = _codes(raw.get("products", ""), "products", fail)
    fee_text = raw.get("monthly_fee", "")
    fee = 0
    if fee_text:
        m = _FEE.fullmatch(fee_text)
        if m is None:
            fail("monthly_fee", f"{_show(fee_text)} is not a non-negative amount with at most 2 decimals")
        else:
            fee = int(m.group(1)) * 100 + int((m.group(2) or "0").ljust(2, "0"))
    region = raw.get("region", "").lower()
    if len(region) > _MAX_REGION or not region.isprintable():
        fail("region", f"longer than {_MAX_REGION} characters or not printable")
    month_text = raw.get("birth_month", "")
    month = int(month_text) if month_text.isdigit() and month_text.isascii() else -1
    if month_text and not 1 <= month <= 12:
        fail("birth_month", f"{_show(month_text)} is not 1..12")
    opt_in = _codes(raw.get("contact_opt_in", ""), "contact_opt_in", fail)
    if bad:
        return None, bad
    return (hid, status, activated, ended, products, fee, region, max(month, 0), opt_in), []


def _date(text: str, column: str, fail: Callable[[str, str], None], *, required: bool) -> dt.date | None:
    if not text:
        if required:
            fail(column, "empty")
        return None
    try:
        if not _DATE.fullmatch(text):
            raise ValueError
        return dt.date.fromisoformat(text)
    except ValueError:
        fail(column, f"{_show(text)} is not a date YYYY-MM-DD")
        return None


def _codes(text: str, column: str, fail: Callable[[str, str], None]) -> str:
    codes = sorted({c.strip().lower() for c in text.split(";") if c.strip()})
    wrong = [c for c in codes if not _CODE.fullmatch(c)]
    if wrong:
        fail(column, f"{_show(wrong[0])} is not a code (letters, digits, _.+-, at most 32)")
    return ";".join(codes)


def _show(value: str) -> str:
    """A value quoted for a report, shortened: reports must not become a copy of the extract."""
    return repr(value if len(value) <= 24 else value[:21] + "...")


def _columns(rows: list[tuple[object, ...]]) -> dict[str, np.ndarray]:
    cols = list(zip(*rows, strict=True)) if rows else [()] * len(COLUMNS)

    def text(values: tuple[object, ...]) -> np.ndarray:
        out = np.empty(len(values), dtype=object)
        out[:] = list(values)
        return out

    def dates(values: tuple[object, ...]) -> np.ndarray:
        # datetime64[s]: both stores take it for a Date column (chdb refuses [D]); 0 = none
        return np.array([v.isoformat() if isinstance(v, dt.date) else "1970-01-01" for v in values],
                        dtype="datetime64[s]")

    hid, status, activated, ended, products, fee, region, month, opt_in = cols
    return {"household_id": np.array(hid, dtype=np.uint64), "status": text(status),
            "activated": dates(activated), "ended": dates(ended), "products": text(products),
            "monthly_fee_cents": np.array(fee, dtype=np.int64), "region": text(region),
            "birth_month": np.array(month, dtype=np.uint8), "contact_opt_in": text(opt_in)}


def _csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line, fields) with the header first; a row spanning lines is reported at its first line."""
    try:
        with path.open(newline="", encoding="utf-8-sig", errors="strict") as fh:
            reader = csv.reader(fh)
            line = 1
            try:
                for fields in reader:
                    if fields:  # blank lines carry nothing
                        yield line, fields
                    line = reader.line_num + 1
            except UnicodeDecodeError:
                raise ExtractRefused(f"{path.name}: not UTF-8 (near line {line})") from None
            except csv.Error as exc:
                raise ExtractRefused(f"{path.name}: line {line}: {exc}") from None
    except OSError as exc:
        raise ExtractRefused(f"cannot read {path}: {exc.strerror or exc}") from None


def _parquet_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Parquet rows as text, so one validator serves both formats; `line` is the 1-based row number."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:
        raise ExtractRefused(f"cannot read {path.name} as Parquet: {exc}") from None
    yield 0, list(table.column_names)
    columns = [_texts(table.column(i).to_pylist()) for i in range(table.num_columns)]
    for r in range(table.num_rows):
        yield r + 1, [c[r] for c in columns]


def _texts(values: list[object]) -> list[str]:
    out = []
    for v in values:
        if v is None:
            out.append("")
        elif isinstance(v, dt.datetime):
            out.append(v.date().isoformat())
        elif isinstance(v, dt.date):
            out.append(v.isoformat())
        elif isinstance(v, float):
            out.append(f"{v:.2f}" if v == round(v, 2) else repr(v))
        else:
            out.append(str(v))
    return out
