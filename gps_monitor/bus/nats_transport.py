"""The NATS JetStream transport: vehicles partitioned over processes, one owner per partition.

Streams and consumers (:mod:`gps_monitor.bus.nats_names`) are provisioned idempotently by every
process at start (:func:`provision`): the inbound stream captures ``gps.v1.*.*`` (terminals
publish MQTT to the server's MQTT listener, or natively) and stores each message under
``in.<partition>.…`` by the ``partition(P,1)`` subject transform (FNV-1a of the terminal id,
:func:`~gps_monitor.bus.partition.partition_of`). It has no limit that discards new messages:
NATS's MQTT PUBACK does not vouch for the stream write when one does (issue 13); old messages go
by interest (acknowledged by every consumer) or after ``mqtt.session_expiry_s``.

Ownership comes from the engine: each stage has one durable pull consumer per partition
(``rules-p07``) in the priority group ``owners`` with the **pinned-client** policy. The server
pins the first pull request it serves a message to (the message carries ``Nats-Pin-Id``); from
then on it serves only requests that repeat that id and answers any other with ``423``; a pin
whose holder sends no pull request for ``priority_timeout`` (= ``bus.owner_timeout_s``) is
dropped and the next waiting request is pinned. (nats-server ``server/consumer.go``:
``nextWaiting``, ``processNextMsgRequest``, ``setPinnedTimer``.)

This source pulls in the background, so the pin is kept while the worker is busy:

- owned partitions: a pull request with the pin id at least every ``owner_timeout_s / 3``;
  a ``423`` answer means the pin moved: the partition is lost;
- partitions this process prefers and does not own: a pull request without id, waiting (the
  server serves it once the partition is unpinned); when nothing comes it publishes a claim
  message (``claim.<stage>.<p>``) so an idle partition gets an owner too;
- the rest: nothing (they belong to other live processes).

Flow control: an owned partition asks for at most its share of ``max_buffered`` (split over
the partitions this process prefers or owns) less what it has received and not acknowledged, and
for nothing (a pull for at most 1 byte, which renews the pin and brings no message) while the
oldest delivery not yet handed out has waited half the ack wait: a message that waits here past
the ack wait is redelivered, and a copy can come after the first was acknowledged. Sequences
acknowledged in the last six ack waits are remembered, and such a late copy is acknowledged
again instead of being handed out twice (under a flood of terminals' messages, nats-server
redelivered some messages 10-21 s after they were acknowledged).

Preference spreads partitions: processes of a stage announce themselves every second on
``gpsm.members.<stage>`` (core NATS) and each partition is preferred by the live member with the
highest FNV-1a score of (name, partition) (rendezvous hashing). An owner that is not the
preferred member of a partition whose preferred member is live releases it: it stops pulling
and handing out, waits for what it handed out to be acknowledged, returns the rest (NAK, in
stream order: the next owner receives it first, in order), then unpins it
(``$JS.API.CONSUMER.UNPIN``).

On gaining a partition the source takes its lease (:mod:`gps_monitor.bus.fencing`: the epoch is
bumped) and tells the worker (``on_ownership_change``) before handing out any of its messages;
:meth:`NatsSource.fence` checks the epochs inside each commit. Ack wait is half the owner timeout,
so what a dead owner had received is redelivered before its partition moves; the new owner holds
a gained partition's deliveries for one ack wait and hands them out in stream order (the
redeliveries come in the order their ack waits ran out, not necessarily the stream's).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from gps_monitor.bus.base import (
    Delivery,
    FencedOut,
    OwnershipListener,
    Session,
    TransportError,
)
from gps_monitor.bus.fencing import PartitionFence
from gps_monitor.bus.nats_names import PRIORITY_GROUP, STAGES, NatsNames, Stage
from gps_monitor.config import Settings
from gps_monitor.service import wait_until_set

log = logging.getLogger(__name__)

_NS = 1_000_000_000
_PIN_HEADER = "Nats-Pin-Id"


class NatsApiError(TransportError):
    """A JetStream API request was refused (its error code and description)."""


async def _api(nc: NatsClient, subject: str, body: dict[str, Any], timeout_s: float = 10.0) -> Any:
    try:
        reply = await nc.request(subject, json.dumps(body).encode(), timeout=timeout_s)
    except (nats.errors.Error, TimeoutError) as error:
        raise TransportError(f"{subject}: {error!r}") from error
    data = json.loads(reply.data)
    if "error" in data:
        raise NatsApiError(f"{subject}: {data['error']}")
    return data


def stream_configs(settings: Settings) -> list[dict[str, Any]]:
    """The three streams' configurations (JetStream API JSON)."""
    names = NatsNames(settings.mqtt.topic_prefix)
    sp = names.subject_prefix
    src, dest = names.inbound_transform(settings.bus.partitions)
    common: dict[str, Any] = {
        "storage": "file",
        "num_replicas": settings.bus.stream_replicas,
        "discard": "old",  # never refuse a new message (see the module docstring)
        "max_age": int(settings.mqtt.session_expiry_s * _NS),
        "duplicate_window": 2 * 60 * _NS,
    }
    return [
        {
            **common,
            "name": names.inbound_stream,
            "subjects": [f"{sp}gps.v1.*.*", f"{sp}claim.ingest.*"],
            "subject_transform": {"src": src, "dest": dest},
            "retention": "interest",
        },
        {
            **common,
            "name": names.positions_stream,
            "subjects": [f"{sp}positions.v2.*", f"{sp}claim.rules.*"],
            "retention": "limits",  # also read by web, jt809 and benchmarks from a time
        },
        {**common, "name": names.alarms_stream, "subjects": [f"{sp}alarms.v1.>"]},
    ]


def ack_wait_s(settings: Settings) -> float:
    """The partition consumers' ack wait: half the owner timeout, so what a dead owner had
    received is redelivered before its partitions move (module docstring)."""
    return settings.bus.owner_timeout_s / 2


def consumer_config(settings: Settings, stage: Stage, partition: int) -> dict[str, Any]:
    """One stage-and-partition consumer (pinned-client priority group)."""
    names = NatsNames(settings.mqtt.topic_prefix)
    timeout_ns = int(settings.bus.owner_timeout_s * _NS)
    return {
        "durable_name": names.consumer(stage, partition),
        "filter_subjects": names.partition_filter(stage, partition),
        "deliver_policy": "all",
        "ack_policy": "explicit",
        "ack_wait": int(ack_wait_s(settings) * _NS),
        "max_deliver": -1,
        "max_ack_pending": 50_000,
        "max_waiting": 512,
        "priority_groups": [PRIORITY_GROUP],
        "priority_policy": "pinned_client",
        "priority_timeout": timeout_ns,
    }


async def connect(settings: Settings, role: str, **options: Any) -> NatsClient:
    """A connection to the configured NATS servers (``bus.nats_url``, comma-separated), named
    ``gps-monitor-{role}-{client_name}``; tries again with backoff (1 s doubling to 30 s) until
    one answers. Once connected, nats-py reconnects by itself (without limit). ``options`` go
    to ``nats.connect`` (e.g. ``disconnected_cb``)."""
    servers = [s.strip() for s in settings.bus.nats_url.split(",") if s.strip()]
    delay = 1.0
    while True:
        try:
            return await nats.connect(
                servers=servers,
                name=f"gps-monitor-{role}-{settings.bus.client_name}",
                max_reconnect_attempts=-1,
                reconnect_time_wait=1,
                **options,
            )
        except (nats.errors.Error, OSError, TimeoutError) as error:
            log.error("NATS connect failed (%r); again in %.0f s", error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


async def provision(nc: NatsClient, settings: Settings) -> None:
    """Create or update the streams and every stage's partition consumers (idempotent: run by
    every process at start). Raises :class:`NatsApiError` when the server refuses (e.g. it is
    older than 2.11, or P changed on existing consumers)."""
    for config in stream_configs(settings):
        try:
            await _api(nc, f"$JS.API.STREAM.CREATE.{config['name']}", config)
        except NatsApiError as error:
            if "already in use" not in str(error):
                raise
            await _api(nc, f"$JS.API.STREAM.UPDATE.{config['name']}", config)
    names = NatsNames(settings.mqtt.topic_prefix)
    for stage in STAGES:
        stream = names.stage_stream(stage)
        for p in range(settings.bus.partitions):
            config = consumer_config(settings, stage, p)
            await _api(
                nc,
                f"$JS.API.CONSUMER.CREATE.{stream}.{config['durable_name']}",
                {"stream_name": stream, "config": config},
            )


def preferred_member(members: Sequence[str], partition: int) -> str | None:
    """The member that prefers ``partition`` (rendezvous hashing over live members)."""
    if not members:
        return None
    return max(members, key=lambda m: (_score(m, partition), m))


def _score(member: str, partition: int) -> bytes:
    return hashlib.blake2b(f"{member}/{partition}".encode(), digest_size=8).digest()


@dataclass(slots=True)
class _Partition:
    number: int
    pin: str | None = None  # our pin id while we own it
    epoch_taken: bool = False
    releasing: bool = False
    handed_out: int = 0  # deliveries handed to the worker, not yet acknowledged
    unacked: int = 0  # received, neither acknowledged nor returned (queued, held, handed out)
    room_wanted: bool = False  # its pull loop waits for acknowledgements to ask for more
    request: int = 0  # sequence of our current pull request
    request_open: bool = False
    request_batch: int = 0  # messages asked for by the current request
    request_served: int = 0  # messages it brought so far
    held: list[Delivery] | None = None  # just gained: deliveries sorted before handing out
    gains: int = 0  # times gained (a settle belongs to one gain)
    open_since: float = 0.0
    last_data: float = 0.0  # monotonic time of the last message received (or claim sent)
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class NatsSource:
    """One stage's partitions on one NATS connection (:class:`~gps_monitor.bus.base.Source`).

    Args:
        nc: a connected client.
        settings: bus, mqtt (topic prefix) and database (the fence) settings.
        stage: ``ingest`` or ``rules``.
        fence: the lease table access; one per process and stage.
        max_buffered: deliveries received and not yet acknowledged, at most (while ownership
            is settled); each partition pulls for its share, ``max_buffered`` over the
            partitions this process prefers or owns (flow control, :meth:`_room`).
    """

    HEARTBEAT_S = 1.0
    # measured: under a flood of terminals' messages on a 2-core box, nats-server redelivered
    # some messages 10-21 s after they were acknowledged (ack wait 5 s)
    ACKED_MEMORY_WAITS = 6

    def __init__(
        self,
        nc: NatsClient,
        settings: Settings,
        stage: Stage,
        fence: PartitionFence,
        *,
        max_buffered: int = 10_000,
    ) -> None:
        self.nc = nc
        self.settings = settings
        self.stage = stage
        self.names = NatsNames(settings.mqtt.topic_prefix)
        self.stream = self.names.stage_stream(stage)
        self.me = settings.bus.client_name
        self.timeout_s = settings.bus.owner_timeout_s
        self.fencer = fence
        self.max_buffered = max_buffered
        self.partitions = {p: _Partition(p) for p in range(settings.bus.partitions)}
        self.ack_wait_s = ack_wait_s(settings)
        # each partition's pull budget: max_buffered over the partitions this process prefers
        # or owns (all of them until the first heartbeat; see _rebalance)
        self._share = max(1, max_buffered // len(self.partitions))
        # stream sequences acknowledged in the last ACKED_MEMORY_WAITS ack waits, one list per
        # ack call (flow control, module docstring)
        self._acked: set[int] = set()
        self._acked_at: deque[tuple[float, list[int]]] = deque()
        self._queue: deque[Delivery] = deque()
        # stream sequence -> (partition, ack subjects) of deliveries received and not yet
        # acknowledged: a message that comes again meanwhile is not handed out twice (nats-server
        # 2.15 delivers a message published through its MQTT listener twice at once)
        self._in_flight: dict[int, tuple[int, list[str]]] = {}
        self._arrived = asyncio.Event()
        self._listeners: list[OwnershipListener] = []
        self._members: dict[str, float] = {self.me: time.monotonic()}
        self._member_since: dict[str, float] = {self.me: time.monotonic()}
        self._tasks: list[asyncio.Task[None]] = []
        self._subs: list[Subscription] = []
        self._inbox = nc.new_inbox()
        self._failed: BaseException | None = None
        self._lock = asyncio.Lock()  # gains and losses one at a time, in order
        self._members_subject = f"{self.names.subject_prefix}gpsm.members.{stage}"

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe and start pulling (call once)."""
        members = self._members_subject
        self._subs.append(await self.nc.subscribe(members, cb=self._on_member))
        self._subs.append(
            await self.nc.subscribe(
                f"{self._inbox}.*.*", cb=self._on_reply, pending_msgs_limit=1_000_000
            )
        )
        self._tasks.append(asyncio.create_task(self._announce(members)))
        for part in self.partitions.values():
            self._tasks.append(asyncio.create_task(self._pull_loop(part)))

    async def stop(self, *, leave: bool = True) -> None:
        """Stop pulling and unsubscribe. ``leave``: say goodbye to the other members and give
        up the owned partitions (what they had not acknowledged returned in order, unpinned),
        so they move at once instead of after the owner timeout."""
        if leave:
            with contextlib.suppress(nats.errors.Error):
                await self.nc.publish(self._members_subject, b"-" + self.me.encode())
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if leave:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._leave(), self.timeout_s)
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _leave(self) -> None:
        for part in self.partitions.values():
            if part.epoch_taken:
                await self._lost(part, "leaving", unpin=True)

    # --- Source --------------------------------------------------------------------------

    @property
    def owned_partitions(self) -> frozenset[int]:
        return frozenset(p.number for p in self.partitions.values() if p.epoch_taken)

    def on_ownership_change(self, listener: OwnershipListener) -> None:
        self._listeners.append(listener)

    async def next_batch(self, limit: int, wait_s: float) -> list[Delivery]:
        """See :meth:`~gps_monitor.bus.base.Source.next_batch`; deliveries of a partition lost
        meanwhile are left unacknowledged (the new owner receives them)."""
        loop = asyncio.get_running_loop()
        while True:
            self._raise_if_failed()
            while not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
                self._raise_if_failed()
            deadline = loop.time() + wait_s
            while len(self._queue) < limit:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                await asyncio.sleep(min(remaining, 0.005))  # replies arrive meanwhile
            batch: list[Delivery] = []
            while self._queue and len(batch) < limit:
                delivery = self._queue.popleft()
                part = self.partitions[delivery.partition]
                if part.epoch_taken and not part.releasing:
                    part.handed_out += 1
                    batch.append(delivery)
            if batch:
                return batch

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """``+ACK`` each delivery (in the order given); partitions waiting for room pull again."""
        publish = self.nc.publish
        now = time.monotonic()
        acked: list[int] = []
        for delivery in deliveries:
            reply, _ = delivery.token
            sequence = delivery.message_id or -1
            entry = self._in_flight.pop(sequence, None)
            if entry is None:
                replies = [reply]
            else:
                replies = entry[1]
                owner = self.partitions[entry[0]]
                owner.unacked = max(0, owner.unacked - 1)
            if sequence not in self._acked:  # before publishing: a publish may yield
                self._acked.add(sequence)
                acked.append(sequence)
            for subject in replies:
                await publish(subject, b"+ACK")
            part = self.partitions[delivery.partition]
            part.handed_out = max(0, part.handed_out - 1)
        if acked:
            self._acked_at.append((now, acked))
        horizon = now - self.ACKED_MEMORY_WAITS * self.ack_wait_s
        while self._acked_at and self._acked_at[0][0] < horizon:
            self._acked.difference_update(self._acked_at.popleft()[1])
        for part in self.partitions.values():
            if part.room_wanted:
                part.wake.set()

    async def fence(self, conn: asyncpg.Connection, partitions: frozenset[int]) -> None:
        """Raises :class:`FencedOut` unless every one of ``partitions`` is still ours in the
        lease table (checked in ``conn``'s transaction, rows share-locked until it ends)."""
        try:
            await self.fencer.check(conn, partitions)
        except FencedOut:
            # taken over while we were not looking (e.g. stopped). The batch is dropped
            # unacknowledged, with deliveries of partitions still ours too: those are given up
            # as well (unpinned, their deliveries returned), so they come again in order
            for p in partitions:
                if self.partitions[p].epoch_taken:
                    still_ours = p in self.fencer.epochs  # never unpin the new owner
                    self._background(self._lost(self.partitions[p], "fenced out", unpin=still_ours))
            raise

    def _background(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.append(task)
        task.add_done_callback(self._forget_task)

    def _forget_task(self, task: asyncio.Task[None]) -> None:
        if task in self._tasks:
            self._tasks.remove(task)

    # --- membership ----------------------------------------------------------------------

    async def _announce(self, subject: str) -> None:
        while True:
            with contextlib.suppress(nats.errors.Error):
                await self.nc.publish(subject, self.me.encode())
            self._rebalance()
            await asyncio.sleep(self.HEARTBEAT_S)

    async def _on_member(self, msg: Msg) -> None:
        name = msg.data.decode(errors="replace")
        if name.startswith("-"):  # a member leaving
            self._members.pop(name[1:], None)
            self._rebalance()
            return
        now = time.monotonic()
        if name not in self._members or now - self._members[name] > self.timeout_s:
            self._member_since[name] = now
        self._members[name] = now

    def live_members(self) -> list[str]:
        now = time.monotonic()
        self._members[self.me] = now
        return sorted(m for m, seen in self._members.items() if now - seen <= self.timeout_s)

    def prefers(self, partition: int) -> bool:
        return preferred_member(self.live_members(), partition) == self.me

    def _rebalance(self) -> None:
        """Release owned partitions whose preferred member is live for a few heartbeats, and
        share ``max_buffered`` over the partitions this process prefers or still owns (so the
        shares add up to at most ``max_buffered`` while ownership moves, too)."""
        members = self.live_members()
        now = time.monotonic()
        pulling = 0  # preferred (pulls to claim or keep) or still owned (pulls until released)
        for part in self.partitions.values():
            wanted_by = preferred_member(members, part.number)
            pulling += wanted_by == self.me or part.pin is not None
            settled = wanted_by is not None and (
                now - self._member_since.get(wanted_by, now) >= 3 * self.HEARTBEAT_S
            )
            if part.pin is not None and not part.releasing and wanted_by != self.me and settled:
                log.info("%s: releasing partition %d to %s", self.stage, part.number, wanted_by)
                part.releasing = True
            part.wake.set()
        self._share = max(1, self.max_buffered // max(1, pulling))

    # --- pulling -------------------------------------------------------------------------

    async def _pull_loop(self, part: _Partition) -> None:
        expires_s = max(self.timeout_s / 3, 0.5)
        next_claim = 0.0
        while True:
            part.wake.clear()
            if part.releasing:
                await self._release(part)
                continue
            owned = part.pin is not None
            if not owned and not self.prefers(part.number):
                await wait_until_set(part.wake, self.HEARTBEAT_S)
                continue
            room = min(self._room(part), 1000)
            if owned and room < max(1, self._share // 4):
                # the worker is behind: wait for acknowledgements (ack wakes us) until the pin
                # needs renewing, which the last request would have done when it expired
                keepalive_at = part.open_since + expires_s
                if time.monotonic() < keepalive_at:
                    part.room_wanted = True
                    await wait_until_set(part.wake, keepalive_at - time.monotonic())
                    part.room_wanted = False
                    continue
            batch = max(1, room)
            part.request += 1
            part.request_open = True
            part.request_batch, part.request_served = batch, 0
            renewed_at, part.open_since = part.open_since, time.monotonic()
            body: dict[str, Any] = {
                "batch": batch,
                "expires": int(expires_s * _NS),
                "group": PRIORITY_GROUP,
            }
            if part.pin is not None:
                body["id"] = part.pin
                if room <= 0:
                    # renews the pin and brings no message: the server ends a request with a
                    # 409 rather than deliver more bytes than it asked for
                    body["max_bytes"] = 1
            try:
                await self.nc.publish(
                    f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}."
                    f"{self.names.consumer(self.stage, part.number)}",
                    json.dumps(body).encode(),
                    reply=f"{self._inbox}.{part.number}.{part.request}",
                )
            except nats.errors.Error as error:
                log.warning("%s: pull for partition %d failed: %r", self.stage, part.number, error)
                part.request_open = False
                part.open_since = renewed_at  # renewed nothing: try again after 1 s, not T/3
                await asyncio.sleep(self.HEARTBEAT_S)
                continue
            if not owned and time.monotonic() >= next_claim:
                # an idle partition has no owner until a message comes: bring one
                next_claim = time.monotonic() + self.timeout_s / 2
                await asyncio.sleep(0.05)  # let the request reach the server first
                if part.pin is None and part.request_open:
                    with contextlib.suppress(nats.errors.Error):
                        await self.nc.publish(
                            self.names.claim_subject(self.stage, part.number), self.me.encode()
                        )
            # until the request is done (answered, served, expired), at most its expiry
            deadline = part.open_since + expires_s + 1.0
            while part.request_open and time.monotonic() < deadline:
                await wait_until_set(part.wake, deadline - time.monotonic())
                part.wake.clear()
                if part.releasing:
                    break

    def _room(self, part: _Partition) -> int:
        """How many messages ``part``'s next pull may ask for: its share of ``max_buffered``
        less what it has received and not acknowledged; none while the oldest delivery waiting
        to be handed out has waited half the ack wait (the worker is behind, and more would
        wait past the ack wait and be redelivered: measured, 15-75 % of what a flat-out ingest
        handled were such copies when 32 partitions pulled 1,000 each)."""
        if self._queue:
            waited = datetime.now(UTC) - self._queue[0].received_at
            if waited.total_seconds() > self.ack_wait_s / 2:
                return 0
        return self._share - part.unacked

    async def _on_reply(self, msg: Msg) -> None:
        """A message or a status for one of our pull requests."""
        try:
            headers = msg.headers or {}
            if not msg.reply:  # a status answering one of our requests (on its reply subject)
                _, _, tail = msg.subject.rpartition(self._inbox + ".")
                number, _, request = tail.partition(".")
                part = self.partitions[int(number)]
                if int(request) == part.request:
                    part.request_open = False
                    part.wake.set()
                if headers.get("Status") == "423":
                    await self._lost(part, "pin moved to another process")
                return
            metadata = msg.metadata
            part = self.partitions[int(metadata.consumer.rpartition("-p")[2])]
            part.request_served += 1
            if part.request_served >= part.request_batch:
                part.request_open = False
                part.wake.set()
            pin = headers.get(_PIN_HEADER)
            if pin is not None and pin != part.pin:
                await self._gained(part, pin)
            part.last_data = time.monotonic()
            if self.names.is_claim(msg.subject):
                await self.nc.publish(msg.reply, b"+ACK")
                return
            if not part.epoch_taken:
                await self.nc.publish(msg.reply, b"-NAK")
                return
            sequence = metadata.sequence.stream
            seen = self._in_flight.get(sequence)
            if seen is not None:
                seen[1].append(msg.reply)  # acknowledged with the first one
                return
            if sequence in self._acked:  # redelivered before our acknowledgement arrived
                await self.nc.publish(msg.reply, b"+ACK")
                return
            self._in_flight[sequence] = (part.number, [msg.reply])
            part.unacked += 1
            if part.releasing:  # held, returned in order with the rest by the release
                return
            topic, partition = self.names.to_topic(msg.subject)
            delivery = Delivery(
                topic,
                msg.data,
                datetime.now(UTC),
                part.number if partition is None else partition,
                sequence,
                (msg.reply, metadata.num_delivered),
            )
            if part.held is not None:
                part.held.append(delivery)
                return
            self._queue.append(delivery)
            self._arrived.set()
        except Exception as error:  # a failure here must reach the worker, not vanish
            log.exception("%s: handling a pull reply failed", self.stage)
            self._failed = error
            self._arrived.set()

    def _raise_if_failed(self) -> None:
        if self._failed is not None:
            error, self._failed = self._failed, None
            raise TransportError(f"NATS source failed: {error!r}") from error

    # --- ownership -----------------------------------------------------------------------

    async def _gained(self, part: _Partition, pin: str) -> None:
        """The server pinned us (``pin``): take the lease, then tell the worker. A new pin while
        we held another means the old one expired and another process may have owned the
        partition in between: it is lost and gained again (state reloaded)."""
        if part.epoch_taken:
            await self._lost(part, "pinned again after the pin expired")
        async with self._lock:
            await self.fencer.take(frozenset({part.number}))
            part.pin = pin
            part.epoch_taken = True
            part.held = []
            part.gains += 1
            self._background(self._settle(part, part.gains))
            log.info("%s: %s owns partition %d", self.stage, self.me, part.number)
            for listener in self._listeners:
                await listener(frozenset({part.number}), frozenset())

    async def _settle(self, part: _Partition, gain: int) -> None:
        """A gained partition's first deliveries are the previous owner's unacknowledged ones,
        redelivered as their ack waits ran out (not necessarily in order), then newer ones:
        they are held for one ack wait and handed out in stream order."""
        await asyncio.sleep(self.timeout_s / 2)
        if part.gains != gain or part.held is None:
            return  # lost (and perhaps gained again) meanwhile
        held, part.held = part.held, None
        if part.epoch_taken:
            self._queue.extend(sorted(held, key=lambda d: d.message_id or 0))
            self._arrived.set()

    async def _lost(self, part: _Partition, why: str, *, unpin: bool = False) -> None:
        """Forget ``part``: what it had not acknowledged is returned (NAK: redelivered at
        once, before newer messages) to whoever owns it next; ``unpin``: give up the pin."""
        async with self._lock:
            if part.pin is None and not part.epoch_taken:
                return
            part.pin = None
            part.releasing = False
            part.request_open = False
            part.handed_out = 0
            part.held = None
            self._queue = deque(d for d in self._queue if d.partition != part.number)
            # in stream order: the next owner receives them in the order they were published
            returned = sorted(q for q, (p, _) in self._in_flight.items() if p == part.number)
            subjects = [subject for q in returned for subject in self._in_flight.pop(q)[1]]
            part.unacked = 0
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                # acknowledged NAKs (sent in order, processed in order): all are back in the
                # consumer's redelivery queue before the pin is given up, so the next owner's
                # first messages are these and not newer ones
                await asyncio.gather(
                    *(self.nc.request(subject, b"-NAK", timeout=5.0) for subject in subjects)
                )
            if unpin:
                await self._unpin(part)
            was_owned = part.epoch_taken
            part.epoch_taken = False
            self.fencer.forget(frozenset({part.number}))
            if was_owned:
                log.info("%s: %s lost partition %d (%s)", self.stage, self.me, part.number, why)
                for listener in self._listeners:
                    await listener(frozenset(), frozenset({part.number}))
            part.wake.set()

    @staticmethod
    async def _until(done: Callable[[], bool], give_up: float) -> None:
        """Poll ``done`` every 50 ms until it holds or the monotonic time ``give_up``."""
        while not done():
            remaining = give_up - time.monotonic()
            if remaining <= 0:
                return
            await asyncio.sleep(min(remaining, 0.05))

    async def _release(self, part: _Partition) -> None:
        """Hand a partition to its preferred member (see the module docstring): no more
        pulls and nothing more handed out; once our last pull request is done and what was
        handed out is acknowledged, the rest is returned in stream order and the pin given
        up."""
        give_up = time.monotonic() + self.timeout_s
        self._queue = deque(d for d in self._queue if d.partition != part.number)  # held
        await self._until(lambda: not part.request_open, give_up)
        await self._until(lambda: part.handed_out == 0, give_up)
        await self._lost(part, "released to its preferred member", unpin=True)

    async def _unpin(self, part: _Partition) -> None:
        consumer = self.names.consumer(self.stage, part.number)
        with contextlib.suppress(TransportError):
            await _api(
                self.nc,
                f"$JS.API.CONSUMER.UNPIN.{self.stream}.{consumer}",
                {"group": PRIORITY_GROUP},
            )


class NatsSink:
    """JetStream publishing (:class:`~gps_monitor.bus.base.Sink`): each message's PubAck is
    awaited (the stream stored it)."""

    def __init__(self, nc: NatsClient, timeout_s: float = 30.0) -> None:
        self.js = nc.jetstream(timeout=timeout_s)

    async def publish(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """Publish in order, await every PubAck. Raises :class:`TransportError` when one is
        refused or not acknowledged in time."""
        try:
            await asyncio.gather(
                *(
                    self.js.publish(NatsNames.to_subject(topic), payload)
                    for topic, payload in messages
                )
            )
        except (nats.errors.Error, TimeoutError) as error:
            raise TransportError(f"JetStream publish failed: {error!r}") from error


class NatsTransport:
    """Connects one stage to NATS JetStream (:class:`~gps_monitor.bus.base.Transport`)."""

    def __init__(self, settings: Settings, stage: Stage) -> None:
        self.settings = settings
        self.stage = stage

    async def serve(self, session: Session) -> None:
        """See :meth:`~gps_monitor.bus.base.Transport.serve`."""
        fence = PartitionFence(
            self.settings.database,
            self.stage,
            self.settings.bus.client_name,
            stall_s=self.settings.bus.owner_timeout_s,
        )
        try:
            while True:
                nc = await connect(self.settings, self.stage)
                source = NatsSource(nc, self.settings, self.stage, fence)
                try:
                    await provision(nc, self.settings)
                    await source.start()
                    await session(source, NatsSink(nc))
                except TransportError as error:
                    log.error("NATS session ended (%r); reconnecting", error)
                finally:
                    await source.stop()
                    fence.forget(source.owned_partitions)
                    with contextlib.suppress(Exception):
                        await nc.close()
                await asyncio.sleep(1.0)
        finally:
            await fence.close()
