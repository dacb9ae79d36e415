"""Geofences and routes: list (GeoJSON), create, replace, rename, delete, assign to vehicles.

Validation and storage are the rules area's (:mod:`gps_monitor.geofences`,
:mod:`gps_monitor.db.geofences`): invalid geometry (self-intersecting polygon, latitude out of
range such as swapped axes, a route with one point...) is refused with a 422 whose detail says
what is wrong. Geometry drawn on GCJ-02 tiles is sent with ``coordinates_crs: gcj02`` and
converted to WGS-84 here before validation (DOMAIN.md, Coordinates).

Only bureau users change geofences and routes and assign them (police-approved routes; an
unassigned geofence applies to every vehicle, so an operator may not narrow it). Each change is
one call into :mod:`gps_monitor.db.geofences` with its audit entry in the same transaction.
Operators see the geofences that concern their vehicles (unassigned ones apply to every vehicle)
and the routes assigned to them (anything else is a 404); the vehicle ids of other companies are
never shown to them.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, ConfigDict, Field

from gps_monitor.db import audit
from gps_monitor.db import geofences as store
from gps_monitor.db.users import User
from gps_monitor.geofences import Geofence, Route, from_feature, to_feature
from web.coords import geojson_gcj02_to_wgs84
from web.deps import BureauUser, CurrentUser, DbId, PoolDep, not_found

router = APIRouter(prefix="/api", tags=["geofences"])
Kind = Literal["geofence", "route"]
ItemId = Annotated[str, Path(min_length=1, max_length=100)]


class GeoJsonFeature(BaseModel):
    """A GeoJSON Feature's envelope: ``properties`` and ``geometry`` objects (their members are
    checked by :func:`gps_monitor.geofences.from_feature`); other members are kept."""

    model_config = ConfigDict(extra="allow")

    type: Literal["Feature"]
    properties: dict[str, Any] | None = Field(
        default=None, description="see gps_monitor.geofences (kind, name, corridor_m...)"
    )
    geometry: dict[str, Any] = Field(description="GeoJSON geometry, coordinates [lon, lat]")


class FeatureIn(BaseModel):
    feature: GeoJsonFeature = Field(description="GeoJSON Feature (properties: see module doc)")
    coordinates_crs: Literal["wgs84", "gcj02"] = "wgs84"


class RenameIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class AssignIn(BaseModel):
    vehicle_ids: list[DbId] = Field(default_factory=list)
    company_ids: list[DbId] = Field(
        default_factory=list, description="assign every vehicle these companies have now"
    )


async def _visible_vehicle_ids(pool: asyncpg.Pool, user: User) -> set[int] | None:
    if user.sees_all:
        return None
    return await store.vehicle_ids_of_company(pool, user.company_id)


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


async def _one(pool: asyncpg.Pool, kind: Kind, item_id: str, user: User) -> Geofence | Route:
    """The scope check: the item when the user may see it, else 404 (same answer as missing)."""
    mine = await _visible_vehicle_ids(pool, user)
    for item in await store.load(pool, kind):
        if item.id == item_id and _visible(item, mine):
            return item
    raise not_found(f"{kind} {item_id!r}")


def _parse(body: FeatureIn, kind: Kind, item_id: str | None) -> Geofence | Route:
    """The item the body describes (id ``item_id`` when given).

    Raises:
        GeometryError (422): what in the geometry or properties is not as expected
            (:func:`gps_monitor.geofences.from_feature`); HTTPException 422: a route kind on
            /api/geofences. The envelope (a Feature, properties and geometry objects) is
            checked by :class:`GeoJsonFeature` first.
    """
    feature = body.feature.model_dump()
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


def _register(kind: Kind, plural: str) -> None:
    @router.get(f"/{plural}", name=f"list_{plural}")
    async def list_items(user: CurrentUser, pool: PoolDep) -> dict[str, Any]:
        mine = await _visible_vehicle_ids(pool, user)
        items = [i for i in await store.load(pool, kind) if _visible(i, mine)]
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
        """Create (bureau). 409 when the id exists; 422 for invalid geometry or properties."""
        item = _parse(body, kind, None)
        async with pool.acquire() as conn, conn.transaction():
            await store.create(conn, item)  # StateError -> 409
            await audit.record(conn, user, f"{kind}.create", kind, None, details=_details(item))
        return _feature_for(item, None)

    @router.put(f"/{plural}/{{item_id}}", name=f"replace_{kind}")
    async def replace_item(
        item_id: ItemId, body: FeatureIn, user: BureauUser, pool: PoolDep
    ) -> dict[str, Any]:
        """Replace geometry and properties (bureau; an edit of the vertices is one): the
        assignments stay unless the feature lists ``vehicle_ids``. 404 for an unknown id."""
        item = _parse(body, kind, item_id)
        async with pool.acquire() as conn, conn.transaction():
            await store.replace(conn, item)  # NotFoundError -> 404
            await audit.record(conn, user, f"{kind}.update", kind, None, details=_details(item))
        return _feature_for(item, None)

    @router.patch(f"/{plural}/{{item_id}}", name=f"rename_{kind}")
    async def rename_item(
        item_id: ItemId, body: RenameIn, user: BureauUser, pool: PoolDep
    ) -> dict[str, Any]:
        item = replace(await _one(pool, kind, item_id, user), name=body.name)
        async with pool.acquire() as conn, conn.transaction():
            await store.rename(conn, kind, item_id, body.name)
            await audit.record(
                conn, user, f"{kind}.rename", kind, None, details={"id": item_id, "name": body.name}
            )
        return _feature_for(item, None)

    @router.delete(f"/{plural}/{{item_id}}", status_code=204, name=f"delete_{kind}")
    async def delete_item(item_id: ItemId, user: BureauUser, pool: PoolDep) -> None:
        async with pool.acquire() as conn, conn.transaction():
            await store.delete(conn, kind, item_id)  # NotFoundError -> 404
            await audit.record(conn, user, f"{kind}.delete", kind, None, details={"id": item_id})

    @router.put(f"/{plural}/{{item_id}}/vehicles", name=f"assign_{kind}")
    async def assign_item(
        item_id: ItemId, body: AssignIn, user: BureauUser, pool: PoolDep
    ) -> dict[str, Any]:
        """Replace the vehicles the item is assigned to: ``vehicle_ids`` plus the vehicles the
        ``company_ids`` have now (both empty = none). 404 for an unknown item, vehicle or
        company (nothing changed)."""
        item = await _one(pool, kind, item_id, user)
        async with pool.acquire() as conn, conn.transaction():
            ids = await store.set_vehicles(conn, kind, item_id, body.vehicle_ids, body.company_ids)
            await audit.record(
                conn,
                user,
                f"{kind}.assign",
                kind,
                None,
                details={
                    "id": item_id,
                    "vehicle_ids": ids,
                    "company_ids": sorted(set(body.company_ids)),
                },
            )
        return _feature_for(replace(item, vehicle_ids=frozenset(ids)), None)


def _details(item: Geofence | Route) -> dict[str, Any]:
    return {"id": item.id, "feature": to_feature(item)}


_register("geofence", "geofences")
_register("route", "routes")
