"""The ``alarms`` table (migration 0003): episodes written by the rules engine.

Each alarm is identified by its ``dedup_key`` (vehicle, type, discriminator, start), so writing
the same episode again (reprocessing, redelivery after a crash) never duplicates it. Handling
columns (acknowledged/handled) belong to the web app and are never touched here.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import asyncpg

from gps_monitor.models import Alarm, AlarmStatus

_UPSERT = """
INSERT INTO alarms (vehicle_id, company_id, alarm_type, dedup_key, started_at, ended_at, late,
                    details, first_fix_time, last_fix_time)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (dedup_key) DO UPDATE SET
    ended_at = COALESCE(EXCLUDED.ended_at, alarms.ended_at),
    details = EXCLUDED.details,
    first_fix_time = COALESCE(alarms.first_fix_time, EXCLUDED.first_fix_time),
    last_fix_time = COALESCE(EXCLUDED.last_fix_time, alarms.last_fix_time),
    updated_at = now()
WHERE alarms.ended_at IS DISTINCT FROM COALESCE(EXCLUDED.ended_at, alarms.ended_at)
   OR alarms.details IS DISTINCT FROM EXCLUDED.details
RETURNING id, status
"""


async def save_alarm_events(conn: asyncpg.Connection, events: list[Alarm]) -> list[Alarm]:
    """Insert or update each alarm event by dedup key (call inside the caller's transaction).

    Returns the events that changed the table (new episode, or an episode now closed or with
    new details), with their row ``id`` and ``status``; events already stored exactly as they
    are (reprocessing) are left out, so they are not published twice.
    """
    changed: list[Alarm] = []
    for alarm in events:
        row = await conn.fetchrow(
            _UPSERT,
            alarm.vehicle_id,
            alarm.company_id,
            alarm.alarm_type,
            alarm.dedup_key,
            alarm.started_at,
            alarm.ended_at,
            alarm.late,
            alarm.details,
            alarm.first_fix_time,
            alarm.last_fix_time,
        )
        if row is not None:
            changed.append(replace(alarm, id=row["id"], status=AlarmStatus(row["status"])))
    return changed


async def overlapping_alarm_exists(conn: asyncpg.Connection | asyncpg.Pool, alarm: Alarm) -> bool:
    """True when the vehicle already has an alarm of the same type and discriminator whose
    span overlaps this one's (late re-evaluation must not raise an episode already raised live
    with a slightly different start)."""
    prefix = alarm.dedup_key.rsplit("|", 1)[0] + "|"
    end = alarm.ended_at or alarm.started_at
    found = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM alarms WHERE vehicle_id = $1 AND alarm_type = $2 "
        "AND starts_with(dedup_key, $3) AND started_at <= $4 "
        "AND COALESCE(ended_at, 'infinity'::timestamptz) >= $5)",
        alarm.vehicle_id,
        alarm.alarm_type,
        prefix,
        end,
        alarm.started_at,
    )
    return bool(found)


def alarm_from_row(row: asyncpg.Record, terminal_id: str = "") -> Alarm:
    """A stored row as an :class:`Alarm` (event ``closed`` when it has ended)."""
    return Alarm(
        alarm_type=row["alarm_type"],
        dedup_key=row["dedup_key"],
        vehicle_id=row["vehicle_id"],
        company_id=row["company_id"],
        terminal_id=terminal_id or row.get("terminal_id", ""),
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        late=row["late"],
        details=row["details"],
        first_fix_time=row["first_fix_time"],
        last_fix_time=row["last_fix_time"],
        status=AlarmStatus(row["status"]),
        id=row["id"],
        event="closed" if row["ended_at"] is not None else "opened",
    )


async def list_alarms(
    conn: asyncpg.Connection | asyncpg.Pool, *, vehicle_id: int | None = None
) -> list[Alarm]:
    """Alarms (of one vehicle or all), ordered by start, type, dedup key."""
    where = "WHERE a.vehicle_id = $1" if vehicle_id is not None else ""
    args: list[Any] = [vehicle_id] if vehicle_id is not None else []
    rows = await conn.fetch(
        "SELECT a.*, v.terminal_id FROM alarms a JOIN vehicles v ON v.id = a.vehicle_id "
        f"{where} ORDER BY a.started_at, a.alarm_type, a.dedup_key",
        *args,
    )
    return [alarm_from_row(r, r["terminal_id"]) for r in rows]
