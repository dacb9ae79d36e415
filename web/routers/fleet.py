"""The vehicle tree of the map page: every registered vehicle the user may see (an operator:
its company's), with its company, class, status and latest position if any.

Unlike ``GET /api/positions/latest`` this lists vehicles that never reported (status
``never``, shown as 未入网) and those with contact but no fix, so a new terminal is visible
before it sends its first position. Statuses: :mod:`gps_monitor.db.live_status`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from gps_monitor.db.live_status import StatusQuery, status_dict, vehicle_statuses
from web.deps import CurrentUser, PoolDep, SettingsDep, company_scope
from web.units import round_measures

router = APIRouter(prefix="/api", tags=["fleet"])


@router.get("/fleet")
async def fleet(user: CurrentUser, pool: PoolDep, settings: SettingsDep) -> list[dict[str, Any]]:
    """``[{vehicle_id, company_id, company_name, plate_number, plate_color, vehicle_class,
    status, open_alarms, fix_time, last_message_at, latitude, longitude, speed_kmh,
    heading_deg, acc_on}]`` ordered by vehicle id; position fields null without a fix."""
    rows = await vehicle_statuses(
        pool,
        StatusQuery(company_id=company_scope(user), with_unlocated=True),
        offline_after_s=settings.web.offline_after_s,
        moving_speed_kmh=settings.web.moving_speed_kmh,
    )
    return [round_measures(status_dict(row)) for row in rows]
