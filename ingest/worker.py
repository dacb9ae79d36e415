"""The ingest worker: inbound terminal messages -> judged positions in the database, then the
accepted positions on ``positions/v2/{partition}``: one message per committed batch and
partition (0 on MQTT), a JSON array of ``Position.to_dict()``.

Its own steps only (:meth:`IngestWorker.step`): decode -> judge -> write. Batching, the order
commit -> publish -> acknowledge, the database-outage policy and the interval stats are the
shared batch consumer's (:mod:`gps_monitor.bus.consumer`); the transport (:mod:`gps_monitor.bus`)
is MQTT by default.

Delivery: at-least-once from the broker, exactly-once in the database.

- The worker subscribes at QoS 1 with a persistent session, so the broker queues messages while
  it is down.
- Messages are acknowledged only after the batch that holds them is committed and its positions
  are published on the accepted topic (broker-acknowledged). A crash before that leaves them
  unacknowledged: the broker redelivers them when the session resumes.
- A redelivered position meets the (vehicle_id, fix_time) key: ``ON CONFLICT DO NOTHING``
  stores it once; the stored row is published again (consumers dedupe by vehicle and fix time).

Contact without a position (``gps/v1/{terminal_id}/heartbeat``, issue 12) only moves the
vehicle's ``latest_positions.last_message_at`` (what the offline rule and the map's status
read), at most once per terminal per ``ingest.contact_min_interval_s``; it is not kept in
``raw_messages`` (it carries no position to give evidence for) and publishes nothing.

Batching: each batch takes what the transport has received (up to ``batch_size`` /
``max_in_flight_messages`` messages) without waiting for more: under load batches grow by
themselves; when idle every message is committed at once. Note: Mosquitto's
``max_inflight_messages`` (default 20) caps how many unacknowledged messages it sends one client,
so with manual acks that setting bounds the batch size and the throughput of one worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import operator
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from gps_monitor import accepted, topics
from gps_monitor.bus.base import Delivery, FencedOut, Sink, Source, Transport
from gps_monitor.bus.consumer import BatchConsumer, Fence, Outcome
from gps_monitor.bus.mqtt_transport import MqttTransport
from gps_monitor.bus.nats_transport import NatsTransport
from gps_monitor.config import Settings
from gps_monitor.db import failures
from gps_monitor.db import positions as positions_db
from gps_monitor.db.failures import Blame
from gps_monitor.db.pool import connect
from gps_monitor.db.positions import RawMessage, RejectedMessage, WriteBatch
from gps_monitor.errors import PayloadError
from gps_monitor.models import Position, Vehicle
from ingest.decode import check_size, decode_contact, decode_positions
from ingest.pipeline import Pipeline
from ingest.terminals import TerminalCache

log = logging.getLogger(__name__)


_fix_time = operator.attrgetter("fix_time")


class _PoisonMessage(Exception):
    """Judging one message of a batch failed because of its data: redo message by message."""


@dataclass(slots=True)
class _Inbound:
    topic: str
    payload: bytes
    received_at: datetime
    terminal_id: str
    kind: topics.InboundKind
    packet_id: int | None  # the transport's redelivery key (MQTT packet id): same on redelivery


class IngestWorker:
    """Consume inbound positions, store them, publish the accepted ones, then acknowledge.

    Use :meth:`run` (reconnects forever). ``stats`` holds the counters since start
    (``messages``, ``batches``, ``stored``, ``already_stored``, ``rejected``,
    ``rejected:<reason>``, ``contacts``, ``contacts_throttled``, ``prepare_s``, ``write_s``,
    ``publish_s``...).
    """

    PIPELINE_DEPTH = 4  # committed batches publishing/acking at once
    PUBLISH_TIMEOUT_S = 30.0  # no PUBACK for an accepted publish by then: reconnect, redeliver
    REPORT_INTERVAL_S = 10.0  # the figures of each interval are logged at its end

    def __init__(self, settings: Settings, transport: Transport | None = None) -> None:
        self.settings = settings
        self.prefix = settings.mqtt.topic_prefix
        self.pipeline = Pipeline(settings.quality)
        self._conn: asyncpg.Connection | None = None
        self._terminals: TerminalCache | None = None
        self.ready = asyncio.Event()
        if transport is None and settings.bus.transport == "nats":
            transport = NatsTransport(settings, "ingest")
        self.transport: Transport = transport or MqttTransport(
            settings.mqtt,
            client_id=None,
            subscriptions=[topics.inbound_filter(self.prefix)],
            publish_timeout_s=self.PUBLISH_TIMEOUT_S,
        )
        ingest = settings.ingest
        self.consumer = BatchConsumer(
            "ingest",
            self,
            batch_limit=min(ingest.batch_size, ingest.max_in_flight_messages),
            batch_wait_s=ingest.flush_interval_s,
            pipeline_depth=self.PIPELINE_DEPTH,
            report=self._report,
            report_interval_s=self.REPORT_INTERVAL_S,
        )
        self.stats = self.consumer.counts
        # the broker redelivers for as long as it keeps our session (positions.write_batch)
        self._redelivery_window_s = float(settings.mqtt.session_expiry_s)
        # terminal id -> monotonic time its last heartbeat was taken (written or rejected)
        self._contact_taken: dict[str, float] = {}
        self._states_stale = False

    async def _db(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            conn = await connect(self.settings.database)
            try:
                await positions_db.prepare_connection(conn)
            except BaseException:
                # not kept half set up (no staging table, no terminal cache on it): the next
                # batch connects again
                conn.terminate()
                raise
            self._conn = conn
            self._terminals = TerminalCache(self._conn, self.settings.ingest)
            self.pipeline.reset()
        return self._conn

    async def close(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()

    async def run(self) -> None:
        """Run until cancelled: connect, consume, reconnect with backoff on broker loss."""
        try:
            await self.transport.serve(self._session)
        finally:
            await self.close()

    async def _session(self, source: Source, sink: Sink) -> None:
        source.on_ownership_change(self._ownership_changed)
        log.info(
            "ingest consuming %s through %s",
            topics.inbound_filter(self.prefix),
            self.settings.bus.described,
        )
        self.ready.set()
        await self.consumer.run(source, sink)

    async def _ownership_changed(self, gained: frozenset[int], lost: frozenset[int]) -> None:
        """Partitions moved (NATS): the quality states held may be older than what another
        owner committed since, so all are reloaded from the database by the next batch."""
        self._states_stale = True

    async def reset(self) -> None:
        """Forget what an uncommitted batch left in memory (quality states, heartbeats taken);
        a connection that failed is closed. Called by the consumer on a new connection and
        before a retry."""
        self.pipeline.reset()
        self._contact_taken.clear()  # the uncommitted heartbeats come again
        if self._conn is not None and not self._conn.is_closed():
            try:
                await self._conn.execute("SELECT 1", timeout=5)
            except Exception:
                self._conn.terminate()
                self._conn = None

    async def __call__(self, deliveries: list[Delivery], fence: Fence) -> Outcome:
        """The step: decode, judge and write ``deliveries`` in one transaction (fenced); returns
        the accepted positions to publish. A batch that fails because of its data is stored
        message by message, the offending message set aside (:meth:`_write_one_by_one`).

        Raises:
            an outage (:func:`gps_monitor.db.failures.is_outage`): nothing is stored.
            FencedOut: this process lost a partition of the batch; nothing is stored.
        """
        if self._states_stale:  # partitions moved since the last batch (NATS)
            self._states_stale = False
            self.pipeline.reset()
        try:
            t0 = time.perf_counter()
            write = await self._prepare(deliveries)
            t1 = time.perf_counter()
            result = await self._write(write, fence)
            self.stats["prepare_s"] += t1 - t0
            self.stats["write_s"] += time.perf_counter() - t1
            self._count(write)
        except FencedOut:
            raise
        except Exception as error:
            if failures.is_outage(error):
                raise
            # anything else came from the data of one (unknown) message of the batch
            log.warning(
                "batch of %d message(s) not stored, caused by its data (%s); "
                "storing it message by message",
                len(deliveries),
                error,
            )
            write, result = await self._write_one_by_one(deliveries, fence)
        self.stats["stored"] += len(result.inserted)
        self.stats["already_stored"] += len(result.already_stored)
        # cleared drift suspects go out again as ok, so rules and map take them
        return Outcome(
            self._accepted_messages(
                [*result.inserted, *result.already_stored, *write.cleared], deliveries
            )
        )

    async def _write(self, write: WriteBatch, fence: Fence) -> positions_db.WriteResult:
        """``write`` in one transaction that passes ``fence`` before it commits."""
        conn = await self._db()
        async with conn.transaction():
            await fence(conn)
            return await positions_db.write_batch(
                conn, write, redelivery_window_s=self._redelivery_window_s, staging_ready=True
            )

    def _take_contact(self, terminal_id: str) -> bool:
        """Whether a heartbeat of ``terminal_id`` is to be taken now: none was taken within
        ``ingest.contact_min_interval_s`` (taken = written or rejected; forgotten when a
        batch is abandoned). The rate limit that keeps heartbeats from becoming a write
        hotspot; positions are never limited."""
        now = time.monotonic()
        last = self._contact_taken.get(terminal_id)
        if last is not None and now - last < self.settings.ingest.contact_min_interval_s:
            self.stats["contacts_throttled"] += 1
            return False
        if len(self._contact_taken) > 1_000_000:  # a flood of random ids must not grow it
            self._contact_taken.clear()
        self._contact_taken[terminal_id] = now
        return True

    def _reject(
        self, rejects: list[tuple[int, RejectedMessage]], index: int, topic: str, payload: bytes,
        received_at: datetime, error: PayloadError, terminal_id: str | None,
    ) -> None:  # fmt: skip
        log.info("rejected message on %s: %s", topic, error)
        rejects.append(
            (index, RejectedMessage(topic, payload, received_at, error.reason, error.detail,
                                    terminal_id))
        )  # fmt: skip

    async def _prepare(self, deliveries: list[Delivery]) -> WriteBatch:
        """Decode, resolve and judge the messages of a batch (in arrival order)."""
        write = WriteBatch()
        conn = await self._db()
        assert self._terminals is not None
        inbound: list[_Inbound | None] = []
        rejects: list[tuple[int, RejectedMessage]] = []
        for index, delivery in enumerate(deliveries):
            topic, payload, received_at = delivery.topic, delivery.payload, delivery.received_at
            try:
                check_size(payload, self.settings.ingest)
                parsed = topics.parse_inbound(topic, self.prefix)
            except Exception as error:
                if not isinstance(error, PayloadError):
                    error = PayloadError("internal_error", f"topic check failed: {error!r}")
                self._reject(rejects, index, topic, payload, received_at, error, None)
                inbound.append(None)
                continue
            if parsed.kind in topics.COMMAND_KINDS:
                # command answers and presence are the command dispatcher's
                # (ingest/commands.py, own session); acknowledged with the batch, not stored
                inbound.append(None)
                continue
            if parsed.kind == "heartbeat" and not self._take_contact(parsed.terminal_id):
                inbound.append(None)  # acknowledged with the batch, nothing written
                continue
            inbound.append(
                _Inbound(
                    topic, payload, received_at, parsed.terminal_id, parsed.kind,
                    delivery.message_id,
                )
            )  # fmt: skip
        vehicles = await self._terminals.vehicles(
            {item.terminal_id for item in inbound if item is not None}
        )
        decoded: list[tuple[_Inbound, Vehicle, list[Position]]] = []
        for index, item in enumerate(inbound):
            if item is None:
                continue
            vehicle = vehicles.get(item.terminal_id)
            try:
                if vehicle is None:
                    raise PayloadError(
                        "unknown_terminal",
                        f"terminal {item.terminal_id!r}: expected a registered vehicle, found none",
                    )
                if item.kind == "heartbeat":
                    decode_contact(item.payload, self.settings.ingest)
                    seen = write.contacts.get(vehicle.id)
                    if seen is None or item.received_at > seen:
                        write.contacts[vehicle.id] = item.received_at
                    self.stats["contacts"] += 1
                    continue
                positions = decode_positions(
                    item.payload, item.kind, item.terminal_id, item.received_at,
                    self.settings.ingest, vehicle.id, vehicle.company_id,
                )  # fmt: skip
            except PayloadError as error:
                self._reject(
                    rejects, index, item.topic, item.payload, item.received_at, error,
                    item.terminal_id,
                )  # fmt: skip
                continue
            except Exception as error:  # a decoder bug must not crash-loop on redelivery
                log.exception("could not decode message on %s", item.topic)
                self._reject(
                    rejects, index, item.topic, item.payload, item.received_at,
                    PayloadError("internal_error", f"decoder failed: {error!r}"),
                    item.terminal_id,
                )  # fmt: skip
                continue
            decoded.append((item, vehicle, positions))
        write.rejected.extend(r for _, r in sorted(rejects, key=lambda pair: pair[0]))
        await self.pipeline.preload(conn, {vehicle.id for _, vehicle, _ in decoded})
        keys: dict[tuple[int, datetime], int] = {}
        for item, vehicle, positions in decoded:
            raw_index = len(write.raw)
            write.raw.append(RawMessage(item.topic, item.payload, item.received_at, item.packet_id))
            try:
                await self.pipeline.judge(conn, vehicle, positions, raw_index, write, keys)
            except Exception as error:
                if failures.is_outage(error):
                    raise  # the database is away: the whole batch is retried
                if len(deliveries) > 1:
                    # rows of this message may already be in ``write``: redo message by message
                    raise _PoisonMessage(error) from error
                if await failures.blame(error, conn) is Blame.OUTAGE:
                    raise
                log.exception("could not judge message on %s", item.topic)
                self.pipeline.states.pop(vehicle.id, None)  # reloads from the database
                reject = PayloadError("internal_error", f"quality judgement failed: {error!r}")
                self._reject(
                    rejects, 0, item.topic, item.payload, item.received_at, reject,
                    item.terminal_id,
                )  # fmt: skip
                return WriteBatch(rejected=[r for _, r in rejects])
        return write

    async def _write_one_by_one(
        self, deliveries: list[Delivery], fence: Fence
    ) -> tuple[WriteBatch, positions_db.WriteResult]:
        """Store a batch that failed because of its data one message per transaction: the
        good messages are stored, the offending one goes to ``rejected_messages`` (reason
        ``unstorable`` with the database's message as detail for a data error,
        ``internal_error`` with the exception for anything else that is not an outage; see
        :mod:`gps_monitor.db.failures`).

        Returns the union of what was written (for the accepted publishes). Raises an outage
        (the consumer retries the whole batch; what was committed is found already stored) or
        FencedOut.
        """
        self.pipeline.reset()  # states judged with the failed batch never reached the database
        self._contact_taken.clear()  # so are its heartbeats: they are taken again one by one
        conn = await self._db()
        union = WriteBatch()
        inserted: list[Position] = []
        already: list[Position] = []
        for delivery in deliveries:
            try:
                write = await self._prepare([delivery])
                result = await self._write(write, fence)
            except FencedOut:
                raise
            except Exception as error:
                if await failures.blame(error, conn) is Blame.OUTAGE:
                    raise
                self.pipeline.reset()
                topic = delivery.topic
                log.error("message on %s cannot be stored: %r", topic, error)
                parsed = topics.parse_inbound(topic, self.prefix)  # it passed once: valid
                reason, detail = failures.set_aside_reason(error)
                write = WriteBatch(
                    rejected=[
                        RejectedMessage(
                            topic, delivery.payload, delivery.received_at, reason, detail,
                            parsed.terminal_id,
                        )
                    ]
                )  # fmt: skip
                result = await self._write(write, fence)
            self._count(write)
            union.raw.extend(write.raw)
            union.positions.extend(write.positions)
            union.rejected.extend(write.rejected)
            union.cleared.extend(write.cleared)
            inserted.extend(result.inserted)
            already.extend(result.already_stored)
        return union, positions_db.WriteResult(inserted=inserted, already_stored=already)

    def _count(self, write: WriteBatch) -> None:
        """Count the rejections of a committed write."""
        for rejected in write.rejected:
            self.stats["rejected"] += 1
            self.stats[f"rejected:{rejected.reason}"] += 1

    def _accepted_messages(
        self, stored: list[Position], deliveries: list[Delivery]
    ) -> list[tuple[str, bytes]]:
        """One message per partition of the batch (one on MQTT): ``positions/v2/{partition}``,
        a JSON array of ``Position.to_dict()`` in fix-time order; split into consecutive
        messages when it would exceed :data:`gps_monitor.accepted.MAX_MESSAGE_BYTES`."""
        if not stored:
            return []
        partitions = {d.partition for d in deliveries}
        if len(partitions) == 1:
            by_partition = {partitions.pop(): stored}
        else:
            of_terminal: dict[str, int] = {}
            for d in deliveries:
                with contextlib.suppress(PayloadError):  # a bad topic stored no position
                    of_terminal[topics.parse_inbound(d.topic, self.prefix).terminal_id] = (
                        d.partition
                    )
            by_partition = defaultdict(list)
            for p in stored:
                by_partition[of_terminal[p.terminal_id]].append(p)
        return [
            (topics.accepted_topic(partition, self.prefix), payload)
            for partition, ps in sorted(by_partition.items())
            for payload in accepted.encode_messages(sorted(ps, key=_fix_time))
        ]

    def _report(self, d: dict[str, float], elapsed_s: float) -> None:
        """The log line of one interval's counts."""
        log.info(
            "ingest, last %.1f s: %d messages (%.0f/s) in %d batches (mean %.1f), %d positions "
            "stored (%.0f/s), %d already stored, %d rejected; time in prepare %.2f s, write "
            "%.2f s, publish %.2f s",
            elapsed_s, d["messages"], d["messages"] / elapsed_s, d["batches"],
            d["messages"] / max(d["batches"], 1), d["stored"], d["stored"] / elapsed_s,
            d["already_stored"], d["rejected"], d["prepare_s"], d["write_s"], d["publish_s"],
        )  # fmt: skip
