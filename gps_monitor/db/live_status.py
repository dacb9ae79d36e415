"""Every vehicle's live status with its latest position: one SQL query, shared by the map's
vehicle tree (``GET /api/fleet``: all registered vehicles, also those that never reported), the
latest-positions API and the websocket snapshot (vehicles with a position only).

Status (first that applies), DOMAIN.md thresholds passed in by the caller:
    never      no message ever received from the vehicle's terminal (未入网)
    offline    no message for longer than ``offline_after_s`` (DOMAIN.md: 5 min)
    in_alarm   an alarm episode still open and not yet handled (open / acknowledged)
    moving     speed at or above ``moving_speed_kmh`` (DOMAIN.md: 5 km/h)
    stopped    otherwise
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

STATUSES = ("moving", "stopped", "offline", "in_alarm", "never")

_SQL = """
WITH open_alarms AS (
    SELECT vehicle_id, count(*) AS n FROM alarms
    WHERE ended_at IS NULL AND status IN ('open', 'acknowledged')
    GROUP BY vehicle_id
), rows AS (
    SELECT v.id AS vehicle_id, v.company_id, c.name AS company_name, v.plate_number,
           v.plate_color, v.vehicle_class,
           lp.fix_time, lp.last_message_at, lp.latitude, lp.longitude, lp.speed_kmh,
           lp.heading_deg, lp.acc_on, coalesce(a.n, 0) AS open_alarms,
           CASE
               WHEN lp.last_message_at IS NULL AND lp.fix_time IS NULL THEN 'never'
               WHEN lp.last_message_at IS NULL
                    OR lp.last_message_at < now() - make_interval(secs => $5) THEN 'offline'
               WHEN coalesce(a.n, 0) > 0 THEN 'in_alarm'
               WHEN lp.speed_kmh >= $6 THEN 'moving'
               ELSE 'stopped'
           END AS status
    FROM vehicles v
    JOIN companies c ON c.id = v.company_id
    LEFT JOIN latest_positions lp ON lp.vehicle_id = v.id
    LEFT JOIN open_alarms a ON a.vehicle_id = v.id
    WHERE (($7::boolean AND v.active) OR lp.latitude IS NOT NULL)
      AND ($1::bigint IS NULL OR v.company_id = $1)
      AND ($2::bigint[] IS NULL OR v.id = ANY($2))
      AND ($3::float8[] IS NULL OR (lp.longitude BETWEEN $3[1] AND $3[3]
                                    AND lp.latitude BETWEEN $3[2] AND $3[4]))
)
SELECT * FROM rows WHERE ($4::text IS NULL OR status = $4) ORDER BY vehicle_id
"""


@dataclass(frozen=True, slots=True)
class StatusQuery:
    """Which vehicles: ``company_id`` / ``vehicle_ids`` narrow (None: all); ``bbox`` is
    (min_lon, min_lat, max_lon, max_lat) in WGS-84 degrees and keeps located vehicles only;
    ``status`` one of :data:`STATUSES`; ``with_unlocated`` also lists vehicles without a fix
    (never reported, or contact without position) unless deactivated (停用, migration 0121):
    a vehicle off the road is not 未入网."""

    company_id: int | None = None
    vehicle_ids: frozenset[int] | None = None
    bbox: tuple[float, float, float, float] | None = None
    status: str | None = None
    with_unlocated: bool = False


async def vehicle_statuses(
    conn: asyncpg.Connection | asyncpg.Pool,
    query: StatusQuery,
    *,
    offline_after_s: float,
    moving_speed_kmh: float,
) -> list[asyncpg.Record]:
    """Rows ``vehicle_id, company_id, company_name, plate_number, plate_color, vehicle_class,
    fix_time, last_message_at, latitude, longitude, speed_kmh, heading_deg, acc_on, open_alarms,
    status`` ordered by vehicle id (position columns null for a vehicle without a fix)."""
    return await conn.fetch(
        _SQL,
        query.company_id,
        sorted(query.vehicle_ids) if query.vehicle_ids is not None else None,
        list(query.bbox) if query.bbox is not None else None,
        query.status,
        offline_after_s,
        moving_speed_kmh,
        query.with_unlocated,
    )


def status_dict(row: asyncpg.Record) -> dict[str, Any]:
    """One row as JSON-ready values (datetimes as ISO 8601 strings)."""
    item = dict(row)
    for key in ("fix_time", "last_message_at"):
        if item[key] is not None:
            item[key] = item[key].isoformat()
    return item
