"""Companies and vehicles: list (scoped), create, update, deactivate and delete (bureau only),
every change audited in the same transaction; SQL in :mod:`gps_monitor.db.registry`.

A refused change names its field: pydantic's 422 list, or the same shape
``[{"loc": ["body", field], "type": "registry_taken" | "registry_unknown_company" |
"registry_has_history", "msg": ...}]`` for a taken plate/terminal/name (409), an unknown company
(422) or a delete of a vehicle with history (409), so the admin page shows each next to its field.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from gps_monitor.db import audit
from gps_monitor.db import jt809 as jt809_db
from gps_monitor.db import registry as store
from gps_monitor.models import PlateColor, VehicleClass
from gps_monitor.registry_fields import CompanyName, PlateNumber, SpeedLimitKmh, TerminalId
from web.deps import BureauUser, CurrentUser, DbId, PoolDep, SettingsDep, company_scope
from web.units import round_measures

router = APIRouter(prefix="/api", tags=["registry"])


class CompanyIn(BaseModel):
    name: CompanyName


class VehicleIn(BaseModel):
    company_id: DbId
    plate_number: PlateNumber
    plate_color: PlateColor = PlateColor.YELLOW
    vehicle_class: VehicleClass
    terminal_id: TerminalId
    speed_limit_kmh: SpeedLimitKmh | None = None
    night_ban_exempt: bool = False


class VehiclePatch(BaseModel):
    """Fields to change; ``active`` false deactivates (停用), true reactivates."""

    company_id: DbId | None = None
    plate_number: PlateNumber | None = None
    plate_color: PlateColor | None = None
    vehicle_class: VehicleClass | None = None
    terminal_id: TerminalId | None = None
    speed_limit_kmh: SpeedLimitKmh | None = None
    night_ban_exempt: bool | None = None
    active: bool | None = None


_NOT_NULL = (
    "company_id",
    "plate_number",
    "plate_color",
    "vehicle_class",
    "terminal_id",
    "night_ban_exempt",
    "active",
)


@router.get("/companies")
async def list_companies(user: CurrentUser, pool: PoolDep) -> list[dict[str, Any]]:
    """Companies the user may see (an operator: its own), with their vehicle counts."""
    return await store.list_companies(pool, company_scope(user))


@router.post("/companies", status_code=201)
async def create_company(body: CompanyIn, user: BureauUser, pool: PoolDep) -> dict[str, Any]:
    """Create a company (bureau only). 409 when the name exists."""
    async with pool.acquire() as conn, conn.transaction():
        company = await store.create_company(conn, body.name)
        await audit.record(
            conn,
            user,
            "company.create",
            "company",
            company.id,
            company_id=company.id,
            details={"name": company.name},
        )
    return {"id": company.id, "name": company.name}


@router.patch("/companies/{company_id}")
async def rename_company(
    company_id: DbId, body: CompanyIn, user: BureauUser, pool: PoolDep
) -> dict[str, Any]:
    """Rename a company (bureau only). 409 when another company has the name."""
    async with pool.acquire() as conn, conn.transaction():
        company = await store.rename_company(conn, company_id, body.name)
        await audit.record(
            conn,
            user,
            "company.update",
            "company",
            company_id,
            company_id=company_id,
            details={"name": company.name},
        )
    return {"id": company.id, "name": company.name}


@router.get("/vehicles")
async def list_vehicles(
    user: CurrentUser,
    pool: PoolDep,
    company_id: DbId | None = None,
    plate: str | None = None,
    limit: int = 20000,
) -> list[dict[str, Any]]:
    """Vehicles the user may see; ``plate`` matches part of the plate number (case-insensitive).
    Deactivated ones are included with ``active`` false."""
    return await store.list_vehicles(
        pool,
        company_id=company_scope(user, company_id),
        plate=plate,
        limit=min(max(limit, 1), 20000),
    )


async def fetch_vehicle(pool: PoolDep, user: CurrentUser, vehicle_id: int) -> dict[str, Any]:
    """One vehicle the user may see.

    Raises:
        NotFoundError (404): no such vehicle, or another company's (same answer, no id probing).
    """
    return await store.registry_entry(pool, vehicle_id, company_scope(user))


@router.get("/vehicles/{vehicle_id}")
async def get_vehicle(vehicle_id: DbId, user: CurrentUser, pool: PoolDep) -> dict[str, Any]:
    """One vehicle with its latest position and open alarms (the map's vehicle card)."""
    card = await store.vehicle_card(pool, vehicle_id, company_scope(user))
    if card["latest"] is not None:
        round_measures(card["latest"])
    return card


@router.post("/vehicles", status_code=201)
async def create_vehicle(
    body: VehicleIn, user: BureauUser, pool: PoolDep, settings: SettingsDep
) -> dict[str, Any]:
    """Register a vehicle (bureau only). 409 when the terminal or plate+colour is taken, 422
    for an unknown company. With a JT/T 809 superior configured, its 0x1201 is queued."""
    async with pool.acquire() as conn, conn.transaction():
        vehicle = await store.create_vehicle(conn, body.model_dump())
        if settings.jt809.superior_host:
            await jt809_db.enqueue_registrations(conn, [vehicle["id"]])
        await audit.record(
            conn,
            user,
            "vehicle.create",
            "vehicle",
            vehicle["id"],
            company_id=vehicle["company_id"],
            details=body.model_dump(mode="json"),
        )
    return vehicle


@router.patch("/vehicles/{vehicle_id}")
async def update_vehicle(
    vehicle_id: DbId, body: VehiclePatch, user: BureauUser, pool: PoolDep, settings: SettingsDep
) -> dict[str, Any]:
    """Change some fields of a vehicle (bureau only); ``{"active": false}`` deactivates it. The
    audit entry keeps the changes and the values before. A changed plate, colour or terminal
    queues a new 0x1201 when a JT/T 809 superior is configured."""
    changes = body.model_dump(exclude_unset=True, mode="json")
    if not changes:
        raise HTTPException(422, "expected at least one field to change, got none")
    for name in _NOT_NULL:
        if name in changes and changes[name] is None:
            raise HTTPException(422, f"{name}: expected a value, got null")
    async with pool.acquire() as conn, conn.transaction():
        before, after = await store.update_vehicle(conn, vehicle_id, changes)
        if settings.jt809.superior_host and {"plate_number", "plate_color", "terminal_id"} & set(
            changes
        ):
            await jt809_db.enqueue_registrations(conn, [vehicle_id])
        action = "vehicle.update"
        if set(changes) == {"active"}:
            action = "vehicle.reactivate" if changes["active"] else "vehicle.deactivate"
        await audit.record(
            conn,
            user,
            action,
            "vehicle",
            vehicle_id,
            company_id=after["company_id"],
            details={**changes, "before": {k: _json(before[k]) for k in changes}},
        )
    return after


@router.delete("/vehicles/{vehicle_id}")
async def delete_vehicle(vehicle_id: DbId, user: BureauUser, pool: PoolDep) -> dict[str, Any]:
    """Delete a vehicle registered by mistake (bureau only); answers the entry it was. 409 once
    it has positions or alarms (deactivate it instead: the history is evidence)."""
    async with pool.acquire() as conn, conn.transaction():
        entry = await store.delete_vehicle(conn, vehicle_id)
        await audit.record(
            conn,
            user,
            "vehicle.delete",
            "vehicle",
            vehicle_id,
            company_id=entry["company_id"],
            details={k: _json(v) for k, v in entry.items()},
        )
    return entry


def _json(value: Any) -> Any:
    return value if value is None or isinstance(value, bool | int | float | str) else str(value)
