"""The /metrics endpoint (Prometheus text format), owned and shut down by the daemon."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import start_http_server

log = logging.getLogger(__name__)


@contextmanager
def metrics_endpoint(host: str, port: int) -> Iterator[int]:
    """Serve /metrics on host:port while the block runs; port 0 means no endpoint.

    Yields the bound port (0 when disabled)."""
    if port == 0:
        yield 0
        return
    server, thread = start_http_server(port, addr=host)
    log.info("metrics endpoint up", extra={"url": f"http://{host}:{server.server_port}/metrics"})
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
