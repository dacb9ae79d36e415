"""Input the database cannot store is refused at the edge with a 422, never a 500: the NUL
character in any path, query or body text, a lone surrogate in JSON text, values asyncpg refuses
(the safety net), and numbers such as ``1e400`` or text such as a lone surrogate that JSON or
UTF-8 cannot carry back in an error answer."""

from __future__ import annotations

import math

import asyncpg
import httpx
import pytest
from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from web_helpers import World, make_world, rest_client, served_app, store_alarm

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


# (method, url, who, raw JSON body: ``\\ud800`` is the JSON escape, as a client sends it)
SURROGATE_REQUESTS = [
    ("POST", "/api/companies", "bureau", r'{"name": "A\ud800"}'),
    ("PATCH", "/api/companies/{company}", "bureau", r'{"name": "A\udc00B"}'),
    (
        "POST",
        "/api/vehicles",
        "bureau",
        r'{"company_id": {company}, "plate_number": "渝A\ud80012", "vehicle_class": "hazmat", '
        r'"terminal_id": "t-9"}',
    ),
    (
        "POST",
        "/api/users",
        "bureau",
        r'{"username": "u\ud800", "password": "long-enough-pass", "role": "bureau"}',
    ),
    ("PUT", "/api/users/1", "bureau", r'{"display_name": "\udfff"}'),
    (
        "POST",
        "/api/holds",
        "enforcement",
        r'{"vehicle_id": {vehicle}, "reason": "案件\ud800", "start": "2026-03-01T00:00:00+08:00", '
        r'"end": "2026-03-02T00:00:00+08:00"}',
    ),
    ("POST", "/api/holds/1/release", "enforcement", r'{"reason": "\ud800"}'),
    ("POST", "/api/notify/channels", "bureau", r'{"name": "c\ud800", "kind": "webhook"}'),
    ("POST", "/api/notify/subscriptions", "bureau", r'{"name": ["x", {"y": "\ud800"}]}'),
    ("POST", "/api/companies", "bureau", r'{"na\ud800me": "A"}'),  # in a key
    ("POST", "/api/companies", "bureau", r'{"\ud800": {"x": "\u0000"}}'),  # key, then NUL
]


@pytest.mark.parametrize(("method", "url", "who", "body"), SURROGATE_REQUESTS)
async def test_lone_surrogate_in_json_text_is_a_422_not_a_500(
    settings: Settings, pool: asyncpg.Pool, method: str, url: str, who: str, body: str
) -> None:
    """Found by a new-user walkthrough: ``"A\\ud800"`` was refused by validation, but the 422
    echoing it could not be encoded (a 500, then the keep-alive connection reset)."""
    w = await make_world(pool, settings)
    body = body.replace("{company}", str(w.company_a)).replace("{vehicle}", str(w.vehicles_a[0]))
    headers = {**w.auth(who), "content-type": "application/json"}
    async with rest_client(settings) as client:
        response = await client.request(
            method, url.format(company=w.company_a), content=body.encode(), headers=headers
        )
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "expected Unicode text, got a lone surrogate \\u" in detail, detail
    assert detail.startswith("body"), detail
    assert await pool.fetchval("SELECT count(*) FROM companies") == 2
    assert await pool.fetchval("SELECT count(*) FROM vehicles") == 4


async def test_lone_surrogate_answer_keeps_the_connection(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """On a real server: the refusal is sent whole and the next request on the same keep-alive
    connection is answered (it was reset by peer)."""
    w = await make_world(pool, settings)
    headers = {**w.auth("bureau"), "content-type": "application/json"}
    async with (
        served_app(settings) as (base, _),
        httpx.AsyncClient(base_url=f"http://{base}") as client,
    ):
        body = rb'{"name": "A\ud800"}'
        refused = await client.post("/api/companies", content=body, headers=headers)
        assert refused.status_code == 422, refused.text
        assert "\\ud800" in refused.json()["detail"]
        after = await client.get("/api/companies", headers=w.auth("bureau"))
        assert after.status_code == 200, after.text


async def test_a_body_not_sent_as_json_nor_utf8_is_echoed_as_escapes(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """FastAPI hands a body of another content type to validation as bytes, which its encoder
    could not decode (a 500): the 422 carries it with ``\\xff`` escapes."""
    w = await make_world(pool, settings)
    headers = {**w.auth("bureau"), "content-type": "text/plain"}
    async with rest_client(settings) as client:
        response = await client.post("/api/companies", content=b"\xff\xfeA", headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["input"] == "\\xff\\xfeA"


async def test_error_answers_carry_lone_surrogates_as_escapes(settings: Settings) -> None:
    """Safety net: an error answer echoing text with a lone surrogate (a validation error's
    input, an HTTPException's detail) still answers JSON, the surrogate as its escape."""
    probe = APIRouter()

    @probe.get("/probe/invalid")
    async def invalid() -> None:
        raise RequestValidationError([{"loc": ["body", "x"], "msg": "bad", "input": "A\ud800"}])

    @probe.get("/probe/http")
    async def http() -> None:
        raise HTTPException(422, "name: expected text, got A\udc00")

    async with rest_client(settings, routers=(*ROUTERS, probe)) as client:
        invalid_answer = await client.get("/probe/invalid")
        http_answer = await client.get("/probe/http")
    assert invalid_answer.status_code == 422
    assert invalid_answer.json()["detail"][0]["input"] == "A\\ud800"
    assert http_answer.status_code == 422
    assert http_answer.json()["detail"] == "name: expected text, got A\\udc00"


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
