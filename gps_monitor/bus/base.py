"""What every transport gives the workers: deliveries in, broker-acknowledged publishes out.

A worker never sees a transport's own message type. A :class:`Transport` connects and, per
connection, hands a :class:`Source` (the stage's inbound subscription) and a :class:`Sink` (its
publisher) to a session coroutine; the shared batch consumer (:mod:`gps_monitor.bus.consumer`)
drives them: ``source.next_batch`` -> the worker's step (inside its database transaction it calls
``source.fence``) -> ``sink.publish`` (returns once the broker acknowledged every message) ->
``source.ack`` (in arrival order). A connection that fails raises :class:`TransportError` (or a
subclass, e.g. ``aiomqtt.MqttError`` wrapped) out of any of these; the transport then reconnects
and calls the session again, and every delivery not acknowledged comes again.

Topics are logical and in MQTT form, prefix included (``gps/v1/T1/position``,
``positions/v2/0``); a transport maps them to its own subject names.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import asyncpg


@dataclass(slots=True)
class Delivery:
    """One received message.

    Attributes:
        topic: logical topic in MQTT form, prefix included, e.g. ``"gps/v1/T1/position"``.
        payload: the message body as sent.
        received_at: when this process received it (UTC, aware).
        partition: the partition it came from, ``0..P-1`` (always 0 on MQTT).
        message_id: the transport's redelivery key (MQTT packet identifier for QoS > 0,
            JetStream stream sequence); None when the transport has none (MQTT QoS 0).
        token: the transport's acknowledgement handle; only the transport reads it.
    """

    topic: str
    payload: bytes
    received_at: datetime
    partition: int = 0
    message_id: int | None = None
    token: Any = None


class FencedOut(Exception):
    """This process no longer owns a partition of the batch: its transaction must not commit.

    Raised by :meth:`Source.fence` inside the step's transaction (which rolls back); the
    consumer drops the batch unacknowledged (the new owner receives it) and goes on.
    """


OwnershipListener = Callable[[frozenset[int], frozenset[int]], Awaitable[None]]
"""``await listener(gained, lost)``: called by a source when its owned partitions change
(before any delivery of a gained partition is handed out, after the last of a lost one was
settled). Rules uses it to load state and run the offline timer only for owned vehicles."""


class Source(Protocol):
    """One stage's inbound subscription on one connection."""

    @property
    def owned_partitions(self) -> frozenset[int]:
        """The partitions this process owns now (MQTT: ``{0}``)."""
        ...

    async def next_batch(self, limit: int, wait_s: float) -> list[Delivery]:
        """Wait for one delivery, then take what is already there, waiting up to ``wait_s``
        seconds in all for more, at most ``limit``; in arrival order.

        Raises:
            TransportError: the connection is gone.
        """
        ...

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge ``deliveries`` (in the order given, which is arrival order), once their
        effects are committed and their outputs acknowledged by the broker."""
        ...

    async def fence(self, conn: asyncpg.Connection, partitions: frozenset[int]) -> None:
        """Called by the worker's step inside its database transaction, before it commits:
        raises :class:`FencedOut` when this process's ownership of any of ``partitions`` has
        been taken over (so a stalled old owner can never commit after the takeover). A no-op
        on MQTT (one partition, one owner)."""
        ...

    def on_ownership_change(self, listener: OwnershipListener) -> None:
        """Register ``listener`` for ownership changes of this source."""
        ...


class Sink(Protocol):
    """A stage's publisher on one connection."""

    async def publish(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """Publish ``(topic, payload)`` messages (sent in this order) and return once the broker
        acknowledged every one of them.

        Raises:
            TransportError: refused, not acknowledged in time, or the connection is gone.
        """
        ...


Session = Callable[[Source, Sink], Awaitable[None]]


class Transport(Protocol):
    """Connects one stage to the broker or engine, reconnecting as needed."""

    async def serve(self, session: Session) -> None:
        """Run ``session(source, sink)`` on each new connection until cancelled; when the
        connection fails (``TransportError`` from the session), wait with backoff and connect
        again. Anything else the session raises propagates."""
        ...


class TransportError(Exception):
    """The connection to the broker or engine failed; the transport reconnects."""
