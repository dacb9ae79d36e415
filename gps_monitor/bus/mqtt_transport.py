"""The MQTT transport (Mosquitto, or the demo's embedded broker): one partition, ``0``.

Over the shared helpers of :mod:`gps_monitor.mqtt`: a **persistent session** (the broker keeps
QoS 1 messages while the worker is away), **manual acknowledgement** in arrival order after the
commit, publishes through :class:`~gps_monitor.mqtt.PubackTracker` (return once every PUBACK is
in), the explicit reconnect loop with backoff.

Receiving bypasses aiomqtt's per-message path: paho's ``_handle_on_message`` (which takes a
lock and matches the topic against the per-filter callbacks, none here, then calls
``on_message``) is replaced by :meth:`MqttSource._on_message`, which appends a
:class:`Delivery` to a plain deque (aiomqtt builds a ``Message`` per message and its iterator
creates a task and an ``asyncio.wait`` per ``anext``, which cost more than judging the
position); paho's DEBUG lines (two per message) are skipped unless DEBUG logging is on.
Messages that arrived between the CONNACK and the session (a persistent session's queue) are
taken over from aiomqtt's queue.
paho's socket reads and writes go through :func:`gps_monitor.paho_speed.speed_up` (256 KiB per
``recv``, the queued packets in one ``send``).

Broker settings that bound throughput with manual acks (Mosquitto): ``max_inflight_messages``
(v3.1.1; the client's Receive Maximum on v5) caps the unacknowledged QoS 1 messages sent to one
client, hence a batch; ``max_queued_messages`` caps what a persistent session keeps beyond that
(beyond it, QoS 1 messages are dropped). See README, "Throughput".
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import aiomqtt
import asyncpg

from gps_monitor import mqtt, paho_speed
from gps_monitor.bus.base import Delivery, OwnershipListener, Session, TransportError
from gps_monitor.config import MqttSettings

log = logging.getLogger(__name__)

_ONLY_PARTITION = frozenset({0})
_PUBACK = struct.Struct("!BBH")
_PUBACK_COMMAND = 0x40


class MqttSource:
    """The subscription of one connected client as a :class:`~gps_monitor.bus.base.Source`."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self._client = client
        self._paho = client._client
        self._queue: deque[Delivery] = deque()
        self._arrived = asyncio.Event()
        while not client._queue.empty():  # arrived before this source took over
            message = client._queue.get_nowait()
            payload = message.payload
            self._queue.append(
                Delivery(
                    message.topic.value,
                    payload if isinstance(payload, bytes) else str(payload).encode(),
                    datetime.now(UTC),
                    0,
                    message.mid if message.qos > 0 else None,
                    (message.mid, message.qos),
                )
            )
        self._paho._handle_on_message = self._on_message  # type: ignore[method-assign]
        paho_speed.speed_up(self._paho)
        if self._queue:
            self._arrived.set()

    def _on_message(self, message: Any) -> None:
        """paho's ``_handle_on_message(message)`` for this client."""
        qos = message.qos
        self._queue.append(
            Delivery(
                message._topic.decode("utf-8", "replace"),  # the broker checked it is UTF-8
                message.payload,
                datetime.now(UTC),
                0,
                message.mid if qos > 0 else None,
                (message.mid, qos),
            )
        )
        self._arrived.set()

    @property
    def owned_partitions(self) -> frozenset[int]:
        return _ONLY_PARTITION

    @property
    def queued(self) -> int:
        """Deliveries received and not yet handed out."""
        return len(self._queue)

    async def _wait_for_delivery(self, timeout_s: float | None) -> None:
        """Until a delivery is queued (or ``timeout_s`` passed); raises when disconnected."""
        disconnected = self._client._disconnected
        if disconnected.done():
            raise aiomqtt.MqttError("Disconnected during message iteration")
        arrived = asyncio.ensure_future(self._arrived.wait())
        try:
            await asyncio.wait(
                (arrived, disconnected), timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            arrived.cancel()
        if disconnected.done() and not self._queue:
            raise aiomqtt.MqttError("Disconnected during message iteration")

    async def next_batch(self, limit: int, wait_s: float) -> list[Delivery]:
        """See :meth:`~gps_monitor.bus.base.Source.next_batch` (raises ``aiomqtt.MqttError``
        once the connection is gone)."""
        loop = asyncio.get_running_loop()
        while not self._queue:
            self._arrived.clear()
            await self._wait_for_delivery(None)
        deadline = loop.time() + wait_s
        disconnected = self._client._disconnected
        while len(self._queue) < limit and not disconnected.done():
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await asyncio.sleep(min(remaining, 0.002))  # paho reads meanwhile
        queue = self._queue
        count = min(limit, len(queue))
        batch = [queue.popleft() for _ in range(count)]
        if not queue:
            self._arrived.clear()
        return batch

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """PUBACK each QoS 1 delivery (in the order given: arrival order).

        The PUBACKs of a batch go to paho's outgoing queue as one buffer, written with one
        ``send`` (paho's ``ack`` queues and writes each 4-byte PUBACK on its own: a syscall and a
        writer registration per message). A QoS 2 delivery (PUBCOMP) goes through paho's
        ``ack`` in its place in the order."""
        paho = self._paho
        pubacks = bytearray()
        for delivery in deliveries:
            mid, qos = delivery.token
            if qos == 1:
                pubacks += _PUBACK.pack(_PUBACK_COMMAND, 2, mid)
            elif qos > 1:
                self._queue_pubacks(pubacks)
                pubacks = bytearray()
                paho.ack(mid, qos)
        self._queue_pubacks(pubacks)

    def _queue_pubacks(self, pubacks: bytearray) -> None:
        if pubacks:
            # one "packet" of many PUBACKs (MQTT 3.1.1 and 5: 0x40, length 2, packet id);
            # paho writes it in order with its other outgoing packets
            self._paho._packet_queue(_PUBACK_COMMAND, bytes(pubacks), 0, 0)

    async def fence(self, conn: asyncpg.Connection, partitions: frozenset[int]) -> None:
        """Nothing to check: MQTT has one partition and one consumer per stage."""

    def on_ownership_change(self, listener: OwnershipListener) -> None:
        """Ownership never changes on MQTT (partition 0 is always ours)."""


class MqttSink:
    """QoS 1 publishing of one connected client as a :class:`~gps_monitor.bus.base.Sink`."""

    def __init__(self, client: aiomqtt.Client, timeout_s: float) -> None:
        self._tracker = mqtt.PubackTracker(client)
        self.timeout_s = timeout_s

    async def publish(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """Publish in order (paho sends them in call order), await the PUBACKs together.

        Raises:
            gps_monitor.mqtt.PublishError: refused, no PUBACK within ``timeout_s``, or lost.
        """
        await self._tracker.publish_all(messages, self.timeout_s)

    def fail_all(self, reason: str) -> None:
        self._tracker.fail_all(reason)


class MqttTransport:
    """Connects a stage to an MQTT broker (:class:`~gps_monitor.bus.base.Transport`).

    Args:
        settings: broker settings (host, credentials, TLS, session expiry, backoff).
        client_id: the stable client id the broker keeps the persistent session under.
        subscriptions: topic filters subscribed at QoS 1 on every connection (the session
            persists them too; subscribing again is harmless).
        receive_maximum: MQTT v5 Receive Maximum (unacknowledged messages in flight to us;
            must exceed a batch); ignored on v3.1.1.
        publish_timeout_s: no PUBACK by then: the connection is treated as lost.
        client_options: passed to :func:`gps_monitor.mqtt.build_client`.
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        client_id: str | None,
        subscriptions: Sequence[str],
        receive_maximum: int | None = None,
        publish_timeout_s: float = 30.0,
        **client_options: Any,
    ) -> None:
        self.settings = settings
        self.client_id = client_id
        self.subscriptions = list(subscriptions)
        self.receive_maximum = receive_maximum
        self.publish_timeout_s = publish_timeout_s
        self.client_options = client_options

    async def serve(self, session: Session) -> None:
        """See :meth:`~gps_monitor.bus.base.Transport.serve`."""

        async def on_connection(client: aiomqtt.Client) -> None:
            source = MqttSource(client)
            sink = MqttSink(client, self.publish_timeout_s)
            try:
                for topic_filter in self.subscriptions:
                    await client.subscribe(topic_filter, qos=1)
                log.info("subscribed to %s", ", ".join(self.subscriptions))
                await session(source, sink)
            except TransportError as error:
                raise aiomqtt.MqttError(str(error)) from error
            finally:
                sink.fail_all("connection to the MQTT broker lost")

        await mqtt.run_with_reconnect(
            self.settings,
            on_connection,
            client_id=self.client_id,
            persistent=True,
            manual_ack=True,
            receive_maximum=self.receive_maximum,
            # a batch's publishes go out together, not 20 at a time; 0 = unlimited, which also
            # spares paho a scan of all queued messages per PUBACK (quadratic in flight)
            max_inflight_messages=0,
            **self.client_options,
        )
