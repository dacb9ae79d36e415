"""One durable JetStream consumer over a whole stream: the NATS transport of a service that runs
as one deployment (notify; the JT/T 809 platform link) and reads every partition.

Where ingest and rules split a stream's partitions between processes
(:mod:`gps_monitor.bus.nats_transport`), such a service reads everything in one place. It gets
one durable pull consumer (``notify``) on its stream (``GPS_ALARMS``), filtered to its subjects:
the server keeps the consumer's position while the service is away (the analogue of the MQTT
persistent session), and each message is acknowledged after the service's commit; one not
acknowledged within ``ack_wait_s`` (a crash, a restart) comes again, so a service whose writes
are idempotent (``notify_deliveries``' unique key) stores each message's effects exactly once.

A consumer created here starts at the stream's new messages (``deliver_policy: new``, as a
new MQTT subscription receives only what is published after it); from then on it resumes where
it left off. The streams are provisioned (:func:`~gps_monitor.bus.nats_transport.provision`)
at every connection, so the service may start before the workers that publish into them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg
import nats
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from gps_monitor.bus.base import Delivery, OwnershipListener, Session, TransportError
from gps_monitor.bus.nats_names import NatsNames
from gps_monitor.bus.nats_transport import NatsSink, connect, provision
from gps_monitor.config import Settings

log = logging.getLogger(__name__)

_ONLY_PARTITION = frozenset({0})


class NatsDurableSource:
    """A durable pull consumer as a :class:`~gps_monitor.bus.base.Source` (partition 0: the
    service owns the whole stream; no fence, no ownership changes).

    Args:
        subscription: a pull subscription bound to the durable consumer.
        names: the deployment's NATS names (subject -> logical topic).
    """

    def __init__(self, subscription: JetStreamContext.PullSubscription, names: NatsNames) -> None:
        self._subscription = subscription
        self._names = names

    @property
    def owned_partitions(self) -> frozenset[int]:
        return _ONLY_PARTITION

    async def next_batch(self, limit: int, wait_s: float) -> list[Delivery]:
        """See :meth:`~gps_monitor.bus.base.Source.next_batch`: waits as long as it takes for
        the first message (pulling in rounds of 5 s), then up to ``wait_s`` for more."""
        while True:
            try:
                messages = await self._subscription.fetch(limit, timeout=5.0)
            except TimeoutError:
                continue
            except nats.errors.Error as error:
                raise TransportError(f"JetStream fetch failed: {error!r}") from error
            if len(messages) < limit and wait_s > 0:
                with contextlib.suppress(TimeoutError):
                    messages += await self._subscription.fetch(
                        limit - len(messages), timeout=wait_s
                    )
            now = datetime.now(UTC)
            return [
                Delivery(
                    self._names.to_topic(msg.subject)[0],
                    msg.data,
                    now,
                    0,
                    msg.metadata.sequence.stream,
                    msg,
                )
                for msg in messages
            ]

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """``+ACK`` each delivery in the order given."""
        try:
            for delivery in deliveries:
                await delivery.token.ack()
        except nats.errors.Error as error:
            raise TransportError(f"JetStream ack failed: {error!r}") from error

    async def fence(self, conn: asyncpg.Connection, partitions: frozenset[int]) -> None:
        """Nothing to check: one durable consumer, one deployment."""

    def on_ownership_change(self, listener: OwnershipListener) -> None:
        """Ownership never changes (the whole stream is this service's)."""


class NatsDurableTransport:
    """Connects a one-deployment service to one durable consumer
    (:class:`~gps_monitor.bus.base.Transport`).

    Args:
        settings: bus (URL), mqtt (topic prefix: the names) settings.
        durable: the consumer's name, e.g. ``"notify"`` (stable: the server keeps its position).
        stream: the stream's name (e.g. ``NatsNames(prefix).alarms_stream``).
        filter_subjects: the subjects it reads, e.g. ``["alarms.v1.>"]`` (prefix included).
        ack_wait_s: a delivery not acknowledged by then comes again (longer than a batch's
            commit, retries through a database outage included, would be best).
        max_ack_pending: deliveries handed out and not acknowledged at most (>= a batch).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        durable: str,
        stream: str,
        filter_subjects: Sequence[str],
        ack_wait_s: float = 60.0,
        max_ack_pending: int = 10_000,
    ) -> None:
        self.settings = settings
        self.names = NatsNames(settings.mqtt.topic_prefix)
        self.durable = durable
        self.stream = stream
        self.config = ConsumerConfig(
            durable_name=durable,
            deliver_policy=DeliverPolicy.NEW,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait_s,
            max_deliver=-1,
            max_ack_pending=max_ack_pending,
            filter_subjects=list(filter_subjects),
        )

    async def _subscribe(self, nc: NatsClient) -> JetStreamContext.PullSubscription:
        """Create the consumer, or update it to this configuration (its position is kept)."""
        js = nc.jetstream()
        await js.add_consumer(self.stream, self.config)
        return await js.pull_subscribe_bind(self.durable, stream=self.stream)

    async def serve(self, session: Session) -> None:
        """See :meth:`~gps_monitor.bus.base.Transport.serve`."""
        while True:
            nc = await connect(self.settings, self.durable)
            try:
                await provision(nc, self.settings)
                subscription = await self._subscribe(nc)
                log.info(
                    "%s reads JetStream consumer %s/%s", self.durable, self.stream, self.durable
                )
                await session(NatsDurableSource(subscription, self.names), NatsSink(nc))
            except (TransportError, nats.errors.Error) as error:
                log.error("NATS session of %s ended (%r); reconnecting", self.durable, error)
            finally:
                with contextlib.suppress(Exception):
                    await nc.close()
            await asyncio.sleep(1.0)
