"""The import-subscribers command: validate, report, write rejects, import."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from crm.errors import ExtractRefused
from crm.importer import import_extract
from crm.settings import CrmSettings
from crm.subscribers import COLUMNS, Extract, read_extract
from warehouse import Warehouse

log = logging.getLogger("crm.import")


def run_import(args: argparse.Namespace, settings: CrmSettings, open_store: Callable[[str], Warehouse]) -> int:
    if args.rejects and not args.skip_invalid:
        raise ExtractRefused("--rejects needs --skip-invalid")
    extract = read_extract(args.file, settings.subscribers, keep_rejected=bool(args.rejects),
                           progress=not args.no_progress)
    for name in extract.ignored_columns:
        log.warning("ignoring unknown column %s", name)
    for name in extract.dropped_identifiers:
        log.warning("dropping direct-identifier column %s: never stored", name)
    if extract.bad_count and not args.skip_invalid:
        print_bad_rows(extract)
        first = extract.bad_rows[0]
        raise ExtractRefused(
            f"refused {Path(args.file).name}: {extract.bad_count:,} invalid row(s), nothing imported "
            f"(first: line {first.line}, {first.column}: {first.reason}); --skip-invalid imports the rest",
            bad_rows=extract.bad_rows, bad_count=extract.bad_count)
    if args.rejects:
        write_rejects(args.rejects, extract)
    store = open_store(settings.store.url)
    try:
        store.migrate()
        as_of = args.as_of or dt.datetime.now(dt.UTC).date()
        report = import_extract(store, extract, as_of=as_of)
    finally:
        store.close()
    for line in report.lines():
        print(line)
    if extract.bad_count:
        print_bad_rows(extract)
    return 0


def print_bad_rows(extract: Extract) -> None:
    """The report: line, column, reason of the first bad rows (values shortened, identifiers never shown)."""
    shown = len({b.line for b in extract.bad_rows})
    print(f"{extract.bad_count:,} invalid row(s)" + (f", the first {shown} listed" if shown < extract.bad_count
                                                     else "") + ":")
    print(f"{'line':>8}  {'column':<16} reason")
    for b in extract.bad_rows:
        print(f"{b.line:>8}  {b.column:<16} {b.reason}")
    sys.stdout.flush()


def write_rejects(path: str, extract: Extract) -> None:
    """Refused rows as CSV: line, column, reason, then the row's known columns (identifiers are not kept)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["line", "column", "reason", *COLUMNS])
        for line, raw, problems in extract.rejected:
            for b in problems:
                w.writerow([line, b.column, b.reason, *(raw.get(c, "") for c in COLUMNS)])
