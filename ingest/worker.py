"""The ingest worker: MQTT (QoS 1, persistent session, manual ack) -> judged positions in the
database, then the accepted positions on ``positions/v1/{company_id}/{vehicle_id}``.

Delivery: at-least-once from the broker, exactly-once in the database.

- The worker subscribes at QoS 1 with a persistent session (:mod:`gps_monitor.mqtt`), so the
  broker queues messages while it is down.
- Messages are acknowledged manually, only after the batch that holds them is committed and its
  positions are published on the accepted topic. A crash before that leaves them unacknowledged:
  the broker redelivers them when the session resumes.
- A redelivered position meets the (vehicle_id, fix_time) key: ``ON CONFLICT DO NOTHING``
  stores it once; the stored row is published again (consumers dedupe by vehicle and fix time).

Contact without a position (``gps/v1/{terminal_id}/heartbeat``, issue 12) only moves the
vehicle's ``latest_positions.last_message_at`` (what the offline rule and the map's status
read), at most once per terminal per ``ingest.contact_min_interval_s``; it is not kept in
``raw_messages`` (it carries no position to give evidence for) and publishes nothing.

Batching: messages are read until the broker has nothing more queued for us (or ``batch_size``
positions / ``max_in_flight_messages`` messages / ``flush_interval_s`` is reached), then the
batch is written in one transaction. Under load batches grow by themselves; when idle every
message is committed at once. Note: Mosquitto's ``max_inflight_messages`` (default 20) caps how
many unacknowledged messages it sends one client, so with manual acks that setting bounds the
batch size and the throughput of one worker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiomqtt
import asyncpg

from gps_monitor import mqtt, topics
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


@dataclass(slots=True)
class WorkerStats:
    """Counters since start."""

    messages: int = 0
    rejected: int = 0
    stored: int = 0
    already_stored: int = 0
    batches: int = 0
    prepare_s: float = 0.0  # decoding, terminal lookups, quality judgement
    write_s: float = 0.0  # the database transaction
    publish_s: float = 0.0  # accepted-topic publishes until their PUBACKs
    contacts: int = 0  # heartbeat messages written as the vehicle's last message
    contacts_throttled: int = 0  # heartbeat messages within contact_min_interval_s: not written
    rejected_by_reason: dict[str, int] = field(default_factory=lambda: defaultdict(int))


@dataclass(frozen=True, slots=True)
class _Figures:
    """The counters of :class:`WorkerStats` at one moment (for per-interval reports)."""

    messages: int = 0
    batches: int = 0
    stored: int = 0
    already_stored: int = 0
    rejected: int = 0
    prepare_s: float = 0.0
    write_s: float = 0.0
    publish_s: float = 0.0

    def minus(self, other: _Figures) -> _Figures:
        return _Figures(*(getattr(self, f) - getattr(other, f) for f in self.__slots__))


def _payload_bytes(message: aiomqtt.Message) -> bytes:
    payload = message.payload
    return payload if isinstance(payload, bytes) else str(payload).encode()


class _PoisonMessage(Exception):
    """Judging one message of a batch failed because of its data: redo message by message."""


@dataclass(slots=True)
class _OpenBatch:
    messages: list[aiomqtt.Message] = field(default_factory=list)
    received_at: list[datetime] = field(default_factory=list)
    started: float = 0.0


@dataclass(slots=True)
class _Inbound:
    topic: str
    payload: bytes
    received_at: datetime
    terminal_id: str
    kind: topics.InboundKind
    packet_id: int | None  # the MQTT packet identifier (QoS 1/2 only): same on a redelivery


class IngestWorker:
    """Consume inbound positions, store them, publish the accepted ones, then acknowledge.

    Use :meth:`run` (reconnects forever) or :meth:`session` on a connected client (tests).
    ``on_commit`` (optional) is called with each committed batch's stored positions.
    """

    PIPELINE_DEPTH = 4  # committed batches publishing/acking at once
    PUBLISH_TIMEOUT_S = 30.0  # no PUBACK for an accepted publish by then: reconnect, redeliver
    REPORT_INTERVAL_S = 10.0  # the figures of each interval are logged at its end

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.prefix = settings.mqtt.topic_prefix
        self.pipeline = Pipeline(settings.quality)
        self.stats = WorkerStats()
        self._conn: asyncpg.Connection | None = None
        self._terminals: TerminalCache | None = None
        self._batch = _OpenBatch()
        self.ready = asyncio.Event()
        self._last_report = time.monotonic()
        self._reported = _Figures()  # the stats at the last report
        # committed batches whose accepted-topic publishes and acks are under way, oldest first
        self._acks: deque[asyncio.Task[None]] = deque()
        self._tracker: mqtt.PubackTracker | None = None
        # the broker redelivers for as long as it keeps our session (positions.write_batch)
        self._redelivery_window_s = float(settings.mqtt.session_expiry_s)
        # terminal id -> monotonic time its last heartbeat was taken (written or rejected)
        self._contact_taken: dict[str, float] = {}

    async def _db(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await connect(self.settings.database)
            self._terminals = TerminalCache(self._conn, self.settings.ingest)
            self.pipeline.reset()
        return self._conn

    async def close(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()

    async def run(self) -> None:
        """Run until cancelled: connect, consume, reconnect with backoff on broker loss."""
        reporter = asyncio.create_task(self._report_periodically())
        try:
            await mqtt.run_with_reconnect(
                self.settings.mqtt,
                self.session,
                persistent=True,
                manual_ack=True,
                # accepted-topic publishes of a batch go out together, not 20 at a time; 0 =
                # unlimited, which also spares paho a scan of all queued messages per PUBACK
                # (Client._update_inflight), quadratic with thousands in flight
                max_inflight_messages=0,
                on_disconnect=lambda _error: self._abandon_batch(),
            )
        finally:
            reporter.cancel()
            for task in self._acks:
                task.cancel()
            self._report()
            await self.close()

    def _abandon_batch(self) -> None:
        """Drop the uncommitted batch: it is unacknowledged, so the broker redelivers it."""
        if self._batch.messages:
            log.warning(
                "abandoning %d uncommitted message(s); the broker redelivers them",
                len(self._batch.messages),
            )
        self._batch = _OpenBatch()
        self.pipeline.reset()
        self._contact_taken.clear()  # the uncommitted heartbeats come again
        if self._tracker is not None:
            self._tracker.fail_all("connection to the MQTT broker lost")
        for task in self._acks:
            task.cancel()  # their messages are redelivered on the next connection
        self._acks.clear()

    async def session(self, client: aiomqtt.Client) -> None:
        """Subscribe and consume on one connection (returns only by an exception)."""
        self._abandon_batch()
        self._tracker = mqtt.PubackTracker(client)  # one accepted publish per vehicle per batch
        await client.subscribe(topics.inbound_filter(self.prefix), qos=1)
        log.info("ingest subscribed to %s", topics.inbound_filter(self.prefix))
        self.ready.set()
        messages = client.messages
        ingest = self.settings.ingest
        while True:
            message = await anext(messages)
            while self._acks and self._acks[0].done():
                self._acks.popleft().result()  # raises if publishing failed
            batch = self._batch
            if not batch.messages:
                batch.started = time.monotonic()
            batch.messages.append(message)
            batch.received_at.append(datetime.now(UTC))
            if (
                len(messages) == 0
                or len(batch.messages) >= ingest.batch_size
                or len(batch.messages) >= ingest.max_in_flight_messages
                or time.monotonic() - batch.started >= ingest.flush_interval_s
            ):
                await self._flush(client)

    def _take_contact(self, terminal_id: str) -> bool:
        """Whether a heartbeat of ``terminal_id`` is to be taken now: none was taken within
        ``ingest.contact_min_interval_s`` (taken = written or rejected; forgotten when a
        batch is abandoned). The rate limit that keeps heartbeats from becoming a write
        hotspot; positions are never limited."""
        now = time.monotonic()
        last = self._contact_taken.get(terminal_id)
        if last is not None and now - last < self.settings.ingest.contact_min_interval_s:
            self.stats.contacts_throttled += 1
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

    async def _prepare(self, batch: _OpenBatch) -> WriteBatch:
        """Decode, resolve and judge the messages of a batch (in arrival order)."""
        write = WriteBatch()
        conn = await self._db()
        assert self._terminals is not None
        inbound: list[_Inbound | None] = []
        rejects: list[tuple[int, RejectedMessage]] = []
        for index, (message, received_at) in enumerate(
            zip(batch.messages, batch.received_at, strict=True)
        ):
            topic = message.topic.value
            payload = _payload_bytes(message)
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
                    message.mid if message.qos > 0 else None,
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
                    self.stats.contacts += 1
                    continue
                positions = decode_positions(
                    item.payload, item.kind, item.terminal_id, item.received_at,
                    self.settings.ingest,
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
                if len(batch.messages) > 1:
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

    async def _flush(self, client: aiomqtt.Client) -> None:
        """Judge and commit the open batch, publish its positions, then acknowledge it."""
        batch = self._batch
        if not batch.messages:
            return
        self._batch = _OpenBatch()
        try:
            try:
                t0 = time.perf_counter()
                write = await self._prepare(batch)
                t1 = time.perf_counter()
                result = await positions_db.write_batch(
                    await self._db(), write, redelivery_window_s=self._redelivery_window_s
                )
                self.stats.prepare_s += t1 - t0
                self.stats.write_s += time.perf_counter() - t1
                self._count(write)
            except Exception as error:
                if failures.is_outage(error):
                    raise
                # anything else came from the data of one (unknown) message of the batch
                log.warning(
                    "batch of %d message(s) not stored, caused by its data (%s); "
                    "storing it message by message",
                    len(batch.messages),
                    error,
                )
                write, result = await self._write_one_by_one(batch)
        except Exception as error:
            if not failures.is_outage(error):
                raise
            log.error(
                "batch of %d message(s) not stored (%s); retrying after reconnect",
                len(batch.messages),
                error,
            )
            if self._conn is not None:
                await self._conn.close()
            self._conn = None
            self.pipeline.reset()
            self._contact_taken.clear()
            # Unacknowledged: force an MQTT reconnect so the broker redelivers them.
            raise aiomqtt.MqttError(f"database write failed: {error}") from error
        self.stats.messages += len(batch.messages)
        self.stats.batches += 1
        self.stats.stored += len(result.inserted)
        self.stats.already_stored += len(result.already_stored)
        # Publish and acknowledge in the background so the next batch is read and written
        # meanwhile; acks stay in arrival order because each task first waits for the previous.
        previous = self._acks[-1] if self._acks else None
        self._acks.append(
            asyncio.create_task(
                self._publish_then_ack(
                    client,
                    # cleared drift suspects go out again as ok, so rules and map take them
                    [*result.inserted, *result.already_stored, *write.cleared],
                    batch.messages,
                    previous,
                )
            )
        )
        while len(self._acks) > self.PIPELINE_DEPTH:
            await self._acks.popleft()

    async def _write_one_by_one(
        self, batch: _OpenBatch
    ) -> tuple[WriteBatch, positions_db.WriteResult]:
        """Store a batch that failed because of its data one message per transaction: the
        good messages are stored, the offending one goes to ``rejected_messages`` (reason
        ``unstorable`` with the database's message as detail for a data error,
        ``internal_error`` with the exception for anything else that is not an outage; see
        :mod:`gps_monitor.db.failures`).

        Returns the union of what was written (for the accepted publishes). Raises what
        :meth:`_flush` treats as an outage (the database or the broker away).
        """
        self.pipeline.reset()  # states judged with the failed batch never reached the database
        self._contact_taken.clear()  # so are its heartbeats: they are taken again one by one
        conn = await self._db()
        union = WriteBatch()
        inserted: list[Position] = []
        already: list[Position] = []
        for message, received_at in zip(batch.messages, batch.received_at, strict=True):
            one = _OpenBatch([message], [received_at])
            try:
                write = await self._prepare(one)
                result = await positions_db.write_batch(
                    conn, write, redelivery_window_s=self._redelivery_window_s
                )
            except Exception as error:
                if await failures.blame(error, conn) is Blame.OUTAGE:
                    raise
                self.pipeline.reset()
                topic = message.topic.value
                log.error("message on %s cannot be stored: %r", topic, error)
                parsed = topics.parse_inbound(topic, self.prefix)  # it passed once: valid
                reason, detail = failures.set_aside_reason(error)
                write = WriteBatch(
                    rejected=[
                        RejectedMessage(
                            topic, _payload_bytes(message), received_at, reason, detail,
                            parsed.terminal_id,
                        )
                    ]
                )  # fmt: skip
                result = await positions_db.write_batch(
                    conn, write, redelivery_window_s=self._redelivery_window_s
                )
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
            self.stats.rejected += 1
            self.stats.rejected_by_reason[rejected.reason] += 1

    async def _publish_then_ack(
        self,
        client: aiomqtt.Client,
        stored: list[Position],
        messages: list[aiomqtt.Message],
        previous: asyncio.Task[None] | None,
    ) -> None:
        t0 = time.perf_counter()
        await self._publish_accepted(client, stored)
        self.stats.publish_s += time.perf_counter() - t0
        if previous is not None:
            await previous  # raises when an earlier batch failed: then nothing more is acked
        for message in messages:
            mqtt.ack(client, message)

    async def _report_periodically(self) -> None:
        """Every ``REPORT_INTERVAL_S``: the figures of that interval (idle intervals are not
        logged)."""
        while True:
            await asyncio.sleep(self.REPORT_INTERVAL_S)
            self._report()

    def _report(self, *, force: bool = False) -> None:
        """Log the counts and rates since the previous report, then start a new interval."""
        now = time.monotonic()
        s = self.stats
        current = _Figures(
            s.messages, s.batches, s.stored, s.already_stored, s.rejected, s.prepare_s,
            s.write_s, s.publish_s,
        )  # fmt: skip
        d = current.minus(self._reported)
        if d.messages == 0 and d.rejected == 0 and not force:
            return
        elapsed_s = max(now - self._last_report, 1e-6)
        self._reported, self._last_report = current, now
        log.info(
            "ingest, last %.1f s: %d messages (%.0f/s) in %d batches (mean %.1f), %d positions "
            "stored (%.0f/s), %d already stored, %d rejected; time in prepare %.2f s, write "
            "%.2f s, publish %.2f s",
            elapsed_s, d.messages, d.messages / elapsed_s, d.batches,
            d.messages / max(d.batches, 1), d.stored, d.stored / elapsed_s, d.already_stored,
            d.rejected, d.prepare_s, d.write_s, d.publish_s,
        )  # fmt: skip

    async def _publish_accepted(self, client: aiomqtt.Client, stored: list[Position]) -> None:
        """One QoS 1 message per vehicle: a JSON array of ``Position.to_dict()``."""
        by_vehicle: dict[tuple[int, int], list[Position]] = defaultdict(list)
        for p in stored:
            assert p.company_id is not None and p.vehicle_id is not None
            by_vehicle[(p.company_id, p.vehicle_id)].append(p)
        tracker = self._tracker
        assert tracker is not None
        await asyncio.gather(
            *(
                tracker.publish(
                    topics.accepted_topic(company_id, vehicle_id, self.prefix),
                    json.dumps([p.to_dict() for p in sorted(ps, key=lambda p: p.fix_time)]),
                    timeout_s=self.PUBLISH_TIMEOUT_S,
                )
                for (company_id, vehicle_id), ps in by_vehicle.items()
            )
        )
