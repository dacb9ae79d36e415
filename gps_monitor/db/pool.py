"""asyncpg connection pool with the JSON codecs every module expects."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from gps_monitor.config import DatabaseSettings
from gps_monitor.errors import ConfigurationError


async def init_connection(conn: asyncpg.Connection) -> None:
    """jsonb and json columns come back as Python objects and accept them."""
    for name in ("jsonb", "json"):
        await conn.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


def require_url(settings: DatabaseSettings) -> str:
    """The configured database URL.

    Raises:
        ConfigurationError: GPS_MONITOR_DATABASE_URL is not set.
    """
    if not settings.url:
        raise ConfigurationError(
            "GPS_MONITOR_DATABASE_URL is not set: expected a URL such as "
            "postgresql://postgres@127.0.0.1:5432/gps_monitor"
        )
    return settings.url


async def create_pool(settings: DatabaseSettings, **overrides: Any) -> asyncpg.Pool:
    """A pool on ``settings.url`` (sizes from the settings unless overridden)."""
    pool = await asyncpg.create_pool(
        require_url(settings),
        min_size=overrides.pop("min_size", settings.pool_min_size),
        max_size=overrides.pop("max_size", settings.pool_max_size),
        init=init_connection,
        **overrides,
    )
    assert pool is not None
    return pool


async def connect(settings: DatabaseSettings) -> asyncpg.Connection:
    """One connection on ``settings.url`` with the codecs installed."""
    conn = await asyncpg.connect(require_url(settings))
    await init_connection(conn)
    return conn
