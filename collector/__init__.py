"""Headend telemetry collector: MQTT (wire format v1) → validation → ClickHouse.

Errors that reach callers are `proto.telemetry.InvalidMessage` (bad input, dead-lettered)
and `warehouse.errors.WarehouseError` (store trouble, retried when retryable).
"""
