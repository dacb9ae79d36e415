"""The ``rule_state`` table (migration 0021; ``state`` is text since 0153): the rules engine's
state of each vehicle as one JSON document, written in the same transaction as the alarms it
produced.

The JSON's shape belongs to :class:`rules.engine.VehicleState` (``rules.state`` converts); this
module only stores and loads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from gps_monitor import fastjson


async def load(
    conn: asyncpg.Connection | asyncpg.Pool, vehicle_ids: Sequence[int] | None = None
) -> list[tuple[int, Any]]:
    """``(vehicle_id, state)`` of every stored state (only of ``vehicle_ids`` when given),
    ``state`` the parsed JSON document.

    Raises:
        ValueError: a stored state is not JSON (only a hand edit can make one)."""
    if vehicle_ids is None:
        rows = await conn.fetch("SELECT vehicle_id, state FROM rule_state")
    else:
        rows = await conn.fetch(
            "SELECT vehicle_id, state FROM rule_state WHERE vehicle_id = ANY($1::bigint[])",
            list(vehicle_ids),
        )
    return [(r["vehicle_id"], fastjson.loads(r["state"])) for r in rows]


async def save(conn: asyncpg.Connection, rows: Sequence[tuple[int, str, float | None]]) -> None:
    """Insert or replace states: ``(vehicle_id, state JSON text, last fix time as epoch seconds
    or None)``, each vehicle once. One statement over arrays, rows in vehicle order (measured
    against one statement per row: a quarter more rows per second); the fix time goes as a
    float and PostgreSQL makes the timestamp (``to_timestamp``; a datetime per row cost the
    worker 1.6 us more per row). The text is stored as given (a text column: PostgreSQL does not
    parse it, migration 0153)."""
    if rows:
        ordered = sorted(rows, key=lambda row: row[0])
        await conn.execute(
            "INSERT INTO rule_state (vehicle_id, state, last_fix_time) "
            "SELECT v, s, to_timestamp(t) FROM unnest($1::bigint[], $2::text[], $3::float8[]) "
            "AS k(v, s, t) "
            "ON CONFLICT (vehicle_id) DO UPDATE SET state = EXCLUDED.state, "
            "last_fix_time = EXCLUDED.last_fix_time, updated_at = now()",
            [row[0] for row in ordered],
            [row[1] for row in ordered],
            [row[2] for row in ordered],
        )


async def vehicles_behind(conn: asyncpg.Connection | asyncpg.Pool, company_name: str) -> int:
    """Vehicles of the company called ``company_name`` with a stored ok fix the rules engine
    has not evaluated yet (``last_fix_time`` older, or no state)."""
    count = await conn.fetchval(
        "SELECT count(*) FROM vehicles v JOIN companies c ON c.id = v.company_id "
        "LEFT JOIN rule_state s ON s.vehicle_id = v.id "
        "WHERE c.name = $1 AND EXISTS (SELECT 1 FROM positions p WHERE p.vehicle_id = v.id "
        "AND p.quality = 'ok' AND (s.last_fix_time IS NULL OR p.fix_time > s.last_fix_time))",
        company_name,
    )
    return int(count)
