"""The offline timer reads and evaluates only its candidates (issue 13: at 6,000 vehicles a tick
over the whole fleet held the batch lock for 250-1,300 ms every 5 s): vehicles silent for
``offline_after_s`` by the stored last message, and those the worker holds as silent or with an
open episode. Real PostgreSQL; the transport is not started."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import asyncpg

from gps_monitor.config import Settings
from gps_monitor.db.positions import last_messages
from gps_monitor.db.registry import ensure_company, ensure_vehicle
from rules import offline
from rules.engine import VehicleState
from rules.worker import RulesWorker

OFFLINE_AFTER_S = 60.0


async def test_the_tick_reads_the_silent_and_the_open_and_judges_them_as_before(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    settings = settings.model_copy(
        update={"rules": settings.rules.model_copy(update={"offline_after_s": OFFLINE_AFTER_S})}
    )
    company = await ensure_company(pool, "Offline Candidates Co")
    ids = {}
    for n, name in enumerate(("silent", "heard", "reopened", "held_silent")):
        vehicle = await ensure_vehicle(
            pool, company_id=company.id, plate_number=f"渝A0020{n}", terminal_id=f"0139000000{n}"
        )
        ids[name] = vehicle.id
    now = datetime.now(UTC).replace(microsecond=0)
    stored_at = {
        "silent": now - timedelta(minutes=10),  # nothing for 10 min: goes offline
        "heard": now - timedelta(seconds=5),  # heard 5 s ago: not read, nothing happens
        "reopened": now - timedelta(seconds=5),  # a heartbeat 5 s ago after an open episode
        "held_silent": now - timedelta(seconds=5),  # the worker's clock is older than the store's
    }
    await pool.executemany(
        "INSERT INTO latest_positions (vehicle_id, last_message_at, fix_time, received_at, "
        "latitude, longitude, speed_kmh) VALUES ($1, $2, $2, $2, 29.5, 106.5, 0)",
        [(ids[name], at) for name, at in stored_at.items()],
    )

    silent_since_t = now.timestamp() - OFFLINE_AFTER_S
    read = await last_messages(
        pool, silent_since_t=silent_since_t, including=[ids["reopened"], ids["held_silent"]]
    )
    assert {r["vehicle_id"] for r in read} == {ids["silent"], ids["reopened"], ids["held_silent"]}
    assert {r["vehicle_id"] for r in await last_messages(pool, silent_since_t=silent_since_t)} == {
        ids["silent"]
    }
    mine = await last_messages(pool, [ids["heard"]], silent_since_t=silent_since_t)
    assert mine == []  # the owned filter and the silence filter both hold
    assert {r["vehicle_id"] for r in await last_messages(pool)} == set(ids.values())

    worker = RulesWorker(settings)
    try:
        await worker.reload()
        opened_t = time.time() - 20 * 60
        worker.states[ids["reopened"]] = VehicleState(
            rules={offline.NAME: offline.State(opened_t, opened_t, 29.5, 106.5, opened_t)}
        )
        held_t = time.time() - 10 * 60  # the worker last heard it 10 min ago; ingest since
        worker.states[ids["held_silent"]] = VehicleState(
            rules={offline.NAME: offline.State(held_t, held_t, 29.5, 106.5, None)}
        )
        changed = await worker._tick()
        got = sorted((a.vehicle_id, a.alarm_type, a.event) for a in changed.alarms)
        assert got == sorted(
            [(ids["silent"], "offline", "opened"), (ids["reopened"], "offline", "closed")]
        )
        assert worker.states[ids["reopened"]].rules[offline.NAME].open_t is None
        # the next tick: the silent one is open (still read, nothing new), the rest heard
        assert (await worker._tick()).alarms == []
    finally:
        await worker.close()
