"""Latest positions, filtered by company, vehicles, status and bounding box (scoped)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from web.deps import CurrentUser, DbId, PoolDep, SettingsDep, company_scope
from web.live_query import STATUSES, LiveFilter, latest_positions, parse_bbox

router = APIRouter(prefix="/api/positions", tags=["positions"])


@router.get("/latest")
async def get_latest(
    user: CurrentUser,
    pool: PoolDep,
    settings: SettingsDep,
    company_id: DbId | None = None,
    status: Annotated[str | None, Query(description="moving, stopped, offline or in_alarm")] = None,
    bbox: Annotated[str | None, Query(description="min_lon,min_lat,max_lon,max_lat")] = None,
    vehicle_id: Annotated[list[DbId] | None, Query()] = None,
) -> list[dict[str, Any]]:
    """The newest ok fix of each vehicle the user may see, with its status."""
    if status is not None and status not in STATUSES:
        raise HTTPException(422, f"status: expected one of {', '.join(STATUSES)}, got {status!r}")
    try:
        box = parse_bbox(bbox)
    except ValueError as error:
        raise HTTPException(422, str(error)) from error
    live = LiveFilter(
        company_id=company_scope(user, company_id),
        vehicle_ids=frozenset(vehicle_id) if vehicle_id else None,
        bbox=box,
        status=status,
    )
    return await latest_positions(pool, live, settings.web)
