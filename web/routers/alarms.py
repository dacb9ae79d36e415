"""Alarms: list and filter, one alarm with its positions and audit trail, acknowledge, handle.
Penalty decisions are recorded by :mod:`web.routers.penalties`. Each change is written with its
audit entry in one transaction and announced to live clients.

Handling flow: ``open`` -> ``acknowledged`` (operator or bureau saw it) -> ``handled`` (处理方式
and 处理意见; 提醒驾驶员 also sends the driver a text, kept as the alarm's ``remind_command_id``).
Enforcement records penalty decisions on any alarm.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
from annotated_types import Interval
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gps_monitor.commands import TextBody
from gps_monitor.db import audit, penalties
from gps_monitor.db import jt809 as jt809_db
from gps_monitor.db.users import User
from web.deps import (
    CurrentUser,
    DbId,
    HandlerUser,
    PoolDep,
    SettingsDep,
    company_scope,
    not_found,
)
from web.routers.commands import send_text, target_vehicle
from web.units import round_measures

router = APIRouter(prefix="/api/alarms", tags=["alarms"])

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
STATUSES = ("open", "acknowledged", "handled", "closed")
UNHANDLED = ("open", "acknowledged")
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


HANDLING_METHODS = ("remind_driver", "phone_call", "notify_company", "false_alarm", "other")
"""处理方式: 提醒驾驶员 (sends a text to the terminal), 电话联系, 通知企业, 误报/设备故障, 其他."""


class HandleIn(BaseModel):
    """How an alarm was handled: a 处理方式 and/or a note (处理意见); with ``remind_driver`` the
    text sent to the driver (``remind``), which goes out as a ``text`` command."""

    model_config = ConfigDict(extra="forbid")

    method: Literal[HANDLING_METHODS] | None = None  # type: ignore[valid-type]
    note: str = Field(default="", max_length=2000, description="处理意见: what was done")
    remind: TextBody | None = Field(default=None, description="The text for remind_driver")

    @model_validator(mode="after")
    def _complete(self) -> HandleIn:
        if self.method is None and not self.note.strip():
            raise ValueError("expected a method or a note saying what was done, got neither")
        if self.method == "remind_driver" and self.remind is None:
            raise ValueError("method remind_driver: expected remind.text, the text to send")
        if self.method != "remind_driver" and self.remind is not None:
            raise ValueError(f"remind: only with method remind_driver, got method {self.method}")
        return self


@dataclass(frozen=True, slots=True)
class AlarmFilter:
    """The list filters as one SQL condition; ``status`` and ``level`` apart, so the summary
    can count every status and level under the other filters."""

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


def _statuses(status: str | None) -> list[str] | None:
    """``status`` parameter -> the statuses it selects (``unhandled`` = open + acknowledged)."""
    if status is None:
        return None
    if status == "unhandled":
        return list(UNHANDLED)
    if status not in STATUSES:
        raise HTTPException(
            422, f"status: expected one of {', '.join(STATUSES)} or unhandled, got {status!r}"
        )
    return [status]


async def alarm_filter(
    user: CurrentUser,
    alarm_type: str | None = None,
    company_id: DbId | None = None,
    vehicle_id: DbId | None = None,
    plate: Annotated[
        str | None, Query(max_length=20, description="part of the plate, any case")
    ] = None,
    start: Annotated[datetime | None, Query(description="started at or after (ISO 8601)")] = None,
    end: Annotated[datetime | None, Query(description="started before (ISO 8601)")] = None,
    late: bool | None = None,
) -> AlarmFilter:
    """The filters every alarm list view shares, restricted to what the user may see."""
    for name, value in (("start", start), ("end", end)):
        if value is not None and value.tzinfo is None:
            raise HTTPException(422, f"{name}: expected ISO 8601 with a UTC offset, got {value}")
    return AlarmFilter(
        company_scope(user, company_id), alarm_type, vehicle_id, plate or None, start, end, late
    )


FilterDep = Annotated[AlarmFilter, Depends(alarm_filter)]
StatusQuery = Annotated[
    str | None,
    Query(description="open, acknowledged, handled, closed, or unhandled (open + acknowledged)"),
]
LevelQuery = Annotated[
    list[Annotated[int, Interval(ge=1, le=4)]] | None,
    Query(description="1 紧急 .. 4 提示; repeat for several (level=1&level=2)"),
]


@router.get("")
async def list_alarms(
    pool: PoolDep,
    filters: FilterDep,
    status: StatusQuery = None,
    level: LevelQuery = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 200,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[dict[str, Any]]:
    """Alarms the user may see as a worklist: unhandled (open, acknowledged) first, then by
    level (1 紧急 first), then newest; filtered by type, level, status, company, vehicle, plate,
    start-time window and late. Paged by ``offset`` / ``limit``; ``GET /api/alarms/summary``
    with the same filters gives the total and the counts per status and level.

    Each row has ``level``, ``plate_number``, ``company_name``, ``details`` (the key figures:
    speed and limit, driving time, distance off route...) and ``latitude`` / ``longitude``: the
    vehicle's last ok fix at the alarm's start (None without one within the day before).
    """
    where, args = filters.where(_statuses(status), level)
    n = len(args)
    rows = await pool.fetch(
        f"SELECT a.*, place.latitude, place.longitude FROM ({_ALARM_SELECT} WHERE {where} "
        f"{_WORKLIST_ORDER} LIMIT ${n + 1} OFFSET ${n + 2}) AS a {_PLACE} {_WORKLIST_ORDER}",
        *args,
        limit,
        offset,
    )
    return [dict(r) for r in rows]


@router.get("/summary")
async def alarm_summary(
    pool: PoolDep, filters: FilterDep, status: StatusQuery = None, level: LevelQuery = None
) -> dict[str, Any]:
    """Counts for the alarm list's header, under the same filters as ``GET /api/alarms``:

    ``total`` (what the list pages through), ``by_status`` (every status, under the level
    filter), ``by_level`` (levels 1-4, under the status filter), ``unhandled_by_level`` and
    ``open_by_level`` (ignoring the status filter; the page's title badge counts the ``open``
    ones at or above its alert level), all as ``{"key": count}`` with every key present.
    """
    where, args = filters.where()
    join = "JOIN vehicles v ON v.id = a.vehicle_id " if filters.plate else ""
    rows = await pool.fetch(
        f"SELECT a.status, a.level, count(*) AS n FROM alarms a {join}"
        f"WHERE {where} GROUP BY a.status, a.level",
        *args,
    )
    statuses = _statuses(status)
    levels = set(level) if level else None
    by_status = dict.fromkeys(STATUSES, 0)
    by_level = dict.fromkeys(("1", "2", "3", "4"), 0)
    unhandled = dict(by_level)
    opened = dict(by_level)
    total = 0
    for r in rows:
        in_status = statuses is None or r["status"] in statuses
        in_level = levels is None or r["level"] in levels
        key = str(r["level"])
        if in_level:
            by_status[r["status"]] = by_status.get(r["status"], 0) + r["n"]
        if in_status:
            by_level[key] += r["n"]
        if in_status and in_level:
            total += r["n"]
        if r["status"] in UNHANDLED:
            unhandled[key] += r["n"]
        if r["status"] == "open":
            opened[key] += r["n"]
    return {
        "total": total,
        "by_status": by_status,
        "by_level": by_level,
        "unhandled_by_level": unhandled,
        "open_by_level": opened,
    }


async def fetch_alarm_row(
    conn: asyncpg.Connection | asyncpg.Pool, alarm_id: int
) -> dict[str, Any] | None:
    """One alarm row as the list shows it, unscoped (for announcements to live clients)."""
    row = await conn.fetchrow(f"{_ALARM_SELECT} WHERE a.id = $1", alarm_id)
    return None if row is None else dict(row)


async def fetch_scoped(
    conn: asyncpg.Connection | asyncpg.Pool, user: User, alarm_id: int, lock: bool = False
) -> dict[str, Any]:
    """One alarm row as the list shows it, if ``user`` may see it (``lock``: FOR UPDATE).

    Raises:
        HTTPException 404: no such alarm, or one of a company the user may not see.
    """
    row = await conn.fetchrow(
        f"{_ALARM_SELECT} WHERE a.id = $1 AND ($2::bigint IS NULL OR a.company_id = $2)"
        + (" FOR UPDATE OF a" if lock else ""),
        alarm_id,
        company_scope(user),
    )
    if row is None:
        raise not_found(f"alarm {alarm_id}")
    return dict(row)


@router.get("/{alarm_id}")
async def get_alarm(alarm_id: DbId, user: CurrentUser, pool: PoolDep) -> dict[str, Any]:
    """One alarm with the positions of its episode (up to 2,000), penalties and audit trail."""
    alarm = await fetch_scoped(pool, user, alarm_id)
    start = alarm["first_fix_time"] or alarm["started_at"]
    end = alarm["last_fix_time"] or alarm["ended_at"] or datetime.now(start.tzinfo)
    alarm["positions"] = [
        round_measures(dict(r))
        for r in await pool.fetch(
            "SELECT fix_time, latitude, longitude, speed_kmh, heading_deg, quality, late "
            "FROM positions WHERE vehicle_id = $1 AND fix_time BETWEEN $2 AND $3 "
            "ORDER BY fix_time LIMIT 2000",
            alarm["vehicle_id"],
            start,
            end,
        )
    ]
    alarm["penalties"] = [p.to_dict() for p in await penalties.for_alarm(pool, alarm_id)]
    alarm["audit"] = await audit.entries_for(pool, "alarm", alarm_id)
    return alarm


async def _announce(request: Request, alarm: dict[str, Any]) -> None:
    hub = getattr(request.app.state, "hub", None)
    if hub is not None:
        await hub.announce_alarm_change(alarm)


@router.post("/{alarm_id}/acknowledge")
async def acknowledge(
    alarm_id: DbId, request: Request, user: HandlerUser, pool: PoolDep
) -> dict[str, Any]:
    """open -> acknowledged (bureau or the vehicle's operator). 409 from any other status."""
    async with pool.acquire() as conn, conn.transaction():
        alarm = await fetch_scoped(conn, user, alarm_id, lock=True)
        if alarm["status"] != "open":
            raise HTTPException(
                409, f"alarm {alarm_id}: expected status open, got {alarm['status']}"
            )
        await conn.execute(
            "UPDATE alarms SET status = 'acknowledged', acknowledged_at = now(), "
            "acknowledged_by = $2, updated_at = now() WHERE id = $1",
            alarm_id,
            user.id,
        )
        await audit.record(
            conn,
            user,
            "alarm.acknowledge",
            "alarm",
            alarm_id,
            company_id=alarm["company_id"],
            details={"from": alarm["status"], "to": "acknowledged"},
        )
        alarm = await fetch_scoped(conn, user, alarm_id)
    await _announce(request, alarm)
    return alarm


@router.post("/{alarm_id}/handle")
async def handle(
    alarm_id: DbId,
    body: HandleIn,
    request: Request,
    user: HandlerUser,
    pool: PoolDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    """open/acknowledged -> handled, with the method and a note of what was done; with
    ``remind_driver`` the text is queued for the vehicle's terminal in the same transaction and
    the alarm keeps that command (its state and the terminal's answer show on the alarm). 409
    when already handled or closed; 422 for a text the terminal cannot take."""
    async with pool.acquire() as conn, conn.transaction():
        alarm = await fetch_scoped(conn, user, alarm_id, lock=True)
        if alarm["status"] not in ("open", "acknowledged"):
            raise HTTPException(
                409,
                f"alarm {alarm_id}: expected status open or acknowledged, got {alarm['status']}",
            )
        command_row_id = None
        if body.method == "remind_driver" and body.remind is not None:
            vehicle = await target_vehicle(conn, user, vehicle_id=alarm["vehicle_id"])
            command = await send_text(
                conn, user, settings.commands, vehicle, body.remind, alarm_id=alarm_id
            )
            command_row_id = command["id"]
        await conn.execute(
            "UPDATE alarms SET status = 'handled', handled_at = now(), handled_by = $2, "
            "handling_note = $3, acknowledged_at = coalesce(acknowledged_at, now()), "
            "acknowledged_by = coalesce(acknowledged_by, $2), handling_method = $4, "
            "remind_command_id = coalesce($5, remind_command_id), updated_at = now() "
            "WHERE id = $1",
            alarm_id,
            user.id,
            body.note or None,
            body.method,
            command_row_id,
        )
        if settings.jt809.superior_host:  # its 0x1412 to the superior (gps-monitor jt809)
            await jt809_db.enqueue_one(
                conn, "alarm_result", alarm["vehicle_id"], {"alarm_id": alarm_id}
            )
        await audit.record(
            conn,
            user,
            "alarm.handle",
            "alarm",
            alarm_id,
            company_id=alarm["company_id"],
            details={
                "from": alarm["status"],
                "to": "handled",
                "note": body.note,
                "method": body.method,
                "command_id": command_row_id,
            },
        )
        alarm = await fetch_scoped(conn, user, alarm_id)
    await _announce(request, alarm)
    return alarm


@router.get("/{alarm_id}/audit")
async def alarm_audit(alarm_id: DbId, user: CurrentUser, pool: PoolDep) -> list[dict[str, Any]]:
    """The audit trail of one alarm (who, when, what), oldest first."""
    await fetch_scoped(pool, user, alarm_id)
    return await audit.entries_for(pool, "alarm", alarm_id)
