"""Geofence and route API: validation (422 saying what is wrong), GCJ-02 drawn geometry saved as
WGS-84, bureau-only changes with audit, operators see only what concerns their vehicles."""

from __future__ import annotations

import asyncpg
import pytest
from web_helpers import make_world, rest_client

from gps_monitor.config import Settings
from gps_monitor.db import geofences as store
from web.coords import wgs84_to_gcj02

SQUARE = [[106.50, 29.50], [106.60, 29.50], [106.60, 29.60], [106.50, 29.60], [106.50, 29.50]]


def polygon(coords, **props) -> dict:
    return {
        "feature": {
            "type": "Feature",
            "properties": {"kind": "forbidden", **props},
            "geometry": {"type": "Polygon", "coordinates": [coords]},
        }
    }


async def test_geofence_crud_validation_and_audit(settings: Settings, pool: asyncpg.Pool) -> None:
    w = await make_world(pool, settings)
    async with rest_client(settings) as client:
        bureau = w.auth("bureau")
        assert (
            await client.post(
                "/api/geofences", json=polygon(SQUARE, name="水源保护区"), headers=w.auth("op_a")
            )
        ).status_code == 403
        r = await client.post(
            "/api/geofences", json=polygon(SQUARE, name="水源保护区"), headers=bureau
        )
        assert r.status_code == 201, r.text
        fid = r.json()["id"]
        # a bow-tie polygon is self-intersecting
        bowtie = [[106.5, 29.5], [106.6, 29.6], [106.6, 29.5], [106.5, 29.6], [106.5, 29.5]]
        r = await client.post("/api/geofences", json=polygon(bowtie, name="bad"), headers=bureau)
        assert r.status_code == 422
        assert (
            "self-intersect" in r.json()["detail"].lower()
            or "invalid" in r.json()["detail"].lower()
        )
        # a route with latitude and longitude swapped: latitude 106 is out of range
        swapped = {
            "feature": {
                "type": "Feature",
                "properties": {"name": "G65", "corridor_m": 100},
                "geometry": {"type": "LineString", "coordinates": [[29.5, 106.5], [29.6, 106.6]]},
            }
        }
        r = await client.post("/api/routes", json=swapped, headers=bureau)
        assert r.status_code == 422 and "lat" in r.json()["detail"].lower()
        r = await client.post("/api/geofences", json=polygon(SQUARE, kind="moat"), headers=bureau)
        assert r.status_code == 422 and "kind" in r.json()["detail"]
        # rename, assign, list, delete
        r = await client.patch(
            f"/api/geofences/{fid}", json={"name": "一级水源保护区"}, headers=bureau
        )
        assert r.status_code == 200 and r.json()["properties"]["name"] == "一级水源保护区"
        r = await client.put(
            f"/api/geofences/{fid}/vehicles",
            json={"vehicle_ids": [w.vehicles_a[0]]},
            headers=bureau,
        )
        assert r.status_code == 200 and r.json()["properties"]["vehicle_ids"] == [w.vehicles_a[0]]
        r = await client.put(
            f"/api/geofences/{fid}/vehicles", json={"vehicle_ids": [999999]}, headers=bureau
        )
        assert r.status_code == 404  # an unknown vehicle, as everywhere
        assert (
            await client.delete(f"/api/geofences/{fid}", headers=w.auth("op_a"))
        ).status_code == 403
        assert (await client.delete(f"/api/geofences/{fid}", headers=bureau)).status_code == 204
        assert (await client.delete(f"/api/geofences/{fid}", headers=bureau)).status_code == 404
    actions = [r["action"] for r in await pool.fetch("SELECT action FROM audit_log ORDER BY id")]
    assert actions == ["geofence.create", "geofence.rename", "geofence.assign", "geofence.delete"]


LINE = [[106.50, 29.50], [106.60, 29.60]]
# (what to change in a valid feature, the body's coordinates_crs, what the 422 says); found by a
# new-user walkthrough: each of these was a 500 (TypeError, KeyError: 0 from shapely)
WRONG_TYPES = [
    ({"properties": 1}, "wgs84", "Input should be a valid dictionary"),
    ({"properties": [1]}, "wgs84", "Input should be a valid dictionary"),
    ({"geometry": 1}, "wgs84", "Input should be a valid dictionary"),
    ({"coordinates": {}}, "wgs84", "coordinates: expected an array of {arrays}positions"),
    ({"coordinates": {}}, "gcj02", "coordinates: expected an array of {arrays}positions"),
    ({"coordinates": "abc"}, "gcj02", "coordinates: expected an array of {arrays}positions"),
    ({"coordinates": [[[[1]]]]}, "wgs84", "expected a position [lon, lat] (2 or 3 numbers), got"),
    ({"geometry_type": "Ring"}, "wgs84", "geometry type: expected one of Point"),
    (
        {"vehicle_ids": 1},
        "wgs84",
        "vehicle_ids: expected an array of vehicle ids (integers), got 1",
    ),
    ({"vehicle_ids": [[1]]}, "wgs84", "vehicle_ids: expected an array of vehicle ids"),
    ({"vehicle_ids": [True]}, "wgs84", "vehicle_ids: expected an array of vehicle ids"),
    (
        {"active_hours": True},
        "wgs84",
        "active_hours: expected text 'HH:MM-HH:MM' (or null), got true",
    ),
    ({"active_hours": 8}, "wgs84", "active_hours: expected text 'HH:MM-HH:MM' (or null), got 8"),
    ({"vehicle_classes": 1}, "wgs84", "vehicle_classes: expected an array of vehicle classes"),
]


def _wrong(plural: str, change: dict, crs: str) -> dict:
    """A valid geofence (polygon) or route (line) with ``change`` made to it."""
    if plural == "geofences":
        body = polygon(SQUARE)
    else:
        body = polygon(LINE, kind="route", corridor_m=100)
        body["feature"]["geometry"] = {"type": "LineString", "coordinates": LINE}
    feature = body["feature"]
    for key, value in change.items():
        if key in ("properties", "geometry"):
            feature[key] = value
        elif key == "coordinates":
            feature["geometry"]["coordinates"] = value
        elif key == "geometry_type":
            feature["geometry"]["type"] = value
        else:
            feature["properties"][key] = value
    return {**body, "coordinates_crs": crs}


@pytest.mark.parametrize("method", ["POST", "PUT"])
@pytest.mark.parametrize(
    ("plural", "change", "crs", "message"),
    [
        (plural, *case)
        for plural in ("geofences", "routes")
        for case in WRONG_TYPES
        if not (plural == "routes" and "vehicle_classes" in case[0])  # a route has none
    ],
)
async def test_a_value_of_the_wrong_type_is_a_422_saying_what_came(
    settings: Settings,
    pool: asyncpg.Pool,
    method: str,
    plural: str,
    change: dict,
    crs: str,
    message: str,
) -> None:
    w = await make_world(pool, settings)
    bureau = w.auth("bureau")
    async with rest_client(settings) as client:
        good = _wrong(plural, {}, "wgs84")
        r = await client.post(f"/api/{plural}", json=good, headers=bureau)
        assert r.status_code == 201, r.text
        item_id = r.json()["id"]
        before = (await client.get(f"/api/{plural}/{item_id}", headers=bureau)).json()
        url = f"/api/{plural}" if method == "POST" else f"/api/{plural}/{item_id}"
        r = await client.request(method, url, json=_wrong(plural, change, crs), headers=bureau)
        assert r.status_code == 422, r.text
        arrays = "arrays of " if plural == "geofences" else ""
        assert message.format(arrays=arrays) in r.text, r.text
        after = (await client.get(f"/api/{plural}/{item_id}", headers=bureau)).json()
    assert after == before
    kind = "geofence" if plural == "geofences" else "route"
    assert len(await store.load(pool, kind)) == 1


async def test_geometry_drawn_on_gcj02_tiles_is_saved_in_wgs84(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    w = await make_world(pool, settings)
    drawn = [list(reversed(wgs84_to_gcj02(lat, lon))) for lon, lat in SQUARE]
    body = polygon(drawn, name="drawn on AMap", id="amap-1") | {"coordinates_crs": "gcj02"}
    async with rest_client(settings) as client:
        r = await client.post("/api/geofences", json=body, headers=w.auth("bureau"))
        assert r.status_code == 201, r.text
    (fence,) = await store.load_geofences(pool)
    for (x, y), (ex, ey) in zip(fence.geometry.exterior.coords, SQUARE, strict=True):
        assert x == pytest.approx(ex, abs=1e-8) and y == pytest.approx(ey, abs=1e-8)


async def test_operators_see_only_geofences_and_routes_of_their_vehicles(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    w = await make_world(pool, settings)
    async with rest_client(settings) as client:
        bureau = w.auth("bureau")
        await client.post(
            "/api/geofences", json=polygon(SQUARE, id="all", name="all"), headers=bureau
        )
        await client.post(
            "/api/geofences",
            json=polygon(SQUARE, id="b-only", name="b", vehicle_ids=[w.vehicles_b[0]]),
            headers=bureau,
        )
        await client.post(
            "/api/geofences",
            json=polygon(
                SQUARE, id="both", name="both", vehicle_ids=[w.vehicles_a[0], w.vehicles_b[0]]
            ),
            headers=bureau,
        )
        route = {
            "feature": {
                "type": "Feature",
                "properties": {
                    "id": "r-b",
                    "name": "B route",
                    "corridor_m": 100,
                    "vehicle_ids": [w.vehicles_b[1]],
                },
                "geometry": {"type": "LineString", "coordinates": [[106.5, 29.5], [106.6, 29.6]]},
            }
        }
        assert (await client.post("/api/routes", json=route, headers=bureau)).status_code == 201
        fc = (await client.get("/api/geofences", headers=w.auth("op_a"))).json()
        seen = {f["properties"]["id"]: f["properties"].get("vehicle_ids") for f in fc["features"]}
        assert seen == {"all": None, "both": [w.vehicles_a[0]]}  # B's vehicle id not revealed
        for path in ("/api/geofences/b-only", "/api/routes/r-b"):
            assert (await client.get(path, headers=w.auth("op_a"))).status_code == 404
        assert (await client.get("/api/routes/r-b", headers=w.auth("op_b"))).status_code == 200
        fc = (await client.get("/api/geofences", headers=w.auth("enforcement"))).json()
        assert len(fc["features"]) == 4
