"""The agent's exceptions. None of them reaches firmware through `record()`.

    AgentError                 root; `retryable` says whether trying again can help
    ├── SpoolError             the spool folder cannot be used (permissions, full disk): not retryable
    │   └── RecordTooLarge     one event encodes beyond MAX_RECORD_BYTES: refused, never retryable
    └── IngestError            a local socket cannot be opened (path not writable, port taken): not retryable

Broker and network failures surface from aiomqtt as `aiomqtt.MqttError` (or OSError); the
publisher treats every one as retryable and reconnects with backoff.
"""

from __future__ import annotations


class AgentError(Exception):
    retryable = False


class SpoolError(AgentError):
    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message)
        self.path = path


class RecordTooLarge(SpoolError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"event encodes to {size} bytes, more than {limit}")
        self.size = size
        self.limit = limit


class IngestError(AgentError):
    """A local socket could not be opened (agent.ingest_socket): not retryable."""
