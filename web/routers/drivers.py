"""Who drove a vehicle when: its IC card sessions (issue 12 item 7; tables ``drivers`` and
``driver_sessions``, migration 0140, written by the JT/T 808 gateway from 0x0702). Read-only;
bureau and enforcement see every vehicle, an operator his company's (another company's vehicle
answers 404)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from gps_monitor.db import drivers
from web.deps import CurrentUser, DbId, PoolDep, company_scope, not_found

router = APIRouter(prefix="/api/driver-sessions", tags=["drivers"])


@router.get("")
async def list_sessions(
    user: CurrentUser,
    pool: PoolDep,
    vehicle_id: DbId,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """The vehicle's card sessions, newest first: ``certificate_no`` (从业资格证号), ``name``,
    ``issuing_authority``, ``valid_until``, ``id_card_no``, ``card_in_at``, ``card_out_at`` (null
    while the card is in), ``ended_by`` (``removed`` / ``replaced``)."""
    rows = await drivers.listing(pool, vehicle_id, company_scope(user), limit)
    if rows is None:
        raise not_found(f"vehicle {vehicle_id}")
    return rows
