"""The latest position of every vehicle a user may see, with its status, for
``GET /api/positions/latest`` and the websocket snapshot: the filter a user asked for and the
call into :mod:`gps_monitor.db.live_status` (its docstring defines the statuses). Only located
vehicles are listed here; the vehicle tree (``GET /api/fleet``) lists them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from gps_monitor.config import WebSettings
from gps_monitor.db import live_status
from gps_monitor.db.live_status import StatusQuery, status_dict, vehicle_statuses
from web.units import round_measures

# a located vehicle has reported, so it is never 'never'
STATUSES = tuple(s for s in live_status.STATUSES if s != "never")


@dataclass(frozen=True, slots=True)
class LiveFilter:
    """What a user asked for, already narrowed to what it may see.

    ``bbox`` is (min_lon, min_lat, max_lon, max_lat) in WGS-84 degrees.
    """

    company_id: int | None = None
    vehicle_ids: frozenset[int] | None = None
    bbox: tuple[float, float, float, float] | None = None
    status: str | None = None

    def admits(self, company_id: int, vehicle_id: int, lat: float, lon: float) -> bool:
        """True when a position of that vehicle at (lat, lon) passes the filter (not status)."""
        if self.company_id is not None and company_id != self.company_id:
            return False
        if self.vehicle_ids is not None and vehicle_id not in self.vehicle_ids:
            return False
        if self.bbox is not None:
            min_lon, min_lat, max_lon, max_lat = self.bbox
            return min_lon <= lon <= max_lon and min_lat <= lat <= max_lat
        return True


def parse_bbox(
    text: str | list[float] | tuple[float, ...] | None,
) -> tuple[float, float, float, float] | None:
    """``"min_lon,min_lat,max_lon,max_lat"`` (or a 4-list) -> tuple; None passes through.

    Raises:
        ValueError: not four numbers, or min above max, or out of the degree ranges.
    """
    if text is None:
        return None
    parts = text.split(",") if isinstance(text, str) else list(text)
    try:
        values = tuple(float(p) for p in parts)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"bbox: expected 4 numbers min_lon,min_lat,max_lon,max_lat, got {text!r}"
        ) from error
    if len(values) != 4:
        raise ValueError(f"bbox: expected 4 numbers min_lon,min_lat,max_lon,max_lat, got {text!r}")
    min_lon, min_lat, max_lon, max_lat = values
    if not (-180 <= min_lon <= max_lon <= 180 and -90 <= min_lat <= max_lat <= 90):
        raise ValueError(
            "bbox: expected -180<=min_lon<=max_lon<=180 and -90<=min_lat<=max_lat<=90, "
            f"got {text!r}"
        )
    return (min_lon, min_lat, max_lon, max_lat)


async def latest_positions(
    conn: asyncpg.Connection | asyncpg.Pool, live: LiveFilter, settings: WebSettings
) -> list[dict[str, Any]]:
    """Rows of the latest positions passing ``live`` (datetimes as ISO 8601 strings)."""
    rows = await vehicle_statuses(
        conn,
        StatusQuery(live.company_id, live.vehicle_ids, live.bbox, live.status),
        offline_after_s=settings.offline_after_s,
        moving_speed_kmh=settings.moving_speed_kmh,
    )
    return [round_measures(status_dict(row)) for row in rows]
