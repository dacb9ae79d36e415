"""Geofence and route editing through the API as the map page does it: create, edit of the
vertices, assignment to vehicles and companies, delete; validation answers; operators' scope;
every change written with its audit entry in one transaction."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest
from web_helpers import make_world, rest_client

from gps_monitor.config import Settings
from gps_monitor.db import geofences as store

LINE = [[106.50, 29.50], [106.55, 29.52], [106.60, 29.55]]
SQUARE = [[106.50, 29.50], [106.60, 29.50], [106.60, 29.60], [106.50, 29.60], [106.50, 29.50]]


def route(coords: list[list[float]] = LINE, **props: Any) -> dict[str, Any]:
    properties = {"name": "G65 渝湘", "corridor_m": 200, **props}
    return {
        "feature": {
            "type": "Feature",
            "properties": properties,
            "geometry": {"type": "LineString", "coordinates": coords},
        }
    }


def zone(**props: Any) -> dict[str, Any]:
    return {
        "feature": {
            "type": "Feature",
            "properties": {"name": "学校限速", "kind": "speed_zone", **props},
            "geometry": {"type": "Polygon", "coordinates": [SQUARE]},
        }
    }


async def _actions(pool: asyncpg.Pool) -> list[str]:
    return [r["action"] for r in await pool.fetch("SELECT action FROM audit_log ORDER BY id")]


async def test_route_created_edited_assigned_and_deleted_with_audit(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    w = await make_world(pool, settings)
    bureau = w.auth("bureau")
    async with rest_client(settings) as client:
        r = await client.post(
            "/api/routes",
            json=route(speed_limit_kmh=80, active_hours="06:00-22:00"),
            headers=bureau,
        )
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
        # vehicles and a whole company: company B's two vehicles plus one of A's
        r = await client.put(
            f"/api/routes/{rid}/vehicles",
            json={"vehicle_ids": [w.vehicles_a[0]], "company_ids": [w.company_b]},
            headers=bureau,
        )
        assert r.status_code == 200, r.text
        expected = sorted([w.vehicles_a[0], *w.vehicles_b])
        assert r.json()["properties"]["vehicle_ids"] == expected
        # an edit of the vertices (a dragged middle point): properties and assignment stay
        moved = [LINE[0], [106.56, 29.53], LINE[2]]
        r = await client.put(
            f"/api/routes/{rid}",
            json=route(moved, speed_limit_kmh=80, active_hours="06:00-22:00"),
            headers=bureau,
        )
        assert r.status_code == 200, r.text
        (saved,) = await store.load_routes(pool)
        assert list(saved.line.coords)[1] == pytest.approx((106.56, 29.53))
        assert saved.vehicle_ids == frozenset(expected)
        assert (saved.corridor_m, saved.speed_limit_kmh) == (200, 80)
        assert str(saved.active_hours) == "06:00-22:00"
        # an empty assignment takes the route off every vehicle
        r = await client.put(f"/api/routes/{rid}/vehicles", json={}, headers=bureau)
        assert r.status_code == 200 and "vehicle_ids" not in r.json()["properties"]
        assert (await client.delete(f"/api/routes/{rid}", headers=bureau)).status_code == 204
    assert await store.load_routes(pool) == []
    assert await _actions(pool) == [
        "route.create",
        "route.assign",
        "route.update",
        "route.assign",
        "route.delete",
    ]
    details = await pool.fetchval(
        "SELECT details FROM audit_log WHERE action = 'route.assign' ORDER BY id LIMIT 1"
    )
    assert details["company_ids"] == [w.company_b] and details["vehicle_ids"] == expected


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("/api/geofences", zone(), 422, "speed_limit_kmh"),
        ("/api/geofences", zone(speed_limit_kmh=40, active_hours="8点-9点"), 422, "active_hours"),
        ("/api/routes", route(corridor_m=60000), 422, "corridor_m"),
        ("/api/routes", route(corridor_m=0), 422, "corridor_m"),
        ("/api/routes", route([[106.5, 29.5]]), 422, "at least 2 points"),
        ("/api/routes", route(speed_limit_kmh=-5), 422, "speed_limit_kmh"),
    ],
)
async def test_invalid_geofences_and_routes_are_refused_with_what_was_expected(
    settings: Settings, pool: asyncpg.Pool, path: str, body: dict[str, Any], status: int, says: str
) -> None:
    w = await make_world(pool, settings)
    async with rest_client(settings) as client:
        r = await client.post(path, json=body, headers=w.auth("bureau"))
    assert r.status_code == status, r.text
    assert says in r.json()["detail"] and "expected" in r.json()["detail"]
    assert await store.load_routes(pool) == [] and await store.load_geofences(pool) == []
    assert await _actions(pool) == []


async def test_duplicate_unknown_and_missing_references_change_nothing(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    w = await make_world(pool, settings)
    bureau = w.auth("bureau")
    async with rest_client(settings) as client:
        assert (
            await client.post("/api/routes", json=route(id="r1"), headers=bureau)
        ).status_code == 201
        r = await client.post("/api/routes", json=route(id="r1", name="again"), headers=bureau)
        assert r.status_code == 409 and "existing" in r.json()["detail"]
        r = await client.put("/api/routes/nope", json=route(), headers=bureau)
        assert r.status_code == 404
        r = await client.put(
            "/api/routes/r1/vehicles",
            json={"vehicle_ids": [w.vehicles_a[0]], "company_ids": [987654]},
            headers=bureau,
        )
        assert r.status_code == 404 and "company_ids" in r.json()["detail"]
    (saved,) = await store.load_routes(pool)
    assert saved.name == "G65 渝湘" and saved.vehicle_ids == frozenset()
    assert await _actions(pool) == ["route.create"]


async def test_operator_sees_only_his_vehicles_and_changes_nothing(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    w = await make_world(pool, settings)
    bureau, op_a = w.auth("bureau"), w.auth("op_a")
    async with rest_client(settings) as client:
        await client.post("/api/routes", json=route(id="rb"), headers=bureau)
        await client.put(
            "/api/routes/rb/vehicles", json={"company_ids": [w.company_b]}, headers=bureau
        )
        await client.post("/api/routes", json=route(id="rab"), headers=bureau)
        await client.put(
            "/api/routes/rab/vehicles",
            json={"vehicle_ids": [w.vehicles_a[0], w.vehicles_b[0]]},
            headers=bureau,
        )
        # B's route does not exist for A's operator; the shared one shows only A's vehicle
        assert (await client.get("/api/routes/rb", headers=op_a)).status_code == 404
        r = await client.get("/api/routes/rab", headers=op_a)
        assert r.json()["properties"]["vehicle_ids"] == [w.vehicles_a[0]]
        listed = (await client.get("/api/routes", headers=op_a)).json()["features"]
        assert [f["id"] for f in listed] == ["rab"]
        # writes are the bureau's: assignment included
        for method, path, body in (
            ("PUT", "/api/routes/rab/vehicles", {"vehicle_ids": [w.vehicles_a[1]]}),
            ("PUT", "/api/routes/rab", route()),
            ("DELETE", "/api/routes/rab", None),
            ("POST", "/api/routes", route()),
        ):
            r = await client.request(method, path, json=body, headers=op_a)
            assert r.status_code == 403, (method, path, r.text)
    assert {r.id: r.vehicle_ids for r in await store.load_routes(pool)} == {
        "rab": frozenset([w.vehicles_a[0], w.vehicles_b[0]]),
        "rb": frozenset(w.vehicles_b),
    }


async def _failing_audit(pool: asyncpg.Pool) -> None:
    await pool.execute(
        "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'audit refused by the test'; END $$"
    )
    await pool.execute(
        "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION refuse_audit()"
    )


async def _refused(client: httpx.AsyncClient, method: str, path: str, body: Any, w: Any) -> None:
    with pytest.raises(asyncpg.RaiseError, match="audit refused"):
        await client.request(method, path, json=body, headers=w.auth("bureau"))


async def test_a_change_whose_audit_entry_fails_is_not_written(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    w = await make_world(pool, settings)
    async with rest_client(settings) as client:
        bureau = w.auth("bureau")
        assert (
            await client.post("/api/routes", json=route(id="kept"), headers=bureau)
        ).status_code == 201
        await _failing_audit(pool)
        await _refused(client, "POST", "/api/routes", route(id="new"), w)
        await _refused(client, "PUT", "/api/routes/kept", route([LINE[0], LINE[2]], id="kept"), w)
        await _refused(client, "PATCH", "/api/routes/kept", {"name": "renamed"}, w)
        await _refused(client, "PUT", "/api/routes/kept/vehicles", {"vehicle_ids": w.vehicles_a}, w)
        await _refused(client, "DELETE", "/api/routes/kept", None, w)
    (kept,) = await store.load_routes(pool)
    assert (kept.id, kept.name, len(kept.line.coords)) == ("kept", "G65 渝湘", 3)
    assert kept.vehicle_ids == frozenset()
    assert await _actions(pool) == ["route.create"]
