"""Web defences against the real database, broker and sockets: cross-site requests riding on the
login cookie, password guessing (throttling per account and per address), password checks that
must not stall the event loop, websockets outliving their login, security headers, oversized and
deeply nested bodies, weak production secrets and login tokens in the access log."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import httpx
import pytest
from ingest_helpers import start_cli
from test_web_ws import receive_until, ws_connect
from web_helpers import PASSWORD, make_world, rest_client, served_app, store_alarm
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from gps_monitor.config import Settings
from gps_monitor.db import users
from gps_monitor.errors import ConfigurationError
from web.app import create_app
from web.basemaps import tile_source
from web.security import secret_key_problem


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


# ------------------------------------------------------------------ item 8: websocket, headers,
# bodies, secret key, access log


async def test_logout_ends_the_open_websocket_in_every_web_process(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    w = await make_world(pool, settings)
    async with (
        served_app(settings) as (one, _),
        served_app(settings) as (two, _),
        httpx.AsyncClient(base_url=f"http://{one}") as http,
    ):
        token = (await _login(http, "op_a", PASSWORD)).json()["token"]
        # the socket is on the second process; the logout reaches the first
        async with (
            await ws_connect(two, token) as ws,
            await ws_connect(two, w.tokens["op_b"]) as other,
        ):
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "snapshot"
            assert json.loads(await asyncio.wait_for(other.recv(), 5))["type"] == "snapshot"
            r = await http.post("/api/auth/logout", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 204
            with pytest.raises(ConnectionClosed) as closed:
                while True:  # well before the 15 s session check
                    await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
            await other.send(json.dumps({"type": "ping"}))
            pong = await receive_until(other, 5, lambda m: m[-1]["type"] == "pong")
            assert pong[-1]["type"] == "pong"  # another user's socket goes on


async def test_websocket_ends_when_its_token_is_revoked_by_another_program(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    w = await make_world(pool, settings)
    quick = _web(settings, heartbeat_interval_s=0.3)
    async with served_app(quick) as (base, _), await ws_connect(base, w.tokens["op_a"]) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "snapshot"
        await users.set_password(pool, "op_a", "another-password-7")  # as `gps-monitor` does
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_pages_carry_security_headers_and_a_csp_for_their_tiles(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    tiles = _web(settings, tile_url_template="https://{s}.tile.openstreetmap.org/{z}/{x}/{y}.png")
    async with rest_client(tiles) as client:
        for path in ("/map", "/api/config", "/static/app.js", "/api/vehicles"):
            r = await client.get(path)
            assert r.headers["x-content-type-options"] == "nosniff", path
            assert r.headers["referrer-policy"] == "same-origin"
            assert r.headers["x-frame-options"] == "DENY"
            assert "strict-transport-security" not in r.headers  # plain HTTP
            csp = r.headers["content-security-policy"]
            assert "script-src 'self';" in csp and "frame-ancestors 'none'" in csp
            (images,) = [d for d in csp.split("; ") if d.startswith("img-src ")]
            # the custom template's host and the three offered basemaps' hosts, nothing else
            assert images.split() == [
                "img-src", "'self'", "data:", "blob:", "https://*.tile.openstreetmap.org",
                "https://tile.openstreetmap.org", "https://*.tianditu.gov.cn",
                "https://*.is.autonavi.com",
            ]  # fmt: skip
        docs = await client.get("/docs")
        assert (
            docs.status_code == 200
            and "cdn.jsdelivr.net" in docs.headers["content-security-policy"]
        )
    app = create_app(settings, live_feed=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://gov") as tls,
    ):
        r = await tls.get("/map")
        assert r.headers["strict-transport-security"] == "max-age=31536000"


async def test_tile_hosts_become_csp_sources() -> None:
    assert tile_source("https://{s}.tile.openstreetmap.org/{z}/{x}/{y}.png") == (
        "https://*.tile.openstreetmap.org"
    )
    assert tile_source("https://webrd0{s}.is.autonavi.com/appmaptile?x={x}") == (
        "https://*.is.autonavi.com"
    )
    assert tile_source("http://tiles.local:8080/{z}/{x}/{y}.png") == "http://tiles.local:8080"
    assert tile_source(None) is None


async def test_body_over_the_limit_is_refused_while_streaming_before_login(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    limit = 64 * 1024
    small = _web(settings, max_body_bytes=limit)
    chunk = b"x" * 16 * 1024
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(5000):  # 80 MB if it were all read
            sent += 1
            yield chunk

    async with rest_client(small) as client:
        for content_type in ("application/json", "application/octet-stream"):
            sent = 0
            r = await client.post(
                "/api/geofences", content=endless(), headers={"Content-Type": content_type}
            )
            assert r.status_code == 413, content_type
            assert sent <= limit // len(chunk) + 2  # stopped at the limit, not buffered
        declared = await client.post("/api/auth/login", content=b"{" + b" " * (limit + 1) + b"}")
        assert declared.status_code == 413
        # within the limit nothing changes
        assert (await _login(client, "nobody", "wrong-password")).status_code == 401


async def test_deeply_nested_json_is_a_422_saying_so(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    w = await make_world(pool, settings)
    deep = b"[" * 100_000 + b"]" * 100_000
    moderately = json.dumps({"a": json.loads("[" * 40 + "]" * 40)}).encode()
    async with rest_client(settings) as client:
        for body, headers in (
            (deep, {"Content-Type": "application/json"}),
            (deep, {}),  # FastAPI reads a body without a content type as JSON too
            (moderately, {"Content-Type": "application/json"}),
        ):
            r = await client.post(
                "/api/geofences", content=body, headers=headers | w.auth("bureau")
            )
            assert r.status_code == 422
            assert "expected JSON nested at most 32 levels deep" in r.json()["detail"]


@pytest.mark.parametrize(
    "key",
    [
        "a" * 36,
        "abc" * 12,
        "0123456789abcdef" * 2,
        "abcdefghijklmnopqrstuvwxyz0123456789",
        "change-me-to-64-hex-characters-0123456789abcdef",
        secrets.token_urlsafe(16),  # 22 characters
    ],
)
def test_production_refuses_a_secret_key_without_real_entropy(settings: Settings, key: str) -> None:
    prod = settings.model_copy(
        update={
            "environment": "production",
            "web": settings.web.model_copy(update={"secret_key": key}),
        }
    )
    with pytest.raises(ConfigurationError, match="expected a random secret in production"):
        create_app(prod)


def test_production_accepts_generated_secret_keys(settings: Settings) -> None:
    for key in (secrets.token_urlsafe(32), secrets.token_hex(32), secrets.token_hex(16)):
        assert secret_key_problem(key) is None, key


async def test_access_log_shows_no_token_from_the_query(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    w = await make_world(pool, settings)
    token = w.tokens["op_a"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log_path = tmp_path / "web.log"
    with log_path.open("wb") as log:
        proc = start_cli(["web", "--port", str(port)], settings, stdout=log, stderr=log)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                for _ in range(200):
                    try:
                        await http.get("/api/config")
                        break
                    except httpx.TransportError:
                        await asyncio.sleep(0.1)
                r = await http.get("/api/auth/session", params={"token": token, "x": "1"})
                assert r.status_code == 200
            async with connect(f"ws://127.0.0.1:{port}/ws/live?token={token}") as ws:
                assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "snapshot"
        finally:
            proc.terminate()
            await asyncio.to_thread(proc.wait, 10)
    text = log_path.read_text()
    assert "/api/auth/session?token=[redacted]&x=1" in text
    assert "/ws/live?token=[redacted]" in text
    assert token not in text
