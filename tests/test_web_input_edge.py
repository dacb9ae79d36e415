"""Input the database cannot store is refused at the edge with a 422, never a 500: the NUL
character in any path, query or body text, values asyncpg refuses (the safety net), and numbers
such as ``1e400`` that JSON cannot carry back in the validation answer."""

from __future__ import annotations

import math

import asyncpg
import pytest
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from web_helpers import World, make_world, rest_client, store_alarm

from gps_monitor.config import Settings
from gps_monitor.db.registry import TerminalIdError, ensure_vehicle
from web.app import ROUTERS

NUL_REQUESTS = [
    ("POST", "/api/auth/login", None, {"username": "a\u0000", "password": "x"}),
    ("GET", "/api/vehicles?plate=a%00b", "bureau", None),
    ("GET", "/api/alarms?alarm_type=a%00b", "bureau", None),
    ("POST", "/api/alarms/{alarm}/handle", "bureau", {"note": "x\u0000y"}),
    ("POST", "/api/companies", "bureau", {"name": "运输\u0000公司"}),
    ("POST", "/api/vehicles", "bureau", {"plate_number": "渝A\u000012", "terminal_id": "t-1"}),
    ("POST", "/api/vehicles", "bureau", {"plate_number": "渝A0012", "terminal_id": "t\u00001"}),
    ("GET", "/api/geofences/gf%00x", "bureau", None),
]


@pytest.mark.parametrize(("method", "url", "who", "body"), NUL_REQUESTS)
async def test_nul_character_anywhere_in_a_request_is_a_422(
    settings: Settings,
    pool: asyncpg.Pool,
    method: str,
    url: str,
    who: str | None,
    body: dict[str, str] | None,
) -> None:
    w: World = await make_world(pool, settings)
    alarm = await store_alarm(pool, w.vehicles_a[0], w.company_a)
    if body is not None and url == "/api/vehicles":
        body = {**body, "company_id": w.company_a, "vehicle_class": "hazmat"}
    async with rest_client(settings) as client:
        response = await client.request(
            method,
            url.format(alarm=alarm),
            json=body,
            headers=w.auth(who) if who else None,
        )
    assert response.status_code == 422, response.text
    assert "NUL" in response.json()["detail"]
    assert await pool.fetchval("SELECT count(*) FROM vehicles") == 4


async def test_nul_in_a_form_body_is_a_422(settings: Settings, pool: asyncpg.Pool) -> None:
    async with rest_client(settings) as client:
        response = await client.post("/api/auth/login", data={"username": "a\u0000"})
    assert response.status_code == 422
    assert "form field 'username'" in response.json()["detail"]


async def test_text_the_database_refuses_is_a_422_not_a_500(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """Safety net: a route that sends such text anyway gets asyncpg's DataError mapped to 422."""
    probe = APIRouter()

    @probe.get("/probe/{code}")
    async def send_character(code: int, request: Request) -> str:
        return str(await request.app.state.pool.fetchval("SELECT $1::text", chr(code)))

    async with rest_client(settings, routers=(*ROUTERS, probe)) as client:
        assert (await client.get("/probe/65")).json() == "A"
        response = await client.get("/probe/0")
    assert response.status_code == 422
    assert "expected values the database can store" in response.json()["detail"]


INFINITE_BODIES = [
    '{"feature": 1e400}',
    '{"feature": {"type": "Feature", "properties": {"kind": "forbidden"}, "geometry": '
    '{"type": "Polygon", "coordinates": [[[106.5, 29.5], [106.6, 29.5], [-1e400, 29.6], '
    "[106.5, 29.5]]]}}}",
    '{"feature": {"type": "Feature", "properties": {"kind": "forbidden", "speed_limit_kmh": '
    '1e400}, "geometry": {"type": "Polygon", "coordinates": [[[106.5, 29.5], [106.6, 29.5], '
    "[106.6, 29.6], [106.5, 29.5]]]}}}",
    '{"feature": NaN}',
]


@pytest.mark.parametrize("body", INFINITE_BODIES)
async def test_infinite_number_in_a_body_is_a_json_422(
    settings: Settings, pool: asyncpg.Pool, body: str
) -> None:
    w = await make_world(pool, settings)
    headers = {**w.auth("bureau"), "content-type": "application/json"}
    async with rest_client(settings) as client:
        response = await client.post("/api/geofences", content=body, headers=headers)
    assert response.status_code == 422, response.text
    assert "expected a finite number" in response.json()["detail"]
    assert await pool.fetchval("SELECT count(*) FROM geofences") == 0


async def test_validation_answer_carries_infinite_input_as_text(settings: Settings) -> None:
    """Safety net: a validation error whose input is ``inf`` still answers JSON."""
    probe = APIRouter()

    @probe.get("/probe")
    async def fail() -> None:
        raise RequestValidationError([{"loc": ["body", "x"], "msg": "too big", "input": math.inf}])

    async with rest_client(settings, routers=(*ROUTERS, probe)) as client:
        response = await client.get("/probe")
    assert response.status_code == 422
    assert response.json()["detail"][0]["input"] == "inf"


@pytest.mark.parametrize("terminal", ["vx/+#", "a b", "", "t" * 33, "终端1", "x\n"])
async def test_terminal_id_unsafe_in_an_mqtt_topic_is_refused(
    settings: Settings, pool: asyncpg.Pool, terminal: str
) -> None:
    w = await make_world(pool, settings)
    body = {
        "company_id": w.company_a,
        "plate_number": "渝A77777",
        "vehicle_class": "freight",
        "terminal_id": terminal,
    }
    async with rest_client(settings) as client:
        created = await client.post("/api/vehicles", json=body, headers=w.auth("bureau"))
        patched = await client.patch(
            f"/api/vehicles/{w.vehicles_a[0]}",
            json={"terminal_id": terminal},
            headers=w.auth("bureau"),
        )
    for response in (created, patched):
        assert response.status_code == 422, response.text
        assert "expected 1 to 32 letters, digits" in response.text
    with pytest.raises(TerminalIdError, match=r"expected 1 to 32 .* got '"):
        await ensure_vehicle(
            pool, company_id=w.company_a, plate_number="渝A77777", terminal_id=terminal
        )
    assert await pool.fetchval("SELECT count(*) FROM vehicles") == 4
    assert set(await pool.fetchval("SELECT array_agg(terminal_id) FROM vehicles")) == set(
        w.terminals.values()
    )


@pytest.mark.parametrize("terminal", ["013912345678", "tdrive-1", "bods-4716", "sim_2.a", "T" * 32])
async def test_terminal_ids_of_devices_simulators_and_replays_are_accepted(
    settings: Settings, pool: asyncpg.Pool, terminal: str
) -> None:
    w = await make_world(pool, settings)
    body = {
        "company_id": w.company_a,
        "plate_number": "渝A77777",
        "vehicle_class": "freight",
        "terminal_id": terminal,
    }
    async with rest_client(settings) as client:
        created = await client.post("/api/vehicles", json=body, headers=w.auth("bureau"))
    assert created.status_code == 201, created.text
    assert created.json()["terminal_id"] == terminal
