"""Reports API: evidence reports (PDF/XLSX/CSV/JSON), KPI reports (JSON/XLSX), the report log,
legal holds, and the KPI dashboard page (``/dashboard``).

Roles (issue 5): bureau and enforcement pull any report; an operator pulls reports of its own
company's vehicles and alarms only (another company's alarm or vehicle answers 404, a filter on
another company 403). Sealing and releasing legal holds: bureau and enforcement.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from gps_monitor.db import holds, report_log
from gps_monitor.db.users import Role, User
from gps_monitor.media_store import MediaStore
from web.deps import (
    CurrentUser,
    DbId,
    PoolDep,
    SettingsDep,
    company_scope,
    not_found,
    require_roles,
)
from web.reports import service
from web.routers.pages import STATIC_DIR, page

router = APIRouter(tags=["reports"])
LawUser = Annotated[User, Depends(require_roles(Role.BUREAU, Role.ENFORCEMENT))]


def _attachment(data: bytes, fmt: str, name: str) -> Response:
    filename = f"{name}.{fmt}"
    return Response(
        content=data,
        media_type=service.MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}"},
    )


def _who(user: User) -> str:
    return f"{user.display_name or user.username} ({user.role})"


@router.get("/api/reports/evidence")
async def evidence_report(
    user: CurrentUser,
    pool: PoolDep,
    settings: SettingsDep,
    alarm_id: DbId | None = None,
    vehicle_id: DbId | None = None,
    start: Annotated[
        datetime | None, Query(description="window start (ISO 8601 with offset)")
    ] = None,
    end: Annotated[datetime | None, Query(description="window end (ISO 8601 with offset)")] = None,
    speed_limit_kmh: Annotated[float | None, Query(gt=0, le=300)] = None,
    format: Annotated[str, Query(pattern="^(pdf|xlsx|csv|json)$")] = "pdf",
) -> Response:
    """Evidence report of one alarm (``alarm_id``) or one vehicle over [start, end]."""
    if alarm_id is not None:
        owner = await report_log.evidence_owner(pool, alarm_id=alarm_id)
        what = f"alarm {alarm_id}"
    elif vehicle_id is not None and start is not None and end is not None:
        owner = await report_log.evidence_owner(pool, vehicle_id=vehicle_id)
        what = f"vehicle {vehicle_id}"
    else:
        raise HTTPException(
            422,
            "expected alarm_id, or vehicle_id with start and end; got neither",
        )
    if owner is None or (not user.sees_all and owner != user.company_id):
        raise not_found(what)
    try:
        report, data = await service.evidence_report(
            pool, settings.reports, format, generated_by=_who(user), user_id=user.id,
            alarm_id=alarm_id, vehicle_id=vehicle_id, start=start, end=end,
            speed_limit_kmh=speed_limit_kmh,
            media_store=MediaStore(settings.media.directory),
        )  # fmt: skip
    except ValueError as error:
        raise HTTPException(422, str(error)) from error
    response = _attachment(data, format, report.report_number)
    response.headers["X-Report-Number"] = report.report_number
    response.headers["X-Report-Digest-SHA256"] = report.digest_sha256
    return response


@router.get("/api/reports/kpi")
async def kpi_report(
    user: CurrentUser,
    pool: PoolDep,
    settings: SettingsDep,
    from_day: Annotated[date, Query(alias="from", description="first local day")],
    to_day: Annotated[date, Query(alias="to", description="last local day (inclusive)")],
    company_id: DbId | None = None,
    format: Annotated[str, Query(pattern="^(json|xlsx)$")] = "json",
) -> Response:
    """KPI report (county and companies, per-day trend); operators get their own company."""
    scope = company_scope(user, company_id)
    try:
        body, data = await service.kpi_report(
            pool, settings.reports, format, from_day, to_day,
            generated_by=_who(user), company_id=scope, user_id=user.id,
        )  # fmt: skip
    except ValueError as error:
        raise HTTPException(422, str(error)) from error
    if format == "json":
        return JSONResponse(body)
    return _attachment(data, format, body["report_number"])


@router.get("/api/reports/log")
async def list_report_log(
    user: LawUser, pool: PoolDep, alarm_id: DbId | None = None,
    kind: Annotated[str | None, Query(pattern="^(evidence|kpi)$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:  # fmt: skip
    """Reports generated, newest first (bureau and enforcement), with the plate and alarm type;
    the formats of one evidence set share its ``report_number``."""
    rows = await report_log.entries(pool, alarm_id=alarm_id, kind=kind, limit=limit)
    return [{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in r.items()}
            for r in rows]  # fmt: skip


class SealIn(BaseModel):
    vehicle_id: DbId
    window_start: datetime
    window_end: datetime
    reason: str = Field(min_length=1, max_length=2000)
    case_number: str | None = Field(default=None, max_length=200)


class ReleaseIn(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)


@router.post("/api/holds", status_code=201)
async def seal_hold(body: SealIn, user: LawUser, pool: PoolDep) -> dict[str, Any]:
    """Seal a vehicle's data over a window (legal hold)."""
    async with pool.acquire() as conn:
        try:
            hold = await holds.seal(
                conn, vehicle_id=body.vehicle_id, window_start=body.window_start,
                window_end=body.window_end, reason=body.reason, sealed_by=_who(user),
                case_number=body.case_number,
            )  # fmt: skip
        except ValueError as error:
            raise HTTPException(422, str(error)) from error
    return hold.to_dict()


@router.get("/api/holds")
async def list_holds(
    user: LawUser, pool: PoolDep, vehicle_id: DbId | None = None, active: bool = False
) -> list[dict[str, Any]]:
    """Legal holds, newest first."""
    return [h.to_dict() for h in await holds.list_holds(
        pool, vehicle_id=vehicle_id, active_only=active)]  # fmt: skip


@router.post("/api/holds/{hold_id}/release")
async def release_hold(
    hold_id: DbId, body: ReleaseIn, user: LawUser, pool: PoolDep
) -> dict[str, Any]:
    """Release a legal hold (409 if already released)."""
    hold = await holds.release(pool, hold_id, released_by=_who(user), reason=body.reason)
    return hold.to_dict()


@page(router, "/dashboard")
async def dashboard_page() -> FileResponse:
    """The KPI dashboard page (charts drawn as plain SVG; no CDN)."""
    return FileResponse(STATIC_DIR / "dashboard.html")
