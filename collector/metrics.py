"""Prometheus metrics of the collector (served on /metrics by stbcommon.metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES_IN = Counter("collector_messages_received_total", "MQTT messages received")
REDELIVERIES = Counter("collector_redeliveries_total", "MQTT messages received with the DUP flag set")
EVENTS_IN = Counter("collector_events_received_total", "Events in messages that passed validation")
ROWS_WRITTEN = Counter("collector_rows_written_total", "Rows committed to the store", ["table"])
DEAD_LETTERS = Counter("collector_dead_letters_total", "Messages sent to dead_letters", ["reason"])
BATCH_ROWS = Histogram("collector_batch_rows", "Event rows per committed batch",
                       buckets=(1, 10, 100, 1_000, 5_000, 10_000, 25_000, 50_000, 100_000))
BATCH_SECONDS = Histogram("collector_batch_write_seconds", "Time to commit one batch, retries included",
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
STORE_ERRORS = Counter("collector_store_errors_total", "Failed store writes", ["retryable"])
ACKS = Counter("collector_acks_total", "PUBACKs sent after commit")
STALE_ACKS = Counter("collector_stale_acks_total", "Acks skipped: message came on a closed connection")
MQTT_CONNECTS = Counter("collector_mqtt_connects_total", "Successful MQTT (re)connections")
MQTT_CONNECTED = Gauge("collector_mqtt_connected", "1 while connected to the broker")
BUFFERED_MESSAGES = Gauge("collector_buffered_messages", "Messages received and not yet acknowledged")
READING_PAUSED = Gauge("collector_reading_paused", "1 while the source stops reading (buffer full)")
