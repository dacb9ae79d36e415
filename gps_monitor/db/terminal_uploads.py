"""The ``terminal_uploads`` table (migration 0130): JT/T 808 0x0900 pass-through, 0x0705 CAN
data, 0x0108 upgrade results and (migration 0141) 0x0702 driver identity reports, each
message's body as received beside what was read from it.
Written by the JT/T 808 gateway before it answers the terminal."""

from __future__ import annotations

from typing import Any

import asyncpg

KINDS = ("pass_through", "can_data", "upgrade_result", "driver_identity")


async def insert(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    terminal_id: str,
    vehicle_id: int | None,
    msg_id: int,
    kind: str,
    body: bytes,
    frame_sha256: str,
    decoded: dict[str, Any],
) -> int:
    """Store one message; returns its row id. ``kind`` is one of :data:`KINDS`."""
    row_id = await conn.fetchval(
        "INSERT INTO terminal_uploads (terminal_id, vehicle_id, msg_id, kind, body, "
        "frame_sha256, decoded) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        terminal_id,
        vehicle_id,
        msg_id,
        kind,
        body,
        frame_sha256,
        decoded,
    )
    return int(row_id)


async def listing(
    conn: asyncpg.Connection | asyncpg.Pool, vehicle_id: int, company_id: int | None, limit: int
) -> list[dict[str, Any]] | None:
    """A vehicle's uploads, newest first, ``body`` as hex (``body_hex``); None when the vehicle
    does not exist or is not of ``company_id`` (None = any company)."""
    rows = await conn.fetch(
        "SELECT u.id, u.terminal_id, u.msg_id, u.kind, encode(u.body, 'hex') AS body_hex, "
        "u.frame_sha256, u.decoded, u.received_at, v.id AS vehicle_id FROM vehicles v "
        "LEFT JOIN LATERAL (SELECT * FROM terminal_uploads t WHERE t.vehicle_id = v.id "
        "ORDER BY t.received_at DESC, t.id DESC LIMIT $3) u ON true "
        "WHERE v.id = $1 AND ($2::bigint IS NULL OR v.company_id = $2)",
        vehicle_id,
        company_id,
        limit,
    )
    if not rows:
        return None
    return [dict(r) for r in rows if r["id"] is not None]
