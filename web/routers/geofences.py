"""Geofences and routes: list (GeoJSON), create, replace, rename, delete, assign to vehicles.

Validation and storage are the rules area's (:mod:`gps_monitor.geofences`,
:mod:`gps_monitor.db.geofences`): invalid geometry (self-intersecting polygon, latitude out of
range such as swapped axes, a route with one point...) is refused with a 422 whose detail says
what is wrong. Geometry drawn on GCJ-02 tiles is sent with ``coordinates_crs: gcj02`` and
converted to WGS-84 here before validation (DOMAIN.md, Coordinates).

Only bureau users change geofences and routes (each change audited). Operators see the
geofences that concern their vehicles (unassigned ones apply to every vehicle) and the routes
assigned to them; the vehicle ids of other companies are never shown to them.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, Field

from gps_monitor.db import audit
from gps_monitor.db import geofences as store
from gps_monitor.db.users import User
from gps_monitor.geofences import Geofence, Route, from_feature, to_feature
from web.coords import geojson_gcj02_to_wgs84
from web.deps import BureauUser, CurrentUser, DbId, PoolDep, not_found

router = APIRouter(prefix="/api", tags=["geofences"])
Kind = Literal["geofence", "route"]
ItemId = Annotated[str, Path(min_length=1, max_length=100)]


class FeatureIn(BaseModel):
    feature: dict[str, Any] = Field(description="GeoJSON Feature (properties: see module doc)")
    coordinates_crs: Literal["wgs84", "gcj02"] = "wgs84"


class RenameIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class AssignIn(BaseModel):
    vehicle_ids: list[DbId]


async def _visible_vehicle_ids(pool: asyncpg.Pool, user: User) -> set[int] | None:
    if user.sees_all:
        return None
    rows = await pool.fetch("SELECT id FROM vehicles WHERE company_id = $1", user.company_id)
    return {r["id"] for r in rows}


def _visible(item: Geofence | Route, mine: set[int] | None) -> bool:
    if mine is None:
        return True
    if isinstance(item, Route):
        return bool(item.vehicle_ids & mine)
    return not item.vehicle_ids or bool(item.vehicle_ids & mine)


def _feature_for(item: Geofence | Route, mine: set[int] | None) -> dict[str, Any]:
    if mine is not None:
        item = replace(item, vehicle_ids=item.vehicle_ids & frozenset(mine))
    feature = to_feature(item)
    feature["properties"]["db_id"] = item.id
    return feature


async def _load(pool: asyncpg.Pool, kind: Kind) -> list[Geofence] | list[Route]:
    if kind == "route":
        return await store.load_routes(pool)
    return await store.load_geofences(pool)


async def _one(pool: asyncpg.Pool, kind: Kind, item_id: str, user: User) -> Geofence | Route:
    mine = await _visible_vehicle_ids(pool, user)
    for item in await _load(pool, kind):
        if item.id == item_id and _visible(item, mine):
            return item
    raise not_found(f"{kind} {item_id!r}")


def _parse(body: FeatureIn, kind: Kind, item_id: str | None) -> Geofence | Route:
    feature = dict(body.feature)
    if feature.get("type") != "Feature" or not isinstance(feature.get("geometry"), dict):
        raise HTTPException(422, "feature: expected a GeoJSON Feature with a geometry object")
    if body.coordinates_crs == "gcj02":
        feature["geometry"] = geojson_gcj02_to_wgs84(feature["geometry"])
    props = dict(feature.get("properties") or {})
    props["id"] = (
        item_id or props.get("id") or f"{'rt' if kind == 'route' else 'gf'}-{uuid.uuid4().hex[:8]}"
    )
    if kind == "route":
        props["kind"] = "route"
    elif props.get("kind") == "route":
        raise HTTPException(422, "kind: expected a geofence kind here, got route (use /api/routes)")
    feature["properties"] = props
    item = from_feature(feature)  # GeometryError -> 422 (app exception handler)
    return item


async def _save(pool: asyncpg.Pool, item: Geofence | Route) -> None:
    async with pool.acquire() as conn:
        if isinstance(item, Route):
            await store.save_routes(conn, [item])
        else:
            await store.save_geofences(conn, [item])


def _register(kind: Kind, plural: str) -> None:
    @router.get(f"/{plural}", name=f"list_{plural}")
    async def list_items(user: CurrentUser, pool: PoolDep) -> dict[str, Any]:
        mine = await _visible_vehicle_ids(pool, user)
        items = [i for i in await _load(pool, kind) if _visible(i, mine)]
        features = [_feature_for(i, mine) for i in items]
        if kind == "geofence":  # the map draws both from one call
            routes = [r for r in await store.load_routes(pool) if _visible(r, mine)]
            features += [_feature_for(r, mine) for r in routes]
        return {"type": "FeatureCollection", "features": features}

    @router.get(f"/{plural}/{{item_id}}", name=f"get_{kind}")
    async def get_item(item_id: ItemId, user: CurrentUser, pool: PoolDep) -> dict[str, Any]:
        mine = await _visible_vehicle_ids(pool, user)
        return _feature_for(await _one(pool, kind, item_id, user), mine)

    @router.post(f"/{plural}", status_code=201, name=f"create_{kind}")
    async def create_item(body: FeatureIn, user: BureauUser, pool: PoolDep) -> dict[str, Any]:
        item = _parse(body, kind, None)
        if any(i.id == item.id for i in await _load(pool, kind)):
            raise HTTPException(409, f"{kind} {item.id!r}: already exists (use PUT to replace)")
        await _save(pool, item)
        await audit.record(
            pool,
            user,
            f"{kind}.create",
            kind,
            None,
            details={"id": item.id, "feature": to_feature(item)},
        )
        return _feature_for(item, None)

    @router.put(f"/{plural}/{{item_id}}", name=f"replace_{kind}")
    async def replace_item(
        item_id: ItemId, body: FeatureIn, user: BureauUser, pool: PoolDep
    ) -> dict[str, Any]:
        await _one(pool, kind, item_id, user)
        item = _parse(body, kind, item_id)
        await _save(pool, item)
        await audit.record(
            pool,
            user,
            f"{kind}.update",
            kind,
            None,
            details={"id": item.id, "feature": to_feature(item)},
        )
        return _feature_for(item, None)

    @router.patch(f"/{plural}/{{item_id}}", name=f"rename_{kind}")
    async def rename_item(
        item_id: ItemId, body: RenameIn, user: BureauUser, pool: PoolDep
    ) -> dict[str, Any]:
        item = replace(await _one(pool, kind, item_id, user), name=body.name)
        await _save(pool, item)
        await audit.record(
            pool, user, f"{kind}.rename", kind, None, details={"id": item_id, "name": body.name}
        )
        return _feature_for(item, None)

    @router.delete(f"/{plural}/{{item_id}}", status_code=204, name=f"delete_{kind}")
    async def delete_item(item_id: ItemId, user: BureauUser, pool: PoolDep) -> None:
        async with pool.acquire() as conn:
            await store.delete(conn, kind, item_id)  # NotFoundError -> 404
        await audit.record(pool, user, f"{kind}.delete", kind, None, details={"id": item_id})

    @router.put(f"/{plural}/{{item_id}}/vehicles", name=f"assign_{kind}")
    async def assign_item(
        item_id: ItemId, body: AssignIn, user: BureauUser, pool: PoolDep
    ) -> dict[str, Any]:
        """Replace the vehicles the item is assigned to (an empty list = none)."""
        item = await _one(pool, kind, item_id, user)
        ids = sorted(set(body.vehicle_ids))
        known = {
            r["id"]
            for r in await pool.fetch("SELECT id FROM vehicles WHERE id = ANY($1::bigint[])", ids)
        }
        if missing := [v for v in ids if v not in known]:
            raise HTTPException(
                422, f"vehicle_ids: expected registered vehicles, got unknown {missing}"
            )
        table, column = (
            ("route_vehicles", "route_id")
            if kind == "route"
            else ("geofence_vehicles", "geofence_id")
        )
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(f"DELETE FROM {table} WHERE {column} = $1", item_id)
            await conn.executemany(
                f"INSERT INTO {table} ({column}, vehicle_id) VALUES ($1, $2)",
                [(item_id, v) for v in ids],
            )
            await audit.record(
                conn,
                user,
                f"{kind}.assign",
                kind,
                None,
                details={"id": item_id, "vehicle_ids": ids},
            )
        return _feature_for(replace(item, vehicle_ids=frozenset(ids)), None)


_register("geofence", "geofences")
_register("route", "routes")
