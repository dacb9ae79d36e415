"""Helpers for the ingest tests: a running worker (in-process or as a real subprocess),
publishing raw messages, waiting for the database to reach a state."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg

from gps_monitor import mqtt
from gps_monitor.config import Settings
from ingest.worker import IngestWorker


@contextlib.asynccontextmanager
async def running_worker(settings: Settings) -> AsyncIterator[IngestWorker]:
    """An in-process ingest worker, subscribed before the block starts; its persistent session
    is removed from the broker afterwards."""
    worker = IngestWorker(settings)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.ready.wait(), 10)
        yield worker
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await drop_session(settings)


async def drop_session(settings: Settings, client_id: str | None = None) -> None:
    """Remove a persistent session (and its queued messages) from the broker."""
    async with mqtt.build_client(settings.mqtt, client_id=client_id, persistent=False):
        pass


async def publish_raw(settings: Settings, items: list[tuple[str, bytes | str]]) -> None:
    """Publish (topic, payload) pairs at QoS 1, in order (topics without the test prefix)."""
    async with mqtt.build_client(settings.mqtt, client_id=f"{settings.mqtt.client_id}-pub") as c:
        for topic, payload in items:
            await c.publish(settings.mqtt.topic_prefix + topic, payload, qos=1)


def position_json(fix_time: str, latitude: Any, longitude: Any, **fields: Any) -> str:
    """A contract position object as JSON text."""
    return json.dumps(
        {
            "fix_time": fix_time,
            "latitude": latitude,
            "longitude": longitude,
            "speed_kmh": fields.pop("speed_kmh", 30.0),
            **fields,
        }
    )


async def wait_for(
    probe: Callable[[], Awaitable[Any]], predicate: Callable[[Any], bool], timeout_s: float = 30.0
) -> Any:
    """Poll ``probe()`` until ``predicate(value)`` holds; returns the last value (the caller
    asserts on it, so a timeout shows what was reached)."""
    deadline = time.monotonic() + timeout_s
    value = await probe()
    while not predicate(value) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        value = await probe()
    return value


def count_probe(pool: asyncpg.Pool, sql: str, *args: Any) -> Callable[[], Awaitable[Any]]:
    async def probe() -> Any:
        return await pool.fetchval(sql, *args)

    return probe


def worker_env(settings: Settings) -> dict[str, str]:
    """Environment for a ``gps-monitor`` subprocess using the test's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPS_MONITOR_")}
    env.update(
        GPS_MONITOR_DATABASE_URL=settings.database.url or "",
        GPS_MONITOR_DATABASE_TIMESCALE=settings.database.timescale,
        GPS_MONITOR_MQTT_HOST=settings.mqtt.host or "",
        GPS_MONITOR_MQTT_PORT=str(settings.mqtt.port),
        GPS_MONITOR_MQTT_CLIENT_ID=settings.mqtt.client_id,
        GPS_MONITOR_MQTT_TOPIC_PREFIX=settings.mqtt.topic_prefix,
    )
    return env


def start_cli(args: list[str], settings: Settings, **popen: Any) -> subprocess.Popen[bytes]:
    """Start ``python -m gps_monitor.cli ARGS`` with the test's settings in its environment."""
    return subprocess.Popen(
        [sys.executable, "-m", "gps_monitor.cli", *args], env=worker_env(settings), **popen
    )
