"""The latest position of every vehicle a user may see, with its status: one SQL query shared by
``GET /api/positions/latest`` and the websocket snapshot.

Status (first that applies):
    offline   no message for longer than ``web.offline_after_s`` (DOMAIN.md: 5 min), or never
    in_alarm  an alarm episode still open and not yet handled (open / acknowledged)
    moving    speed at or above ``web.moving_speed_kmh`` (DOMAIN.md: 5 km/h)
    stopped   otherwise
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from gps_monitor.config import WebSettings
from web.units import round_measures

STATUSES = ("moving", "stopped", "offline", "in_alarm")

_SQL = """
WITH open_alarms AS (
    SELECT vehicle_id, count(*) AS n FROM alarms
    WHERE ended_at IS NULL AND status IN ('open', 'acknowledged')
    GROUP BY vehicle_id
), rows AS (
    SELECT v.id AS vehicle_id, v.company_id, v.plate_number, v.plate_color, v.vehicle_class,
           lp.fix_time, lp.last_message_at, lp.latitude, lp.longitude, lp.speed_kmh,
           lp.heading_deg, lp.acc_on, coalesce(a.n, 0) AS open_alarms,
           CASE
               WHEN lp.last_message_at IS NULL
                    OR lp.last_message_at < now() - make_interval(secs => $5) THEN 'offline'
               WHEN coalesce(a.n, 0) > 0 THEN 'in_alarm'
               WHEN lp.speed_kmh >= $6 THEN 'moving'
               ELSE 'stopped'
           END AS status
    FROM vehicles v
    JOIN latest_positions lp ON lp.vehicle_id = v.id
    LEFT JOIN open_alarms a ON a.vehicle_id = v.id
    WHERE lp.latitude IS NOT NULL
      AND ($1::bigint IS NULL OR v.company_id = $1)
      AND ($2::bigint[] IS NULL OR v.id = ANY($2))
      AND ($3::float8[] IS NULL OR (lp.longitude BETWEEN $3[1] AND $3[3]
                                    AND lp.latitude BETWEEN $3[2] AND $3[4]))
)
SELECT * FROM rows WHERE ($4::text IS NULL OR status = $4) ORDER BY vehicle_id
"""


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
    rows = await conn.fetch(
        _SQL,
        live.company_id,
        sorted(live.vehicle_ids) if live.vehicle_ids is not None else None,
        list(live.bbox) if live.bbox is not None else None,
        live.status,
        settings.offline_after_s,
        settings.moving_speed_kmh,
    )
    out = []
    for row in rows:
        item = round_measures(dict(row))
        for key in ("fix_time", "last_message_at"):
            if item[key] is not None:
                item[key] = item[key].isoformat()
        out.append(item)
    return out
