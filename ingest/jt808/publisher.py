"""MQTT publishing for the gateway: QoS 1, and a publish returns only once the broker has the
message.

What ``aiomqtt.Client.publish(qos=1)`` awaits (aiomqtt 2.5.1 over paho-mqtt 2.2, read in their
source): aiomqtt calls paho's ``publish`` and then waits for paho's ``on_publish`` callback for
that message id. paho fires ``on_publish`` for QoS 0 as soon as the packet is written to the
socket, but for QoS 1 only when the broker's **PUBACK** arrives (``_handle_pubackcomp`` ->
``_do_on_publish``). So aiomqtt's QoS 1 publish does wait for the PUBACK.

We still do not call it: per call it walks every pending call (``len(list(self._pending_calls))``)
and logs a warning once more than 10 are pending, which is quadratic under load; with a few
hundred publishes in flight (10,000 terminals) the gateway spent its time there and collapsed in
the benchmark. The gateway uses the same mechanism directly: paho's ``publish`` returns a
``MQTTMessageInfo`` with the message id, and our ``on_publish`` hook (chained in front of
aiomqtt's) resolves the future waiting for that id when the PUBACK comes, failing it when the
PUBACK carries an MQTT 5 failure reason code or the connection drops. paho runs on the event
loop thread (aiomqtt drives its socket with ``add_reader``/``add_writer``), so no locking is
needed. paho's in-flight window is unlimited (``max_inflight_messages`` 0): every terminal waits
for its reply before its next report, so at most one publish per connection is in flight.

Guarantee: the terminal's 0x8001 result 0 means the broker acknowledged the message (for
Mosquitto: accepted it and queued it for the persistent ingest session). A timeout, a refusal or
a lost connection gives the terminal result 1, so it resends (at-least-once; ingest stores a fix
once per vehicle and fix time).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiomqtt
import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from gps_monitor.config import Settings
from gps_monitor.mqtt import run_with_reconnect

log = logging.getLogger(__name__)


class PublishError(Exception):
    """The broker did not acknowledge a message (not connected, refused or timed out)."""


class MqttPublisher:
    """One MQTT connection shared by all terminal sessions, reconnected with backoff.

    Use ``async with MqttPublisher(settings) as publisher`` (starts the connection loop and
    waits up to ``connect_timeout_s`` for a first connection), then ``await
    publisher.publish(topic, payload)``.
    """

    def __init__(self, settings: Settings, *, connect_timeout_s: float = 10.0) -> None:
        self.settings = settings
        self.connect_timeout_s = connect_timeout_s
        self._paho: mqtt.Client | None = None
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.published = 0
        self.failed = 0

    async def __aenter__(self) -> MqttPublisher:
        self._task = asyncio.create_task(self._run(), name="jt808-mqtt")
        try:
            await asyncio.wait_for(self._connected.wait(), self.connect_timeout_s)
        except TimeoutError:
            log.warning(
                "MQTT broker %s:%s not reachable yet; positions get failure replies until it is",
                self.settings.mqtt.host,
                self.settings.mqtt.port,
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._task

    async def _run(self) -> None:
        jt = self.settings.jt808

        async def session(client: aiomqtt.Client) -> None:
            paho = client._client
            chained = paho.on_publish

            def on_publish(
                c: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode, props: Any
            ) -> None:
                future = self._acks.pop(mid, None)
                if future is None:
                    if chained is not None:
                        chained(c, userdata, mid, reason, props)  # type: ignore[call-arg]
                    return
                if future.done():
                    return
                if reason.is_failure:
                    future.set_exception(PublishError(f"broker refused the message: {reason}"))
                else:
                    future.set_result(None)

            paho.on_publish = on_publish
            self._paho = paho
            self._connected.set()
            try:
                # aiomqtt keeps a future that fails when the connection drops; waiting on it
                # hands the MqttError to run_with_reconnect, which reconnects with backoff.
                await asyncio.shield(client._disconnected)
            finally:
                self._connected.clear()
                self._paho = None
                self._fail_pending("connection to the MQTT broker lost")

        while True:  # a clean disconnect returns from run_with_reconnect: connect again
            await run_with_reconnect(
                self.settings.mqtt,
                session,
                client_id=jt.client_id,
                max_inflight_messages=jt.max_inflight_messages,
            )
            await asyncio.sleep(self.settings.mqtt.reconnect_delay_s)

    def _fail_pending(self, reason: str) -> None:
        acks, self._acks = self._acks, {}
        for future in acks.values():
            if not future.done():
                future.set_exception(PublishError(reason))

    @property
    def connected(self) -> bool:
        return self._paho is not None

    @property
    def in_flight(self) -> int:
        """Publishes waiting for their PUBACK."""
        return len(self._acks)

    async def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1 and return once the broker's PUBACK is in.

        Raises:
            PublishError: not connected, refused by paho or by the broker (MQTT 5 reason code),
                connection lost, or no PUBACK within ``jt808.publish_timeout_s``.
        """
        paho = self._paho
        if paho is None:
            self.failed += 1
            raise PublishError("not connected to the MQTT broker")
        info = paho.publish(topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self.failed += 1
            raise PublishError(f"publish to {topic} refused by paho: {mqtt.error_string(info.rc)}")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks[info.mid] = future
        try:
            async with asyncio.timeout(self.settings.jt808.publish_timeout_s):
                await future
        except TimeoutError:
            self._acks.pop(info.mid, None)
            self.failed += 1
            raise PublishError(
                f"publish to {topic}: no PUBACK within {self.settings.jt808.publish_timeout_s} s"
            ) from None
        except PublishError:
            self.failed += 1
            raise
        self.published += 1
