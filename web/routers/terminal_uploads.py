"""What a vehicle's JT/T 808 terminal uploaded besides positions, stored as received by the
gateway (table ``terminal_uploads``, migration 0130): 0x0900 pass-through, 0x0705 CAN data,
0x0108 upgrade results. Read-only; bureau and enforcement see every vehicle, an operator his
company's (another company's vehicle answers 404)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from gps_monitor.db import terminal_uploads
from web.deps import CurrentUser, DbId, PoolDep, company_scope, not_found

router = APIRouter(prefix="/api/terminal-uploads", tags=["terminal uploads"])


@router.get("")
async def list_uploads(
    user: CurrentUser,
    pool: PoolDep,
    vehicle_id: DbId,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """The vehicle's uploads, newest first: ``kind`` (pass_through, can_data, upgrade_result),
    ``msg_id``, ``body_hex`` (the body as received), ``frame_sha256``, ``decoded``,
    ``received_at``."""
    rows = await terminal_uploads.listing(pool, vehicle_id, company_scope(user), limit)
    if rows is None:
        raise not_found(f"vehicle {vehicle_id}")
    return rows
