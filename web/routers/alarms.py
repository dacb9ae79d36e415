"""Alarms: list and filter, one alarm with its positions and audit trail, acknowledge, handle,
penalty decision. Each change is written with its audit entry in one transaction and announced
to live clients.

Handling flow: ``open`` -> ``acknowledged`` (operator or bureau saw it) -> ``handled`` (what was
done, as a note). Enforcement records penalty decisions on any alarm.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field

from gps_monitor.db import audit
from gps_monitor.db.users import User
from web.deps import (
    CurrentUser,
    DbId,
    EnforcementUser,
    HandlerUser,
    PoolDep,
    company_scope,
    not_found,
)
from web.units import round_measures

router = APIRouter(prefix="/api/alarms", tags=["alarms"])

_ALARM_SELECT = (
    "SELECT a.id, a.alarm_type, a.vehicle_id, a.company_id, v.plate_number, v.plate_color, "
    "c.name AS company_name, a.started_at, a.ended_at, a.status, a.late, a.details, "
    "a.first_fix_time, a.last_fix_time, a.acknowledged_at, a.acknowledged_by, a.handled_at, "
    "a.handled_by, a.handling_note, a.created_at, a.updated_at "
    "FROM alarms a JOIN vehicles v ON v.id = a.vehicle_id JOIN companies c ON c.id = a.company_id"
)
STATUSES = ("open", "acknowledged", "handled", "closed")


class HandleIn(BaseModel):
    note: str = Field(min_length=1, max_length=2000, description="What was done (called driver...)")


class PenaltyIn(BaseModel):
    decision: str = Field(min_length=1, max_length=200, examples=["罚款", "警告", "不予处罚"])
    fine_yuan: float | None = Field(default=None, ge=0, lt=1e10)  # numeric(12, 2)
    note: str | None = Field(default=None, max_length=2000)


@router.get("")
async def list_alarms(
    user: CurrentUser,
    pool: PoolDep,
    alarm_type: str | None = None,
    company_id: DbId | None = None,
    vehicle_id: DbId | None = None,
    status: str | None = None,
    start: Annotated[datetime | None, Query(description="started at or after (ISO 8601)")] = None,
    end: Annotated[datetime | None, Query(description="started before (ISO 8601)")] = None,
    late: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 200,
) -> list[dict[str, Any]]:
    """Alarms the user may see, newest first, filtered by type, company, vehicle, status and
    start-time window."""
    if status is not None and status not in STATUSES:
        raise HTTPException(422, f"status: expected one of {', '.join(STATUSES)}, got {status!r}")
    for name, value in (("start", start), ("end", end)):
        if value is not None and value.tzinfo is None:
            raise HTTPException(422, f"{name}: expected ISO 8601 with a UTC offset, got {value}")
    rows = await pool.fetch(
        f"{_ALARM_SELECT} WHERE ($1::bigint IS NULL OR a.company_id = $1) "
        "AND ($2::text IS NULL OR a.alarm_type = $2) AND ($3::bigint IS NULL OR a.vehicle_id = $3) "
        "AND ($4::text IS NULL OR a.status = $4) "
        "AND ($5::timestamptz IS NULL OR a.started_at >= $5) "
        "AND ($6::timestamptz IS NULL OR a.started_at < $6) AND ($7::bool IS NULL OR a.late = $7) "
        "ORDER BY a.started_at DESC, a.id DESC LIMIT $8",
        company_scope(user, company_id),
        alarm_type,
        vehicle_id,
        status,
        start,
        end,
        late,
        limit,
    )
    return [dict(r) for r in rows]


async def _fetch(
    conn: asyncpg.Connection | asyncpg.Pool, user: User, alarm_id: int, lock: bool = False
) -> dict[str, Any]:
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
    alarm = await _fetch(pool, user, alarm_id)
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
    alarm["penalties"] = [
        dict(r)
        for r in await pool.fetch(
            "SELECT p.id, p.decision, p.fine_yuan::float8 AS fine_yuan, p.note, p.recorded_at, "
            "u.username AS recorded_by FROM alarm_penalties p JOIN users u ON u.id = p.recorded_by "
            "WHERE p.alarm_id = $1 ORDER BY p.recorded_at",
            alarm_id,
        )
    ]
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
        alarm = await _fetch(conn, user, alarm_id, lock=True)
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
        alarm = await _fetch(conn, user, alarm_id)
    await _announce(request, alarm)
    return alarm


@router.post("/{alarm_id}/handle")
async def handle(
    alarm_id: DbId, body: HandleIn, request: Request, user: HandlerUser, pool: PoolDep
) -> dict[str, Any]:
    """open/acknowledged -> handled, with a note of what was done. 409 when already handled or
    closed."""
    async with pool.acquire() as conn, conn.transaction():
        alarm = await _fetch(conn, user, alarm_id, lock=True)
        if alarm["status"] not in ("open", "acknowledged"):
            raise HTTPException(
                409,
                f"alarm {alarm_id}: expected status open or acknowledged, got {alarm['status']}",
            )
        await conn.execute(
            "UPDATE alarms SET status = 'handled', handled_at = now(), handled_by = $2, "
            "handling_note = $3, acknowledged_at = coalesce(acknowledged_at, now()), "
            "acknowledged_by = coalesce(acknowledged_by, $2), updated_at = now() WHERE id = $1",
            alarm_id,
            user.id,
            body.note,
        )
        await audit.record(
            conn,
            user,
            "alarm.handle",
            "alarm",
            alarm_id,
            company_id=alarm["company_id"],
            details={"from": alarm["status"], "to": "handled", "note": body.note},
        )
        alarm = await _fetch(conn, user, alarm_id)
    await _announce(request, alarm)
    return alarm


@router.post("/{alarm_id}/penalty", status_code=201)
async def record_penalty(
    alarm_id: DbId, body: PenaltyIn, user: EnforcementUser, pool: PoolDep
) -> dict[str, Any]:
    """Record a penalty decision on an alarm (enforcement only)."""
    async with pool.acquire() as conn, conn.transaction():
        alarm = await _fetch(conn, user, alarm_id, lock=True)
        row = await conn.fetchrow(
            "INSERT INTO alarm_penalties (alarm_id, decision, fine_yuan, note, recorded_by) "
            "VALUES ($1, $2, $3, $4, $5) RETURNING id, alarm_id, decision, "
            "fine_yuan::float8 AS fine_yuan, note, recorded_at",
            alarm_id,
            body.decision,
            body.fine_yuan,
            body.note,
            user.id,
        )
        assert row is not None
        await audit.record(
            conn,
            user,
            "alarm.penalty",
            "alarm",
            alarm_id,
            company_id=alarm["company_id"],
            details=body.model_dump(),
        )
    return dict(row)


@router.get("/{alarm_id}/audit")
async def alarm_audit(alarm_id: DbId, user: CurrentUser, pool: PoolDep) -> list[dict[str, Any]]:
    """The audit trail of one alarm (who, when, what), oldest first."""
    await _fetch(pool, user, alarm_id)
    return await audit.entries_for(pool, "alarm", alarm_id)
