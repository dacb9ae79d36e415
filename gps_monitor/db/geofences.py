"""Geofences, routes and their vehicle assignments (migration 0020).

Everything is validated (:mod:`gps_monitor.geofences`) before it is written; a batch of
features is saved all or nothing (one transaction). The web app's changes (:func:`create`,
:func:`replace`, :func:`rename`, :func:`delete`, :func:`set_vehicles`) run on the caller's
connection so the caller writes its audit entry in the same transaction.

Assignment to a company (in the page, or ``company_ids`` in the API) assigns the company's
vehicles registered at that moment, as a company box ticks all its vehicles in a vehicle tree: a
vehicle registered later is assigned on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import asyncpg
from shapely.geometry import mapping, shape

from gps_monitor.errors import NotFoundError, StateError
from gps_monitor.geofences import Geofence, GeofenceKind, Route, TimeWindow

Kind = Literal["geofence", "route"]
_ASSIGN = {
    "geofence": ("geofence_vehicles", "geofence_id", "geofences"),
    "route": ("route_vehicles", "route_id", "routes"),
}


async def save_geofences(conn: asyncpg.Connection, fences: list[Geofence]) -> None:
    """Insert or replace geofences (and, when a geofence lists vehicle_ids, its assignments)."""
    async with conn.transaction():
        for f in fences:
            await conn.execute(
                "INSERT INTO geofences (id, name, kind, geometry, radius_m, corridor_m, "
                "speed_limit_kmh, road_class, vehicle_classes, active_hours) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
                "ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind, "
                "geometry = EXCLUDED.geometry, radius_m = EXCLUDED.radius_m, "
                "corridor_m = EXCLUDED.corridor_m, speed_limit_kmh = EXCLUDED.speed_limit_kmh, "
                "road_class = EXCLUDED.road_class, vehicle_classes = EXCLUDED.vehicle_classes, "
                "active_hours = EXCLUDED.active_hours, updated_at = now()",
                f.id,
                f.name,
                str(f.kind),
                mapping(f.geometry),
                f.radius_m,
                f.corridor_m,
                f.speed_limit_kmh,
                f.road_class,
                list(f.vehicle_classes),
                str(f.active_hours) if f.active_hours else None,
            )
            if f.vehicle_ids:
                await _set_assignments(conn, "geofence", f.id, sorted(f.vehicle_ids))


async def save_routes(conn: asyncpg.Connection, routes: list[Route]) -> None:
    """Insert or replace routes (and their assignments when they list vehicle_ids)."""
    async with conn.transaction():
        for r in routes:
            await conn.execute(
                "INSERT INTO routes (id, name, line, corridor_m, speed_limit_kmh, active_hours) "
                "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET "
                "name = EXCLUDED.name, line = EXCLUDED.line, corridor_m = EXCLUDED.corridor_m, "
                "speed_limit_kmh = EXCLUDED.speed_limit_kmh, "
                "active_hours = EXCLUDED.active_hours, updated_at = now()",
                r.id,
                r.name,
                mapping(r.line),
                r.corridor_m,
                r.speed_limit_kmh,
                str(r.active_hours) if r.active_hours else None,
            )
            if r.vehicle_ids:
                await _set_assignments(conn, "route", r.id, sorted(r.vehicle_ids))


async def _set_assignments(
    conn: asyncpg.Connection, kind: Kind, item_id: str, vehicle_ids: list[int]
) -> None:
    table, column, _ = _ASSIGN[kind]
    await conn.execute(f"DELETE FROM {table} WHERE {column} = $1", item_id)
    await conn.executemany(
        f"INSERT INTO {table} ({column}, vehicle_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        [(item_id, v) for v in vehicle_ids],
    )


async def assign(
    conn: asyncpg.Connection, kind: Kind, item_id: str, plates: list[str], *, replace: bool = False
) -> list[int]:
    """Assign a geofence or route to the vehicles with these plate numbers (all plate colours).

    Returns the vehicle ids assigned.

    Raises:
        NotFoundError: the geofence/route or a plate number does not exist (nothing changed).
    """
    table, column, items = _ASSIGN[kind]
    async with conn.transaction():
        if not await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {items} WHERE id = $1)", item_id):
            raise NotFoundError(f"{kind} {item_id!r}: expected an existing {kind}, found none")
        ids: list[int] = []
        for plate in plates:
            rows = await conn.fetch("SELECT id FROM vehicles WHERE plate_number = $1", plate)
            if not rows:
                raise NotFoundError(f"plate {plate!r}: expected a registered vehicle, found none")
            ids += [r["id"] for r in rows]
        if replace:
            await conn.execute(f"DELETE FROM {table} WHERE {column} = $1", item_id)
        await conn.executemany(
            f"INSERT INTO {table} ({column}, vehicle_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            [(item_id, v) for v in ids],
        )
    return ids


async def delete(conn: asyncpg.Connection, kind: Kind, item_id: str) -> None:
    """Delete a geofence or route (its assignments go with it).

    Raises:
        NotFoundError: no such geofence/route.
    """
    _, _, items = _ASSIGN[kind]
    status = await conn.execute(f"DELETE FROM {items} WHERE id = $1", item_id)
    if status.endswith(" 0"):
        raise NotFoundError(f"{kind} {item_id!r}: expected an existing {kind}, found none")


async def load(conn: asyncpg.Connection | asyncpg.Pool, kind: Kind) -> list[Geofence] | list[Route]:
    """Every geofence (``kind="geofence"``) or every route, with assigned vehicle ids, by id."""
    if kind == "route":
        return await load_routes(conn)
    return await load_geofences(conn)


async def _exists(conn: asyncpg.Connection, kind: Kind, item_id: str) -> bool:
    _, _, items = _ASSIGN[kind]
    # the row is locked: a concurrent change of the same item waits for this transaction
    return await conn.fetchval(f"SELECT 1 FROM {items} WHERE id = $1 FOR UPDATE", item_id) == 1


async def _save_one(conn: asyncpg.Connection, item: Geofence | Route) -> None:
    if isinstance(item, Route):
        await save_routes(conn, [item])
    else:
        await save_geofences(conn, [item])


def _kind_of(item: Geofence | Route) -> Kind:
    return "route" if isinstance(item, Route) else "geofence"


async def create(conn: asyncpg.Connection, item: Geofence | Route) -> None:
    """Insert a new geofence or route (with its ``vehicle_ids`` assignments when it lists any).

    Raises:
        StateError: one with this id exists already (nothing written).
    """
    kind = _kind_of(item)
    async with conn.transaction():
        if await _exists(conn, kind, item.id):
            raise StateError(f"{kind} {item.id!r}", "absent (a new id)", "existing")
        await _save_one(conn, item)


async def replace(conn: asyncpg.Connection, item: Geofence | Route) -> None:
    """Replace an existing geofence or route (geometry and properties); its assignments stay
    unless ``item.vehicle_ids`` lists new ones.

    Raises:
        NotFoundError: no such geofence/route (nothing written).
    """
    kind = _kind_of(item)
    async with conn.transaction():
        if not await _exists(conn, kind, item.id):
            raise NotFoundError(f"{kind} {item.id!r}: expected an existing {kind}, found none")
        await _save_one(conn, item)


async def rename(conn: asyncpg.Connection, kind: Kind, item_id: str, name: str) -> None:
    """Give a geofence or route a new display name.

    Raises:
        NotFoundError: no such geofence/route.
    """
    _, _, items = _ASSIGN[kind]
    status = await conn.execute(
        f"UPDATE {items} SET name = $2, updated_at = now() WHERE id = $1", item_id, name
    )
    if status.endswith(" 0"):
        raise NotFoundError(f"{kind} {item_id!r}: expected an existing {kind}, found none")


async def set_vehicles(
    conn: asyncpg.Connection,
    kind: Kind,
    item_id: str,
    vehicle_ids: Sequence[int],
    company_ids: Sequence[int] = (),
) -> list[int]:
    """Replace the vehicles a geofence or route is assigned to by ``vehicle_ids`` plus every
    vehicle registered now in ``company_ids`` (both empty = no assignment: a geofence then
    applies to every vehicle, a route to none). Returns the sorted vehicle ids assigned.

    Raises:
        NotFoundError: the geofence/route, a vehicle id or a company id does not exist (nothing
            changed).
    """
    async with conn.transaction():
        if not await _exists(conn, kind, item_id):
            raise NotFoundError(f"{kind} {item_id!r}: expected an existing {kind}, found none")
        known = await conn.fetch(
            "SELECT id FROM vehicles WHERE id = ANY($1::bigint[])", sorted(set(vehicle_ids))
        )
        if missing := sorted(set(vehicle_ids) - {r["id"] for r in known}):
            raise NotFoundError(f"vehicle_ids: expected registered vehicles, got unknown {missing}")
        rows = await conn.fetch(
            "SELECT c.id, coalesce(array_agg(v.id) FILTER (WHERE v.id IS NOT NULL), '{}') AS ids "
            "FROM companies c LEFT JOIN vehicles v ON v.company_id = c.id "
            "WHERE c.id = ANY($1::bigint[]) GROUP BY c.id",
            sorted(set(company_ids)),
        )
        if missing := sorted(set(company_ids) - {r["id"] for r in rows}):
            raise NotFoundError(
                f"company_ids: expected registered companies, got unknown {missing}"
            )
        ids = sorted(set(vehicle_ids).union(*(r["ids"] for r in rows)))
        await _set_assignments(conn, kind, item_id, ids)
    return ids


async def vehicle_ids_of_company(
    conn: asyncpg.Connection | asyncpg.Pool, company_id: int | None
) -> set[int]:
    """Ids of the vehicles of one company (an operator's scope)."""
    rows = await conn.fetch("SELECT id FROM vehicles WHERE company_id = $1", company_id)
    return {r["id"] for r in rows}


async def _assignments(conn: Any, kind: Kind) -> dict[str, frozenset[int]]:
    table, column, _ = _ASSIGN[kind]
    found: dict[str, set[int]] = {}
    for row in await conn.fetch(f"SELECT {column} AS item, vehicle_id FROM {table}"):
        found.setdefault(row["item"], set()).add(row["vehicle_id"])
    return {k: frozenset(v) for k, v in found.items()}


_GEOMETRY_FINGERPRINT = """
SELECT (SELECT count(*) FROM geofences), (SELECT max(updated_at) FROM geofences),
       (SELECT count(*) FROM routes), (SELECT max(updated_at) FROM routes),
       (SELECT count(*) FROM geofence_vehicles),
       (SELECT coalesce(sum(hashtext(geofence_id || ':' || vehicle_id)), 0)
          FROM geofence_vehicles),
       (SELECT count(*) FROM route_vehicles),
       (SELECT coalesce(sum(hashtext(route_id || ':' || vehicle_id)), 0) FROM route_vehicles)
"""


async def geometry_fingerprint(conn: asyncpg.Connection | asyncpg.Pool) -> tuple[Any, ...]:
    """A value that changes when a geofence or route is added, changed or deleted or an
    assignment changes (counts, last update times, a hash of the assignments): a loader
    compares it to skip reloading the geometry when nothing changed."""
    return tuple(await conn.fetchrow(_GEOMETRY_FINGERPRINT) or ())


def _geofence(r: asyncpg.Record, vehicle_ids: frozenset[int]) -> Geofence:
    return Geofence(
        id=r["id"],
        name=r["name"],
        kind=GeofenceKind(r["kind"]),
        geometry=shape(r["geometry"]),
        radius_m=r["radius_m"],
        corridor_m=r["corridor_m"],
        speed_limit_kmh=r["speed_limit_kmh"],
        road_class=r["road_class"],
        vehicle_classes=tuple(r["vehicle_classes"]),
        active_hours=TimeWindow.parse(r["active_hours"]) if r["active_hours"] else None,
        vehicle_ids=vehicle_ids,
    )


def _route(r: asyncpg.Record, vehicle_ids: frozenset[int]) -> Route:
    return Route(
        id=r["id"],
        name=r["name"],
        line=shape(r["line"]),
        corridor_m=r["corridor_m"],
        speed_limit_kmh=r["speed_limit_kmh"],
        active_hours=TimeWindow.parse(r["active_hours"]) if r["active_hours"] else None,
        vehicle_ids=vehicle_ids,
    )


async def load_geofences(conn: asyncpg.Connection | asyncpg.Pool) -> list[Geofence]:
    """Every geofence with its assigned vehicle ids, by id."""
    assigned = await _assignments(conn, "geofence")
    rows = await conn.fetch("SELECT * FROM geofences ORDER BY id")
    return [_geofence(r, assigned.get(r["id"], frozenset())) for r in rows]


async def load_routes(conn: asyncpg.Connection | asyncpg.Pool) -> list[Route]:
    """Every route with its assigned vehicle ids, by id."""
    assigned = await _assignments(conn, "route")
    rows = await conn.fetch("SELECT * FROM routes ORDER BY id")
    return [_route(r, assigned.get(r["id"], frozenset())) for r in rows]


async def get_geofence(conn: asyncpg.Connection | asyncpg.Pool, item_id: str) -> Geofence | None:
    """One geofence without its assignments (``vehicle_ids`` empty), None when there is none."""
    row = await conn.fetchrow("SELECT * FROM geofences WHERE id = $1", item_id)
    return None if row is None else _geofence(row, frozenset())


async def get_route(conn: asyncpg.Connection | asyncpg.Pool, item_id: str) -> Route | None:
    """One route without its assignments (``vehicle_ids`` empty), None when there is none."""
    row = await conn.fetchrow("SELECT * FROM routes WHERE id = $1", item_id)
    return None if row is None else _route(row, frozenset())
