"""Geofence and route management against the real PostgreSQL: GeoJSON import (all or nothing),
export round trip, assignment by plate, and the worker picking them up."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import pytest

from gps_monitor.cli import main
from gps_monitor.config import Settings
from gps_monitor.db import geofences as store
from gps_monitor.db.registry import ensure_company, ensure_vehicle
from gps_monitor.errors import NotFoundError
from gps_monitor.geofences import GeofenceKind, parse_geojson


async def _cli(argv: list[str], settings: Settings) -> int:
    """``gps-monitor ARGV`` in a thread (the commands run their own event loop)."""
    return await asyncio.to_thread(main, argv, settings)


COLLECTION = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "properties": {
                "id": "water-1",
                "name": "水源保护区",
                "kind": "forbidden",
                "vehicle_classes": ["hazmat"],
                "active_hours": "22:00-06:00",
            },
            "geometry": {
                "type": "Polygon",
                "coordinates": [
                    [
                        [116.30, 39.80],
                        [116.40, 39.80],
                        [116.40, 39.90],
                        [116.30, 39.90],
                        [116.30, 39.80],
                    ],
                    [[116.33, 39.83], [116.36, 39.83], [116.36, 39.86], [116.33, 39.83]],
                ],
            },
        },
        {
            "type": "Feature",
            "properties": {"id": "depot", "kind": "watch", "radius_m": 300},
            "geometry": {"type": "Point", "coordinates": [116.45, 39.95]},
        },
        {
            "type": "Feature",
            "properties": {
                "id": "zone-60",
                "kind": "speed_zone",
                "speed_limit_kmh": 60,
                "road_class": "expressway",
                "corridor_m": 50,
            },
            "geometry": {"type": "LineString", "coordinates": [[116.5, 39.9], [116.6, 39.9]]},
            "id": "ignored-when-properties-have-one",
        },
        {
            "type": "Feature",
            "properties": {
                "id": "r-7",
                "name": "route 7",
                "kind": "route",
                "corridor_m": 80,
                "speed_limit_kmh": 70,
            },
            "geometry": {"type": "LineString", "coordinates": [[116.4, 39.9], [116.5, 39.95]]},
        },
    ],
}


async def test_import_export_round_trip_and_assign_by_plate(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    company = await ensure_company(pool, "Hazmat Co")
    await ensure_vehicle(
        pool, company_id=company.id, plate_number="川A00001", terminal_id="013900000001"
    )
    source = tmp_path / "fences.geojson"
    source.write_text(json.dumps(COLLECTION, ensure_ascii=False), encoding="utf-8")
    assert await _cli(["geofence", "import", str(source)], settings) == 0
    assert await _cli(["route", "assign", "r-7", "川A00001"], settings) == 0
    out = tmp_path / "out.geojson"
    assert await _cli(["geofence", "export", str(out)], settings) == 0
    fences, routes = parse_geojson(json.loads(out.read_text(encoding="utf-8")))
    assert [f.id for f in fences] == ["depot", "water-1", "zone-60"]
    water = next(f for f in fences if f.id == "water-1")
    assert water.kind is GeofenceKind.FORBIDDEN and len(water.geometry.interiors) == 1
    assert water.vehicle_classes == ("hazmat",) and str(water.active_hours) == "22:00-06:00"
    assert routes == []
    (route,) = await store.load_routes(pool)
    vehicle_id = await pool.fetchval("SELECT id FROM vehicles WHERE plate_number = '川A00001'")
    assert route.vehicle_ids == frozenset({vehicle_id}) and route.corridor_m == 80


async def test_invalid_feature_saves_nothing_and_exits_2(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = json.loads(json.dumps(COLLECTION))
    bad["features"][1]["geometry"]["coordinates"] = [39.95, 116.45]  # lat/lon swapped
    source = tmp_path / "bad.geojson"
    source.write_text(json.dumps(bad), encoding="utf-8")
    assert await _cli(["geofence", "import", str(source)], settings) == 2
    assert "swapped" in capsys.readouterr().err
    assert await pool.fetchval("SELECT count(*) FROM geofences") == 0
    assert await pool.fetchval("SELECT count(*) FROM routes") == 0


async def test_assign_unknown_plate_or_geofence_is_not_found(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    fences, _ = parse_geojson(COLLECTION)
    async with pool.acquire() as conn:
        await store.save_geofences(conn, fences)
        with pytest.raises(NotFoundError, match="plate"):
            await store.assign(conn, "geofence", "depot", ["京X99999"])
        with pytest.raises(NotFoundError, match="geofence 'nope'"):
            await store.assign(conn, "geofence", "nope", [])


@pytest.mark.parametrize(
    ("kind", "geometry", "prop", "value"),
    [
        ("forbidden", {"type": "Point", "coordinates": [106.5, 29.5]}, "radius_m", 1e308),
        ("forbidden", {"type": "Point", "coordinates": [106.5, 29.5]}, "radius_m", 600_000),
        ("forbidden", {"type": "Point", "coordinates": [106.5, 29.5]}, "radius_m", float("nan")),
        (
            "watch",
            {"type": "LineString", "coordinates": [[106.5, 29.5], [106.6, 29.5]]},
            "corridor_m",
            60_000,
        ),
        (
            "route",
            {"type": "LineString", "coordinates": [[106.5, 29.5], [106.6, 29.5]]},
            "corridor_m",
            float("inf"),
        ),
    ],
)
async def test_import_rejects_non_finite_or_huge_radius_and_corridor(
    settings: Settings,
    pool: asyncpg.Pool,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    kind: str,
    geometry: dict[str, object],
    prop: str,
    value: float,
) -> None:
    feature = {
        "type": "Feature",
        "geometry": geometry,
        "properties": {"id": "x", "kind": kind, prop: value},
    }
    source = tmp_path / "huge.geojson"
    source.write_text(json.dumps(feature), encoding="utf-8")  # NaN/Infinity as Python writes
    assert await _cli(["geofence", "import", str(source)], settings) == 2
    err = capsys.readouterr().err
    assert prop in err and "finite" in err and "Traceback" not in err
    assert await pool.fetchval("SELECT count(*) FROM geofences") == 0
    assert await pool.fetchval("SELECT count(*) FROM routes") == 0


async def test_import_accepts_radius_and_corridor_at_the_bounds(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    from gps_monitor.geofences import MAX_CORRIDOR_M, MAX_RADIUS_M

    collection = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [106.5, 29.5]},
                "properties": {"id": "big", "kind": "forbidden", "radius_m": MAX_RADIUS_M},
            },
            {
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": [[106.5, 29.5], [106.6, 29.5]]},
                "properties": {"id": "wide", "kind": "watch", "corridor_m": MAX_CORRIDOR_M},
            },
        ],
    }
    source = tmp_path / "bounds.geojson"
    source.write_text(json.dumps(collection), encoding="utf-8")
    assert await _cli(["geofence", "import", str(source)], settings) == 0
    assert await pool.fetchval("SELECT count(*) FROM geofences") == 2
