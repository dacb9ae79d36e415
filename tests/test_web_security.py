"""Browser-facing defences against the real database: cross-site requests riding on the login
cookie."""

from __future__ import annotations

import asyncpg
from web_helpers import PASSWORD, make_world, rest_client, store_alarm

from gps_monitor.config import Settings


async def test_cookie_change_from_another_origin_is_refused_and_changes_nothing(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    w = await make_world(pool, settings)
    alarm_id = await store_alarm(pool, w.vehicles_a[0], w.company_a)
    path = f"/api/alarms/{alarm_id}/acknowledge"
    async with rest_client(settings) as client:  # Host: test
        login = await client.post(
            "/api/auth/login", json={"username": "op_a", "password": PASSWORD}
        )
        assert login.status_code == 200 and client.cookies.get("gpsm_token")
        # a page on another port of the same host, by Origin, by Referer, by Sec-Fetch-Site
        for headers in (
            {"Origin": "http://test:8081"},
            {"Origin": "null"},
            {"Referer": "http://test:8081/evil.html"},
            {"Sec-Fetch-Site": "same-site"},
            {"Sec-Fetch-Site": "cross-site"},
        ):
            r = await client.post(path, headers=headers)
            assert r.status_code == 403, headers
            assert "cross-site request" in r.json()["detail"]
        assert await pool.fetchval("SELECT status FROM alarms WHERE id = $1", alarm_id) == "open"
        # logout and deletes are state changes too
        assert (
            await client.post("/api/auth/logout", headers={"Origin": "http://evil.example"})
        ).status_code == 403
        # the app's own pages
        r = await client.post(
            path, headers={"Origin": "http://test", "Sec-Fetch-Site": "same-origin"}
        )
        assert r.status_code == 200 and r.json()["status"] == "acknowledged"
        r = await client.post(
            f"/api/alarms/{alarm_id}/handle",
            json={"note": "ok"},
            headers={"Referer": "http://test/map"},
        )
        assert r.status_code == 200
        # a bearer token is not sent by another page on its own: exempt
        client.cookies.clear()
        other = await store_alarm(pool, w.vehicles_a[1], w.company_a)
        r = await client.post(
            f"/api/alarms/{other}/acknowledge",
            headers=w.auth("op_a") | {"Origin": "http://elsewhere.example"},
        )
        assert r.status_code == 200


async def test_configured_allowed_origin_may_use_the_cookie(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    w = await make_world(pool, settings)
    alarm_id = await store_alarm(pool, w.vehicles_a[0], w.company_a)
    portal = settings.model_copy(
        update={
            "web": settings.web.model_copy(
                update={"allowed_origins": ["https://portal.example.gov.cn"]}
            )
        }
    )
    async with rest_client(portal) as client:
        await client.post("/api/auth/login", json={"username": "op_a", "password": PASSWORD})
        r = await client.post(
            f"/api/alarms/{alarm_id}/acknowledge",
            headers={"Origin": "https://portal.example.gov.cn"},
        )
        assert r.status_code == 200
        r = await client.post(
            f"/api/alarms/{alarm_id}/handle",
            json={"note": "x"},
            headers={"Origin": "http://portal.example.gov.cn"},  # other scheme: other origin
        )
        assert r.status_code == 403
