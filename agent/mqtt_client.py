"""aiomqtt's client, with the one thing the agent needs that it lacks: a refused publish.

aiomqtt completes `publish()` on any PUBACK, ignoring its reason code, so a publish the broker
refused (135 not authorized: a device whose id does not match its certificate's ACL; 151 quota
exceeded) would look delivered and its batch would leave the spool for ever. `publish_qos1`
raises PublishRefused instead, and the batch stays spooled. It follows aiomqtt 2.x's own
`publish` (same pending-call bookkeeping); tests/integration/test_agent_refused.py breaks if
a new aiomqtt changes that.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiomqtt
import paho.mqtt.client as mqtt


class PublishRefused(aiomqtt.MqttError):
    """The broker answered a QoS 1 PUBLISH with a failure reason code."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the broker refused the publish: {reason}")
        self.reason = reason


class CheckedClient(aiomqtt.Client):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refused: dict[int, str] = {}

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any,
                    properties: Any) -> None:
        if getattr(reason_code, "is_failure", False):
            self._refused[mid] = str(reason_code)
        super()._on_publish(client, userdata, mid, reason_code, properties)

    async def publish_qos1(self, topic: str, payload: bytes, *, timeout: float) -> None:
        info = self._client.publish(topic, payload, 1, False)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
        if not info.is_published():
            confirmation = asyncio.Event()
            with self._pending_call(info.mid, confirmation, self._pending_publishes):
                await self._wait_for(confirmation.wait(), timeout=timeout)
        reason = self._refused.pop(info.mid, None)
        if reason is not None:
            raise PublishRefused(reason)
