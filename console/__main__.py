"""`python -m console`: serve the operator console, or `user add` a login (docs/CONSOLE.md)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Any

from console import ConsoleError
from console.db import now_ms
from console.settings import ENV_PREFIX, ConsoleSettings
from console.users import ROLES, add_user
from stbcommon import logs
from stbcommon.settings import SettingsError, load, redact_url
from warehouse import WarehouseError, open_warehouse

log = logging.getLogger("console")

DESCRIPTION = """\
The operator console: a web application over the store for analysts and marketers (overview,
audience, households, segments, campaigns, churn, recommender), with logins and roles.

  python -m console --store URL [--listen HOST:PORT] [--recommender HOST:PORT] [--config FILE]
  python -m console user add NAME --role viewer|marketer|admin --store URL   (password: first line of stdin)
"""

EPILOG = f"""\
settings, lowest to highest precedence: built-in defaults, the TOML file (--config), environment
variables {ENV_PREFIX}__<SECTION>__<KEY> (e.g. {ENV_PREFIX}__HTTP__LISTEN), then flags. See docs/CONSOLE.md.

examples:
  echo 'a long passphrase' | python -m console user add alice --role marketer --store chdb:///var/lib/stb/chdb
  python -m console --store clickhouse://ch:9000/stb --listen 0.0.0.0:8480 --recommender rec:50051
"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", metavar="URL", help="clickhouse://user:pass@host:9000/db or chdb:///abs/path")
    p.add_argument("--config", metavar="FILE", help="TOML settings file")


def parse_args(argv: list[str]) -> argparse.Namespace:
    fmt = argparse.RawDescriptionHelpFormatter
    if argv[:1] == ["user"]:
        p = argparse.ArgumentParser(prog="python -m console user", formatter_class=fmt,
                                    description="Add a console user, or replace one's role and password. "
                                                "The password is the first line of standard input.")
        p.add_argument("action", choices=["add"])
        p.add_argument("name", metavar="NAME")
        p.add_argument("--role", choices=list(ROLES), required=True)
        _common(p)
        args = p.parse_args(argv[1:])
        args.command = "user"
        return args
    p = argparse.ArgumentParser(prog="python -m console", description=DESCRIPTION, epilog=EPILOG, formatter_class=fmt)
    _common(p)
    p.add_argument("--listen", metavar="HOST:PORT", help="where to serve HTTP (default 127.0.0.1:8480)")
    p.add_argument("--recommender", metavar="HOST:PORT", help="the recommender's gRPC address (live recommendations)")
    args = p.parse_args(argv)
    args.command = "serve"
    return args


def settings_from(args: argparse.Namespace) -> ConsoleSettings:
    overrides: dict[str, Any] = {"store.url": args.store}
    if args.command == "serve":
        overrides |= {"http.listen": args.listen, "recommender.address": args.recommender}
    return load(ConsoleSettings, toml_path=args.config, env=os.environ, env_prefix=ENV_PREFIX, overrides=overrides)


def add(args: argparse.Namespace, settings: ConsoleSettings) -> int:
    password = sys.stdin.readline().rstrip("\r\n")
    store = open_warehouse(settings.store.url)
    try:
        store.migrate()
        add_user(store, args.name, args.role, password, now_ms())
    finally:
        store.close()
    print(f"user {args.name} ({args.role}) saved")
    return 0


def serve(settings: ConsoleSettings) -> int:
    import uvicorn

    from console.app import create_app

    store = open_warehouse(settings.store.url)
    try:
        store.migrate()
        app = create_app(settings, store)
        host, _, port = settings.http.listen.rpartition(":")
        config = uvicorn.Config(app, host=host.strip("[]"), port=int(port), log_config=None, access_log=False,
                                ssl_certfile=settings.http.tls_cert or None, ssl_keyfile=settings.http.tls_key or None,
                                proxy_headers=settings.http.proxy_headers, timeout_graceful_shutdown=10,
                                server_header=False)
        scheme = "https" if settings.http.tls_cert else "http"
        log.info("console serving", extra={"url": f"{scheme}://{settings.http.listen}",
                                           "store": redact_url(settings.store.url)})
        # uvicorn handles SIGTERM/SIGINT (stop accepting, finish requests within the grace period) and then
        # re-raises the signal to the handlers it found: these let the store close and the process exit 0.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)
        uvicorn.Server(config).run()
        log.info("console stopped")
    finally:
        store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = settings_from(args)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log.level, settings.log.format)
    try:
        return add(args, settings) if args.command == "user" else serve(settings)
    except (ConsoleError, WarehouseError, PermissionError, OSError) as exc:
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
