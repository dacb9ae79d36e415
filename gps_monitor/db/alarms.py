"""The ``alarms`` table (migration 0003): episodes written by the rules engine.

Each alarm is identified by its ``dedup_key`` (vehicle, type, discriminator, start), so writing
the same episode again (reprocessing, redelivery after a crash) never duplicates it. Handling
columns (acknowledged/handled) belong to the web app and are never touched here.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from typing import Any

import asyncpg

from gps_monitor.models import Alarm, AlarmStatus

_UPSERT = """
INSERT INTO alarms AS a (vehicle_id, company_id, alarm_type, dedup_key, started_at, ended_at,
                         late, details, first_fix_time, last_fix_time, level, publish_pending)
SELECT v, c, t, k, s, e, l, d::jsonb, f, x, lv, true
FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::timestamptz[],
            $6::timestamptz[], $7::boolean[], $8::text[], $9::timestamptz[], $10::timestamptz[],
            $11::smallint[])
     AS u(v, c, t, k, s, e, l, d, f, x, lv)
ON CONFLICT (dedup_key) DO UPDATE SET
    ended_at = COALESCE(EXCLUDED.ended_at, a.ended_at),
    details = EXCLUDED.details,
    first_fix_time = COALESCE(a.first_fix_time, EXCLUDED.first_fix_time),
    last_fix_time = COALESCE(EXCLUDED.last_fix_time, a.last_fix_time),
    publish_pending = true,
    updated_at = now()
WHERE a.ended_at IS DISTINCT FROM COALESCE(EXCLUDED.ended_at, a.ended_at)
   OR a.details IS DISTINCT FROM EXCLUDED.details
RETURNING a.id, a.status, a.dedup_key, a.level
"""


async def save_alarm_events(conn: asyncpg.Connection, events: list[Alarm]) -> list[Alarm]:
    """Insert or update alarm events by dedup key, in one statement (call inside the caller's
    transaction). Several events of one episode in the list (opened then closed) are written
    as the last one (keeping the first ``first_fix_time``).

    Returns, in their original order, the events whose episode changed the table (new, now
    closed, or new details), with the row ``id``, ``status`` and ``level`` (the level stored when
    the episode opened: a later event never relevels it); an episode stored exactly as it
    is (reprocessing) returns nothing, so it is not published twice. The changed rows are marked
    ``publish_pending`` (the outbox, migration 0022) until :func:`mark_published`.
    """
    if not events:
        return []
    last: dict[str, Alarm] = {}
    first_fix: dict[str, Any] = {}
    for alarm in events:
        last[alarm.dedup_key] = alarm
        first_fix.setdefault(alarm.dedup_key, alarm.first_fix_time)
    rows = list(last.values())
    found = await conn.fetch(
        _UPSERT,
        [a.vehicle_id for a in rows],
        [a.company_id for a in rows],
        [a.alarm_type for a in rows],
        [a.dedup_key for a in rows],
        [a.started_at for a in rows],
        [a.ended_at for a in rows],
        [a.late for a in rows],
        [json.dumps(a.details, ensure_ascii=False, sort_keys=True) for a in rows],
        [first_fix[a.dedup_key] or a.first_fix_time for a in rows],
        [a.last_fix_time for a in rows],
        [a.level for a in rows],
    )
    changed = {r["dedup_key"]: r for r in found}
    return [
        replace(
            alarm,
            id=changed[alarm.dedup_key]["id"],
            status=AlarmStatus(changed[alarm.dedup_key]["status"]),
            level=changed[alarm.dedup_key]["level"],
        )
        for alarm in events
        if alarm.dedup_key in changed
    ]


async def mark_published(conn: asyncpg.Connection | asyncpg.Pool, alarm_ids: list[int]) -> None:
    """Clear the outbox flag of alarms whose MQTT message the broker has acknowledged."""
    if alarm_ids:
        await conn.execute(
            "UPDATE alarms SET publish_pending = false WHERE id = ANY($1::bigint[])", alarm_ids
        )


async def pending_publications(conn: asyncpg.Connection | asyncpg.Pool) -> list[Alarm]:
    """Alarms stored but not yet acknowledged by the broker, oldest change first (event
    ``closed`` when ended, else ``opened``)."""
    rows = await conn.fetch(
        "SELECT a.*, v.terminal_id FROM alarms a JOIN vehicles v ON v.id = a.vehicle_id "
        "WHERE a.publish_pending ORDER BY a.updated_at, a.id"
    )
    return [alarm_from_row(r) for r in rows]


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
        level=row["level"],
    )


async def kpi_episodes(
    conn: asyncpg.Connection | asyncpg.Pool,
    alarm_types: list[str],
    vehicle_ids: list[int],
    period_start: datetime,
    period_end: datetime,
    *,
    now: datetime,
) -> list[asyncpg.Record]:
    """Alarm episodes of ``alarm_types`` and ``vehicle_ids`` overlapping [period_start,
    period_end), for the KPI report: ``vehicle_id``, ``alarm_type``, ``started_at``, ``until``
    and ``handled``.

    ``until``: the episode's end; an open episode (``ended_at`` NULL) runs up to ``now`` (or its
    last fix, if later), so a driver still driving tired counts. ``handled``: status handled or
    closed, a handling time, or a penalty decision recorded (处理率).
    """
    return await conn.fetch(
        "SELECT * FROM (SELECT a.vehicle_id, a.alarm_type, a.started_at, "
        " CASE WHEN a.ended_at IS NOT NULL THEN a.ended_at "
        "  ELSE greatest($5, coalesce(a.last_fix_time, a.started_at)) END AS until, "
        " (a.status IN ('handled', 'closed') OR a.handled_at IS NOT NULL "
        "  OR EXISTS (SELECT 1 FROM alarm_penalties ap WHERE ap.alarm_id = a.id)) AS handled "
        " FROM alarms a WHERE a.alarm_type = ANY($1::text[]) "
        " AND a.vehicle_id = ANY($2::bigint[]) AND a.started_at < $4) e WHERE e.until >= $3",
        alarm_types,
        vehicle_ids,
        period_start,
        period_end,
        now,
    )
