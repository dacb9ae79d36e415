"""The live rules service: accepted positions in (MQTT), alarms out (database + MQTT).

Input: ``{prefix}positions/v2/{partition}``, a JSON array of :meth:`Position.to_dict` objects
(one committed ingest batch of that partition, many vehicles), published by ingest after its
commit (QoS 1). The worker holds
a persistent session and acknowledges manually (:mod:`gps_monitor.mqtt`), so nothing is lost
while it is down or crashes:

1. read every message already queued (up to ``rules.batch_max_messages``);
2. per vehicle, in fix-time order: new fixes run through the engine; a fix not newer than the
   vehicle's last evaluated one is a duplicate or a redelivery (skipped) unless ingest marked it
   ``late`` (blind-area upload): late fixes are re-evaluated with their stored neighbours
   (:meth:`RulesWorker.evaluate_late`) and their alarms are marked late;
3. one transaction: alarm events upserted by dedup key, changed vehicle states written;
4. after the commit: changed alarms published QoS 1 on
   ``{prefix}alarms/v1/{company_id}/{vehicle_id}/{type}`` as :meth:`Alarm.to_dict`, then the
   messages acknowledged in arrival order.

Batching, the order commit -> publish -> acknowledge, the database-outage policy (retried until the
database is back) and the interval stats are the shared batch consumer's
(:mod:`gps_monitor.bus.consumer`); this module keeps its own steps: evaluate -> save
(:meth:`RulesWorker.__call__`). The transport (:mod:`gps_monitor.bus`) is MQTT by default.

Partitions (``GPS_MONITOR_BUS_TRANSPORT=nats``): the process holds state and runs the offline
timer only for the vehicles of the partitions it owns (:attr:`RulesWorker.owned`; a vehicle's
partition is its terminal's, :func:`~gps_monitor.bus.partition.partition_of`). A gained
partition's states are loaded as last committed (after the lease is taken, which waits for the
previous owner's commit under way), a lost one's are forgotten; every commit, the offline
timer's too, passes the source's fence. On MQTT the one partition is always owned.

A crash before 3 loses nothing (the broker redelivers); after 3, redelivered fixes are older
than the committed state and skipped, so a restarted worker gives the same alarms as one that ran
through. The offline timer runs every ``rules.offline_check_interval_s`` on the wall clock over
every registered vehicle that has ever sent a message (``latest_positions``), including those
that went silent before the worker started (:meth:`RulesWorker._tick`).
A database error retries the batch (states are only replaced after a commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

import asyncpg

from gps_monitor import accepted, mqtt, topics
from gps_monitor.accepted import parse_positions
from gps_monitor.bus.base import Delivery, FencedOut, Sink, Source, Transport
from gps_monitor.bus.consumer import BatchConsumer, Fence, Outcome, retry_while_outage
from gps_monitor.bus.mqtt_transport import MqttTransport
from gps_monitor.bus.nats_transport import NatsTransport
from gps_monitor.bus.partition import partition_of
from gps_monitor.config import Settings
from gps_monitor.db import failures, registry
from gps_monitor.db.alarms import (
    QueuedAlarms,
    mark_published,
    overlapping_alarm_exists,
    pending_publications,
    save_alarm_events,
)
from gps_monitor.db.failures import Blame
from gps_monitor.db.geofences import geometry_fingerprint, load_geofences, load_routes
from gps_monitor.db.pool import create_pool
from gps_monitor.db.positions import (
    RejectedMessage,
    last_messages,
    save_rejected,
    vehicle_positions,
)
from gps_monitor.errors import PayloadError
from gps_monitor.models import Alarm, Position
from gps_monitor.service import relay_ready
from rules import fatigue, offline
from rules.context import GeoContext, LocalClock, RuleContext, VehicleProfile
from rules.driver_days import DriverDays
from rules.engine import Engine, VehicleState, merge_events
from rules.state import load_states, save_states

log = logging.getLogger(__name__)

T = TypeVar("T")

_NOT_FROM_LATE_DATA = ("offline", "offline_displacement")
# arrival times as the worker and the database hold them may differ in the last bit
_SAME_INSTANT_S = 1e-3


def _with_last_message(
    state: VehicleState, row: asyncpg.Record, ctx: RuleContext
) -> tuple[VehicleState, list[Alarm]]:
    """``state`` with its offline clock moved up to the stored last message when that is newer
    (or the worker never saw the vehicle). An open episode is closed by a stored message newer
    than its start: contact without a position (a heartbeat, issue 12) reaches the worker only
    this way. Returns the state and the closing event, if any."""
    off = state.rule(offline)
    last_t = row["last_message_t"]
    if off.open_t is not None:
        if last_t <= off.open_t + _SAME_INSTANT_S:
            return state, []
        off, closed = offline.seen(off, last_t, ctx)
        return VehicleState(state.last, {**state.rules, offline.NAME: off}, state.dumps), closed
    if off.last_seen_t is not None and off.last_seen_t >= last_t:
        return state, []
    if off.last_fix_t is None and row["fix_t"] is not None:
        off = offline.State(last_t, row["fix_t"], row["latitude"], row["longitude"], None)
    else:
        off = offline.State(last_t, off.last_fix_t, off.last_lat, off.last_lon, None)
    return VehicleState(state.last, {**state.rules, offline.NAME: off}, state.dumps), []


def _offline_watch(state: VehicleState, silent_since_t: float) -> bool:
    """Whether the offline timer must look at a vehicle whatever its stored last message: this
    worker last heard from it at or before ``silent_since_t`` (epoch s), or it has an open
    offline episode (which a stored heartbeat closes)."""
    off = state.rules.get(offline.NAME)
    if off is None:
        return False
    return off.open_t is not None or (
        off.last_seen_t is not None and off.last_seen_t <= silent_since_t
    )


def rules_client_id(settings: Settings) -> str:
    """The rules worker's MQTT client id (stable: the broker keeps its session under it)."""
    if settings.rules.client_id:
        return settings.rules.client_id
    base = settings.mqtt.client_id
    return base.replace("ingest", "rules") if "ingest" in base else f"{base}-rules"


@dataclass(frozen=True, slots=True)
class _Readable:
    """The positions of one vehicle in a message whose topic and payload could be read."""

    delivery: Delivery
    vehicle_id: int
    positions: list[Position]


def _readable(delivery: Delivery, prefix: str) -> list[_Readable]:
    """The positions of ``delivery`` per vehicle (in the order the vehicles first appear).

    Raises:
        PayloadError: a bad topic, a payload that is not positions, a position without a
            vehicle (ingest publishes only resolved ones).
    """
    topics.parse_accepted(delivery.topic, prefix)
    by_vehicle: dict[int, list[Position]] = {}
    for position in parse_positions(delivery.payload):
        if position.vehicle_id is None:
            raise PayloadError("missing_field", "vehicle_id: expected an integer, got null")
        by_vehicle.setdefault(position.vehicle_id, []).append(position)
    return [_Readable(delivery, vid, positions) for vid, positions in by_vehicle.items()]


def _rejected(
    delivery: Delivery, error: BaseException, positions: list[Position] | None = None
) -> RejectedMessage:
    """``delivery`` set aside because of ``error`` (a PayloadError keeps its reason); with
    ``positions``, only those (one vehicle's share of the message) are kept as its payload."""
    if isinstance(error, PayloadError):
        reason, detail = error.reason, error.detail
    else:
        reason, detail = failures.set_aside_reason(error)
    log.warning("rules: setting aside the message on %s: %s: %s", delivery.topic, reason, detail)
    payload = delivery.payload if positions is None else accepted.encode(positions)
    return RejectedMessage(delivery.topic, payload, datetime.now(UTC), reason, detail)


class RulesWorker:
    """The rules service. :meth:`run` reconnects forever. ``ready`` is set once subscribed and
    the alarm outbox is published."""

    PUBLISH_TIMEOUT_S = 30.0  # no PUBACK for an alarm by then: reconnect (the outbox resends)
    PIPELINE_DEPTH = 4  # committed batches publishing/acking at once
    REPORT_INTERVAL_S = 10.0

    def __init__(self, settings: Settings, transport: Transport | None = None) -> None:
        self.settings = settings
        self.prefix = settings.mqtt.topic_prefix
        self.engine = Engine()
        self.local = LocalClock(settings.rules.timezone)
        self.states: dict[int, VehicleState] = {}
        self.written: dict[int, str] = {}
        self.driver_days = DriverDays()  # drivers' daily driving across vehicles
        self.profiles: dict[int, VehicleProfile] = {}
        self.geo = GeoContext([], [])
        self.ready = asyncio.Event()
        self.lock = asyncio.Lock()
        self.processed_positions = 0
        self._pool: asyncpg.Pool | None = None
        self._loaded_at = 0.0
        self._geo_fingerprint: tuple[Any, ...] | None = None
        self._max_lag_s = 0.0
        self._sink: Sink | None = None
        if transport is None and settings.bus.transport == "nats":
            transport = NatsTransport(settings, "rules")
        # partitions this process owns (MQTT: the only one); rules keeps state and runs the
        # offline timer only for their vehicles
        nats = settings.bus.transport == "nats"  # owns nothing until the source says so
        self.owned: frozenset[int] = frozenset() if nats else frozenset({0})
        self._source: Source | None = None
        self._partitions: dict[str, int] = {}  # terminal id -> partition (FNV-1a, cached)
        self.transport: Transport = transport or MqttTransport(
            settings.mqtt,
            client_id=rules_client_id(settings),
            subscriptions=[topics.accepted_filter(self.prefix)],
            # a batch fills while acks wait for the commit
            receive_maximum=settings.rules.receive_maximum,
            publish_timeout_s=self.PUBLISH_TIMEOUT_S,
        )
        self.consumer = BatchConsumer(
            "rules",
            self,
            batch_limit=settings.rules.batch_max_messages,
            batch_wait_s=settings.rules.batch_wait_s,
            pipeline_depth=self.PIPELINE_DEPTH,
            report=self._report,
            report_interval_s=self.REPORT_INTERVAL_S,
        )

    # --- setup ---------------------------------------------------------------------------

    async def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await create_pool(self.settings.database, min_size=1, max_size=4)
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def reload(self) -> None:
        """Vehicles from the database; geofences, routes and assignments too when they changed
        since the last load (the geometry indexes are rebuilt only then)."""
        pool = await self.pool()
        rows = await registry.rule_settings(pool)
        fingerprint = await geometry_fingerprint(pool)
        if fingerprint != self._geo_fingerprint:
            routes = await load_routes(pool)
            self.geo = GeoContext(await load_geofences(pool), routes)
            self._geo_fingerprint = fingerprint
        by_vehicle: dict[int, list[str]] = {}
        for route in self.geo.routes.values():
            for vehicle_id in route.vehicle_ids:
                by_vehicle.setdefault(vehicle_id, []).append(route.id)
        self.profiles = {
            r["id"]: VehicleProfile(
                vehicle_id=r["id"],
                company_id=r["company_id"],
                terminal_id=r["terminal_id"],
                vehicle_class=r["vehicle_class"],
                speed_limit_kmh=r["speed_limit_kmh"],
                night_ban_exempt=r["night_ban_exempt"],
                route_ids=tuple(sorted(by_vehicle.get(r["id"], ()))),
            )
            for r in rows
        }
        self._loaded_at = time.monotonic()

    def partition_of_vehicle(self, vehicle_id: int) -> int | None:
        """The bus partition of a registered vehicle (its terminal's), None if unknown."""
        profile = self.profiles.get(vehicle_id)
        if profile is None:
            return None
        cached = self._partitions.get(profile.terminal_id)
        if cached is None:
            cached = partition_of(profile.terminal_id, self.settings.bus.partition_count)
            self._partitions[profile.terminal_id] = cached
        return cached

    def owns(self, vehicle_id: int) -> bool:
        return self.partition_of_vehicle(vehicle_id) in self.owned

    async def restore(self, partitions: frozenset[int]) -> None:
        """Vehicle states as last committed, of the vehicles of ``partitions`` (added to what
        is held)."""
        wanted = [v for v in self.profiles if self.partition_of_vehicle(v) in partitions]
        everything = partitions >= frozenset(range(self.settings.bus.partition_count))
        mine = await load_states(await self.pool(), None if everything else wanted)
        self.states.update((vid, state) for vid, (state, _) in mine.items())
        self.written.update((vid, text) for vid, (_, text) in mine.items())
        self.driver_days.restore(
            (vid, state.rules[fatigue.NAME].driver_days)
            for vid, (state, _) in mine.items()
            if fatigue.NAME in state.rules
        )
        log.info(
            "rules worker restored the state of %d vehicle(s) of %d partition(s)",
            len(mine),
            len(partitions),
        )

    async def _ownership_changed(self, gained: frozenset[int], lost: frozenset[int]) -> None:
        """The source gained or lost partitions (NATS): forget the lost vehicles' states, load
        the gained ones' as last committed (the lease taken before this call waited for the
        previous owner's last commit)."""
        async with self.lock:
            if lost:
                gone = [v for v in self.states if self.partition_of_vehicle(v) in lost]
                for vehicle_id in gone:
                    self.states.pop(vehicle_id, None)
                    self.written.pop(vehicle_id, None)
                self.driver_days.forget(gone)
            self.owned = (self.owned - lost) | gained
            if gained:
                if time.monotonic() - self._loaded_at > 1.0:  # many gains come together
                    await self._retry(self.reload)
                await self._retry(partial(self.restore, gained))

    def context(self, profile: VehicleProfile, *, late: bool = False) -> RuleContext:
        return RuleContext(
            vehicle=profile,
            settings=self.settings.rules,
            quality=self.settings.quality,
            geo=self.geo,
            local=self.local,
            late=late,
            clock="fix" if late else "wall",
            levels=self.settings.alarms,
            driver_days=self.driver_days,
        )

    # --- service -------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until cancelled (connect, consume, reconnect with backoff)."""
        try:
            await self.reload()
            await self.restore(self.owned)
            await self.transport.serve(self._session)
        finally:
            await self.close()

    async def _session(self, source: Source, sink: Sink) -> None:
        """Consume on one connection (returns only by an exception): the alarm outbox first,
        then batches, with the offline timer beside them."""
        self._sink = sink
        self._source = source
        if self.settings.bus.transport == "nats":
            source.on_ownership_change(self._ownership_changed)
        log.info(
            "rules worker consuming %s through %s",
            topics.accepted_filter(self.prefix),
            self.settings.bus.described,
        )
        await self._publish_all(await self._retry(self._pending_publications))
        self.ready.set()
        timer = asyncio.create_task(self._offline_timer())
        try:
            await self.consumer.run(source, sink)
        finally:
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer
            self._sink = None

    async def reset(self) -> None:
        """Nothing to forget: states are replaced in memory only after a commit."""

    async def __call__(self, deliveries: list[Delivery], fence: Fence) -> Outcome:
        """The step: evaluate and save ``deliveries`` (module docstring, 1-3); returns the
        changed alarms to publish and their outbox rows to delete once they are acknowledged.

        A message that cannot be read (not JSON, too deep, not positions, a bad topic) or whose
        evaluation fails on its own for any reason other than a database outage is set aside
        in ``rejected_messages`` with its reason, in the same transaction as the batch's
        alarms, and acknowledged with it: one bad message never stops the worker.

        Raises:
            an outage: nothing was committed (the consumer retries the batch).
            FencedOut: this process lost a partition of the batch; nothing was committed.
        """
        started = time.perf_counter()
        readable: list[_Readable] = []
        set_aside: list[RejectedMessage] = []
        for delivery in deliveries:
            try:
                readable += _readable(delivery, self.prefix)
            except Exception as error:  # whatever it raised, the message caused it
                set_aside.append(_rejected(delivery, error))
        if time.monotonic() - self._loaded_at > self.settings.rules.reload_interval_s or any(
            r.vehicle_id not in self.profiles for r in readable
        ):
            await self.reload()
        try:
            changed = await self._evaluate_and_commit(fence, readable, set_aside)
        except FencedOut:
            raise
        except Exception as error:
            if failures.is_outage(error):
                raise
            log.warning(
                "rules: batch of %d message(s) failed (%r); evaluating it message by message",
                len(deliveries),
                error,
            )
            changed = await self._one_by_one(fence, readable, set_aside)
        now = time.time()
        for r in readable:
            if r.positions and r.positions[-1].received_at is not None:
                self._max_lag_s = max(
                    self._max_lag_s, now - r.positions[-1].received_at.timestamp()
                )
        self.consumer.counts["positions"] += sum(len(r.positions) for r in readable)
        self.consumer.counts["evaluate_s"] += time.perf_counter() - started
        return Outcome(
            [self._alarm_message(alarm) for alarm in changed.alarms],
            (lambda: self._mark_published(changed)) if changed.alarms else None,
        )

    async def _one_by_one(
        self, fence: Fence, readable: list[_Readable], set_aside: list[RejectedMessage]
    ) -> QueuedAlarms:
        """Commit a failed batch one vehicle of one message per transaction, in arrival order;
        one that fails on its own (not an outage) is set aside with its reason (its positions
        as the payload). Each commit is
        retried through an outage on its own (the alarms of those already committed must still
        be published with this batch)."""
        changed = await self._retry(lambda: self._evaluate_and_commit(fence, [], set_aside))
        for item in readable:
            try:
                changed += await self._retry(partial(self._evaluate_and_commit, fence, [item]))
            except FencedOut:
                raise
            except Exception as error:
                if await failures.blame(error, await self.pool()) is Blame.OUTAGE:
                    raise
                log.error(
                    "rules: vehicle %s's positions on %s set aside: %r",
                    item.vehicle_id, item.delivery.topic, error,
                )  # fmt: skip
                rejected = [_rejected(item.delivery, error, item.positions)]
                changed += await self._retry(
                    partial(self._evaluate_and_commit, fence, [], rejected)
                )
        return changed

    def _report(self, d: dict[str, float], elapsed_s: float) -> None:
        """Log one interval's throughput, batch time and lag (now - received_at of the newest
        position of each vehicle, i.e. ingest + broker + queueing)."""
        log.info(
            "rules: %d positions in %d messages, %d batches in %.0f s (%.0f positions/s, "
            "mean batch %.1f ms, busy %.0f %%, max lag since received_at %.0f ms; "
            "evaluate+commit %.1f s, publish %.1f s, ack %.1f s)",
            d["positions"], d["messages"], d["batches"], elapsed_s, d["positions"] / elapsed_s,
            d["step_s"] / max(d["batches"], 1) * 1000, d["step_s"] / elapsed_s * 100,
            self._max_lag_s * 1000, d["step_s"], d["publish_s"], d["ack_s"],
        )  # fmt: skip
        self._max_lag_s = 0.0

    async def _retry(self, action: Callable[[], Awaitable[T]]) -> T:
        """``await action()`` through database outages (:func:`retry_while_outage`)."""
        return await retry_while_outage(action, "rules")

    async def _evaluate_and_commit(
        self, fence: Fence, readable: list[_Readable], set_aside: Sequence[RejectedMessage] = ()
    ) -> QueuedAlarms:
        """One transaction (fenced before its commit): the alarms of the positions of
        ``readable`` (per vehicle, in fix-time order), the changed vehicle states and the
        ``set_aside`` messages. States are replaced
        in memory only after the commit. Returns the changed alarms (to publish) with their
        outbox rows."""
        by_vehicle: dict[int, list[Position]] = {}
        for item in readable:
            by_vehicle.setdefault(item.vehicle_id, []).extend(item.positions)
        async with self.lock:
            events: list[Alarm] = []
            new_states: dict[int, VehicleState] = {}
            late_jobs: list[tuple[VehicleProfile, list[Position]]] = []
            for vehicle_id, positions in by_vehicle.items():
                profile = self.profiles.get(vehicle_id)
                if profile is None:
                    log.warning(
                        "rules: vehicle %s is not registered; positions skipped", vehicle_id
                    )
                    continue
                ctx = self.context(profile)
                state = self.states.get(vehicle_id) or VehicleState()
                late: list[Position] = []
                for position in sorted(positions, key=lambda p: p.fix_time):
                    if position.late:
                        # ingest judged it by arrival order: it came after a newer fix of the
                        # vehicle, so it is late even when it is newer than what this worker
                        # has evaluated (both in one batch)
                        late.append(position)
                        continue
                    if self.engine.order(state, position) == "new":
                        state, out = self.engine.process(state, position, ctx)
                        events += out
                        self.processed_positions += 1
                new_states[vehicle_id] = state
                if late:
                    late_jobs.append((profile, late))
            pool = await self.pool()
            async with pool.acquire() as conn, conn.transaction():
                for profile, late in late_jobs:
                    events += await self.evaluate_late(conn, profile, late)
                changed = await save_alarm_events(conn, events)
                written = await save_states(conn, new_states, self.written)
                await save_rejected(conn, set_aside)
                await fence(conn)
            self.states.update(new_states)
            self.written.update(written)
            return changed

    async def evaluate_late(
        self, conn: asyncpg.Connection, profile: VehicleProfile, late: list[Position]
    ) -> list[Alarm]:
        """Re-evaluate late fixes with their stored neighbours (``rules.late_context_s`` either
        side), from a fresh state; keep the alarms that start within the late fixes' span, have
        ended within the window, and overlap no alarm already raised. Marked ``late``."""
        t_min = min(p.fix_time for p in late)
        t_max = max(p.fix_time for p in late)
        margin = timedelta(seconds=self.settings.rules.late_context_s)
        window = await vehicle_positions(
            conn, profile.vehicle_id, t_min - margin, t_max + margin + timedelta(microseconds=1)
        )
        stored = {p.fix_time: p for p in window}
        for position in late:  # in case ingest has not stored them (should not happen)
            stored.setdefault(position.fix_time, position)
        ctx = self.context(profile, late=True)
        state = VehicleState()
        events: list[Alarm] = []
        for fix_time in sorted(stored):
            state, out = self.engine.process(state, stored[fix_time], ctx)
            events += out
        kept: list[Alarm] = []
        for alarm in merge_events(events):
            if alarm.alarm_type in _NOT_FROM_LATE_DATA or alarm.ended_at is None:
                continue
            if not t_min <= alarm.started_at <= t_max:
                continue
            if await overlapping_alarm_exists(conn, alarm):
                continue
            kept.append(alarm)
        if kept:
            log.info("rules: %d late alarm(s) for vehicle %s", len(kept), profile.vehicle_id)
        return kept

    async def _pending_publications(self) -> QueuedAlarms:
        return await pending_publications(await self.pool())

    async def _publish_all(self, queued: QueuedAlarms) -> None:
        """Publish queued alarm events (sent in order; the PUBACKs are awaited together), then
        take them out of ``alarm_outbox`` (unless queued again since). A failure leaves them
        there: the next session republishes them."""
        if not queued.alarms:
            return
        assert self._sink is not None
        await self._sink.publish([self._alarm_message(alarm) for alarm in queued.alarms])
        await self._mark_published(queued)

    async def _mark_published(self, queued: QueuedAlarms) -> None:
        """Delete the outbox rows of acknowledged ``queued`` alarms (:func:`mark_published`:
        a later change of one of them, queued since, stays), through database outages."""
        pool = await self.pool()
        await self._retry(lambda: mark_published(pool, queued.batch_ids))

    def _alarm_message(self, alarm: Alarm) -> tuple[str, bytes]:
        """``(topic, payload)`` of one alarm event: ``alarms/v1/...``, :meth:`Alarm.to_json`."""
        topic = topics.alarm_topic(
            alarm.company_id, alarm.vehicle_id, alarm.alarm_type, self.prefix
        )
        return topic, alarm.to_json()

    async def _offline_timer(self) -> None:
        interval = self.settings.rules.offline_check_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                changed = await self._retry(self._tick)
            except FencedOut as error:  # a partition moved meanwhile: its new owner ticks it
                log.info("rules: offline check not committed: %s", error)
                continue
            await self._publish_all(changed)

    async def _tick(self) -> QueuedAlarms:
        """The offline timer (DOMAIN.md, Online / offline): every registered vehicle that has
        sent at least one message (``latest_positions.last_message_at``, written by ingest)
        is checked, also one this worker has not seen since it (re)started; its last message
        is the later of what the worker evaluated and what ingest stored, heartbeats included
        (which also close an open episode). A vehicle that never
        sent anything is not connected (入网率), not offline: no alarm. Only the vehicles of
        the owned partitions are read and checked. Returns the changed alarms (to publish)
        with their outbox row.

        Only the candidates are read and evaluated (:func:`_offline_watch`): the vehicles
        silent for ``rules.offline_after_s`` by the stored last message or by this worker's
        state, and those with an open episode (a stored heartbeat closes it). Any other
        vehicle was heard from within ``offline_after_s``: it can neither open nor close an
        episode, so a province's tick costs its silent vehicles, not its fleet. The read is
        made before the batch lock is taken (a batch committed meanwhile only makes a clock
        newer, which the evaluation under the lock sees)."""
        now = time.time()
        silent_since_t = now - self.settings.rules.offline_after_s
        watched = [v for v, s in self.states.items() if _offline_watch(s, silent_since_t)]
        pool = await self.pool()
        everything = self.owned >= frozenset(range(self.settings.bus.partition_count))
        owned = None if everything else [v for v in self.profiles if self.owns(v)]
        rows = await last_messages(  # only the owned vehicles' rows
            pool, owned, silent_since_t=silent_since_t, including=watched
        )
        async with self.lock:
            events: list[Alarm] = []
            new_states: dict[int, VehicleState] = {}
            stored = {r["vehicle_id"]: r for r in rows}
            for vehicle_id in stored.keys() | watched:
                profile = self.profiles.get(vehicle_id)
                if profile is None or not self.owns(vehicle_id):
                    continue
                state = self.states.get(vehicle_id) or VehicleState()
                ctx = self.context(profile)
                row = stored.get(vehicle_id)
                closed: list[Alarm] = []
                if row is not None:
                    state, closed = _with_last_message(state, row, ctx)
                new, out = self.engine.tick(state, now, ctx)
                if closed or out:
                    events += closed + out
                    new_states[vehicle_id] = new
            if not events:
                return QueuedAlarms()
            partitions = frozenset(
                p for p in map(self.partition_of_vehicle, new_states) if p is not None
            )
            async with pool.acquire() as conn, conn.transaction():
                changed = await save_alarm_events(conn, events)
                written = await save_states(conn, new_states, self.written)
                if self._source is not None:
                    await self._source.fence(conn, partitions)
            self.states.update(new_states)
            self.written.update(written)
            return changed


async def serve(settings: Settings, ready: asyncio.Event | None = None) -> None:
    """Run the rules worker until cancelled; ``ready`` is set once it is subscribed (the
    service entry point of ``gps-monitor demo``)."""
    mqtt.require_host(settings.mqtt)
    worker = RulesWorker(settings)
    async with relay_ready(worker.ready, ready):
        await worker.run()
