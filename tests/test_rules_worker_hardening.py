"""Issue 14, rules worker: late is a property of arrival order per vehicle whatever the batching
(item 11), and publishing many alarms at once does not flood the log (item 16). Real Mosquitto,
PostgreSQL, ingest and rules workers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from ingest_helpers import drop_session, publish_raw, wait_for
from rules_factory import drive

from gps_monitor import mqtt, topics
from gps_monitor.config import Settings
from gps_monitor.db.registry import ensure_company, ensure_vehicle
from gps_monitor.models import VehicleClass
from gps_monitor.payload import position_to_payload
from ingest.worker import IngestWorker
from rules.worker import RulesWorker, rules_client_id

TERMINAL = "013800000111"


def _quiet(settings: Settings) -> Settings:
    rules = settings.rules.model_copy(update={"offline_after_s": 86400.0})
    return settings.model_copy(update={"rules": rules})


async def _vehicle(pool: asyncpg.Pool) -> tuple[int, int]:
    company = await ensure_company(pool, "Late batching Co")
    vehicle = await ensure_vehicle(
        pool,
        company_id=company.id,
        plate_number="渝A00111",
        terminal_id=TERMINAL,
        vehicle_class=VehicleClass.FREIGHT,
        speed_limit_kmh=60,
    )
    return company.id, vehicle.id


@contextlib.asynccontextmanager
async def _running(worker: IngestWorker | RulesWorker) -> AsyncIterator[None]:
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.ready.wait(), 15)
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_blind_area_upload_in_the_same_ingest_batch_as_a_newer_live_fix_is_late(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """The newer live fixes arrive first, then the 0x0704 re-upload of the minutes before
    them, and ingest takes both messages in one batch (they were queued while it was
    stopped): the re-upload's overspeed is a late alarm, as it is when a pause separates them."""
    settings = _quiet(settings)
    await _vehicle(pool)
    track = drive("2024-01-10 10:00:00", [(60, 50), (30, 80), (60, 50)])
    first, blind, live = track[:30], track[30:120], track[120:]
    topic = f"gps/v1/{TERMINAL}/batch"

    def batch(positions: list, reupload: bool = False) -> str:  # type: ignore[type-arg]
        return json.dumps(
            [position_to_payload(p) | ({"reupload": True} if reupload else {}) for p in positions]
        )

    rules = RulesWorker(settings)
    try:
        async with _running(rules):
            async with _running(IngestWorker(settings)):
                await publish_raw(settings, [(topic, batch(first))])
                await wait_for(
                    lambda: pool.fetchval("SELECT last_fix_time FROM rule_state"),
                    lambda t: t == first[-1].fix_time,
                )
            # ingest is down (its session keeps what comes): live first, then the re-upload
            await publish_raw(settings, [(topic, batch(live)), (topic, batch(blind, True))])
            ingest = IngestWorker(settings)
            async with _running(ingest):
                rows = await wait_for(
                    lambda: pool.fetch("SELECT alarm_type, late FROM alarms"),
                    lambda r: len(r) >= 1,
                )
                await asyncio.sleep(0.5)
                rows = await pool.fetch("SELECT alarm_type, late FROM alarms")
                batches = ingest.stats["batches"]
            late_flags = await pool.fetch(
                "SELECT late, count(*) AS n FROM positions GROUP BY late ORDER BY late"
            )
    finally:
        await drop_session(settings)
        await drop_session(settings, rules_client_id(settings))
    assert batches == 1  # the case of the issue: both messages judged in one batch
    by_flag = [(r["late"], r["n"]) for r in late_flags]
    assert by_flag == [(False, len(first) + len(live)), (True, len(blind))]
    assert [(r["alarm_type"], r["late"]) for r in rows] == [("overspeed", True)]


async def test_publishing_many_alarms_at_once_logs_no_pending_publish_warnings(
    settings: Settings, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    """40 alarms waiting in the outbox go out together when the worker connects; aiomqtt's
    client.publish logged "There are N pending publish calls" for each beyond 10."""
    settings = _quiet(settings)
    company_id, vehicle_id = await _vehicle(pool)
    started = datetime(2024, 1, 10, 2, 0, tzinfo=UTC)
    await pool.executemany(
        "WITH a AS (INSERT INTO alarms (vehicle_id, company_id, alarm_type, dedup_key,"
        " started_at, ended_at, details) VALUES ($1, $2, 'overspeed', $3, $4, $5, $6)"
        " RETURNING id) INSERT INTO alarm_outbox (alarm_ids) SELECT array_agg(id) FROM a",
        [
            (vehicle_id, company_id, f"probe-{i}", started + timedelta(minutes=3 * i),
             started + timedelta(minutes=3 * i + 1), {"max_speed_kmh": 75.0})
            for i in range(40)
        ],
    )  # fmt: skip
    received: list[str] = []

    async def listen(ready: asyncio.Event) -> None:
        async with mqtt.build_client(settings.mqtt, client_id=f"{settings.mqtt.client_id}-l") as c:
            await c.subscribe(topics.alarm_filter(settings.mqtt.topic_prefix), qos=1)
            ready.set()
            async for message in c.messages:
                received.append(json.loads(message.payload)["dedup_key"])

    caplog.set_level(logging.INFO)
    ready = asyncio.Event()
    listener = asyncio.create_task(listen(ready))
    await ready.wait()
    try:
        async with _running(RulesWorker(settings)):
            await wait_for(lambda: asyncio.sleep(0, len(received)), lambda n: n >= 40)
            pending = await wait_for(
                lambda: pool.fetchval("SELECT count(*) FROM alarm_outbox"),
                lambda n: n == 0,
            )
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        await drop_session(settings, rules_client_id(settings))
    assert sorted(received) == sorted(f"probe-{i}" for i in range(40))
    assert pending == 0
    noise = [r for r in caplog.records if "pending publish calls" in r.getMessage()]
    assert noise == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
