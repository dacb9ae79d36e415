"""The live feed hub: one subscription per web process fans positions and alarms out to the
websocket clients of that process.

Because every web process subscribes to the broker itself (clean session, no persistent state),
the feed works the same with several web processes behind a load balancer. On MQTT (the default
transport) it subscribes ``positions/v2/#`` at QoS 0 and alarms and the web processes' own
topics at QoS 1; with ``bus.transport = nats`` it holds core NATS subscriptions on the same
subjects (``positions.v2.*``, ``alarms.v1.>``, ``web.v1.…``): the JetStream publishes of ingest
and rules reach them as they are stored, nothing is kept per web process on the server, and a
hub that falls behind by more than nats-py's pending limit loses messages (logged as a slow
consumer), as an MQTT QoS 0 subscriber would.

Per client:
    * positions are **coalesced**: a dict ``vehicle_id -> newest position`` that the client's
      sender drains at most once per ``web.coalesce_interval_s``. A slow client therefore loses
      intermediate positions (each vehicle's newest wins) and its memory stays bounded by the
      number of vehicles it may see;
    * alarms go to a FIFO that is never thinned; a client more than ``web.client_queue_size``
      alarms behind is disconnected (it reconnects and gets a fresh snapshot) rather than
      silently losing one;
    * every send runs in the client's own task with a timeout (``web.send_timeout_s``), so a
      slow or dead client never slows the hub or the others.

Only ``quality == ok`` and non-late positions move the live marker (DOMAIN.md, Late: never moves
the live marker back); a position older than the newest one seen for that vehicle is dropped
too. Late alarms are forwarded with ``live: false`` (listed, not popped).

Messages to the client (JSON text frames):
    {"type": "snapshot", "vehicles": [...], "server_time": ...}
    {"type": "positions", "positions": [{vehicle_id, company_id, fix_time, latitude, ...}]}
    {"type": "alarm", "live": bool, "alarm": {...Alarm.to_dict() (with level)..., "id": ...,
                                              "plate_number", "plate_color", "company_name"}}
    {"type": "alarm_status", "alarm": {id, status, level, acknowledged_at, handled_at, ...}}
                                                      (acknowledged / handled by a user)
    {"type": "heartbeat", "server_time": ...}
    {"type": "subscribed", "filter": {...}}  /  {"type": "error", "detail": ...}
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiomqtt
import asyncpg
import nats
from nats.aio.msg import Msg

from gps_monitor import topics
from gps_monitor.bus.nats_names import NatsNames
from gps_monitor.bus.nats_transport import connect
from gps_monitor.config import Settings
from gps_monitor.db import alarms as alarms_db
from gps_monitor.db import registry
from gps_monitor.db.users import User
from gps_monitor.mqtt import run_with_reconnect
from gps_monitor.service import wait_until_set
from web.live_query import LiveFilter
from web.units import rounded

log = logging.getLogger(__name__)
_PUBLISH_ERRORS = (aiomqtt.MqttError, nats.errors.Error)

Sender = Callable[[str], Awaitable[None]]


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(message: dict[str, Any]) -> str:
    """Compact JSON with ISO 8601 datetimes."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False, default=_default)


class ClientOverflow(Exception):
    """A client fell more than ``client_queue_size`` alarms behind."""


class LiveClient:
    """One websocket client: its user, filter, coalesced positions and alarm queue."""

    def __init__(
        self, user: User, send: Sender, settings: Settings, token_digest: str | None = None
    ) -> None:
        self.user = user
        # HMAC of the login token the socket was opened with; ``revoked`` is set when that
        # token is revoked (logout) in this or another web process
        self.token_digest = token_digest
        self.revoked = asyncio.Event()
        self.id = uuid.uuid4().hex[:8]
        self._send = send
        self._web = settings.web
        self.scope_company: int | None = None
        self.filter = LiveFilter(company_id=None if user.sees_all else user.company_id)
        # vehicle_id -> that vehicle's newest unsent position, already JSON (encoded once by
        # the hub for every client)
        self.pending: dict[int, str] = {}
        self.alarms: collections.deque[dict[str, Any]] = collections.deque()
        self.wake = asyncio.Event()
        self.last_positions_sent = 0.0
        self.last_sent = time.monotonic()
        self.dropped_positions = 0
        self.overflowed = False

    @property
    def filter(self) -> LiveFilter:
        """What this client asked for, within its user's scope."""
        return self._filter

    @filter.setter
    def filter(self, value: LiveFilter) -> None:
        self._filter = value
        # the only company this client can receive anything of (None: any company)
        self.scope_company = (
            value.company_id
            if value.company_id is not None
            else (None if self.user.sees_all else self.user.company_id)
        )

    def may_see(self, company_id: int) -> bool:
        """The user's own scope (an operator: its company), before any narrowing."""
        return self.user.sees_all or company_id == self.user.company_id

    def offer_position(
        self, company_id: int, vehicle_id: int, lat: float, lon: float, fragment: str
    ) -> None:
        """Queue a position (``fragment``: its JSON) if it passes the filter; replaces an unsent
        one of the same vehicle (that is the coalescing)."""
        if not self.may_see(company_id) or not self._filter.admits(
            company_id, vehicle_id, lat, lon
        ):
            return
        was_empty = not self.pending
        if vehicle_id in self.pending:
            self.dropped_positions += 1
        self.pending[vehicle_id] = fragment
        if was_empty:
            self.wake.set()

    def offer_message(self, company_id: int, vehicle_id: int, message: dict[str, Any]) -> None:
        """Queue an alarm message (never thinned) if the user may see that company/vehicle."""
        if not self.may_see(company_id):
            return
        if self.filter.company_id is not None and company_id != self.filter.company_id:
            return
        if self.filter.vehicle_ids is not None and vehicle_id not in self.filter.vehicle_ids:
            return
        if len(self.alarms) >= self._web.client_queue_size:
            self.overflowed = True
        else:
            self.alarms.append(message)
        self.wake.set()

    async def _send_json(self, message: dict[str, Any]) -> None:
        await self._send_text(dumps(message))

    async def _send_text(self, text: str) -> None:
        await asyncio.wait_for(self._send(text), self._web.send_timeout_s)
        self.last_sent = time.monotonic()

    async def run_sender(self) -> None:
        """Send alarms at once, positions at most once per coalesce interval, heartbeats when
        idle. Returns (or raises) when the client must be closed."""
        interval = self._web.coalesce_interval_s
        heartbeat = self._web.heartbeat_interval_s
        while True:
            now = time.monotonic()
            deadlines = [self.last_sent + heartbeat]
            if self.pending:
                deadlines.append(self.last_positions_sent + interval)
            timeout = max(0.0, min(deadlines) - now)
            if not self.alarms and not self.overflowed:
                await wait_until_set(self.wake, timeout)
            self.wake.clear()
            if self.overflowed:
                raise ClientOverflow(
                    f"client {self.id}: more than {self._web.client_queue_size} alarms unsent"
                )
            while self.alarms:
                await self._send_json(self.alarms.popleft())
            now = time.monotonic()
            if self.pending and now - self.last_positions_sent >= interval:
                batch, self.pending = self.pending, {}
                self.last_positions_sent = now
                await self._send_text(
                    '{"type":"positions","positions":[' + ",".join(batch.values()) + "]}"
                )
            if time.monotonic() - self.last_sent >= heartbeat:
                await self._send_json({"type": "heartbeat", "server_time": _now_iso()})


class LiveHub:
    """Receives accepted positions and alarms from MQTT and fans them out to :class:`LiveClient`.

    Alarm messages are forwarded as published (``level`` included) plus the vehicle's
    ``plate_number``, ``plate_color`` and ``company_name``.

    ``start()`` launches the subscription task (a no-op without a configured broker: the REST API
    still works, the feed is then empty and says so in the log).
    """

    VEHICLE_NAMES_TTL_S = 300.0

    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self.settings = settings
        self.pool = pool
        self.clients: set[LiveClient] = set()
        self.newest_fix: dict[int, str] = {}
        self._task: asyncio.Task[None] | None = None
        # publishes (topic in MQTT form, payload) to every web process; None while disconnected
        self._publish: Callable[[str, bytes], Awaitable[None]] | None = None
        self.connected = asyncio.Event()
        self.received_messages = 0
        self._names: dict[int, tuple[float, dict[str, Any]]] = {}

    @property
    def _prefix(self) -> str:
        return self.settings.mqtt.topic_prefix

    def status_topic_filter(self) -> str:
        return f"{self._prefix}web/v1/alarm-status/#"

    def revoked_topic(self) -> str:
        """Where web processes tell each other a login token was revoked (payload: its HMAC)."""
        return f"{self._prefix}web/v1/revoked"

    def end_sessions(self, token_digest: str) -> None:
        """Mark this process's websocket clients opened with that token as revoked (their
        handler closes them with 4401)."""
        for client in list(self.clients):
            if client.token_digest == token_digest:
                client.revoked.set()

    async def announce_revocation(self, token_digest: str) -> None:
        """End the websockets of a revoked token here and, through MQTT, in every web process."""
        self.end_sessions(token_digest)
        if self._publish is not None:
            try:
                await self._publish(self.revoked_topic(), token_digest.encode())
            except _PUBLISH_ERRORS:
                log.warning(
                    "could not announce a revoked token; other web processes close "
                    "its websockets at their next session check"
                )

    def start(self) -> None:
        if self.settings.bus.transport == "nats":
            self._task = asyncio.create_task(self._run_nats(), name="live-hub")
            return
        if not self.settings.mqtt.host:
            log.warning("no MQTT broker configured: the live feed carries no updates")
            return
        self._task = asyncio.create_task(self._run(), name="live-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        client_id = (
            f"{self.settings.web.mqtt_client_id_prefix}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        )
        await run_with_reconnect(
            self.settings.mqtt,
            self._session,
            client_id=client_id,
            persistent=False,
            max_queued_incoming_messages=200000,
        )

    async def _session(self, client: aiomqtt.Client) -> None:
        await client.subscribe(topics.accepted_filter(self._prefix), qos=0)
        await client.subscribe(topics.alarm_filter(self._prefix), qos=1)
        await client.subscribe(self.status_topic_filter(), qos=1)
        await client.subscribe(self.revoked_topic(), qos=1)

        async def publish(topic: str, payload: bytes) -> None:
            await client.publish(topic, payload, qos=1)

        self._publish = publish
        self.connected.set()
        try:
            async for message in client.messages:
                self.received_messages += 1
                try:
                    await self.handle(str(message.topic), bytes(message.payload))  # type: ignore[arg-type,unused-ignore]
                except Exception:
                    log.exception("live feed: could not handle a message on %s", message.topic)
        finally:
            self.connected.clear()
            self._publish = None

    def nats_subjects(self) -> list[str]:
        """The core NATS subjects of the feed (``bus.transport = nats``)."""
        sp = NatsNames(self._prefix).subject_prefix
        return [
            f"{sp}positions.v2.*",
            f"{sp}alarms.v1.>",
            f"{sp}web.v1.alarm-status.>",
            f"{sp}web.v1.revoked",
        ]

    async def _run_nats(self) -> None:
        """Core NATS subscriptions on the feed's subjects; nats-py reconnects by itself (the
        subscriptions are renewed), the first connection is retried with backoff."""
        names = NatsNames(self._prefix)

        async def disconnected() -> None:
            self.connected.clear()

        async def reconnected() -> None:
            self.connected.set()

        async def on_message(msg: Msg) -> None:
            self.received_messages += 1
            topic = names.to_topic(msg.subject)[0]
            try:
                await self.handle(topic, msg.data)
            except Exception:
                log.exception("live feed: could not handle a message on %s", msg.subject)

        nc = await connect(
            self.settings, "web", disconnected_cb=disconnected, reconnected_cb=reconnected
        )
        try:
            for subject in self.nats_subjects():
                await nc.subscribe(subject, cb=on_message, pending_msgs_limit=200_000)

            async def publish(topic: str, payload: bytes) -> None:
                await nc.publish(NatsNames.to_subject(topic), payload)

            self._publish = publish
            self.connected.set()
            await asyncio.Event().wait()  # until cancelled
        finally:
            self.connected.clear()
            self._publish = None
            with contextlib.suppress(Exception):
                await nc.close()

    async def handle(self, topic: str, payload: bytes) -> None:
        """Dispatch one MQTT message to the clients (positions, alarms or alarm status)."""
        rest = topic[len(self._prefix) :]
        if rest.startswith("positions/v2/"):
            self.handle_positions(json.loads(payload))
        elif rest.startswith("alarms/v1/"):
            await self.handle_alarm(json.loads(payload))
        elif rest == "web/v1/revoked":
            self.end_sessions(payload.decode("ascii", "replace"))
        elif rest.startswith("web/v1/alarm-status/"):
            alarm = json.loads(payload)
            message = {"type": "alarm_status", "alarm": alarm}
            for client in list(self.clients):
                client.offer_message(alarm["company_id"], alarm["vehicle_id"], message)

    def handle_positions(self, positions: list[dict[str, Any]] | dict[str, Any]) -> None:
        """Forward ok, non-late, newer-than-seen positions (a JSON array of Position.to_dict())."""
        if isinstance(positions, dict):
            positions = [positions]
        for p in positions:
            if p.get("quality", "ok") != "ok" or p.get("late") or p.get("vehicle_id") is None:
                continue
            vehicle_id = p["vehicle_id"]
            fix_time = p["fix_time"]
            # ISO 8601 UTC strings of one producer compare in time order
            if self.newest_fix.get(vehicle_id, "") >= fix_time:
                continue
            self.newest_fix[vehicle_id] = fix_time
            company_id, lat, lon = p["company_id"], p["latitude"], p["longitude"]
            fragment = dumps(
                {
                    "vehicle_id": vehicle_id,
                    "company_id": company_id,
                    "fix_time": fix_time,
                    "latitude": lat,
                    "longitude": lon,
                    "speed_kmh": rounded(p["speed_kmh"], 1),
                    "heading_deg": rounded(p.get("heading_deg"), 1),
                    "acc_on": p.get("acc_on"),
                }
            )
            for client in self.clients:
                scope = client.scope_company
                if scope is None or scope == company_id:
                    client.offer_position(company_id, vehicle_id, lat, lon, fragment)

    async def handle_alarm(self, alarm: dict[str, Any]) -> None:
        """Forward an alarm opening/closing; looks its id up by dedup_key when the message has
        none (the UI needs it to acknowledge)."""
        if alarm.get("id") is None and alarm.get("dedup_key"):
            alarm["id"] = await alarms_db.id_by_dedup_key(self.pool, alarm["dedup_key"])
        if "plate_number" not in alarm:
            alarm.update(await self._vehicle_names(alarm["vehicle_id"]))
        message = {"type": "alarm", "live": not alarm.get("late", False), "alarm": alarm}
        for client in list(self.clients):
            client.offer_message(alarm["company_id"], alarm["vehicle_id"], message)

    async def _vehicle_names(self, vehicle_id: int) -> dict[str, Any]:
        """``plate_number``, ``plate_color``, ``company_name`` of a vehicle for the alarm pop-up
        (cached ``VEHICLE_NAMES_TTL_S``; an alarm storm costs one query per vehicle)."""
        now = time.monotonic()
        found = self._names.get(vehicle_id)
        if found is None or now - found[0] > self.VEHICLE_NAMES_TTL_S:
            rows = await registry.vehicle_labels(self.pool, [vehicle_id])
            keys = ("plate_number", "plate_color", "company_name")
            found = (now, {k: rows[0][k] for k in keys} if rows else {})
            self._names[vehicle_id] = found
        return found[1]

    async def announce_alarm_change(self, alarm: dict[str, Any]) -> None:
        """Tell every web process's clients that a user acknowledged/handled an alarm."""
        slim = {
            k: alarm.get(k)
            for k in (
                "id",
                "alarm_type",
                "vehicle_id",
                "company_id",
                "plate_number",
                "company_name",
                "level",
                "status",
                "started_at",
                "ended_at",
                "late",
                "handling_note",
                "acknowledged_at",
                "handled_at",
                "handling_method",
                "remind_command_id",
                "remind_text",
                "remind_state",
                "remind_answered_at",
                "supervision_id",
                "supervision_deadline",
                "supervision_answered_at",
            )
        }
        if self._publish is not None:
            topic = f"{self._prefix}web/v1/alarm-status/{alarm['company_id']}/{alarm['vehicle_id']}"
            try:
                await self._publish(topic, dumps(slim).encode())
                return
            except _PUBLISH_ERRORS:
                log.warning("could not publish alarm status; telling local clients only")
        message = {"type": "alarm_status", "alarm": json.loads(dumps(slim))}
        for client in list(self.clients):
            client.offer_message(alarm["company_id"], alarm["vehicle_id"], message)
