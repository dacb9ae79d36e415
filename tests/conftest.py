"""Shared fixtures: a fresh migrated database per test on the real PostgreSQL, an isolated MQTT
topic namespace per test on the real Mosquitto, and the real data in ../shared/data.

Environment:
    GPS_MONITOR_TEST_DATABASE_URL  admin URL of the test server
                                   (default postgresql://postgres@127.0.0.1:5432/postgres)
    GPS_MONITOR_TEST_MQTT_HOST / _PORT  test broker (default 127.0.0.1:1883)
    GPS_MONITOR_SHARED_DATA        folder with the real tracks (default ../shared/data)
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from gps_monitor.config import DatabaseSettings, MqttSettings, Settings
from gps_monitor.db import migrate
from gps_monitor.db.pool import create_pool, init_connection

REPO = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get(
    "GPS_MONITOR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
MQTT_HOST = os.environ.get("GPS_MONITOR_TEST_MQTT_HOST", "127.0.0.1")
MQTT_PORT = int(os.environ.get("GPS_MONITOR_TEST_MQTT_PORT", "1883"))
SHARED_DATA = Path(os.environ.get("GPS_MONITOR_SHARED_DATA", REPO.parent / "shared" / "data"))
_TEMPLATE = f"gpsm_template_{os.getpid()}"


def _url_for(database: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real tracks and frames; skips the test when it is absent."""
    if not (SHARED_DATA / "README.md").exists():
        pytest.skip(f"real data folder not found at {SHARED_DATA} (set GPS_MONITOR_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def _template_database() -> Iterator[str]:
    """One migrated template database per test process; each test copies it."""
    import asyncio

    async def create() -> None:
        admin = await asyncpg.connect(ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{_TEMPLATE}"')
            await admin.execute(f'CREATE DATABASE "{_TEMPLATE}"')
        finally:
            await admin.close()
        conn = await asyncpg.connect(_url_for(_TEMPLATE))
        try:
            await init_connection(conn)
            await migrate.upgrade(conn, DatabaseSettings(url=_url_for(_TEMPLATE), timescale="off"))
        finally:
            await conn.close()

    async def drop() -> None:
        admin = await asyncpg.connect(ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{_TEMPLATE}" WITH (FORCE)')
        finally:
            await admin.close()

    asyncio.run(create())
    yield _TEMPLATE
    asyncio.run(drop())


@pytest.fixture
async def database_url(_template_database: str) -> AsyncIterator[str]:
    """URL of a fresh, migrated (plain mode) database, dropped after the test."""
    name = f"gpsm_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{_template_database}"')
    finally:
        await admin.close()
    yield _url_for(name)
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Settings for one test: its own database and its own MQTT topic namespace and client ids."""
    tag = uuid.uuid4().hex[:10]
    return Settings(
        database=DatabaseSettings(url=database_url, timescale="off"),
        mqtt=MqttSettings(
            host=MQTT_HOST,
            port=MQTT_PORT,
            client_id=f"gpsm-test-{tag}",
            topic_prefix=f"test-{tag}/",
        ),
    )


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the test's database."""
    pool = await create_pool(settings.database, min_size=1, max_size=4)
    yield pool
    await pool.close()
