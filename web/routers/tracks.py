"""``GET /api/vehicles/{id}/track``: a vehicle's track over a window as GeoJSON."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from gps_monitor.db import tracks
from web.deps import CurrentUser, DbId, PoolDep, SettingsDep
from web.routers.registry import fetch_vehicle
from web.track import track_geojson

router = APIRouter(prefix="/api/vehicles", tags=["tracks"])


@router.get("/{vehicle_id}/track")
async def get_track(
    vehicle_id: DbId,
    user: CurrentUser,
    pool: PoolDep,
    settings: SettingsDep,
    start: Annotated[datetime, Query(description="window start, ISO 8601 with offset")],
    end: Annotated[datetime, Query(description="window end (exclusive), ISO 8601")],
    max_points: Annotated[int | None, Query(ge=10, le=50000)] = None,
) -> dict[str, Any]:
    """Every stored fix of the vehicle in [start, end), quality flags included, simplified to
    about ``max_points`` (default ``web.track_max_points``) vertices, with the overspeed
    alarms of the window as marked stretches and every alarm of the vehicle in the window
    (``alarms``, for the playback timeline). 404 for a vehicle the user may not see; 422 for a
    naive datetime, an empty window or one longer than ``web.track_max_window_days``."""
    await fetch_vehicle(pool, user, vehicle_id)
    if start.tzinfo is None or end.tzinfo is None:
        raise HTTPException(422, "start/end: expected ISO 8601 with a UTC offset, got a naive time")
    if end <= start:
        raise HTTPException(422, f"window: expected end after start, got {start} .. {end}")
    if end - start > timedelta(days=settings.web.track_max_window_days):
        raise HTTPException(
            422,
            f"window: expected at most {settings.web.track_max_window_days} days, "
            f"got {(end - start).total_seconds() / 86400:.1f}",
        )
    window = await tracks.load_track(pool, vehicle_id, start, end)
    return track_geojson(
        vehicle_id,
        window.ok,
        window.flagged,
        window.alarms,
        max_points=max_points or settings.web.track_max_points,
        tolerance_m=settings.web.track_simplify_tolerance_m,
    )
