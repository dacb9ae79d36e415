"""The ``alarms`` table (migration 0003): episodes written by the rules engine, and the web
app's worklist view of them with their handling.

Each alarm is identified by its ``dedup_key`` (vehicle, type, discriminator, start), so writing
the same episode again (reprocessing, redelivery after a crash) never duplicates it. The rules
engine's writes never touch the handling columns (acknowledged/handled); those are written only
by :func:`acknowledge` and :func:`mark_handled` (the web app, with its audit entry in the same
transaction).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import asyncpg

from gps_monitor.models import Alarm, AlarmStatus

_UPSERT = """
WITH changed AS (
INSERT INTO alarms AS a (vehicle_id, company_id, alarm_type, dedup_key, started_at, ended_at,
                         late, details, first_fix_time, last_fix_time, level)
SELECT v, c, t, k, s, e, l, d::jsonb, f, x, lv
FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::timestamptz[],
            $6::timestamptz[], $7::boolean[], $8::text[], $9::timestamptz[], $10::timestamptz[],
            $11::smallint[])
     AS u(v, c, t, k, s, e, l, d, f, x, lv)
ON CONFLICT (dedup_key) DO UPDATE SET
    ended_at = COALESCE(EXCLUDED.ended_at, a.ended_at),
    details = EXCLUDED.details,
    first_fix_time = COALESCE(a.first_fix_time, EXCLUDED.first_fix_time),
    last_fix_time = COALESCE(EXCLUDED.last_fix_time, a.last_fix_time),
    updated_at = now()
WHERE a.ended_at IS DISTINCT FROM COALESCE(EXCLUDED.ended_at, a.ended_at)
   OR a.details IS DISTINCT FROM EXCLUDED.details
RETURNING a.id, a.status, a.dedup_key, a.level
), queued AS (
INSERT INTO alarm_outbox (alarm_ids) SELECT array_agg(id ORDER BY id) FROM changed
HAVING count(*) > 0
RETURNING batch_id
)
SELECT c.*, (SELECT batch_id FROM queued) AS batch_id FROM changed c
"""


@dataclass(frozen=True, slots=True)
class QueuedAlarms:
    """Alarm events queued in ``alarm_outbox`` (migration 0154), as the rules worker publishes
    them: ``alarms`` in publishing order (several events of one alarm possible) and
    ``batch_ids``, the outbox rows (one per committed batch that changed alarms) those events
    stand for, which :func:`mark_published` deletes once the broker has acknowledged them."""

    alarms: list[Alarm] = field(default_factory=list)
    batch_ids: frozenset[int] = frozenset()

    def __add__(self, later: QueuedAlarms) -> QueuedAlarms:
        """Both, ``later``'s events after these."""
        return QueuedAlarms(self.alarms + later.alarms, self.batch_ids | later.batch_ids)


async def save_alarm_events(conn: asyncpg.Connection, events: list[Alarm]) -> QueuedAlarms:
    """Insert or update alarm events by dedup key, in one statement (call inside the caller's
    transaction). Several events of one episode in the list (opened then closed) are written
    as the last one (keeping the first ``first_fix_time``).

    Returns as ``alarms``, in their original order, the events whose episode changed the table
    (new, now closed, or new details), with the row ``id``, ``status`` and ``level`` (the level
    stored when the episode opened: a later event never relevels it); an episode stored exactly
    as it is (reprocessing) returns nothing, so it is not published twice. The ids of the
    changed rows are queued in ``alarm_outbox`` (migrations 0022, 0151, 0154) as one row, whose
    ``batch_id`` is returned in ``batch_ids``, until :func:`mark_published`.
    """
    if not events:
        return QueuedAlarms()
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
    alarms = [
        replace(
            alarm,
            id=changed[alarm.dedup_key]["id"],
            status=AlarmStatus(changed[alarm.dedup_key]["status"]),
            level=changed[alarm.dedup_key]["level"],
        )
        for alarm in events
        if alarm.dedup_key in changed
    ]
    batch_ids = frozenset([found[0]["batch_id"]]) if found else frozenset()
    return QueuedAlarms(alarms, batch_ids)


async def mark_published(
    conn: asyncpg.Connection | asyncpg.Pool, batch_ids: Collection[int]
) -> None:
    """Take the outbox rows ``batch_ids`` (:attr:`QueuedAlarms.batch_ids`), whose alarms'
    MQTT messages the broker has acknowledged, out of ``alarm_outbox``. A later change of one
    of their alarms is in a later row, which stays queued: it is still to be published."""
    if batch_ids:
        await conn.execute(
            "DELETE FROM alarm_outbox WHERE batch_id = ANY($1::bigint[])", sorted(batch_ids)
        )


async def pending_publications(conn: asyncpg.Connection | asyncpg.Pool) -> QueuedAlarms:
    """Alarms stored but not yet acknowledged by the broker, each once, as stored now (event
    ``closed`` when ended, else ``opened``), in the order of the batch that queued it last
    (within a batch, the order of its list: ascending ids, or the order of their changes for
    the alarms pending at migration 0154), with the outbox rows read (``batch_ids``; one whose
    alarms were deleted meanwhile is read too, so that it goes with them)."""
    # alarm id -> (the last batch that queued it, its place in that batch's list)
    latest: dict[int, tuple[int, int]] = {}
    batches = await conn.fetch("SELECT batch_id, alarm_ids FROM alarm_outbox ORDER BY batch_id")
    for batch in batches:
        for place, alarm_id in enumerate(batch["alarm_ids"]):
            latest[alarm_id] = (batch["batch_id"], place)
    rows = await conn.fetch(
        "SELECT a.*, v.terminal_id FROM alarms a JOIN vehicles v ON v.id = a.vehicle_id "
        "WHERE a.id = ANY($1::bigint[])",
        list(latest),
    )
    rows = sorted(rows, key=lambda r: latest[r["id"]])
    return QueuedAlarms(
        [alarm_from_row(r) for r in rows], frozenset(b["batch_id"] for b in batches)
    )


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


# --- the web app's worklist view -------------------------------------------------------------

_ALARM_SELECT = (
    "SELECT a.id, a.alarm_type, a.level, a.vehicle_id, a.company_id, v.plate_number, "
    "v.plate_color, v.vehicle_class, c.name AS company_name, a.started_at, a.ended_at, a.status, "
    "a.late, a.details, a.first_fix_time, a.last_fix_time, a.acknowledged_at, a.acknowledged_by, "
    "a.handled_at, a.handled_by, a.handling_note, a.created_at, a.updated_at, "
    "a.handling_method, a.remind_command_id, rc.body->>'text' AS remind_text, "
    "rc.state AS remind_state, rc.sent_at AS remind_sent_at, rc.result AS remind_result, "
    "rc.answered_at AS remind_answered_at, sv.id AS supervision_id, "
    "sv.deadline AS supervision_deadline, sv.answered_at AS supervision_answered_at "
    "FROM alarms a JOIN vehicles v ON v.id = a.vehicle_id JOIN companies c ON c.id = a.company_id "
    "LEFT JOIN commands rc ON rc.id = a.remind_command_id "
    "LEFT JOIN LATERAL (SELECT s.id, s.deadline, s.answered_at FROM supervisions s "
    "WHERE s.alarm_id = a.id ORDER BY s.issued_at DESC, s.id DESC LIMIT 1) sv ON true"
)
# the worklist order (indexes alarms_worklist_idx / alarms_company_worklist_idx, migration 0052):
# unhandled first, then by level (1 紧急 first), then newest
_WORKLIST_ORDER = (
    "ORDER BY (a.status IN ('handled', 'closed')), a.level, a.started_at DESC, a.id DESC"
)
# where the alarm happened: the vehicle's last ok fix at its start (within the day before)
_PLACE = (
    "LEFT JOIN LATERAL (SELECT p.latitude, p.longitude FROM positions p "
    "WHERE p.vehicle_id = a.vehicle_id AND p.quality = 'ok' "
    "AND p.fix_time <= COALESCE(a.first_fix_time, a.started_at) "
    "AND p.fix_time > COALESCE(a.first_fix_time, a.started_at) - interval '1 day' "
    "ORDER BY p.fix_time DESC LIMIT 1) AS place ON true"
)


@dataclass(frozen=True, slots=True)
class AlarmFilter:
    """The list filters as one SQL condition; ``status`` and ``level`` apart, so the summary
    can count every status and level under the other filters. ``company_id`` None: every
    company; ``plate``: a literal part of the plate, any case."""

    company_id: int | None
    alarm_type: str | None
    vehicle_id: int | None
    plate: str | None
    start: datetime | None
    end: datetime | None
    late: bool | None

    def where(
        self, statuses: list[str] | None = None, levels: list[int] | None = None
    ) -> tuple[str, list[Any]]:
        """``(condition, args)``: only the filters given, as ``$1``, ``$2``... (a plan per
        combination, so each can use its index), over ``alarms a JOIN vehicles v``."""
        plate = None
        if self.plate:  # a literal part of the plate: LIKE's wildcards escaped
            literal = self.plate.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            plate = f"%{literal}%"
        terms = (
            ("a.company_id = {}", self.company_id),
            ("a.alarm_type = {}", self.alarm_type),
            ("a.vehicle_id = {}", self.vehicle_id),
            ("v.plate_number ILIKE {}", plate),
            ("a.started_at >= {}", self.start),
            ("a.started_at < {}", self.end),
            ("a.late = {}", self.late),
            ("a.status = ANY({}::text[])", statuses),
            ("a.level = ANY({}::smallint[])", levels),
        )
        conditions, args = [], []
        for sql, value in terms:
            if value is not None:
                args.append(value)
                conditions.append(sql.format(f"${len(args)}"))
        return " AND ".join(conditions) or "true", args


async def worklist(
    conn: asyncpg.Connection | asyncpg.Pool,
    filters: AlarmFilter,
    statuses: list[str] | None,
    levels: list[int] | None,
    limit: int,
    offset: int,
) -> list[dict[str, Any]]:
    """One page of the worklist (unhandled first, then level, then newest) as view rows, each
    with ``latitude`` / ``longitude``: the vehicle's last ok fix at the alarm's start (None
    without one within the day before)."""
    where, args = filters.where(statuses, levels)
    n = len(args)
    rows = await conn.fetch(
        f"SELECT a.*, place.latitude, place.longitude FROM ({_ALARM_SELECT} WHERE {where} "
        f"{_WORKLIST_ORDER} LIMIT ${n + 1} OFFSET ${n + 2}) AS a {_PLACE} {_WORKLIST_ORDER}",
        *args,
        limit,
        offset,
    )
    return [dict(r) for r in rows]


async def counts_by_status_level(
    conn: asyncpg.Connection | asyncpg.Pool, filters: AlarmFilter
) -> list[tuple[str, int, int]]:
    """``(status, level, count)`` of the alarms under ``filters`` (status and level unfiltered)."""
    where, args = filters.where()
    join = "JOIN vehicles v ON v.id = a.vehicle_id " if filters.plate else ""
    rows = await conn.fetch(
        f"SELECT a.status, a.level, count(*) AS n FROM alarms a {join}"
        f"WHERE {where} GROUP BY a.status, a.level",
        *args,
    )
    return [(r["status"], r["level"], r["n"]) for r in rows]


async def view_row(
    conn: asyncpg.Connection | asyncpg.Pool,
    alarm_id: int,
    company_id: int | None = None,
    lock: bool = False,
) -> dict[str, Any] | None:
    """One alarm as the worklist shows it; None when missing or (``company_id`` given) of
    another company. ``lock``: FOR UPDATE of the alarm row (inside a transaction)."""
    row = await conn.fetchrow(
        f"{_ALARM_SELECT} WHERE a.id = $1 AND ($2::bigint IS NULL OR a.company_id = $2)"
        + (" FOR UPDATE OF a" if lock else ""),
        alarm_id,
        company_id,
    )
    return None if row is None else dict(row)


async def id_by_dedup_key(conn: asyncpg.Connection | asyncpg.Pool, dedup_key: str) -> int | None:
    """The id of the alarm stored under ``dedup_key``, or None when none is."""
    alarm_id = await conn.fetchval("SELECT id FROM alarms WHERE dedup_key = $1", dedup_key)
    return None if alarm_id is None else int(alarm_id)


async def episode(conn: asyncpg.Connection | asyncpg.Pool, alarm_id: int) -> asyncpg.Record | None:
    """What an evidence report needs of an alarm: ``id``, ``vehicle_id``, ``alarm_type``,
    ``started_at``, ``ended_at``, ``status``, ``late``, ``details``, ``first_fix_time``,
    ``last_fix_time``; None when there is no such alarm."""
    return await conn.fetchrow(
        "SELECT id, vehicle_id, alarm_type, started_at, ended_at, status, late, details, "
        "first_fix_time, last_fix_time FROM alarms WHERE id = $1",
        alarm_id,
    )


async def handling_of(
    conn: asyncpg.Connection | asyncpg.Pool, alarm_id: int
) -> asyncpg.Record | None:
    """The alarm's whole row (its handling columns among them), None when there is none."""
    return await conn.fetchrow("SELECT * FROM alarms WHERE id = $1", alarm_id)


async def company_of(conn: asyncpg.Connection | asyncpg.Pool, alarm_id: int) -> int | None:
    """The company of an alarm's vehicle at the alarm, or None when there is no such alarm."""
    company_id = await conn.fetchval("SELECT company_id FROM alarms WHERE id = $1", alarm_id)
    return None if company_id is None else int(company_id)


async def episode_positions(
    conn: asyncpg.Connection | asyncpg.Pool, vehicle_id: int, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """The vehicle's positions from ``start`` to ``end`` inclusive, oldest first, up to 2,000:
    ``fix_time``, ``latitude``, ``longitude``, ``speed_kmh``, ``heading_deg``, ``quality``,
    ``late``."""
    rows = await conn.fetch(
        "SELECT fix_time, latitude, longitude, speed_kmh, heading_deg, quality, late "
        "FROM positions WHERE vehicle_id = $1 AND fix_time BETWEEN $2 AND $3 "
        "ORDER BY fix_time LIMIT 2000",
        vehicle_id,
        start,
        end,
    )
    return [dict(r) for r in rows]


async def acknowledge(conn: asyncpg.Connection, alarm_id: int, user_id: int) -> None:
    """open -> acknowledged by ``user_id`` now (the caller checked the status under lock)."""
    await conn.execute(
        "UPDATE alarms SET status = 'acknowledged', acknowledged_at = now(), "
        "acknowledged_by = $2, updated_at = now() WHERE id = $1",
        alarm_id,
        user_id,
    )


async def mark_handled(
    conn: asyncpg.Connection,
    alarm_id: int,
    user_id: int,
    note: str | None,
    method: str | None,
    remind_command_id: int | None,
) -> None:
    """-> handled by ``user_id`` now with the 处理方式 and 处理意见 (acknowledged too when it was
    not); ``remind_command_id``: the text sent to the driver, kept when None."""
    await conn.execute(
        "UPDATE alarms SET status = 'handled', handled_at = now(), handled_by = $2, "
        "handling_note = $3, acknowledged_at = coalesce(acknowledged_at, now()), "
        "acknowledged_by = coalesce(acknowledged_by, $2), handling_method = $4, "
        "remind_command_id = coalesce($5, remind_command_id), updated_at = now() "
        "WHERE id = $1",
        alarm_id,
        user_id,
        note,
        method,
        remind_command_id,
    )
