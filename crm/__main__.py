"""`python -m crm COMMAND`: subscriber import, ratings, profiles and tags, segments."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
from typing import Any

from crm.export_ids import IDENTIFIED_HELP
from crm.settings import ENV_PREFIX, CrmSettings
from stbcommon.settings import SettingsError, load

DESCRIPTION = """\
Subscriber 360 for the STB telemetry store: who the households are (the BOSS extract), what
they watch (ratings), what they are like (profiles and tags) and who is in a segment.

  import-subscribers  load a subscriber extract (CSV or Parquet), all or nothing
  ratings             ratings, reach and share of a day, by programme, channel or daypart
  profile             household profiles and tags for a day
  segment             count, list, save and list saved segments
  churn               churn early warning: train, score (scores, tags, alerts), evaluate
  forget              remove households from every table, waiting for the deletes to finish
"""

EPILOG = f"""\
settings, lowest to highest precedence: built-in defaults, the TOML file (--config),
environment variables {ENV_PREFIX}__<SECTION>__<KEY> (e.g. {ENV_PREFIX}__CREDIT__MIN_VIEW_S),
then flags. See docs/CRM.md.

household ids in output are keyed pseudonyms ("h" + 16 hex) when [privacy] key_file names a
0600 key file ({ENV_PREFIX}__PRIVACY__KEY_FILE); raw ids only with --identified, and without a
key and --identified ids are not listed (docs/SECURITY.md).

examples:
  python -m crm import-subscribers extract.csv --store clickhouse://ch:9000/stb
  python -m crm import-subscribers extract.csv --store chdb:///var/lib/stb/chdb --skip-invalid --rejects bad.csv
  python -m crm ratings --store clickhouse://ch:9000/stb --day 2026-12-01 --by channel --json ratings.json
  python -m crm profile --store clickhouse://ch:9000/stb --day 2026-12-01
  python -m crm segment count "interest.football and value in (high, mid)" --store clickhouse://ch:9000/stb
  python -m crm segment members @football-fans --limit 100 --store clickhouse://ch:9000/stb
  python -m crm churn train --store clickhouse://ch:9000/stb --model-dir /var/lib/stb/churn
  python -m crm churn score --store clickhouse://ch:9000/stb --model-dir /var/lib/stb/churn
  python -m crm churn evaluate --store clickhouse://ch:9000/stb --json churn-eval.json
  python -m crm forget 1042 1043 --store clickhouse://ch:9000/stb
"""


def _day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(prog="python -m crm", description=DESCRIPTION, epilog=EPILOG, formatter_class=fmt)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", metavar="URL", help="clickhouse://user:pass@host:9000/db or chdb:///abs/path")
    common.add_argument("--config", metavar="FILE", help="TOML settings file")
    common.add_argument("--no-progress", action="store_true", help="no progress bars")

    i = sub.add_parser("import-subscribers", parents=[common], formatter_class=fmt, epilog=EPILOG,
                       help="load a subscriber extract (CSV or Parquet)",
                       description="Validate the whole extract, then import it; an invalid row refuses the "
                                   "file (report of up to 100 bad rows) unless --skip-invalid.")
    i.add_argument("file", metavar="FILE", help="CSV (UTF-8, header) or .parquet")
    i.add_argument("--as-of", type=_day, metavar="YYYY-MM-DD", help="the extract's date (default today, UTC)")
    i.add_argument("--skip-invalid", action="store_true", help="import the valid rows, refuse the rest")
    i.add_argument("--rejects", metavar="PATH", help="with --skip-invalid: write refused rows here (CSV)")
    r = sub.add_parser("ratings", parents=[common], formatter_class=fmt, epilog=EPILOG,
                       help="ratings, reach and share of a day (stored in ratings_daily)",
                       description="Ratings, reach and share of one local day, by airing (programme), "
                                   "channel or daypart; stored per day in ratings_daily (docs/CRM.md).")
    r.add_argument("--day", type=_day, required=True, metavar="YYYY-MM-DD", help="the (local) day")
    r.add_argument("--by", choices=["programme", "channel", "daypart"], default="programme")
    r.add_argument("--segment", metavar="EXPR", help="only households in this segment (expression or @name)")
    r.add_argument("--json", metavar="PATH", help="also write every row as JSON")
    r.add_argument("--top", type=int, default=20, metavar="N", help="rows printed (default 20)")
    pr = sub.add_parser("profile", parents=[common], formatter_class=fmt, epilog=EPILOG,
                        help="household profiles and tags of a day",
                        description="Build household_profiles and household_tags for a (local) day from the "
                                    "credited viewing of the 90 days ending with it, with the tag catalogue.")
    pr.add_argument("--day", type=_day, metavar="YYYY-MM-DD", help="default: the last complete day")
    pr.add_argument("--catalogue", metavar="FILE", help="tag catalogue TOML (default: the shipped crm/catalogue.toml)")
    sg = sub.add_parser("segment", formatter_class=fmt, epilog=EPILOG, help="count, list and save segments",
                        description="Segments: an expression over tags and profile fields (docs/CRM.md), "
                                    "evaluated on a day's profiles; @name is a saved segment's newest version.")
    ssub = sg.add_subparsers(dest="action", required=True, metavar="ACTION")
    day = argparse.ArgumentParser(add_help=False)
    day.add_argument("--day", type=_day, metavar="YYYY-MM-DD", help="profiles of this day (default: the newest)")
    c = ssub.add_parser("count", parents=[common, day], help="how many households match")
    c.add_argument("expr", metavar="EXPR")
    m = ssub.add_parser("members", parents=[common, day],
                        help="the matching households, one a line (keyed pseudonyms unless --identified)")
    m.add_argument("expr", metavar="EXPR")
    m.add_argument("--limit", type=int, metavar="N", help="at most N households")
    m.add_argument("--identified", action="store_true", help=IDENTIFIED_HELP)
    s = ssub.add_parser("save", parents=[common], help="save (a new version of) a named segment")
    s.add_argument("name", metavar="NAME")
    s.add_argument("expr", metavar="EXPR")
    ssub.add_parser("list", parents=[common], help="saved segments, newest versions")
    _churn_parsers(sub, common, fmt)
    f = sub.add_parser("forget", parents=[common], formatter_class=fmt, epilog=EPILOG,
                       help="remove households from every table (waits for the deletes)",
                       description="Delete every row of the given households from every table of the store "
                                   "that has a household_id column (ALTER TABLE ... DELETE), wait until the "
                                   "mutations are done and no row is left, and record the request (a keyed hash, "
                                   "not the id). Running it again exits 0.")
    f.add_argument("households", metavar="HOUSEHOLD", nargs="+", type=_household, help="household id")
    f.add_argument("--timeout", type=float, default=600.0, metavar="S",
                   help="give up waiting for the deletes after this long (default 600)")
    return p.parse_args(argv)


def _household(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value < 2**64:
        raise argparse.ArgumentTypeError(f"{text!r} is not a household id (an integer 1..2^64-1)")
    return value


def _churn_parsers(sub: Any, common: argparse.ArgumentParser, fmt: type[argparse.HelpFormatter]) -> None:
    ch = sub.add_parser("churn", formatter_class=fmt, epilog=EPILOG, help="churn early warning: train, score, evaluate",
                        description="Who is about to leave: a gradient-boosting model on features computed in "
                                    "ClickHouse, calibrated probabilities, reasons in words (docs/CRM.md).")
    csub = ch.add_subparsers(dest="action", required=True, metavar="ACTION")
    day = argparse.ArgumentParser(add_help=False)
    day.add_argument("--day", type=_day, metavar="YYYY-MM-DD",
                     help="default: the last complete day with events in the store")
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("--model-dir", metavar="DIR", help="model versions (default: setting churn.model_dir)")
    csub.add_parser("train", parents=[common, day, model], formatter_class=fmt,
                    help="train on what was known on the day, publish a model version",
                    description="Train on feature days whose outcome (ended within churn.horizon_days) is known "
                                "on --day, split by time (the newest calibrates); publish a new version atomically.")
    sc = csub.add_parser("score", parents=[common, day, model], formatter_class=fmt,
                         help="score every subscriber: churn_scores, risk tags, alerts",
                         description="Score every subscriber not ended on or before --day with the current model: "
                                     "churn_scores, risk.churn_high / risk.churn_medium tags, churn_alerts for "
                                     "households entering the high band.")
    sc.add_argument("--top", type=int, default=5, metavar="N", help="riskiest households printed (default 5)")
    sc.add_argument("--identified", action="store_true", help=IDENTIFIED_HELP)
    ev = csub.add_parser("evaluate", parents=[common, day], formatter_class=fmt,
                         help="out-of-time evaluation against rule baselines (and the simulator's truth)",
                         description="Train as of an earlier day and test on the later feature days whose outcome "
                                     "is known on --day: AUC, PR-AUC, lift@10 %, Brier, per tenure band, against "
                                     "days-since-last-view and 7/21-day trend rules and, with --truth, the "
                                     "simulator's own forecast (the ceiling).")
    ev.add_argument("--json", metavar="PATH", help="also write the evaluation as JSON")
    ev.add_argument("--truth", metavar="PATH", help="firmware_sim truth.npz: add its forecast as the ceiling")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {"store.url": getattr(args, "store", None), "profile.catalogue": getattr(args, "catalogue", None)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = load(CrmSettings, toml_path=args.config, env=os.environ, env_prefix=ENV_PREFIX,
                        overrides=_overrides(args))
    except (SettingsError, ValueError) as exc:
        print(f"crm: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    from stbcommon import logs

    logs.configure(settings.log.level, settings.log.format)
    # clickhouse-driver logs a traceback for a refused connection; the one-line reason below says it
    logging.getLogger("clickhouse_driver").setLevel(logging.ERROR)
    from crm.errors import CrmError
    from warehouse import WarehouseError, open_warehouse

    try:
        if args.command == "import-subscribers":
            from crm.cli_import import run_import

            # Validate before opening the store: a refused file never touches it.
            return run_import(args, settings, open_warehouse)
        store = open_warehouse(settings.store.url)
        try:
            store.migrate()
            return _store_command(args, settings, store)
        finally:
            store.close()
    except (CrmError, WarehouseError, OSError, ValueError) as exc:
        print(f"crm {args.command}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1


def _store_command(args: argparse.Namespace, settings: CrmSettings, store: Any) -> int:
    if args.command == "ratings":
        from crm.cli_ratings import run_ratings

        return run_ratings(args, settings, store)
    if args.command == "segment":
        from crm.cli_segment import run_segment

        return run_segment(args, settings, store)
    if args.command == "profile":
        from crm.cli_profile import run_profile

        return run_profile(args, settings, store)
    if args.command == "churn":
        from crm.churn.cli import run_churn

        return run_churn(args, settings, store)
    if args.command == "forget":
        from crm.forget import run_forget

        return run_forget(args, settings, store)
    raise ValueError(f"unknown command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
