"""GET /api/geocode against a fake 天地图 geocoder (a real HTTP server on a local port): the
documented request, the place name from the answer, the cache, and each failure as a clear
error (not configured 503, slow 504, error answer 502)."""

from __future__ import annotations

import json

import asyncpg
import pytest
from aiohttp import web
from fake_services import geocoder_server, slow
from web_helpers import make_world, rest_client

from gps_monitor.config import Settings
from web.geocoder import GeocoderError, parse_answer


def with_geocoder(settings: Settings, url: str | None, **extra: object) -> Settings:
    web_settings = settings.web.model_copy(
        update={"geocoder_url": f"{url}/geocoder", "geocoder_key": "server-key", **extra}
        if url
        else extra
    )
    return settings.model_copy(update={"web": web_settings})


async def test_place_name_comes_from_the_geocoder_once_then_from_the_cache(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    world = await make_world(pool, settings)
    async with (
        geocoder_server() as fake,
        rest_client(with_geocoder(settings, fake.base)) as client,
    ):
        config = (await client.get("/api/config")).json()
        assert config["geocoder"] is True
        first = await client.get(
            "/api/geocode",
            params={"lat": 29.557421, "lon": 106.577103},
            headers=world.auth("op_a"),
        )
        assert first.status_code == 200, first.text
        assert first.json() == {
            "lat": 29.5574,
            "lon": 106.5771,
            "place": "重庆市渝中区解放碑 106.5771,29.5574",
            "cached": False,
        }
        # a few metres away: the same rounded position, answered from the cache
        again = await client.get(
            "/api/geocode",
            params={"lat": 29.55743, "lon": 106.57712},
            headers=world.auth("enforcement"),
        )
        assert again.json()["cached"] is True
        assert again.json()["place"] == first.json()["place"]
    (request,) = fake.requests
    assert request.path == "/geocoder"
    assert request.query["type"] == "geocode"
    assert request.query["tk"] == "server-key"
    assert json.loads(request.query["postStr"].replace("'", '"')) == {
        "lon": 106.5771,
        "lat": 29.5574,
        "ver": 1,
    }


async def test_geocode_needs_a_login_and_valid_coordinates(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    world = await make_world(pool, settings)
    async with geocoder_server() as fake, rest_client(with_geocoder(settings, fake.base)) as client:
        assert (
            await client.get("/api/geocode", params={"lat": 29.5, "lon": 106.5})
        ).status_code == 401
        bad = await client.get(
            "/api/geocode", params={"lat": 95, "lon": 106.5}, headers=world.auth("op_a")
        )
        assert bad.status_code == 422
        assert fake.requests == []


async def test_without_a_key_the_endpoint_says_so_and_the_page_is_told(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    world = await make_world(pool, settings)
    async with rest_client(settings) as client:
        assert (await client.get("/api/config")).json()["geocoder"] is False
        r = await client.get(
            "/api/geocode", params={"lat": 29.5, "lon": 106.5}, headers=world.auth("op_a")
        )
        assert r.status_code == 503
        assert "GPS_MONITOR_WEB_GEOCODER_KEY" in r.json()["detail"]


async def test_a_slow_geocoder_times_out_and_an_error_answer_is_a_502(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    world = await make_world(pool, settings)
    async with geocoder_server(slow(2.0)) as fake:
        fast = with_geocoder(settings, fake.base, geocoder_timeout_s=0.3)
        async with rest_client(fast) as client:
            r = await client.get(
                "/api/geocode", params={"lat": 29.5, "lon": 106.5}, headers=world.auth("op_a")
            )
            assert r.status_code == 504
            assert "no answer within 0.3 s" in r.json()["detail"]

    async def refused(_: web.Request) -> web.Response:
        return web.json_response({"msg": "权限类型错误", "status": "1"})

    async with (
        geocoder_server(refused) as fake,
        rest_client(with_geocoder(settings, fake.base)) as client,
    ):
        r = await client.get(
            "/api/geocode", params={"lat": 29.5, "lon": 106.5}, headers=world.auth("op_a")
        )
        assert r.status_code == 502
        assert r.json()["detail"] == "geocoder: expected status 0, got '1' (权限类型错误)"
        # a failure is not cached: the next request asks again
        await client.get(
            "/api/geocode", params={"lat": 29.5, "lon": 106.5}, headers=world.auth("op_a")
        )
        assert len(fake.requests) == 2


def test_answers_that_are_not_the_documented_shape_are_refused() -> None:
    with pytest.raises(GeocoderError, match="expected a JSON answer"):
        parse_answer(b"<html>quota</html>")
    with pytest.raises(GeocoderError, match="expected a result object"):
        parse_answer(b'{"status": "0", "msg": "ok"}')
    assert parse_answer(b'{"status": "0", "result": {"formatted_address": ""}}') is None


async def test_a_place_name_is_stored_so_another_web_process_does_not_ask_again(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    world = await make_world(pool, settings)
    where = {"lat": 29.56, "lon": 106.55}
    async with geocoder_server() as fake:
        local = with_geocoder(settings, fake.base)
        async with rest_client(local) as first_process:
            r = await first_process.get("/api/geocode", params=where, headers=world.auth("op_a"))
            assert r.json()["cached"] is False
        async with rest_client(local) as second_process:  # its memory is empty
            r = await second_process.get("/api/geocode", params=where, headers=world.auth("op_a"))
            assert r.json() == {
                "lat": 29.56,
                "lon": 106.55,
                "place": "重庆市渝中区解放碑 106.55,29.56",
                "cached": True,
            }
        assert len(fake.requests) == 1
        row = await pool.fetchrow("SELECT latitude, longitude, place FROM place_names")
        assert tuple(row) == (29.56, 106.55, "重庆市渝中区解放碑 106.55,29.56")
        # an old answer is looked up again
        await pool.execute("UPDATE place_names SET looked_up_at = now() - interval '181 days'")
        async with rest_client(local) as third_process:
            r = await third_process.get("/api/geocode", params=where, headers=world.auth("op_a"))
            assert r.json()["cached"] is False
        assert len(fake.requests) == 2
