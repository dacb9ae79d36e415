"""Companies and vehicles: list (scoped), create and update (bureau only), audited."""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, HTTPException, status
from pydantic import AfterValidator, BaseModel, Field

from gps_monitor.db import audit
from gps_monitor.db.registry import check_terminal_id
from gps_monitor.models import PlateColor, VehicleClass
from web.deps import BureauUser, CurrentUser, DbId, PoolDep, company_scope, not_found
from web.units import round_measures

router = APIRouter(prefix="/api", tags=["registry"])

_VEHICLE_SELECT = (
    "SELECT v.id, v.company_id, c.name AS company_name, v.plate_number, v.plate_color, "
    "v.vehicle_class, v.terminal_id, v.speed_limit_kmh, v.night_ban_exempt "
    "FROM vehicles v JOIN companies c ON c.id = v.company_id"
)


TerminalId = Annotated[
    str,
    AfterValidator(check_terminal_id),
    Field(description="1 to 32 letters, digits, '-', '_' or '.'", examples=["013912345678"]),
]


class CompanyIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class VehicleIn(BaseModel):
    company_id: DbId
    plate_number: str = Field(min_length=2, max_length=20, examples=["渝A12345"])
    plate_color: PlateColor = PlateColor.YELLOW
    vehicle_class: VehicleClass
    terminal_id: TerminalId
    speed_limit_kmh: float | None = Field(default=None, gt=0, le=300)
    night_ban_exempt: bool = False


class VehiclePatch(BaseModel):
    company_id: DbId | None = None
    plate_number: str | None = Field(default=None, min_length=2, max_length=20)
    plate_color: PlateColor | None = None
    vehicle_class: VehicleClass | None = None
    terminal_id: TerminalId | None = None
    speed_limit_kmh: float | None = Field(default=None, gt=0, le=300)
    night_ban_exempt: bool | None = None


def _conflict(error: Exception, what: str) -> HTTPException:
    return HTTPException(status.HTTP_409_CONFLICT, f"{what}: {error}")


@router.get("/companies")
async def list_companies(user: CurrentUser, pool: PoolDep) -> list[dict[str, Any]]:
    """Companies the user may see (an operator: its own), with their vehicle counts."""
    rows = await pool.fetch(
        "SELECT c.id, c.name, count(v.id) AS vehicles FROM companies c "
        "LEFT JOIN vehicles v ON v.company_id = c.id "
        "WHERE $1::bigint IS NULL OR c.id = $1 GROUP BY c.id ORDER BY c.name",
        company_scope(user),
    )
    return [dict(r) for r in rows]


@router.post("/companies", status_code=201)
async def create_company(body: CompanyIn, user: BureauUser, pool: PoolDep) -> dict[str, Any]:
    """Create a company (bureau only). 409 when the name exists."""
    async with pool.acquire() as conn, conn.transaction():
        try:
            row = await conn.fetchrow(
                "INSERT INTO companies (name) VALUES ($1) RETURNING id, name", body.name
            )
        except asyncpg.UniqueViolationError as error:
            raise _conflict(error, f"company {body.name!r} exists") from error
        assert row is not None
        await audit.record(
            conn,
            user,
            "company.create",
            "company",
            row["id"],
            company_id=row["id"],
            details={"name": body.name},
        )
    return dict(row)


@router.patch("/companies/{company_id}")
async def rename_company(
    company_id: DbId, body: CompanyIn, user: BureauUser, pool: PoolDep
) -> dict[str, Any]:
    """Rename a company (bureau only)."""
    async with pool.acquire() as conn, conn.transaction():
        try:
            row = await conn.fetchrow(
                "UPDATE companies SET name = $2 WHERE id = $1 RETURNING id, name",
                company_id,
                body.name,
            )
        except asyncpg.UniqueViolationError as error:
            raise _conflict(error, f"company {body.name!r} exists") from error
        if row is None:
            raise not_found(f"company {company_id}")
        await audit.record(
            conn,
            user,
            "company.update",
            "company",
            company_id,
            company_id=company_id,
            details={"name": body.name},
        )
    return dict(row)


@router.get("/vehicles")
async def list_vehicles(
    user: CurrentUser,
    pool: PoolDep,
    company_id: DbId | None = None,
    plate: str | None = None,
    limit: int = 20000,
) -> list[dict[str, Any]]:
    """Vehicles the user may see; ``plate`` matches part of the plate number (case-insensitive)."""
    rows = await pool.fetch(
        f"{_VEHICLE_SELECT} WHERE ($1::bigint IS NULL OR v.company_id = $1) "
        "AND ($2::text IS NULL OR v.plate_number ILIKE '%' || $2 || '%') "
        "ORDER BY v.plate_number LIMIT $3",
        company_scope(user, company_id),
        plate,
        min(max(limit, 1), 20000),
    )
    return [dict(r) for r in rows]


async def fetch_vehicle(pool: asyncpg.Pool, user: CurrentUser, vehicle_id: int) -> dict[str, Any]:
    """One vehicle the user may see.

    Raises:
        HTTPException 404: no such vehicle, or another company's (same answer, no id probing).
    """
    row = await pool.fetchrow(
        f"{_VEHICLE_SELECT} WHERE v.id = $1 AND ($2::bigint IS NULL OR v.company_id = $2)",
        vehicle_id,
        company_scope(user),
    )
    if row is None:
        raise not_found(f"vehicle {vehicle_id}")
    return dict(row)


@router.get("/vehicles/{vehicle_id}")
async def get_vehicle(vehicle_id: DbId, user: CurrentUser, pool: PoolDep) -> dict[str, Any]:
    """One vehicle with its latest position and open alarms (the map's vehicle card)."""
    vehicle = await fetch_vehicle(pool, user, vehicle_id)
    latest = await pool.fetchrow(
        "SELECT fix_time, last_message_at, latitude, longitude, speed_kmh, heading_deg, acc_on "
        "FROM latest_positions WHERE vehicle_id = $1",
        vehicle_id,
    )
    vehicle["latest"] = round_measures(dict(latest)) if latest else None
    vehicle["open_alarms"] = [
        dict(r)
        for r in await pool.fetch(
            "SELECT id, alarm_type, started_at, status, late FROM alarms "
            "WHERE vehicle_id = $1 AND ended_at IS NULL AND status IN ('open', 'acknowledged') "
            "ORDER BY started_at DESC LIMIT 50",
            vehicle_id,
        )
    ]
    return vehicle


@router.post("/vehicles", status_code=201)
async def create_vehicle(body: VehicleIn, user: BureauUser, pool: PoolDep) -> dict[str, Any]:
    """Register a vehicle (bureau only). 409 when the terminal or plate+colour is taken."""
    async with pool.acquire() as conn, conn.transaction():
        try:
            vehicle_id = await conn.fetchval(
                "INSERT INTO vehicles (company_id, plate_number, plate_color, vehicle_class, "
                "terminal_id, speed_limit_kmh, night_ban_exempt) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                body.company_id,
                body.plate_number,
                int(body.plate_color),
                str(body.vehicle_class),
                body.terminal_id,
                body.speed_limit_kmh,
                body.night_ban_exempt,
            )
        except asyncpg.UniqueViolationError as error:
            raise _conflict(
                error, "terminal_id or plate number+colour already registered"
            ) from error
        except asyncpg.ForeignKeyViolationError as error:
            raise HTTPException(422, f"company_id {body.company_id}: no such company") from error
        await audit.record(
            conn,
            user,
            "vehicle.create",
            "vehicle",
            vehicle_id,
            company_id=body.company_id,
            details=body.model_dump(mode="json"),
        )
    return await fetch_vehicle(pool, user, vehicle_id)


@router.patch("/vehicles/{vehicle_id}")
async def update_vehicle(
    vehicle_id: DbId, body: VehiclePatch, user: BureauUser, pool: PoolDep
) -> dict[str, Any]:
    """Change some fields of a vehicle (bureau only); the audit entry keeps the changes."""
    changes = body.model_dump(exclude_unset=True, mode="json")
    if not changes:
        raise HTTPException(422, "expected at least one field to change, got none")
    if "vehicle_class" in changes and changes["vehicle_class"] is None:
        raise HTTPException(422, "vehicle_class: expected a class, got null")
    sets = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(changes))
    async with pool.acquire() as conn, conn.transaction():
        try:
            company_id = await conn.fetchval(
                f"UPDATE vehicles SET {sets} WHERE id = $1 RETURNING company_id",
                vehicle_id,
                *changes.values(),
            )
        except asyncpg.UniqueViolationError as error:
            raise _conflict(
                error, "terminal_id or plate number+colour already registered"
            ) from error
        except (asyncpg.ForeignKeyViolationError, asyncpg.NotNullViolationError) as error:
            raise HTTPException(422, f"invalid change: {error}") from error
        if company_id is None:
            raise not_found(f"vehicle {vehicle_id}")
        await audit.record(
            conn,
            user,
            "vehicle.update",
            "vehicle",
            vehicle_id,
            company_id=company_id,
            details=changes,
        )
    return await fetch_vehicle(pool, user, vehicle_id)
