"""The notify service: alarm events in (the bus), pushes out (robots, webhooks, e-mail, SMS).

Input: ``{prefix}alarms/v1/{company_id}/{vehicle_id}/{alarm_type}``, one
:meth:`Alarm.to_dict` per message, published by the rules worker after its commit (QoS 1). The
worker reads them through a bus transport (:func:`alarm_transport`): on MQTT a persistent
session, on NATS the durable JetStream consumer ``notify`` on the alarms stream
(:mod:`gps_monitor.bus.nats_durable`); either way it acknowledges manually, after its commit:

1. read the messages already queued (up to ``notify.batch_max_messages``);
2. per message: ``opened`` and ``closed`` events are routed by the subscriptions
   (:mod:`notify.routing`); ``updated`` events and late alarms (unless ``notify.include_late``)
   are not pushed; a malformed message goes to ``rejected_messages`` with its reason;
3. one transaction: a ``notify_deliveries`` row per (alarm episode, event, channel), status
   ``pending`` (or ``suppressed`` in quiet hours); the unique key makes a redelivered message a
   no-op, so nothing is sent twice;
4. after the commit the messages are acknowledged in arrival order, and the new pending
   deliveries are handed to their channel's sender.

Each channel has its own :class:`ChannelSender`: a bounded in-memory queue, its own HTTP
connection pool and ``notify.channel_concurrency`` tasks, each attempt bounded by
``notify.send_timeout_s``. A dead, slow or garbage-answering receiver only fills its own queue;
the others, the MQTT consumption and the rules worker (another process, its own session) go on.
A failed attempt is retried after ``retry_initial_delay_s`` doubling up to ``retry_max_delay_s``,
``max_attempts`` in all, then marked ``failed``. Each channel also has a circuit breaker
(:mod:`notify.breaker`): ``breaker_failures`` consecutive failed attempts open it; then nothing
is attempted to that channel, its queue and retry timers are emptied (memory and sender tasks
freed), all its pending rows are marked with the reason in one statement, and new ones are
recorded with it; every ``breaker_probe_interval_s`` (checked by the rescan) one due delivery is
attempted as the probe, and its success closes the breaker and the backlog is loaded again
(each delivery keeps its attempts and ``max_attempts``; a probe is a real attempt). Every
attempt is recorded (``notify_attempts``, batched by :class:`AttemptRecorder`). Deliveries
beyond a channel's queue, and those pending from before a restart, wait in the table and are
loaded by the rescan.

Guarantee: at least once per (episode, event, channel) while attempts last; a crash between a
send and the record of its attempt resends that one delivery after the restart (the webhook's
``X-GPS-Monitor-Delivery`` header lets a receiver drop the repeat). Secrets are never logged:
log lines name channels by id, name and target (URL without its query string).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg

from gps_monitor import mqtt, topics
from gps_monitor.bus.base import Delivery as BusDelivery
from gps_monitor.bus.base import Sink, Source, Transport
from gps_monitor.bus.mqtt_transport import MqttTransport
from gps_monitor.bus.nats_durable import NatsDurableTransport
from gps_monitor.bus.nats_names import NatsNames
from gps_monitor.config import Settings
from gps_monitor.db import notify as store
from gps_monitor.db import registry
from gps_monitor.db.notify import AttemptRecord, ChannelRecord, Delivery, NewDelivery, Subscription
from gps_monitor.db.pool import create_pool
from gps_monitor.db.positions import RejectedMessage, save_rejected
from gps_monitor.errors import ConfigurationError, PayloadError
from notify import email, sms
from notify.breaker import CircuitBreaker, Transition
from notify.channels import (
    ChannelError,
    Outcome,
    SendContext,
    TargetPolicy,
    describe,
    guarded_connector,
    module_for,
    validate_channel,
)
from notify.levels import level_of
from notify.message import EVENTS, Notification, VehicleInfo, notification, parse_alarm_message
from notify.routing import route

log = logging.getLogger(__name__)
_DEFER_CHUNK = 500  # rows marked per statement when a breaker opens
_DEFER_PAUSE_S = 0.2  # pause between those statements
T = TypeVar("T")


def notify_client_id(settings: Settings) -> str:
    """The notify worker's MQTT client id (stable: the broker keeps its session under it)."""
    if settings.notify.client_id:
        return settings.notify.client_id
    base = settings.mqtt.client_id
    return base.replace("ingest", "notify") if "ingest" in base else f"{base}-notify"


def alarm_transport(settings: Settings) -> Transport:
    """Where notify reads the alarm events: ``alarms/v1/#`` of the MQTT broker (persistent
    session under :func:`notify_client_id`), or with ``bus.transport = nats`` the durable
    JetStream consumer ``notify`` on the alarms stream (one notify deployment)."""
    if settings.bus.transport == "nats":
        names = NatsNames(settings.mqtt.topic_prefix)
        return NatsDurableTransport(
            settings,
            durable="notify",
            stream=names.alarms_stream,
            filter_subjects=[f"{names.subject_prefix}alarms.v1.>"],
            max_ack_pending=max(1000, settings.notify.batch_max_messages),
        )
    return MqttTransport(
        settings.mqtt,
        client_id=notify_client_id(settings),
        subscriptions=[topics.alarm_filter(settings.mqtt.topic_prefix)],
        receive_maximum=1000,
    )


def check_settings(settings: Settings) -> None:
    """The SMTP and SMS gateway settings, when given, are usable (channels needing them are
    checked with the channels).

    Raises:
        ChannelError: naming the setting.
    """
    if settings.notify.smtp_host or settings.notify.smtp_from:
        email.check_settings(settings.notify)
    if settings.notify.sms_url:
        sms.check_settings(settings.notify)


def stored_message(note: Notification) -> dict[str, Any]:
    """What a delivery row keeps to send later: the alarm message and what was looked up."""
    return {
        "alarm": note.message,
        "level": note.level,
        "plate_number": note.plate_number,
        "company_name": note.company_name,
    }


def from_stored(message: dict[str, Any]) -> Notification:
    """Inverse of :func:`stored_message`."""
    data = message["alarm"]
    vehicle = VehicleInfo(message["plate_number"], "", message["company_name"])
    return notification(data, vehicle, int(message["level"]))


class AttemptRecorder:
    """Stores attempt outcomes in batches (one transaction per ``flush``), retrying through a
    database outage; a delivery leaves its sender's memory only once its final attempt is
    stored (so the rescan never loads one that is still being sent)."""

    def __init__(self, worker: NotifyWorker) -> None:
        self.worker = worker
        self.pending: list[tuple[AttemptRecord, Callable[[], None] | None]] = []
        self.wake = asyncio.Event()
        self.stored = 0

    def add(self, record: AttemptRecord, done: Callable[[], None] | None) -> None:
        self.pending.append((record, done))
        if len(self.pending) >= 500:
            self.wake.set()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.05):
                    await self.wake.wait()
            self.wake.clear()
            await self.flush()

    async def flush(self) -> None:
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        pool = await self.worker.pool()

        async def write() -> None:
            async with pool.acquire() as conn:
                await store.record_attempts(conn, [record for record, _ in batch])

        await self.worker.retry(write)
        self.stored += len(batch)
        for _, done in batch:
            if done is not None:
                done()


class ChannelSender:
    """One channel's queue, HTTP connection pool and sender tasks (see the module docstring)."""

    def __init__(self, worker: NotifyWorker, channel: ChannelRecord) -> None:
        settings = worker.settings.notify
        self.worker = worker
        self.channel = channel
        self.module = module_for(channel.kind)
        self.target = validate_channel(channel.kind, channel.config, channel.secret, settings)
        self.queue: asyncio.Queue[Delivery] = asyncio.Queue(maxsize=settings.channel_queue_max)
        self.held: set[int] = set()
        self.backlog = True  # pending rows in the table that are not held (start, overflow)
        self.timers: dict[asyncio.TimerHandle, int] = {}  # retry timer -> delivery id
        self.breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_probe_interval_s)
        self.probe_id: int | None = None  # the delivery attempted as the breaker's probe
        self.chores: set[asyncio.Task[None]] = set()
        # a channel URL is tenant data: its connections go through the target policy; the
        # SMS gateway (and SMTP) are the deployment's own settings and stay unguarded
        self.policy = worker.policy if "url" in channel.config else None
        self.http = aiohttp.ClientSession(
            connector=guarded_connector(self.policy, settings.channel_concurrency),
            trust_env=False,
        )
        self.tasks = [
            asyncio.create_task(self._loop(), name=f"notify channel {channel.id} sender {i}")
            for i in range(settings.channel_concurrency)
        ]
        self.sent = 0
        self.failed_attempts = 0

    def __str__(self) -> str:
        c = self.channel
        return f"channel {c.id} {c.name!r} ({c.kind} {self.target})"

    def offer(self, delivery: Delivery, *, probe: bool = False) -> None:
        """Queue ``delivery`` unless held already; a full queue or an open breaker (unless this
        is its probe) leaves it in the table."""
        if delivery.id in self.held:
            return
        if not (probe or self.breaker.allows()):
            self.backlog = True
            return
        try:
            self.queue.put_nowait(delivery)
        except asyncio.QueueFull:
            self.backlog = True
            return
        self.held.add(delivery.id)

    def _requeue(self, delivery: Delivery, timer: list[asyncio.TimerHandle]) -> None:
        self.timers.pop(timer[0], None)
        try:
            self.queue.put_nowait(delivery)
        except asyncio.QueueFull:
            self.held.discard(delivery.id)
            self.backlog = True

    def _schedule(self, delivery: Delivery, delay_s: float) -> None:
        box: list[asyncio.TimerHandle] = []
        handle = asyncio.get_running_loop().call_later(delay_s, self._requeue, delivery, box)
        box.append(handle)
        self.timers[handle] = delivery.id

    def retry_delay_s(self, attempts: int) -> float:
        """Delay after the ``attempts``-th failed attempt: initial * 2^(attempts-1), capped."""
        settings = self.worker.settings.notify
        return float(
            min(settings.retry_initial_delay_s * 2 ** (attempts - 1), settings.retry_max_delay_s)
        )

    async def _loop(self) -> None:
        while True:
            delivery = await self.queue.get()
            if not self.breaker.allows() and delivery.id != self.probe_id:
                self.held.discard(delivery.id)  # stays pending in the table
                continue
            try:
                await self.attempt(delivery)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug: keep the sender alive, the delivery stays pending
                log.exception("notify: %s: delivery %s failed unexpectedly", self, delivery.id)
                self.held.discard(delivery.id)
                self.backlog = True
                if delivery.id == self.probe_id:
                    self.probe_id = None
                    self.breaker.cancel_probe()

    async def attempt(self, delivery: Delivery) -> None:
        """One attempt, recorded; a failure schedules the next or marks the delivery failed."""
        settings = self.worker.settings.notify
        delivery.attempts += 1
        note = from_stored(delivery.message)
        ctx = SendContext(self.http, settings, self.worker.zone, delivery.id, self.policy)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(settings.send_timeout_s + 1.0):
                outcome = await self.module.send(self.channel, note, ctx)
        except TimeoutError:
            outcome = Outcome.failed(f"no answer within {settings.send_timeout_s} s")
        duration_ms = round((time.perf_counter() - started) * 1000)
        now = datetime.now(UTC)
        transition = self.breaker.record(outcome.ok, _failure(outcome))
        if delivery.id == self.probe_id:
            self.probe_id = None
        status, next_at = self._next_step(delivery, outcome, now)
        record = AttemptRecord(
            delivery_id=delivery.id,
            attempt=delivery.attempts,
            at=now,
            ok=outcome.ok,
            reply_code=outcome.reply_code,
            reply=outcome.reply,
            duration_ms=duration_ms,
            status=status,
            next_attempt_at=next_at,
        )
        if status == "pending" and self.breaker.allows():
            self.worker.recorder.add(record, None)
            self._schedule(delivery, self.retry_delay_s(delivery.attempts))
        else:  # done, or it waits in the table for the breaker
            self.worker.recorder.add(record, lambda: self.held.discard(delivery.id))
        if transition is not None:
            self._breaker_changed(transition, delivery)

    def _next_step(
        self, delivery: Delivery, outcome: Outcome, now: datetime
    ) -> tuple[str, datetime | None]:
        """The delivery's status after this attempt and when the next one is due."""
        settings = self.worker.settings.notify
        if outcome.ok:
            self.sent += 1
            return "sent", None
        self.failed_attempts += 1
        if outcome.final or delivery.attempts >= settings.max_attempts:
            log.warning(
                "notify: %s: delivery %s failed after %d attempt(s) (last: %s %s)",
                self,
                delivery.id,
                delivery.attempts,
                outcome.reply_code,
                outcome.reply[:200],
            )
            return "failed", None
        delay = self.retry_delay_s(delivery.attempts)
        log.info(
            "notify: %s: attempt %d of delivery %s failed (%s %s); %s",
            self,
            delivery.attempts,
            delivery.id,
            outcome.reply_code,
            outcome.reply[:200],
            f"retry in {delay:.0f} s" if self.breaker.allows() else "waits for the breaker",
        )
        return "pending", now + timedelta(seconds=delay)

    def _breaker_changed(self, transition: Transition, delivery: Delivery) -> None:
        """Log a breaker change; opening frees the queue and timers and defers the rows."""
        breaker = self.breaker
        if transition is Transition.CLOSED:
            log.warning(
                "notify: %s: breaker closed (delivery %s went through); pending deliveries "
                "go out again",
                self,
                delivery.id,
            )
            self.backlog = True
            self.worker.rescan_soon.set()
            return
        if transition is Transition.PROBE_FAILED:
            log.info(
                "notify: %s: breaker stays open, probe with delivery %s failed (%s); next probe "
                "in %g s",
                self,
                delivery.id,
                breaker.last_failure,
                breaker.probe_interval_s,
            )
            return
        log.warning("notify: %s: %s; no attempts until a probe succeeds", self, breaker.reason())
        dropped = list(self.timers.values())
        for handle in self.timers:
            handle.cancel()
        self.timers.clear()
        while not self.queue.empty():
            dropped.append(self.queue.get_nowait().id)
        self.held.difference_update(dropped)
        self.backlog = True
        chore = asyncio.create_task(
            self._defer(breaker.deferral() or ""), name=f"notify defer {self.channel.id}"
        )
        self.chores.add(chore)
        chore.add_done_callback(self.chores.discard)

    async def _defer(self, reason: str) -> None:
        """Record ``reason`` on the channel's pending rows, in chunks of ``_DEFER_CHUNK`` with a
        pause between them (one statement over a 10,000-row backlog stalled the live channels'
        writes: p99 +45 % in benchmarks/notify.py); stops when the breaker has closed again."""
        pool = await self.worker.pool()
        count = 0
        while not self.breaker.allows():
            marked = await self.worker.retry(
                lambda: store.defer_deliveries(pool, self.channel.id, reason, _DEFER_CHUNK)
            )
            count += marked
            if marked < _DEFER_CHUNK:
                break
            await asyncio.sleep(_DEFER_PAUSE_S)
        log.info("notify: %s: %d pending deliveries deferred (%s)", self, count, reason)

    def changed(self, channel: ChannelRecord, target: str) -> None:
        """The channel was edited: take the new settings; an open breaker closes (the edit may
        be the fix, e.g. a corrected URL), the next attempts tell."""
        self.channel, self.target = channel, target
        if not self.breaker.allows():
            self.breaker = CircuitBreaker(
                self.breaker.failures_to_open, self.breaker.probe_interval_s
            )
            self.probe_id = None
            self.backlog = True
            log.warning("notify: %s: breaker closed (channel changed)", self)

    async def rescan(self, pool: asyncpg.Pool) -> None:
        """Load pending deliveries from the table that are due and not held, while room."""
        if not self.breaker.allows():
            if self.breaker.probe_due():
                await self._probe(pool)
            return
        if not self.backlog:
            return
        room = self.queue.maxsize - self.queue.qsize()
        # a dead channel's queue stays nearly full: loading a handful of rows at a time would
        # scan its whole held backlog each round (the exclusion list) for little gain
        if room <= 0 or (self.held and room < min(500, self.queue.maxsize // 10)):
            return
        rows = await store.pending_deliveries(
            pool, self.channel.id, exclude_ids=list(self.held), limit=room
        )
        for delivery in rows:
            self.offer(delivery)
        if len(rows) < room:
            self.backlog = False

    async def _probe(self, pool: asyncpg.Pool) -> None:
        """Half-open: attempt the oldest due pending delivery (nothing due: wait another
        interval)."""
        self.breaker.start_probe()
        rows: list[Delivery] = []
        try:
            rows = await store.pending_deliveries(
                pool, self.channel.id, exclude_ids=list(self.held), limit=1
            )
        finally:
            if not rows:
                self.breaker.cancel_probe()
        if not rows:
            return
        log.info("notify: %s: breaker half-open, probing with delivery %s", self, rows[0].id)
        self.probe_id = rows[0].id
        self.offer(rows[0], probe=True)

    async def close(self) -> None:
        for handle in self.timers:
            handle.cancel()
        for task in (*self.tasks, *self.chores):
            task.cancel()
        await asyncio.gather(*self.tasks, *self.chores, return_exceptions=True)
        await self.http.close()


class NotifyWorker:
    """The notify service. :meth:`run` reconnects forever; :meth:`session` serves one
    connection. ``ready`` is set once subscribed."""

    def __init__(self, settings: Settings, transport: Transport | None = None) -> None:
        self.settings = settings
        self.prefix = settings.mqtt.topic_prefix
        self.zone = ZoneInfo(settings.notify.timezone)
        self.policy = TargetPolicy.of(settings.notify)
        self.ready = asyncio.Event()
        self.senders: dict[int, ChannelSender] = {}
        self.subscriptions: list[Subscription] = []
        self.vehicles: dict[int, VehicleInfo] = {}
        self.recorder = AttemptRecorder(self)
        self.rescan_soon = asyncio.Event()  # a breaker closed: load its backlog now
        self.recorded_messages = 0
        self._pool: asyncpg.Pool | None = None
        self._fingerprint: tuple[Any, ...] | None = None
        self._loaded_at = 0.0
        self._vehicles_at = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self.transport = transport or alarm_transport(settings)

    # --- setup ---------------------------------------------------------------------------

    async def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await create_pool(self.settings.database, min_size=1, max_size=4)
        return self._pool

    async def start(self) -> None:
        """Check settings and every enabled channel, load the routing, start the senders.

        Raises:
            ConfigurationError: a setting or an enabled channel is unusable (names which).
        """
        check_settings(self.settings)
        pool = await self.pool()
        for channel in await store.load_channels(pool):
            if not channel.enabled:
                continue
            try:
                validate_channel(channel.kind, channel.config, channel.secret, self.settings.notify)
            except ChannelError as error:
                raise ConfigurationError(describe(channel, error)) from None
        await self.reload(force=True)
        await self.load_vehicles()
        self._tasks = [
            asyncio.create_task(self.recorder.run(), name="notify recorder"),
            asyncio.create_task(self._maintenance(), name="notify rescan"),
        ]
        await self.rescan()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for sender in self.senders.values():
            await sender.close()
        self.senders.clear()
        with contextlib.suppress(Exception):
            await self.recorder.flush()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def reload(self, *, force: bool = False) -> None:
        """Channels and subscriptions again when they changed; a channel that became invalid
        (edited in the database behind the API's back) is logged and left out."""
        pool = await self.pool()
        fingerprint = await store.routing_fingerprint(pool)
        self._loaded_at = time.monotonic()
        if fingerprint == self._fingerprint and not force:
            return
        channels = {c.id: c for c in await store.load_channels(pool) if c.enabled}
        for channel_id in list(self.senders):
            if channel_id not in channels:
                await self.senders.pop(channel_id).close()
        for channel in channels.values():
            sender = self.senders.get(channel.id)
            try:
                if sender is None:
                    self.senders[channel.id] = ChannelSender(self, channel)
                elif sender.channel != channel:
                    target = validate_channel(
                        channel.kind, channel.config, channel.secret, self.settings.notify
                    )
                    sender.changed(channel, target)
            except ChannelError as error:
                log.error("notify: %s; channel left out until fixed", describe(channel, error))
                if channel.id in self.senders:
                    await self.senders.pop(channel.id).close()
        self.subscriptions = await store.load_subscriptions(pool)
        self._fingerprint = fingerprint
        log.info(
            "notify: %d channel(s), %d subscription(s)", len(self.senders), len(self.subscriptions)
        )

    async def load_vehicles(self) -> None:
        rows = await registry.vehicle_labels(await self.pool())
        self.vehicles = {
            r["id"]: VehicleInfo(r["plate_number"], r["vehicle_class"], r["company_name"])
            for r in rows
        }
        self._vehicles_at = time.monotonic()

    async def rescan(self) -> None:
        pool = await self.pool()
        for sender in list(self.senders.values()):
            await sender.rescan(pool)

    async def _maintenance(self) -> None:
        interval = min(
            self.settings.notify.rescan_interval_s, self.settings.notify.reload_interval_s
        )
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self.rescan_soon.wait()
            self.rescan_soon.clear()
            try:
                if time.monotonic() - self._loaded_at >= self.settings.notify.reload_interval_s:
                    await self.reload()
                await self.rescan()
            except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as error:
                log.error("notify: database error in reload/rescan (%s); next round later", error)

    async def retry(self, action: Callable[[], Awaitable[T]]) -> T:
        delay = 0.5
        while True:
            try:
                return await action()
            except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as error:
                log.error("notify: database error (%s); retrying in %.1f s", error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    # --- service -------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until cancelled (connect, consume, reconnect with backoff)."""
        try:
            await self.start()
            await self.transport.serve(self.session)
        finally:
            await self.close()

    async def session(self, source: Source, sink: Sink) -> None:
        """Consume on one connection (returns only by an exception)."""
        log.info("notify worker subscribed to %s", topics.alarm_filter(self.prefix))
        self.ready.set()
        limit = self.settings.notify.batch_max_messages
        wait_s = self.settings.notify.batch_wait_s
        while True:
            await self.handle_batch(source, await source.next_batch(limit, wait_s))

    def plan(self, data: dict[str, Any], local_now: Any) -> list[NewDelivery]:
        """The deliveries of one checked alarm message (none for updates and late alarms)."""
        event = data.get("event", "opened")
        if event not in EVENTS or (data.get("late") and not self.settings.notify.include_late):
            return []
        vehicle = self.vehicles.get(data["vehicle_id"])
        vehicle_class = vehicle.vehicle_class if vehicle else None
        level = level_of(data, vehicle_class, self.settings.alarms)
        note = notification(data, vehicle, level)
        routed = route(self.subscriptions, set(self.senders), note, local_now)
        stored = stored_message(note)
        return [
            NewDelivery(
                alarm_id=note.alarm_id,
                dedup_key=note.dedup_key,
                event=note.event,
                alarm_type=note.alarm_type,
                level=level,
                company_id=note.company_id,
                vehicle_id=note.vehicle_id,
                channel_id=channel_id,
                kind=self.senders[channel_id].channel.kind,
                target=self.senders[channel_id].target,
                status="pending" if send else "suppressed",
                message=stored,
                deferred=self.senders[channel_id].breaker.deferral() if send else None,
            )
            for channel_id, send in sorted(routed.items())
        ]

    async def handle_batch(self, source: Source, batch: list[BusDelivery]) -> None:
        """Route, record, acknowledge, hand over to the senders (module docstring)."""
        checked: list[dict[str, Any]] = []
        rejects: list[RejectedMessage] = []
        for message in batch:
            try:
                checked.append(parse_alarm_message(message.payload))
            except PayloadError as error:
                log.warning("notify: message on %s set aside: %s", message.topic, error)
                rejects.append(
                    RejectedMessage(
                        topic=message.topic,
                        payload=bytes(message.payload),
                        received_at=message.received_at,
                        reason=error.reason,
                        detail=error.detail,
                    )
                )
        if time.monotonic() - self._loaded_at > self.settings.notify.reload_interval_s:
            await self.retry(self.reload)
        unknown = any(d["vehicle_id"] not in self.vehicles for d in checked)
        if unknown and time.monotonic() - self._vehicles_at > 5.0:
            await self.retry(self.load_vehicles)
        local_now = datetime.now(self.zone).time()
        planned = [d for data in checked for d in self.plan(data, local_now)]
        new = await self.retry(lambda: self._record(planned, rejects))
        await source.ack(batch)
        self.recorded_messages += len(batch)
        for delivery in new:
            sender = self.senders.get(delivery.channel_id)
            if sender is not None:
                sender.offer(delivery)

    async def _record(
        self, planned: list[NewDelivery], rejects: list[RejectedMessage]
    ) -> list[Delivery]:
        pool = await self.pool()
        async with pool.acquire() as conn, conn.transaction():
            await save_rejected(conn, rejects)
            return await store.record_deliveries(conn, planned)


def _failure(outcome: Outcome) -> str:
    """A failed attempt in the breaker's words: the answer code, or our own error text when
    there is none (the receiver's answer text is the bureau's to read only)."""
    if outcome.ok:
        return ""
    if outcome.reply_code is not None:
        return f"unsuccessful answer, code {outcome.reply_code}"
    return outcome.reply[:120]


async def serve(settings: Settings, ready: asyncio.Event | None = None) -> None:
    """Run the notify worker until cancelled; ``ready`` is set once it is subscribed."""
    from gps_monitor.service import relay_ready

    if settings.bus.transport == "mqtt":
        mqtt.require_host(settings.mqtt)
    worker = NotifyWorker(settings)
    async with relay_ready(worker.ready, ready):
        await worker.run()
