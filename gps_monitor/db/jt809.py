"""The JT/T 809 tables (migration 0100): the outbox of what the superior platform is owed, and
the main-link sessions (for 平台连通率).

An outbox row is one position or one alarm (its ``to_dict()`` as ``payload``) that could not go
out live; :func:`oldest` reads them oldest fix first and :func:`delete` removes them once they
are written to the main link.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg

OutboxKind = Literal["position", "alarm"]
OutboxReason = Literal["link_down", "late", "cut"]


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One buffered item: ``kind`` position or alarm, its vehicle, fix time (UTC) and payload
    (``Position.to_dict()`` / ``Alarm.to_dict()``); ``id`` is None until stored."""

    kind: OutboxKind
    vehicle_id: int
    fix_time: datetime
    payload: dict[str, Any]
    reason: OutboxReason
    id: int | None = None


async def enqueue(pool: asyncpg.Pool, entries: list[OutboxEntry]) -> None:
    """Store ``entries`` in one statement (committed when this returns)."""
    if not entries:
        return
    await pool.execute(
        """INSERT INTO jt809_outbox (kind, vehicle_id, fix_time, payload, reason)
           SELECT k, v, f, p::jsonb, r
           FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::text[], $5::text[])
                AS u(k, v, f, p, r)""",
        [e.kind for e in entries],
        [e.vehicle_id for e in entries],
        [e.fix_time for e in entries],
        [json.dumps(e.payload) for e in entries],
        [e.reason for e in entries],
    )


async def oldest(pool: asyncpg.Pool, limit: int) -> list[OutboxEntry]:
    """Up to ``limit`` entries, oldest fix time first (ties: insertion order)."""
    rows = await pool.fetch(
        "SELECT id, kind, vehicle_id, fix_time, payload::text AS payload, reason "
        "FROM jt809_outbox ORDER BY fix_time, id LIMIT $1",
        limit,
    )
    return [
        OutboxEntry(
            r["kind"],
            r["vehicle_id"],
            r["fix_time"],
            json.loads(r["payload"]),
            r["reason"],
            r["id"],
        )
        for r in rows
    ]


async def delete(pool: asyncpg.Pool, ids: list[int]) -> None:
    await pool.execute("DELETE FROM jt809_outbox WHERE id = ANY($1::bigint[])", ids)


async def drop_older_than(pool: asyncpg.Pool, cutoff: datetime) -> int:
    """Delete entries queued before ``cutoff``; returns how many."""
    result = await pool.execute("DELETE FROM jt809_outbox WHERE queued_at < $1", cutoff)
    return int(result.split()[-1])


async def size(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM jt809_outbox"))


async def vehicle_plates(pool: asyncpg.Pool, vehicle_ids: list[int]) -> dict[int, tuple[str, int]]:
    """vehicle id -> (plate_number, plate_color) for the ids that exist."""
    rows = await pool.fetch(
        "SELECT id, plate_number, plate_color FROM vehicles WHERE id = ANY($1::bigint[])",
        vehicle_ids,
    )
    return {r["id"]: (r["plate_number"], r["plate_color"]) for r in rows}


async def link_up(pool: asyncpg.Pool, at: datetime) -> int:
    """Record a main-link session start; returns its id."""
    return int(
        await pool.fetchval("INSERT INTO jt809_link_sessions (up_at) VALUES ($1) RETURNING id", at)
    )


async def link_down(pool: asyncpg.Pool, session_id: int, at: datetime, reason: str) -> None:
    await pool.execute(
        "UPDATE jt809_link_sessions SET down_at = $2, down_reason = $3 WHERE id = $1",
        session_id,
        at,
        reason,
    )
