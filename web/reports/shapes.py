"""The geofence or route an alarm refers to, as drawable WGS-84 lines for the evidence map.

The rules issue owns the ``geofences`` and ``routes`` tables; this module only reads them. An
alarm's ``details`` name the object by ``geofence_id`` / ``route_id``; the geometry is read from
the table's GeoJSON column (``geometry`` for geofences, ``line`` for routes). A circle (GeoJSON
Point with ``radius_m``) is drawn as a 72-gon. Missing tables or ids give no shape, never an
error: the map is then drawn without it.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from gps_monitor.geo import WGS84
from web.reports.evidence import Shape

_GEOMETRY_COLUMNS = ("geometry", "line", "geojson")


async def _columns(conn: asyncpg.Connection | asyncpg.Pool, table: str) -> set[str]:
    rows = await conn.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_name = $1 "
        "AND table_schema = current_schema()",
        table,
    )
    return {r["column_name"] for r in rows}


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
        columns = await _columns(conn, table)
        geometry_column = next((c for c in _GEOMETRY_COLUMNS if c in columns), None)
        if geometry_column is None or "id" not in columns:
            continue
        extra = [c for c in ("name", "kind", "radius_m", "corridor_m") if c in columns]
        select = ", ".join([f"{geometry_column} AS geometry", *extra])
        try:
            row = await conn.fetchrow(
                f"SELECT {select} FROM {table} WHERE id::text = $1", str(object_id)
            )
        except (asyncpg.DataError, asyncpg.UndefinedFunctionError):
            continue
        if row is None:
            continue
        geometry = row["geometry"]
        if isinstance(geometry, str):
            geometry = json.loads(geometry)
        if isinstance(geometry, dict) and geometry.get("type") == "Feature":
            geometry = geometry.get("geometry") or {}
        radius = row["radius_m"] if "radius_m" in extra else None
        lines, closed = lines_from_geojson(geometry or {}, radius)
        if not lines:
            continue
        name = row["name"] if "name" in extra else f"{table[:-1]} {object_id}"
        kind = row["kind"] if "kind" in extra else table[:-1]
        out.append(
            Shape(name=str(name), kind=str(kind), lines=lines, closed=closed, kind_table=table[:-1])
        )
    return out
