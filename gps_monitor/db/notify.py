"""Push channels, subscriptions and the delivery log (tables ``notify_channels``,
``notify_subscriptions`` (migration 0070), ``notify_deliveries``, ``notify_attempts`` (0071)).

The one home of their SQL: the ``gps-monitor notify`` service (:mod:`notify.worker`) and the web
routes (:mod:`web.routers.notify`) both go through here. A channel's ``secret`` is read only by
:func:`load_channels` (the service); every function the web uses returns ``has_secret`` instead.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any

import asyncpg

from gps_monitor.errors import NotFoundError

DELIVERY_STATUSES = ("pending", "sent", "failed", "suppressed")


@dataclass(frozen=True, slots=True)
class ChannelRecord:
    """One push channel. ``config`` is the kind's non-secret settings (``url``, ``to``,
    ``phones``...); ``secret`` the signing secret, never shown and never logged (``repr``
    leaves it out)."""

    id: int
    name: str
    kind: str
    config: dict[str, Any]
    secret: str | None = field(repr=False, default=None)
    user_id: int | None = None
    company_id: int | None = None
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class Subscription:
    """Which alarms go to one channel.

    Attributes:
        user_id: owner (None: a company-wide rule set by the bureau).
        owner_company_id: the owner's company when the owner is an operator (their alarms only).
        company_id: alarms of this company only (None: every company).
        alarm_types, vehicle_ids: None = all.
        min_level: alarms of this level or more urgent (1 紧急 .. 4 提示).
        events: ``opened`` and/or ``closed``.
        quiet_start_local, quiet_end_local: local quiet hours (both or neither; may cross
            midnight).
    """

    id: int
    channel_id: int
    user_id: int | None = None
    owner_company_id: int | None = None
    company_id: int | None = None
    alarm_types: frozenset[str] | None = None
    vehicle_ids: frozenset[int] | None = None
    min_level: int = 4
    events: frozenset[str] = frozenset({"opened", "closed"})
    quiet_start_local: time | None = None
    quiet_end_local: time | None = None
    enabled: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "channel_id": self.channel_id,
            "user_id": self.user_id,
            "company_id": self.company_id,
            "alarm_types": sorted(self.alarm_types) if self.alarm_types is not None else None,
            "vehicle_ids": sorted(self.vehicle_ids) if self.vehicle_ids is not None else None,
            "min_level": self.min_level,
            "events": sorted(self.events),
            "quiet_start_local": _hhmm(self.quiet_start_local),
            "quiet_end_local": _hhmm(self.quiet_end_local),
            "enabled": self.enabled,
        }


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A delivery to record before the alarm message is acknowledged."""

    alarm_id: int | None
    dedup_key: str
    event: str
    alarm_type: str
    level: int
    company_id: int
    vehicle_id: int
    channel_id: int
    kind: str
    target: str
    status: str  # pending or suppressed
    message: dict[str, Any]
    deferred: str | None = None  # why it waits (the channel's breaker is open), else None


@dataclass(slots=True)
class Delivery:
    """A pending delivery held by a channel's sender (mutable: attempts count up)."""

    id: int
    channel_id: int
    attempts: int
    message: dict[str, Any]
    received_at: datetime


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """The outcome of one attempt. ``status``: the delivery's status after it (pending when a
    retry follows, sent, failed); ``next_attempt_at`` when a retry follows."""

    delivery_id: int
    attempt: int
    at: datetime
    ok: bool
    reply_code: int | None
    reply: str
    duration_ms: int
    status: str
    next_attempt_at: datetime | None


def _hhmm(value: time | None) -> str | None:
    return value.strftime("%H:%M") if value is not None else None


def _channel(row: asyncpg.Record, *, with_secret: bool) -> ChannelRecord:
    config = row["config"]
    return ChannelRecord(
        id=row["id"],
        name=row["name"],
        kind=row["kind"],
        config=json.loads(config) if isinstance(config, str) else dict(config),
        secret=row["secret"] if with_secret else None,
        user_id=row["user_id"],
        company_id=row["company_id"],
        enabled=row["enabled"],
    )


def channel_view(row: asyncpg.Record) -> dict[str, Any]:
    """A channel for the web: config, never the secret (``has_secret`` says whether one is
    stored)."""
    channel = _channel(row, with_secret=False)
    return {
        "id": channel.id,
        "name": channel.name,
        "kind": channel.kind,
        "config": channel.config,
        "has_secret": row["secret"] is not None,
        "user_id": channel.user_id,
        "company_id": channel.company_id,
        "enabled": channel.enabled,
    }


def _subscription(row: asyncpg.Record) -> Subscription:
    return Subscription(
        id=row["id"],
        channel_id=row["channel_id"],
        user_id=row["user_id"],
        owner_company_id=row["owner_company_id"],
        company_id=row["company_id"],
        alarm_types=frozenset(row["alarm_types"]) if row["alarm_types"] is not None else None,
        vehicle_ids=frozenset(row["vehicle_ids"]) if row["vehicle_ids"] is not None else None,
        min_level=row["min_level"],
        events=frozenset(row["events"]),
        quiet_start_local=row["quiet_start_local"],
        quiet_end_local=row["quiet_end_local"],
        enabled=row["enabled"] and row["owner_active"] is not False,
    )


_CHANNEL_COLUMNS = "id, name, kind, config, secret, user_id, company_id, enabled"
_SUBSCRIPTION_SELECT = (
    "SELECT s.id, s.channel_id, s.user_id, s.company_id, s.alarm_types, s.vehicle_ids, "
    "s.min_level, s.events, s.quiet_start_local, s.quiet_end_local, s.enabled, "
    "u.company_id AS owner_company_id, u.active AS owner_active "
    "FROM notify_subscriptions s LEFT JOIN users u ON u.id = s.user_id"
)


# --- the service ---------------------------------------------------------------------------


async def load_channels(conn: asyncpg.Connection | asyncpg.Pool) -> list[ChannelRecord]:
    """Every channel with its secret (the notify service only)."""
    rows = await conn.fetch(f"SELECT {_CHANNEL_COLUMNS} FROM notify_channels ORDER BY id")
    return [_channel(r, with_secret=True) for r in rows]


async def load_subscriptions(conn: asyncpg.Connection | asyncpg.Pool) -> list[Subscription]:
    """Every subscription, with its owner's company (operators) and whether the owner is
    active (an inactive owner's subscriptions are disabled)."""
    rows = await conn.fetch(_SUBSCRIPTION_SELECT + " ORDER BY s.id")
    return [_subscription(r) for r in rows]


async def routing_fingerprint(conn: asyncpg.Connection | asyncpg.Pool) -> tuple[Any, ...]:
    """Changes whenever a channel, subscription or user is added, changed or removed."""
    row = await conn.fetchrow(
        "SELECT (SELECT count(*) FROM notify_channels), "
        "(SELECT max(updated_at) FROM notify_channels), "
        "(SELECT count(*) FROM notify_subscriptions), "
        "(SELECT max(updated_at) FROM notify_subscriptions), "
        "(SELECT count(*) FROM users WHERE active), "
        "(SELECT coalesce(sum(hashtext(id || ':' || coalesce(company_id, 0))), 0) FROM users)"
    )
    return tuple(row or ())


async def record_deliveries(
    conn: asyncpg.Connection, deliveries: Sequence[NewDelivery]
) -> list[Delivery]:
    """Insert deliveries; one already recorded (same alarm episode, event and channel: a
    redelivered message) is left as it is. Returns the new *pending* ones (to send), each
    carrying its planned ``message`` (the same object for every channel of one alarm).

    Each distinct message is serialized once, not once per channel (the channels of one alarm
    share it), and nothing is read back but the ids: a per-row cost of an extra channel (e.g.
    a dead one) stays small."""
    if not deliveries:
        return []
    texts: dict[int, str] = {}
    for d in deliveries:
        if id(d.message) not in texts:
            texts[id(d.message)] = json.dumps(d.message)
    rows = await conn.fetch(
        "INSERT INTO notify_deliveries (alarm_id, dedup_key, event, alarm_type, level, "
        "company_id, vehicle_id, channel_id, kind, target, status, message, last_reply) "
        "SELECT a, k, e, t, l, c, v, ch, kd, tg, s, m::jsonb, r FROM unnest($1::bigint[], "
        "$2::text[], $3::text[], $4::text[], $5::smallint[], $6::bigint[], $7::bigint[], "
        "$8::bigint[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[]) "
        "AS u(a, k, e, t, l, c, v, ch, kd, tg, s, m, r) "
        "ON CONFLICT (dedup_key, event, channel_id) DO NOTHING "
        "RETURNING id, channel_id, dedup_key, event, attempts, received_at, status",
        [d.alarm_id for d in deliveries],
        [d.dedup_key for d in deliveries],
        [d.event for d in deliveries],
        [d.alarm_type for d in deliveries],
        [d.level for d in deliveries],
        [d.company_id for d in deliveries],
        [d.vehicle_id for d in deliveries],
        [d.channel_id for d in deliveries],
        [d.kind for d in deliveries],
        [d.target for d in deliveries],
        [d.status for d in deliveries],
        [texts[id(d.message)] for d in deliveries],
        [d.deferred for d in deliveries],
    )
    planned = {(d.dedup_key, d.event, d.channel_id): d.message for d in deliveries}
    return [
        Delivery(
            id=r["id"],
            channel_id=r["channel_id"],
            attempts=r["attempts"],
            message=planned[(r["dedup_key"], r["event"], r["channel_id"])],
            received_at=r["received_at"],
        )
        for r in rows
        if r["status"] == "pending"
    ]


def _delivery(row: asyncpg.Record) -> Delivery:
    message = row["message"]
    return Delivery(
        id=row["id"],
        channel_id=row["channel_id"],
        attempts=row["attempts"],
        message=json.loads(message) if isinstance(message, str) else dict(message),
        received_at=row["received_at"],
    )


async def pending_deliveries(
    conn: asyncpg.Connection | asyncpg.Pool,
    channel_id: int,
    *,
    exclude_ids: Sequence[int],
    limit: int,
) -> list[Delivery]:
    """Pending deliveries of one channel due now, oldest first, except those already held."""
    rows = await conn.fetch(
        "SELECT id, channel_id, attempts, message, received_at, status FROM notify_deliveries "
        "WHERE status = 'pending' AND channel_id = $1 AND next_attempt_at <= now() "
        "AND NOT (id = ANY($2::bigint[])) ORDER BY next_attempt_at, id LIMIT $3",
        channel_id,
        list(exclude_ids),
        limit,
    )
    return [_delivery(r) for r in rows]


async def defer_deliveries(
    conn: asyncpg.Connection | asyncpg.Pool, channel_id: int, reason: str, limit: int = 500
) -> int:
    """Mark at most ``limit`` pending deliveries of one channel that do not carry ``reason`` yet
    as waiting for it (its breaker opened): they stay ``pending`` with their attempts and next
    attempt time, and go out once the breaker closes. Returns how many were marked (0: none
    left). Called in chunks by the worker, so a backlog of thousands never holds the database
    in one long statement while the live channels' deliveries are being written."""
    result = await conn.execute(
        "UPDATE notify_deliveries SET last_reply = $2, last_reply_code = NULL, "
        "updated_at = now() WHERE id IN (SELECT id FROM notify_deliveries "
        "WHERE channel_id = $1 AND status = 'pending' AND last_reply IS DISTINCT FROM $2 "
        "LIMIT $3)",
        channel_id,
        reason,
        limit,
    )
    return int(result.split()[-1])


async def record_attempts(conn: asyncpg.Connection, records: Sequence[AttemptRecord]) -> None:
    """Store attempts and move their deliveries on (one call per batch, in a transaction)."""
    if not records:
        return
    async with conn.transaction():
        await conn.executemany(
            "INSERT INTO notify_attempts (delivery_id, attempt, at, ok, reply_code, reply, "
            "duration_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) "
            "ON CONFLICT (delivery_id, attempt) DO NOTHING",
            [
                (r.delivery_id, r.attempt, r.at, r.ok, r.reply_code, r.reply, r.duration_ms)
                for r in records
            ],
        )
        await conn.execute(
            "UPDATE notify_deliveries d SET attempts = u.attempt, status = u.status, "
            "last_reply_code = u.reply_code, last_reply = u.reply, "
            "next_attempt_at = coalesce(u.next_at, d.next_attempt_at), updated_at = now(), "
            "delivered_at = CASE WHEN u.status = 'sent' THEN u.at ELSE d.delivered_at END "
            "FROM unnest($1::bigint[], $2::int[], $3::text[], $4::int[], $5::text[], "
            "$6::timestamptz[], $7::timestamptz[]) "
            "AS u(id, attempt, status, reply_code, reply, next_at, at) "
            "WHERE d.id = u.id AND d.attempts < u.attempt",
            [r.delivery_id for r in records],
            [r.attempt for r in records],
            [r.status for r in records],
            [r.reply_code for r in records],
            [r.reply for r in records],
            [r.next_attempt_at for r in records],
            [r.at for r in records],
        )


# --- the web -------------------------------------------------------------------------------


async def list_channels(
    conn: asyncpg.Connection | asyncpg.Pool, *, user_id: int | None = None
) -> list[dict[str, Any]]:
    """Channels (web view, no secret); only ``user_id``'s when given."""
    rows = await conn.fetch(
        f"SELECT {_CHANNEL_COLUMNS} FROM notify_channels "
        "WHERE $1::bigint IS NULL OR user_id = $1 ORDER BY id",
        user_id,
    )
    return [channel_view(r) for r in rows]


async def get_channel(conn: asyncpg.Connection | asyncpg.Pool, channel_id: int) -> ChannelRecord:
    """One channel, secret left out.

    Raises:
        NotFoundError: no such channel.
    """
    row = await conn.fetchrow(
        f"SELECT {_CHANNEL_COLUMNS} FROM notify_channels WHERE id = $1", channel_id
    )
    if row is None:
        raise NotFoundError(f"notify channel {channel_id}: not found")
    return _channel(row, with_secret=False)


async def channel_secret(conn: asyncpg.Connection | asyncpg.Pool, channel_id: int) -> str | None:
    """The stored secret of one channel (to validate a change that keeps it)."""
    return await conn.fetchval("SELECT secret FROM notify_channels WHERE id = $1", channel_id)


async def create_channel(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    name: str,
    kind: str,
    config: dict[str, Any],
    secret: str | None,
    user_id: int | None,
    company_id: int | None,
    enabled: bool = True,
) -> dict[str, Any]:
    """Insert a channel (already validated); returns its web view."""
    row = await conn.fetchrow(
        "INSERT INTO notify_channels (name, kind, config, secret, user_id, company_id, enabled) "
        f"VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {_CHANNEL_COLUMNS}",
        name,
        kind,
        config,
        secret,
        user_id,
        company_id,
        enabled,
    )
    return channel_view(row)


async def update_channel(
    conn: asyncpg.Connection | asyncpg.Pool,
    channel_id: int,
    *,
    name: str,
    config: dict[str, Any],
    secret: str | None,
    enabled: bool,
) -> dict[str, Any]:
    """Replace a channel's name, config, secret and switch (kind and owner stay)."""
    row = await conn.fetchrow(
        "UPDATE notify_channels SET name = $2, config = $3, secret = $4, enabled = $5, "
        f"updated_at = now() WHERE id = $1 RETURNING {_CHANNEL_COLUMNS}",
        channel_id,
        name,
        config,
        secret,
        enabled,
    )
    if row is None:
        raise NotFoundError(f"notify channel {channel_id}: not found")
    return channel_view(row)


async def delete_channel(conn: asyncpg.Connection | asyncpg.Pool, channel_id: int) -> None:
    """Delete a channel with its subscriptions and delivery log."""
    await conn.execute("DELETE FROM notify_channels WHERE id = $1", channel_id)


async def list_subscriptions(
    conn: asyncpg.Connection | asyncpg.Pool, *, user_id: int | None = None
) -> list[Subscription]:
    """Subscriptions; only ``user_id``'s when given."""
    rows = await conn.fetch(
        _SUBSCRIPTION_SELECT + " WHERE $1::bigint IS NULL OR s.user_id = $1 ORDER BY s.id",
        user_id,
    )
    return [_subscription(r) for r in rows]


async def get_subscription(
    conn: asyncpg.Connection | asyncpg.Pool, subscription_id: int
) -> Subscription:
    """One subscription.

    Raises:
        NotFoundError: no such subscription.
    """
    row = await conn.fetchrow(_SUBSCRIPTION_SELECT + " WHERE s.id = $1", subscription_id)
    if row is None:
        raise NotFoundError(f"notify subscription {subscription_id}: not found")
    return _subscription(row)


def _subscription_values(sub: Subscription) -> tuple[Any, ...]:
    return (
        sub.channel_id,
        sub.user_id,
        sub.company_id,
        sorted(sub.alarm_types) if sub.alarm_types is not None else None,
        sorted(sub.vehicle_ids) if sub.vehicle_ids is not None else None,
        sub.min_level,
        sorted(sub.events),
        sub.quiet_start_local,
        sub.quiet_end_local,
        sub.enabled,
    )


async def save_subscription(conn: asyncpg.Connection | asyncpg.Pool, sub: Subscription) -> int:
    """Insert (``sub.id == 0``) or replace a subscription; returns its id."""
    values = _subscription_values(sub)
    if sub.id == 0:
        return int(
            await conn.fetchval(
                "INSERT INTO notify_subscriptions (channel_id, user_id, company_id, "
                "alarm_types, vehicle_ids, min_level, events, quiet_start_local, "
                "quiet_end_local, enabled) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
                "RETURNING id",
                *values,
            )
        )
    await conn.execute(
        "UPDATE notify_subscriptions SET channel_id = $2, user_id = $3, company_id = $4, "
        "alarm_types = $5, vehicle_ids = $6, min_level = $7, events = $8, "
        "quiet_start_local = $9, quiet_end_local = $10, enabled = $11, updated_at = now() "
        "WHERE id = $1",
        sub.id,
        *values,
    )
    return sub.id


async def delete_subscription(
    conn: asyncpg.Connection | asyncpg.Pool, subscription_id: int
) -> None:
    await conn.execute("DELETE FROM notify_subscriptions WHERE id = $1", subscription_id)


async def list_deliveries(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    user_id: int | None = None,
    channel_id: int | None = None,
    alarm_id: int | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The delivery log, newest first, with each attempt; only the channels of ``user_id``
    when given."""
    rows = await conn.fetch(
        "SELECT d.id, d.alarm_id, d.dedup_key, d.event, d.alarm_type, d.level, d.company_id, "
        "d.vehicle_id, d.channel_id, d.kind, d.target, d.status, d.attempts, "
        "d.next_attempt_at, d.last_reply_code, d.last_reply, d.received_at, d.delivered_at, "
        "coalesce((SELECT json_agg(json_build_object('attempt', a.attempt, 'at', a.at, "
        "'ok', a.ok, 'reply_code', a.reply_code, 'reply', a.reply, "
        "'duration_ms', a.duration_ms) ORDER BY a.attempt) "
        "FROM notify_attempts a WHERE a.delivery_id = d.id), '[]') AS attempt_log "
        "FROM notify_deliveries d JOIN notify_channels c ON c.id = d.channel_id "
        "WHERE ($1::bigint IS NULL OR c.user_id = $1) "
        "AND ($2::bigint IS NULL OR d.channel_id = $2) "
        "AND ($3::bigint IS NULL OR d.alarm_id = $3) "
        "ORDER BY d.received_at DESC, d.id DESC LIMIT $4",
        user_id,
        channel_id,
        alarm_id,
        limit,
    )
    out = []
    for r in rows:
        item = dict(r)
        log = item.pop("attempt_log")
        item["attempt_log"] = json.loads(log) if isinstance(log, str) else log
        out.append(item)
    return out
