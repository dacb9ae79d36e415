"""The geofence or route an alarm refers to, as drawable WGS-84 lines for the evidence map.

An alarm's ``details`` name the object by ``geofence_id`` / ``route_id`` (or ``limit_source``
``geofence:ID`` / ``route:ID``); it is read through :mod:`gps_monitor.db.geofences` (the
geofence's geometry, the route's line). A circle (GeoJSON Point with ``radius_m``) is drawn as
a 72-gon. Unknown ids give no shape, never an error: the map is then drawn without it.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from shapely.geometry import mapping

from gps_monitor.db import geofences as geofences_db
from gps_monitor.geo import WGS84
from gps_monitor.geofences import Geofence, Route
from web.reports.evidence import Shape


async def _item(
    conn: asyncpg.Connection | asyncpg.Pool, table: str, item_id: str
) -> Geofence | Route | None:
    if table == "geofences":
        return await geofences_db.get_geofence(conn, item_id)
    return await geofences_db.get_route(conn, item_id)


def lines_from_geojson(
    geometry: dict[str, Any], radius_m: float | None = None
) -> tuple[tuple[tuple[tuple[float, float], ...], ...], bool]:
    """(lines as (lon, lat) tuples, closed) for a GeoJSON geometry; ((), False) if unsupported."""
    kind = geometry.get("type")
    coords: Any = geometry.get("coordinates") or []
    if kind == "Point" and radius_m:
        lon, lat = coords[0], coords[1]
        ring = []
        for i in range(73):
            lon2, lat2, _ = WGS84.fwd(lon, lat, i * 5.0, radius_m)
            ring.append((float(lon2), float(lat2)))
        return (tuple(ring),), True
    if kind == "LineString":
        return (tuple((float(x), float(y)) for x, y, *_ in coords),), False
    if kind == "MultiLineString":
        return tuple(tuple((float(x), float(y)) for x, y, *_ in line) for line in coords), False
    if kind == "Polygon":
        return tuple(tuple((float(x), float(y)) for x, y, *_ in ring) for ring in coords), True
    if kind == "MultiPolygon":
        return (
            tuple(
                tuple((float(x), float(y)) for x, y, *_ in ring) for poly in coords for ring in poly
            ),
            True,
        )
    return (), False


async def shapes_for(
    conn: asyncpg.Connection | asyncpg.Pool, details: dict[str, Any]
) -> list[Shape]:
    """Shapes for the ``geofence_id`` / ``route_id`` in an alarm's details (may be empty)."""
    out: list[Shape] = []
    source = str(details.get("limit_source") or "").partition("+")[0]
    for table, key in (("geofences", "geofence_id"), ("routes", "route_id")):
        object_id = details.get(key)
        if object_id is None and source.startswith(f"{table[:-1]}:"):
            object_id = source.partition(":")[2]
        if object_id is None:
            continue
        item = await _item(conn, table, str(object_id))
        if item is None:
            continue
        if isinstance(item, Geofence):
            geometry, radius, kind = mapping(item.geometry), item.radius_m, str(item.kind)
        else:
            geometry, radius, kind = mapping(item.line), None, "route"
        lines, closed = lines_from_geojson(geometry or {}, radius)
        if not lines:
            continue
        out.append(
            Shape(name=item.name, kind=kind, lines=lines, closed=closed, kind_table=table[:-1])
        )
    return out
