"""`python -m agent`: a standalone STB agent, fed over its local socket."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from agent.settings import ENV_PREFIX, AgentSettings
from stbcommon.settings import SettingsError, load

DESCRIPTION = """\
Run the STB telemetry agent as its own process. Firmware reports events over a local
socket (one event per datagram: a msgpack or JSON array [kind, ts_ms, field...], see
docs/AGENT.md); the agent spools them on disk and publishes wire-format v1 batches over
MQTT 5 (QoS 1), removing them from the spool only when the broker has acknowledged them.
SIGTERM: publish what it can within the grace period, keep the rest spooled, exit 0.
"""

EPILOG = f"""\
settings: defaults < TOML (--config) < environment {ENV_PREFIX}__<SECTION>__<KEY>
(e.g. {ENV_PREFIX}__DEVICE__ID, {ENV_PREFIX}__MQTT__URL) < these flags.

example:
  python -m agent --mqtt mqtt://stb:secret@broker:1883 --device-id stb-0001 \\
      --household-id 42 --region north --spool /var/lib/stb-agent/spool \\
      --socket /run/stb-agent/events.sock
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agent", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE", help="TOML settings file")
    p.add_argument("--mqtt", metavar="URL", help="broker: mqtt://[user:pass@]host[:port] or mqtts://...")
    p.add_argument("--device-id", metavar="ID", help="this STB's id ([A-Za-z0-9._-]{1,64})")
    p.add_argument("--household-id", metavar="N", type=int, help="subscriber account id")
    p.add_argument("--region", metavar="NAME", help="topic region ([a-z0-9-]{1,32})")
    p.add_argument("--firmware", metavar="VERSION", help="firmware version reported in every batch")
    p.add_argument("--spool", metavar="DIR", help="spool folder (default /var/lib/stb-agent/spool)")
    p.add_argument("--socket", metavar="PATH", help="UNIX datagram socket for local events")
    p.add_argument("--udp-port", metavar="P", type=int, help="also accept events on UDP 127.0.0.1:P")
    p.add_argument("--metrics-port", metavar="P", type=int, help="Prometheus /metrics on 127.0.0.1 (0 = off)")
    p.add_argument("--log-format", choices=["json", "text"])
    args = p.parse_args(argv)
    try:
        settings = load(AgentSettings, toml_path=args.config, env=os.environ, env_prefix=ENV_PREFIX, overrides={
            "mqtt.url": args.mqtt, "device.id": args.device_id, "device.household_id": args.household_id,
            "device.region": args.region, "device.firmware": args.firmware, "spool.dir": args.spool,
            "ingest.unix_path": args.socket, "ingest.udp_port": args.udp_port, "metrics_port": args.metrics_port,
            "log_format": args.log_format})
    except SettingsError as exc:
        print(f"agent: {exc}", file=sys.stderr)
        return 2
    from stbcommon import logs

    logs.configure(settings.log_level, settings.log_format)
    # Plain asyncio, not uvloop: at STB event rates the loop is idle, and uvloop costs ~2 MB of RSS.
    return asyncio.run(_serve(settings))


async def _serve(settings: AgentSettings) -> int:
    from agent.core import Agent
    from agent.ingest_socket import IngestSocket
    from stbcommon.metrics import metrics_endpoint

    log = logging.getLogger("agent")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with metrics_endpoint("127.0.0.1", settings.metrics_port):
        agent = Agent(settings)
        if settings.metrics_port:
            _export_metrics(agent)
        async with agent, IngestSocket(agent, unix_path=settings.ingest.unix_path,
                                       udp_port=settings.ingest.udp_port) as ingest:
            log.info("agent running", extra={"device_id": settings.device.id, "spool": settings.spool.dir,
                                             "socket": settings.ingest.unix_path, "udp_port": ingest.bound_udp_port})
            await stop.wait()
            log.info("SIGTERM: publishing what the grace period allows", extra={**agent.stats.as_dict(agent.spool)})
    log.info("agent stopped", extra={**agent.stats.as_dict(agent.spool), "malformed": ingest.malformed_count})
    return 0


def _export_metrics(agent: object) -> None:
    """Expose the agent's counters (imported only when metrics are on: it costs memory)."""
    from prometheus_client.core import REGISTRY, GaugeMetricFamily

    class Collector:
        def collect(self):  # type: ignore[no-untyped-def]
            stats = agent.stats.as_dict(agent.spool)  # type: ignore[attr-defined]
            for name, value in stats.items():
                yield GaugeMetricFamily(f"stb_agent_{name}", f"agent {name.replace('_', ' ')}", value=value)

    REGISTRY.register(Collector())


if __name__ == "__main__":
    sys.exit(main())
