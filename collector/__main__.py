"""`python -m collector` / `stb-collector`: the headend telemetry collector daemon."""

from __future__ import annotations

import argparse
import os
import sys

from collector.settings import ENV_PREFIX, CollectorSettings
from stbcommon.settings import SettingsError, load, redacted

DESCRIPTION = """\
Consume STB telemetry (wire format v1) from MQTT and write it to ClickHouse.

Subscribes to $share/<group>/stb/v1/+/+/events with a persistent MQTT 5 session,
validates every message, writes events in columnar batches and acknowledges each
message only after its rows are committed. Invalid messages go to the dead_letters
table with a reason. SIGTERM: stop taking messages, flush, acknowledge, exit 0.
"""

EPILOG = f"""\
settings, lowest to highest precedence: built-in defaults, the TOML file (--config),
environment variables {ENV_PREFIX}__<SECTION>__<KEY> (e.g. {ENV_PREFIX}__MQTT__URL,
{ENV_PREFIX}__BATCH__MAX_ROWS, {ENV_PREFIX}__WORKERS), then these flags.
See docs/COLLECTOR.md for every setting.

examples:
  python -m collector --mqtt mqtt://localhost:1883 --store chdb:///var/lib/stb/chdb
  python -m collector --mqtt mqtt://collector:secret@broker:1883 \\
      --store clickhouse://default@clickhouse:9000/stb --workers 2 --metrics-port 9464
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m collector", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE", help="TOML settings file")
    p.add_argument("--mqtt", metavar="URL", help="broker: mqtt://[user:pass@]host[:port] or mqtts://...")
    p.add_argument("--store", metavar="URL",
                   help="clickhouse://user:pass@host:9000/db, chdb:///abs/path (embedded, default "
                        "chdb:./stb-data) or null:// (write nothing: benchmarks)")
    p.add_argument("--group", metavar="NAME", help="shared-subscription group (default stb-collectors)")
    p.add_argument("--workers", metavar="N", type=int, help="consumer processes (default 1)")
    p.add_argument("--metrics-port", metavar="P", type=int,
                   help="Prometheus /metrics port, 0 = off (default 9464; worker i uses P+i)")
    p.add_argument("--log-level", metavar="LEVEL", help="DEBUG, INFO, WARNING or ERROR")
    p.add_argument("--log-format", choices=["json", "text"], help="structured JSON (default) or text")
    p.add_argument("--check-config", action="store_true", help="validate the settings, print them, exit")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = load(CollectorSettings, toml_path=args.config, env=os.environ, env_prefix=ENV_PREFIX,
                        overrides={"mqtt.url": args.mqtt, "store.url": args.store, "mqtt.group": args.group,
                                   "workers": args.workers, "metrics.port": args.metrics_port,
                                   "log.level": args.log_level, "log.format": args.log_format})
    except SettingsError as exc:
        print(f"collector: {exc}", file=sys.stderr)
        return 2
    if args.check_config:
        print(redacted(settings))
        return 0
    from collector.daemon import run

    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
