"""Issue 14 item 13, end to end: a database outage (every connection of the test database
terminated and new ones refused for a few seconds) is not any message's fault. The ingest and
rules workers retry; afterwards every valid message is stored, only the one bad message is
rejected, and the alarm the data calls for is raised."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import asyncpg
from conftest import ADMIN_URL
from ingest_helpers import drop_session, position_json, publish_raw, wait_for
from rules_factory import drive

from gps_monitor.config import Settings
from gps_monitor.db.registry import ensure_company, ensure_vehicle
from gps_monitor.models import VehicleClass
from gps_monitor.payload import position_to_payload
from ingest.worker import IngestWorker
from rules.worker import RulesWorker, rules_client_id

TERMINAL = "013800000113"
TOPIC = f"gps/v1/{TERMINAL}/batch"


@contextlib.asynccontextmanager
async def _running(worker: IngestWorker | RulesWorker) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.ready.wait(), 15)
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def _outage(database: str) -> AsyncIterator[None]:
    """The database refuses connections and every open one is terminated, until the block
    ends."""
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", database
        )
        yield
    finally:
        await admin.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true')
        await admin.close()


async def test_an_outage_rejects_no_valid_message_and_loses_no_alarm(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    company = await ensure_company(pool, "Outage Co")
    await ensure_vehicle(
        pool,
        company_id=company.id,
        plate_number="渝A00113",
        terminal_id=TERMINAL,
        vehicle_class=VehicleClass.FREIGHT,
        speed_limit_kmh=60,
    )
    rules = settings.rules.model_copy(update={"offline_after_s": 86400.0})
    settings = settings.model_copy(update={"rules": rules})
    database = (settings.database.url or "").rsplit("/", 1)[1]
    track = drive("2024-01-10 10:00:00", [(20, 50), (30, 75), (20, 50)])
    chunks = [
        json.dumps([position_to_payload(p) for p in track[i : i + 5]])
        for i in range(0, len(track), 5)
    ]
    bad = position_json("2024-01-10T01:00:00+00:00", 29.56, 106.55, extras={"f": "\ud800"})
    try:
        async with (
            _running(RulesWorker(settings)) as rules_task,
            _running(IngestWorker(settings)) as ingest_task,
        ):
            await publish_raw(settings, [(TOPIC, chunks[0])])
            await wait_for(
                lambda: pool.fetchval("SELECT count(*) FROM positions"), lambda n: n >= 5
            )
            async with _outage(database):
                # published while the database is away: 4 s of failed batches and
                # reconnects, with the bad message among the good ones
                await publish_raw(
                    settings,
                    [(TOPIC, chunks[1]), (f"gps/v1/{TERMINAL}/position", bad)]
                    + [(TOPIC, c) for c in chunks[2:]],
                )
                await asyncio.sleep(4)
            stored = await wait_for(
                lambda: pool.fetchval("SELECT count(*) FROM positions"),
                lambda n: n >= len(track),
                timeout_s=60,
            )
            alarms = await wait_for(
                lambda: pool.fetch("SELECT alarm_type, ended_at FROM alarms"),
                lambda rows: len(rows) == 1 and rows[0]["ended_at"] is not None,
                timeout_s=60,
            )
            alive = not ingest_task.done() and not rules_task.done()
    finally:
        await drop_session(settings)
        await drop_session(settings, rules_client_id(settings))
    rejected = await pool.fetch("SELECT reason, payload FROM rejected_messages")
    assert alive
    assert stored == len(track)
    assert [(r["reason"], bytes(r["payload"])) for r in rejected] == [("unstorable", bad.encode())]
    assert [a["alarm_type"] for a in alarms] == ["overspeed"]
