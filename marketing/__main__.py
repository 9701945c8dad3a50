"""`python -m marketing COMMAND`: the campaign daemon and campaign management."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from marketing.settings import ENV_PREFIX, MarketingSettings
from stbcommon.settings import SettingsError, load, redact_text

DESCRIPTION = """\
Campaigns on the set-top box: a segment, content variants, waves, a schedule or trigger; sends
capped per household, measured against a holdout, variants allocated by Thompson sampling.

  run        the daemon: each cycle (poll_s) updates contact states from the boxes' answers,
             finds occasions (schedules, guide airings, churn alerts, behaviour, birthdays),
             resolves audiences, applies caps, publishes messages, records every decision
  campaign   create FILE.toml [--draft] | list | show ID | approve ID | pause ID | resume ID |
             report ID [--json PATH]
"""

EPILOG = f"""\
settings, lowest to highest precedence: built-in defaults, the TOML file (--config),
environment variables {ENV_PREFIX}__<SECTION>__<KEY> (e.g. {ENV_PREFIX}__CAPS__OVER_CAP=skip),
then flags. See docs/MARKETING.md.

examples:
  python -m marketing campaign create euro-final.toml --store clickhouse://ch:9000/stb
  python -m marketing run --store clickhouse://ch:9000/stb --mqtt mqtt://broker:1883
  python -m marketing run --once --config marketing.toml
  python -m marketing campaign report euro-final --json euro-final.json --store clickhouse://ch:9000/stb
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(prog="python -m marketing", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=fmt)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", metavar="URL", help="clickhouse://user:pass@host:9000/db or chdb:///abs/path")
    common.add_argument("--config", metavar="FILE", help="TOML settings file")
    run = sub.add_parser("run", parents=[common], formatter_class=fmt, epilog=EPILOG, help="the daemon",
                         description="Run cycles every poll_s seconds until SIGTERM/SIGINT (the cycle in progress "
                                     "finishes: its messages acknowledged and recorded).")
    run.add_argument("--mqtt", metavar="URL", help="mqtt://user:pass@host:1883 or mqtts://host:8883")
    run.add_argument("--once", action="store_true", help="one full cycle, then exit once every message is acknowledged")
    run.add_argument("--check-config", action="store_true", help="print the settings (secrets redacted) and exit")
    camp = sub.add_parser("campaign", help="create, list, show, approve, pause, resume, report",
                          description="Manage campaigns (the console uses the same contract).", formatter_class=fmt)
    csub = camp.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = csub.add_parser("create", parents=[common], help="register a campaign file",
                             description="Validate FILE.toml (every problem listed) and register it; active from "
                                         "its start unless --draft (then it waits for `approve`).")
    create.add_argument("file", metavar="FILE.toml")
    create.add_argument("--draft", action="store_true", help="wait for `campaign approve ID`")
    csub.add_parser("list", parents=[common], help="every campaign, its status and sends")
    for action, text in (("show", "the campaign file, status and history"), ("approve", "draft -> active"),
                         ("pause", "active -> paused (no sends; states still update)"), ("resume", "paused -> active")):
        one = csub.add_parser(action, parents=[common], help=text, description=text)
        one.add_argument("id", metavar="ID")
    rep = csub.add_parser("report", parents=[common], help="funnel, uplift against the holdout, variants, waves",
                          description="Funnel by contact state, treated vs holdout conversion with the 95 % "
                                      "interval of the uplift, variants and waves (../shared/CONTRACTS.md).")
    rep.add_argument("id", metavar="ID")
    rep.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    what = args.command + (f" {args.action}" if args.command == "campaign" else "")
    try:
        settings = load(MarketingSettings, toml_path=args.config, env=os.environ, env_prefix=ENV_PREFIX,
                        overrides={"store.url": args.store, "mqtt.url": getattr(args, "mqtt", None)})
    except (SettingsError, ValueError) as exc:
        print(f"marketing: {redact_text(' '.join(str(exc).split()))}", file=sys.stderr)
        return 2
    from stbcommon import logs

    logs.configure(settings.log.level, settings.log.format if args.command == "run" else "text")
    logging.getLogger("clickhouse_driver").setLevel(logging.ERROR)
    from marketing.errors import MarketingError
    from warehouse import WarehouseError

    try:
        if args.command == "run":
            from marketing.daemon import run_daemon

            return run_daemon(settings, once=args.once, check_config=args.check_config)
        from marketing.cli import run_campaign_command

        return run_campaign_command(args, settings)
    except (MarketingError, WarehouseError, OSError, ValueError) as exc:
        print(f"marketing {what}: {redact_text(' '.join(str(exc).split()))}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
