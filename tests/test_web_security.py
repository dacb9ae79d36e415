"""Browser-facing defences against the real database: cross-site requests riding on the login
cookie, password guessing (throttling per account and per address) and password checks that
must not stall the event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
import asyncpg
import httpx
from web_helpers import PASSWORD, make_world, rest_client, store_alarm

from gps_monitor.config import Settings
from web.app import create_app


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


def _web(settings: Settings, **web: Any) -> Settings:
    return settings.model_copy(update={"web": settings.web.model_copy(update=web)})


@contextlib.asynccontextmanager
async def _clients(settings: Settings, *addresses: str) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One app (lifespan run) and an httpx client per client address."""
    app = create_app(settings, live_feed=False)
    async with app.router.lifespan_context(app), contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app, client=(address, 40000)),
                    base_url="http://test",
                )
            )
            for address in addresses
        ]
        for client in clients:
            client.app = app  # type: ignore[attr-defined]
        yield clients


async def _login(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post("/api/auth/login", json={"username": username, "password": password})


async def test_login_locks_an_account_name_known_or_not_then_answers_429(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    await make_world(pool, settings)
    limited = _web(settings, login_account_attempts=3, login_lockout_s=1.0)
    async with _clients(limited, "10.0.0.1") as (client,):
        for name in ("op_a", "nobody"):
            answers = [await _login(client, name, "wrong-password") for _ in range(3)]
            assert [(r.status_code, r.json()) for r in answers] == [
                (401, {"detail": "wrong username or password"})
            ] * 3
            locked = await _login(client, name, PASSWORD)  # the right password too
            assert locked.status_code == 429
            assert 0 < int(locked.headers["Retry-After"]) <= 1
            assert "too many login attempts" in locked.json()["detail"]
        # another account from the same address is not locked
        assert (await _login(client, "op_b", PASSWORD)).status_code == 200
        await asyncio.sleep(1.1)  # the lockout passes
        assert (await _login(client, "op_a", PASSWORD)).status_code == 200


async def test_login_locks_an_address_that_tries_many_names(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    await make_world(pool, settings)
    limited = _web(settings, login_address_attempts=4, login_account_attempts=100)
    async with _clients(limited, "10.0.0.1", "10.0.0.2") as (spray, office):
        for name in ("op_a", "op_b", "bureau", "x"):
            assert (await _login(spray, name, "wrong-password")).status_code == 401
        refused = await _login(spray, "enforcement", PASSWORD)
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
        # a success does not reset the address; another address is not affected
        assert (await _login(office, "enforcement", PASSWORD)).status_code == 200
        assert (await _login(spray, "op_a", PASSWORD)).status_code == 429


async def test_password_check_runs_in_the_bounded_worker_pool_not_the_event_loop(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    await make_world(pool, settings)
    async with _clients(settings, "10.0.0.1") as (client,):
        limiter: anyio.CapacityLimiter = client.app.state.login_limiter  # type: ignore[attr-defined]
        assert limiter.total_tokens == settings.web.login_hash_threads
        holders = [object() for _ in range(int(limiter.total_tokens))]
        for holder in holders:  # every worker busy
            await limiter.acquire_on_behalf_of(holder)
        login = asyncio.create_task(_login(client, "nobody", "wrong-password"))
        for _ in range(500):
            if limiter.statistics().tasks_waiting == 1:
                break
            await asyncio.sleep(0.01)
        assert limiter.statistics().tasks_waiting == 1  # the argon2 check waits for a worker
        # meanwhile the event loop serves everyone else
        session = await client.get("/api/auth/session")
        assert session.status_code == 200 and not login.done()
        for holder in holders:
            limiter.release_on_behalf_of(holder)
        assert (await login).status_code == 401
