"""Alarms: list and filter, one alarm with its positions and audit trail, acknowledge, handle.
Penalty decisions are recorded by :mod:`web.routers.penalties`. Each change is written with its
audit entry in one transaction and announced to live clients.

Handling flow: ``open`` -> ``acknowledged`` (operator or bureau saw it) -> ``handled`` (处理方式
and 处理意见; 提醒驾驶员 also sends the driver a text, kept as the alarm's ``remind_command_id``).
Enforcement records penalty decisions on any alarm.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
from annotated_types import Interval
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gps_monitor.commands import TextBody
from gps_monitor.db import alarms as alarms_db
from gps_monitor.db import audit, penalties
from gps_monitor.db import jt809 as jt809_db
from gps_monitor.db.alarms import AlarmFilter
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

STATUSES = ("open", "acknowledged", "handled", "closed")
UNHANDLED = ("open", "acknowledged")

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
    return await alarms_db.worklist(pool, filters, _statuses(status), level, limit, offset)


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
    counts = await alarms_db.counts_by_status_level(pool, filters)
    statuses = _statuses(status)
    levels = set(level) if level else None
    by_status = dict.fromkeys(STATUSES, 0)
    by_level = dict.fromkeys(("1", "2", "3", "4"), 0)
    unhandled = dict(by_level)
    opened = dict(by_level)
    total = 0
    for row_status, row_level, n in counts:
        in_status = statuses is None or row_status in statuses
        in_level = levels is None or row_level in levels
        key = str(row_level)
        if in_level:
            by_status[row_status] = by_status.get(row_status, 0) + n
        if in_status:
            by_level[key] += n
        if in_status and in_level:
            total += n
        if row_status in UNHANDLED:
            unhandled[key] += n
        if row_status == "open":
            opened[key] += n
    return {
        "total": total,
        "by_status": by_status,
        "by_level": by_level,
        "unhandled_by_level": unhandled,
        "open_by_level": opened,
    }


async def fetch_scoped(
    conn: asyncpg.Connection | asyncpg.Pool, user: User, alarm_id: int, lock: bool = False
) -> dict[str, Any]:
    """One alarm row as the list shows it, if ``user`` may see it (``lock``: FOR UPDATE).

    Raises:
        HTTPException 404: no such alarm, or one of a company the user may not see.
    """
    row = await alarms_db.view_row(conn, alarm_id, company_scope(user), lock=lock)
    if row is None:
        raise not_found(f"alarm {alarm_id}")
    return row


@router.get("/{alarm_id}")
async def get_alarm(alarm_id: DbId, user: CurrentUser, pool: PoolDep) -> dict[str, Any]:
    """One alarm with the positions of its episode (up to 2,000), penalties and audit trail."""
    alarm = await fetch_scoped(pool, user, alarm_id)
    start = alarm["first_fix_time"] or alarm["started_at"]
    end = alarm["last_fix_time"] or alarm["ended_at"] or datetime.now(start.tzinfo)
    alarm["positions"] = [
        round_measures(dict(r))
        for r in await alarms_db.episode_positions(pool, alarm["vehicle_id"], start, end)
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
        await alarms_db.acknowledge(conn, alarm_id, user.id)
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
        await alarms_db.mark_handled(
            conn, alarm_id, user.id, body.note or None, body.method, command_row_id
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
