"""MQTT publishing for the gateway: QoS 1, and a publish returns only once the broker has the
message.

The PUBACK wait is :class:`gps_monitor.mqtt.PubackTracker` (why not aiomqtt's own
``publish``: see there). paho's in-flight window is unlimited (``max_inflight_messages`` 0):
every terminal waits for its reply before its next report, so at most one publish per
connection is in flight.

Guarantee: the terminal's 0x8001 result 0 means the broker acknowledged the message (for
Mosquitto: accepted it and queued it for the persistent ingest session). A timeout, a refusal or
a lost connection gives the terminal result 1, so it resends (at-least-once; ingest stores a fix
once per vehicle and fix time).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiomqtt

from gps_monitor.config import Settings
from gps_monitor.mqtt import PubackTracker, PublishError, run_with_reconnect
from gps_monitor.service import wait_until_set

log = logging.getLogger(__name__)


class MqttPublisher:
    """One MQTT connection shared by all terminal sessions, reconnected with backoff.

    Use ``async with MqttPublisher(settings) as publisher`` (starts the connection loop and
    waits up to ``connect_timeout_s`` for a first connection), then ``await
    publisher.publish(topic, payload)``.
    """

    def __init__(self, settings: Settings, *, connect_timeout_s: float = 10.0) -> None:
        self.settings = settings
        self.connect_timeout_s = connect_timeout_s
        self._tracker: PubackTracker | None = None
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.published = 0
        self.failed = 0

    async def __aenter__(self) -> MqttPublisher:
        self._task = asyncio.create_task(self._run(), name="jt808-mqtt")
        if not await wait_until_set(self._connected, self.connect_timeout_s):
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
            tracker = PubackTracker(client)
            self._tracker = tracker
            self._connected.set()
            try:
                # aiomqtt keeps a future that fails when the connection drops; waiting on it
                # hands the MqttError to run_with_reconnect, which reconnects with backoff.
                await asyncio.shield(client._disconnected)
            finally:
                self._connected.clear()
                self._tracker = None
                tracker.fail_all("connection to the MQTT broker lost")

        while True:  # a clean disconnect returns from run_with_reconnect: connect again
            await run_with_reconnect(
                self.settings.mqtt,
                session,
                client_id=jt.client_id,
                max_inflight_messages=jt.max_inflight_messages,
            )
            await asyncio.sleep(self.settings.mqtt.reconnect_delay_s)

    @property
    def connected(self) -> bool:
        return self._tracker is not None

    @property
    def in_flight(self) -> int:
        """Publishes waiting for their PUBACK."""
        return 0 if self._tracker is None else self._tracker.in_flight

    async def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1 and return once the broker's PUBACK is in.

        Raises:
            PublishError: not connected, refused by paho or by the broker (MQTT 5 reason code),
                connection lost, or no PUBACK within ``jt808.publish_timeout_s``.
        """
        tracker = self._tracker
        if tracker is None:
            self.failed += 1
            raise PublishError("not connected to the MQTT broker")
        try:
            await tracker.publish(topic, payload, self.settings.jt808.publish_timeout_s)
        except PublishError:
            self.failed += 1
            raise
        self.published += 1
