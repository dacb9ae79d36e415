"""The audit trail (table ``audit_log``, migration 0050): who changed what, when.

Every alarm change (acknowledge, handle, penalty), registry change (company, vehicle) and
geofence/route change made through the web app is recorded in the same transaction as the change.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from gps_monitor.db.users import User


async def record(
    conn: asyncpg.Connection | asyncpg.Pool,
    user: User,
    action: str,
    object_type: str,
    object_id: int | None,
    *,
    company_id: int | None = None,
    details: dict[str, Any] | None = None,
) -> int:
    """Append one audit entry; returns its id.

    Args:
        action: dotted verb, e.g. ``alarm.acknowledge``, ``alarm.handle``, ``alarm.penalty``,
            ``vehicle.create``, ``geofence.delete``.
        object_type, object_id: what was changed.
        company_id: the company the object belongs to (lets operators' views be filtered).
        details: JSON-serialisable before/after values or the note written.
    """
    entry_id = await conn.fetchval(
        "INSERT INTO audit_log (user_id, username, role, action, object_type, object_id, "
        "company_id, details) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        user.id,
        user.username,
        str(user.role),
        action,
        object_type,
        object_id,
        company_id,
        details or {},
    )
    return int(entry_id)


async def entries_for(
    conn: asyncpg.Connection | asyncpg.Pool, object_type: str, object_id: int
) -> list[dict[str, Any]]:
    """The audit entries of one object, oldest first, as dicts (``at`` a UTC datetime)."""
    rows = await conn.fetch(
        "SELECT id, at, user_id, username, role, action, object_type, object_id, company_id, "
        "details FROM audit_log WHERE object_type = $1 AND object_id = $2 ORDER BY at, id",
        object_type,
        object_id,
    )
    return [dict(r) for r in rows]
