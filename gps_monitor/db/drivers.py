"""Tables ``drivers`` and ``driver_sessions`` (migration 0140): drivers by qualification
certificate number (从业资格证号) and who drove which vehicle when (IC card in -> out).

Written by the JT/T 808 gateway on 0x0702; read by the gateway (the current driver a position
carries), the evidence report (the driver of an alarm) and the web API.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import asyncpg

DRIVER_COLUMNS = "d.certificate_no, d.name, d.issuing_authority, d.valid_until, d.id_card_no"


async def card_inserted(
    conn: asyncpg.Pool,
    *,
    vehicle_id: int,
    terminal_id: str,
    certificate_no: str,
    name: str | None,
    issuing_authority: str | None,
    valid_until: date | None,
    id_card_no: str | None,
    card_in_at: datetime,
    raw_hex: str,
) -> None:
    """Upsert the driver and open a session on the vehicle, closing (``replaced``, at
    ``card_in_at``) any session still open there. One transaction. A repeat of the open
    session's card (an answer to 0x8702) only refreshes the driver."""
    async with conn.acquire() as c, c.transaction():
        await c.execute(
            "INSERT INTO drivers (certificate_no, name, issuing_authority, valid_until, "
            "id_card_no) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (certificate_no) DO UPDATE "
            "SET name = COALESCE(EXCLUDED.name, drivers.name), "
            "issuing_authority = COALESCE(EXCLUDED.issuing_authority, drivers.issuing_authority),"
            " valid_until = COALESCE(EXCLUDED.valid_until, drivers.valid_until), "
            "id_card_no = COALESCE(EXCLUDED.id_card_no, drivers.id_card_no), "
            "last_seen_at = now()",
            certificate_no, name, issuing_authority, valid_until, id_card_no,
        )  # fmt: skip
        open_cert = await c.fetchval(
            "SELECT certificate_no FROM driver_sessions WHERE vehicle_id = $1 "
            "AND card_out_at IS NULL FOR UPDATE",
            vehicle_id,
        )
        if open_cert == certificate_no:
            return
        await c.execute(
            "UPDATE driver_sessions SET card_out_at = GREATEST($2, card_in_at), "
            "ended_by = 'replaced' WHERE vehicle_id = $1 AND card_out_at IS NULL",
            vehicle_id, card_in_at,
        )  # fmt: skip
        await c.execute(
            "INSERT INTO driver_sessions (vehicle_id, terminal_id, certificate_no, card_in_at, "
            "raw_in_hex) VALUES ($1, $2, $3, $4, $5)",
            vehicle_id, terminal_id, certificate_no, card_in_at, raw_hex,
        )  # fmt: skip


async def card_removed(conn: asyncpg.Pool, *, vehicle_id: int, card_out_at: datetime) -> int:
    """Close the vehicle's open session at ``card_out_at``; returns how many were closed."""
    status = await conn.execute(
        "UPDATE driver_sessions SET card_out_at = GREATEST($2, card_in_at), ended_by = 'removed' "
        "WHERE vehicle_id = $1 AND card_out_at IS NULL",
        vehicle_id,
        card_out_at,
    )
    return int(status.split()[-1])


async def current_driver(
    conn: asyncpg.Connection | asyncpg.Pool, vehicle_id: int
) -> dict[str, Any] | None:
    """The driver whose card is in the vehicle now (``certificate_no``, ``name``, ...)."""
    row = await conn.fetchrow(
        f"SELECT {DRIVER_COLUMNS}, s.card_in_at FROM driver_sessions s "
        "JOIN drivers d USING (certificate_no) WHERE s.vehicle_id = $1 AND s.card_out_at IS NULL",
        vehicle_id,
    )
    return dict(row) if row is not None else None


async def driver_at(
    conn: asyncpg.Connection | asyncpg.Pool, vehicle_id: int, at: datetime
) -> dict[str, Any] | None:
    """The driver whose card was in the vehicle at ``at`` (None: no card session covers it)."""
    row = await conn.fetchrow(
        f"SELECT {DRIVER_COLUMNS}, s.card_in_at, s.card_out_at FROM driver_sessions s "
        "JOIN drivers d USING (certificate_no) WHERE s.vehicle_id = $1 AND s.card_in_at <= $2 "
        "AND (s.card_out_at IS NULL OR s.card_out_at > $2) ORDER BY s.card_in_at DESC LIMIT 1",
        vehicle_id,
        at,
    )
    return dict(row) if row is not None else None


async def sessions(
    conn: asyncpg.Connection | asyncpg.Pool, vehicle_id: int, limit: int = 100
) -> list[dict[str, Any]]:
    """The vehicle's card sessions, newest first, with the driver's fields."""
    return await listing(conn, vehicle_id, None, limit) or []


async def listing(
    conn: asyncpg.Connection | asyncpg.Pool, vehicle_id: int, company_id: int | None, limit: int
) -> list[dict[str, Any]] | None:
    """The vehicle's card sessions, newest first (``id``, the driver's fields, ``card_in_at``,
    ``card_out_at``, ``ended_by``); None when the vehicle does not exist or is not of
    ``company_id`` (None = any company)."""
    rows = await conn.fetch(
        f"SELECT s.id, {DRIVER_COLUMNS}, s.card_in_at, s.card_out_at, s.ended_by "
        "FROM vehicles v LEFT JOIN LATERAL (SELECT * FROM driver_sessions x "
        "WHERE x.vehicle_id = v.id ORDER BY x.card_in_at DESC, x.id DESC LIMIT $3) s ON true "
        "LEFT JOIN drivers d USING (certificate_no) "
        "WHERE v.id = $1 AND ($2::bigint IS NULL OR v.company_id = $2) "
        "ORDER BY s.card_in_at DESC, s.id DESC",
        vehicle_id,
        company_id,
        limit,
    )
    if not rows:
        return None
    return [dict(r) for r in rows if r["id"] is not None]


async def for_evidence(
    conn: asyncpg.Connection | asyncpg.Pool,
    vehicle_id: int,
    start: datetime,
    end: datetime,
    certificate_no: str | None = None,
) -> list[dict[str, Any]]:
    """The drivers an evidence report names: the one of ``certificate_no`` (the driver an
    alarm names) when given and known, else those whose card sessions on the vehicle overlap
    [start, end], in order of card-in; each with ``card_in_at`` / ``card_out_at`` (None when
    named by certificate alone)."""
    if certificate_no is not None:
        row = await conn.fetchrow(
            f"SELECT {DRIVER_COLUMNS}, s.card_in_at, s.card_out_at FROM drivers d "
            "LEFT JOIN LATERAL (SELECT card_in_at, card_out_at FROM driver_sessions x "
            "WHERE x.certificate_no = d.certificate_no AND x.vehicle_id = $2 "
            "AND x.card_in_at <= $3 ORDER BY x.card_in_at DESC LIMIT 1) s ON true "
            "WHERE d.certificate_no = $1",
            certificate_no, vehicle_id, end,
        )  # fmt: skip
        if row is not None:
            return [dict(row)]
    rows = await conn.fetch(
        f"SELECT {DRIVER_COLUMNS}, s.card_in_at, s.card_out_at FROM driver_sessions s "
        "JOIN drivers d USING (certificate_no) WHERE s.vehicle_id = $1 AND s.card_in_at <= $3 "
        "AND (s.card_out_at IS NULL OR s.card_out_at >= $2) ORDER BY s.card_in_at, s.id",
        vehicle_id,
        start,
        end,
    )
    return [dict(r) for r in rows]
