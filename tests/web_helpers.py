"""Helpers for the web tests: a two-company world with one user per role, the app on a real
uvicorn server (websockets) or through httpx's ASGI transport (REST), and MQTT publishing in the
documented shapes of ``positions/v2/...`` and ``alarms/v1/...``."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import uvicorn
from fastapi import APIRouter

from gps_monitor import topics
from gps_monitor.config import Settings
from gps_monitor.db import users
from gps_monitor.db.registry import ensure_company, ensure_vehicle
from gps_monitor.models import Alarm, Position, VehicleClass
from gps_monitor.mqtt import build_client
from web.app import ROUTERS, create_app

PASSWORD = "correct-horse-42"


@dataclass
class World:
    """Two companies (A, B) with two vehicles each, and users bureau, op_a, op_b, enforcement."""

    company_a: int = 0
    company_b: int = 0
    vehicles_a: list[int] = field(default_factory=list)
    vehicles_b: list[int] = field(default_factory=list)
    terminals: dict[int, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


async def make_world(pool: asyncpg.Pool, settings: Settings) -> World:
    world = World()
    a = await ensure_company(pool, "甲运输公司")
    b = await ensure_company(pool, "乙运输公司")
    world.company_a, world.company_b = a.id, b.id
    for company, target, prefix in ((a, world.vehicles_a, "A"), (b, world.vehicles_b, "B")):
        for i in range(2):
            terminal = f"0139{prefix}{i:07d}"
            vehicle = await ensure_vehicle(
                pool,
                company_id=company.id,
                plate_number=f"渝{prefix}1000{i}",
                terminal_id=terminal,
                vehicle_class=VehicleClass.HAZMAT,
                speed_limit_kmh=60,
            )
            target.append(vehicle.id)
            world.terminals[vehicle.id] = terminal
    specs = {
        "bureau": ("bureau", None),
        "op_a": ("operator", a.id),
        "op_b": ("operator", b.id),
        "enforcement": ("enforcement", None),
    }
    for name, (role, company_id) in specs.items():
        user = await users.create_user(pool, name, PASSWORD, role, company_id)
        token, _ = await users.issue_token(
            pool, user, settings.web.secret_key, settings.web.token_lifetime_s
        )
        world.tokens[name] = token
    return world


async def store_position(
    pool: asyncpg.Pool,
    vehicle_id: int,
    fix_time: datetime,
    lat: float,
    lon: float,
    speed_kmh: float = 30.0,
    quality: str = "ok",
    late: bool = False,
) -> None:
    """A position row and the latest_positions marker, as ingest would write them."""
    await pool.execute(
        "INSERT INTO positions (vehicle_id, fix_time, received_at, latitude, longitude, "
        "speed_kmh, heading_deg, fix_valid, quality, late) "
        "VALUES ($1, $2, now(), $3, $4, $5, 90, true, $6, $7)",
        vehicle_id,
        fix_time,
        lat,
        lon,
        speed_kmh,
        quality,
        late,
    )
    if quality == "ok" and not late:
        await pool.execute(
            "INSERT INTO latest_positions (vehicle_id, last_message_at, fix_time, received_at, "
            "latitude, longitude, speed_kmh, heading_deg) "
            "VALUES ($1, now(), $2, now(), $3, $4, $5, 90) "
            "ON CONFLICT (vehicle_id) DO UPDATE SET last_message_at = now(), "
            "fix_time = EXCLUDED.fix_time, latitude = EXCLUDED.latitude, "
            "longitude = EXCLUDED.longitude, speed_kmh = EXCLUDED.speed_kmh",
            vehicle_id,
            fix_time,
            lat,
            lon,
            speed_kmh,
        )


async def store_alarm(
    pool: asyncpg.Pool,
    vehicle_id: int,
    company_id: int,
    alarm_type: str = "overspeed",
    started_at: datetime | None = None,
    ended_at: datetime | None = None,
    late: bool = False,
    details: dict[str, Any] | None = None,
    level: int = 3,
    status: str = "open",
) -> int:
    started_at = started_at or datetime.now(UTC)
    alarm_id = await pool.fetchval(
        "INSERT INTO alarms (vehicle_id, company_id, alarm_type, dedup_key, started_at, ended_at, "
        "late, details, level, status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
        "RETURNING id",
        vehicle_id,
        company_id,
        alarm_type,
        f"{vehicle_id}:{alarm_type}:{started_at.isoformat()}",
        started_at,
        ended_at,
        late,
        details or {"limit_kmh": 60},
        level,
        status,
    )
    return int(alarm_id)


@contextlib.asynccontextmanager
async def rest_client(
    settings: Settings, live_feed: bool = False, routers: Sequence[APIRouter] = ROUTERS
) -> AsyncIterator[httpx.AsyncClient]:
    """httpx client on the app (lifespan run), no network server."""
    app = create_app(settings, routers=routers, live_feed=live_feed)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


@contextlib.asynccontextmanager
async def served_app(settings: Settings) -> AsyncIterator[tuple[str, Any]]:
    """The app on a real uvicorn server on a free port, live feed on; yields (base_url, app)."""
    app = create_app(settings)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", ws="websockets-sansio"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    await asyncio.wait_for(app.state.hub.connected.wait(), 10)
    try:
        yield f"127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


def position_dict(
    vehicle_id: int,
    company_id: int,
    terminal_id: str,
    fix_time: datetime,
    lat: float,
    lon: float,
    speed_kmh: float = 30.0,
    **extra: Any,
) -> dict[str, Any]:
    return Position(
        terminal_id=terminal_id,
        fix_time=fix_time,
        latitude=lat,
        longitude=lon,
        speed_kmh=speed_kmh,
        heading_deg=45.0,
        vehicle_id=vehicle_id,
        company_id=company_id,
        received_at=datetime.now(UTC),
        **extra,
    ).to_dict()


async def publish_positions(settings: Settings, batches: list[list[dict[str, Any]]]) -> None:
    """Publish each batch (an ingest batch's positions) on positions/v2/0."""
    async with build_client(settings.mqtt, client_id=f"{settings.mqtt.client_id}-pub") as client:
        for batch in batches:
            topic = topics.accepted_topic(0, settings.mqtt.topic_prefix)
            await client.publish(topic, json.dumps(batch), qos=1)


async def publish_alarm(settings: Settings, alarm: Alarm) -> None:
    async with build_client(settings.mqtt, client_id=f"{settings.mqtt.client_id}-apub") as client:
        topic = topics.alarm_topic(
            alarm.company_id, alarm.vehicle_id, alarm.alarm_type, settings.mqtt.topic_prefix
        )
        await client.publish(topic, json.dumps(alarm.to_dict()), qos=1)


async def wait_for_js(page: Any, expression: str, timeout_ms: float = 30000) -> None:
    """Wait until the JavaScript ``expression`` is truthy in ``page``.

    Playwright's ``wait_for_function`` evaluates its predicate with ``eval`` inside the page,
    which the pages' Content-Security-Policy (no ``unsafe-eval``) refuses; ``page.evaluate``
    runs through the DevTools protocol, outside the page's CSP, so the pages are tested with
    the CSP they ship with.

    Raises:
        TimeoutError: still false after ``timeout_ms``.
    """
    deadline = asyncio.get_running_loop().time() + timeout_ms / 1000
    while not await page.evaluate(f"Boolean({expression})"):
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"expected {expression!r} to become true within {timeout_ms} ms")
        await asyncio.sleep(0.05)


ONLINE_TILE_HOSTS = ("tile.openstreetmap.org", ".tianditu.gov.cn", ".is.autonavi.com")


def offline_tile_error(message: Any) -> bool:
    """True for a Playwright console message that is an online basemap tile failing to load:
    the test machine is offline, and the map page falls back to a plain background with a note
    (web/static/basemaps.js, tested in test_browser_console_map.py)."""
    url = (message.location or {}).get("url", "")
    return message.text.startswith("Failed to load resource") and any(
        host in url for host in ONLINE_TILE_HOSTS
    )
