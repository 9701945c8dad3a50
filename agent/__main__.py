"""`python -m agent` / `stb-agent`: a standalone STB agent, fed over its local socket."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from agent.settings import ENV_PREFIX, AgentSettings
from stbcommon.settings import SettingsError, load, redact_url, redacted

if TYPE_CHECKING:
    from agent.core import Agent
    from agent.ingest_socket import IngestSocket

DESCRIPTION = """\
Run the STB telemetry agent as its own process. Firmware reports events over a local
socket: one event per datagram, the wire array [kind, ts_ms, field...] as msgpack or as
JSON text (see docs/AGENT.md). The agent appends each event to a crash-safe on-disk
spool, seals batches (by count, size or age) and publishes them as wire-format v1
messages over MQTT 5, QoS 1, removing them from the spool only when the broker has
acknowledged them. While the broker is away the spool keeps up to spool.max_bytes,
then drops the oldest events (counted). Messages for the box (campaigns) arrive on
stb/v1/<region>/<device>/messages and are written, one JSON line each, to every UI
client of --messages-socket; kept on disk (newest 100) while none is connected.

SIGTERM/SIGINT: stop reading the socket, sync the spool, publish what the grace period
(shutdown_grace_s) allows, exit 0; the rest is published after the next start.
Exit status 2: invalid settings or an unusable spool folder or socket path.
"""

EPILOG = f"""\
settings, lowest to highest precedence: defaults, the TOML file (--config), environment
variables {ENV_PREFIX}__<SECTION>__<KEY> (e.g. {ENV_PREFIX}__DEVICE__ID,
{ENV_PREFIX}__MQTT__URL, {ENV_PREFIX}__SPOOL__FSYNC=off, {ENV_PREFIX}__BATCH__MAX_AGE_S=1),
then these flags. Sections: device, mqtt, batch, spool, ingest, messages, metrics, log; see
docs/AGENT.md for every key.

example:
  python -m agent --mqtt mqtts://stb:secret@broker:8883 --device-id stb-0001 \\
      --household-id 42 --region north --spool /var/lib/stb-agent/spool \\
      --socket /run/stb-agent/events.sock --messages-socket /run/stb-agent/messages.sock
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m agent", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE", help="TOML settings file")
    p.add_argument("--mqtt", metavar="URL", help="broker: mqtt://[user:pass@]host[:port] or mqtts://... (TLS)")
    p.add_argument("--device-id", metavar="ID", help="this box's id, [A-Za-z0-9._-]{1,64}; also the MQTT client id")
    p.add_argument("--household-id", metavar="N", type=int, help="subscriber account id (uint64)")
    p.add_argument("--region", metavar="NAME", help="topic region, [a-z0-9-]{1,32} (default: default)")
    p.add_argument("--firmware", metavar="VERSION", help="firmware version reported in every batch")
    p.add_argument("--spool", metavar="DIR", help="spool folder (default /var/lib/stb-agent/spool)")
    p.add_argument("--spool-max-bytes", metavar="N", type=int, help="spool bound in bytes (default 8 MiB)")
    p.add_argument("--fsync", choices=["batch", "event", "off"], help="spool fsync policy (default batch)")
    p.add_argument("--socket", metavar="PATH",
                   help="UNIX datagram socket for events (default /run/stb-agent/events.sock; '' = off)")
    p.add_argument("--messages-socket", metavar="PATH",
                   help="UNIX stream socket where the UI receives messages for the box, one JSON line each "
                        "('' = off, the default)")
    p.add_argument("--udp-port", metavar="P", type=int, help="also accept events on UDP 127.0.0.1:P (0 = off)")
    p.add_argument("--metrics-port", metavar="P", type=int, help="Prometheus /metrics on 127.0.0.1:P (0 = off)")
    p.add_argument("--log-level", metavar="LEVEL", help="DEBUG, INFO, WARNING or ERROR")
    p.add_argument("--log-format", choices=["json", "text"], help="structured JSON lines (default) or text")
    p.add_argument("--check-config", action="store_true", help="validate the settings, print them, exit")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = load(AgentSettings, toml_path=args.config, env=os.environ, env_prefix=ENV_PREFIX, overrides={
            "mqtt.url": args.mqtt, "device.id": args.device_id, "device.household_id": args.household_id,
            "device.region": args.region, "device.firmware": args.firmware, "spool.dir": args.spool,
            "spool.max_bytes": args.spool_max_bytes, "spool.fsync": args.fsync, "ingest.unix_path": args.socket,
            "messages.socket": args.messages_socket,
            "ingest.udp_port": args.udp_port, "metrics.port": args.metrics_port, "log.level": args.log_level,
            "log.format": args.log_format})
    except SettingsError as exc:
        print(f"agent: {exc}", file=sys.stderr)
        return 2
    if args.check_config:
        print(redacted(settings))
        return 0
    from stbcommon import logs

    logs.configure(settings.log.level, settings.log.format)
    # Plain asyncio, not uvloop: at STB event rates the loop is idle, and uvloop costs ~2 MB of RSS.
    return asyncio.run(_serve(settings))


async def _serve(settings: AgentSettings) -> int:
    from agent.core import Agent
    from agent.errors import AgentError
    from agent.ingest_socket import IngestSocket
    from agent.messages_socket import MessagesSocket

    log = logging.getLogger("agent")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        agent = Agent(settings)
        ingest = IngestSocket(agent, unix_path=settings.ingest.unix_path, udp_port=settings.ingest.udp_port)
        with _metrics(settings, agent, ingest):
            async with agent, ingest, contextlib.AsyncExitStack() as extras:
                if settings.messages.socket and agent.inbox is not None:
                    await extras.enter_async_context(MessagesSocket(agent.inbox, settings.messages.socket))
                log.info("agent running", extra={
                    "device_id": settings.device.id, "mqtt": redact_url(settings.mqtt.url),
                    "spool": settings.spool.dir, "pending_events": agent.spool.pending_events,
                    "socket": settings.ingest.unix_path, "udp_port": ingest.bound_udp_port,
                    "messages_socket": settings.messages.socket})
                await stop.wait()
                log.info("stopping: publishing what the grace period allows",
                         extra={"grace_s": settings.shutdown_grace_s, **agent.stats.as_dict()})
    except AgentError as exc:  # unusable spool folder or socket: a configuration problem
        log.error("agent cannot start", extra={"error": str(exc)})
        return 2
    log.info("agent stopped", extra={**agent.stats.as_dict(), "left_in_spool": agent.spool.pending_events,
                                     "dropped": agent.spool.dropped_events, "malformed": ingest.malformed_count})
    return 0


@contextlib.contextmanager
def _metrics(settings: AgentSettings, agent: Agent, ingest: IngestSocket) -> Iterator[None]:
    """/metrics while the agent runs; prometheus_client is imported only when it is on."""
    if settings.metrics.port == 0:
        yield
        return
    from agent import metrics
    from stbcommon.metrics import metrics_endpoint

    metrics.register(agent, ingest)
    with metrics_endpoint(settings.metrics.host, settings.metrics.port):
        yield


if __name__ == "__main__":
    sys.exit(main())
