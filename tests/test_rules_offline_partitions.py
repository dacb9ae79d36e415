"""The rules worker's offline timer on a partitioned transport checks only the vehicles of the
partitions it owns, and ``last_messages`` reads only the vehicles asked for (real PostgreSQL;
the transport is not started: ownership is set as the NATS source would set it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from gps_monitor.bus.partition import partition_of
from gps_monitor.config import BusSettings, Settings
from gps_monitor.db.positions import last_messages
from gps_monitor.db.registry import ensure_company, ensure_vehicle
from rules.worker import RulesWorker

P = 32


async def test_offline_timer_reads_and_checks_only_owned_vehicles(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    rules = settings.rules.model_copy(update={"offline_after_s": 60.0})
    bus = BusSettings(transport="nats", partitions=P, client_name="offline-test")
    settings = settings.model_copy(update={"rules": rules, "bus": bus})
    company = await ensure_company(pool, "Offline Partitions Co")
    terminals = [f"0138000000{i:02d}" for i in range(40)]
    mine = terminals[0]
    other = next(t for t in terminals if partition_of(t, P) != partition_of(mine, P))
    ids = {}
    for n, terminal in enumerate((mine, other)):
        vehicle = await ensure_vehicle(
            pool, company_id=company.id, plate_number=f"渝A0010{n}", terminal_id=terminal
        )
        ids[terminal] = vehicle.id
    silent_at = (datetime.now(UTC) - timedelta(minutes=10)).replace(microsecond=0)
    await pool.executemany(
        "INSERT INTO latest_positions (vehicle_id, last_message_at, fix_time, received_at, "
        "latitude, longitude, speed_kmh) VALUES ($1, $2, $2, $2, 29.5, 106.5, 0)",
        [(ids[mine], silent_at), (ids[other], silent_at)],
    )
    assert [r["vehicle_id"] for r in await last_messages(pool, [ids[mine]])] == [ids[mine]]
    assert {r["vehicle_id"] for r in await last_messages(pool)} == set(ids.values())

    worker = RulesWorker(settings)
    try:
        await worker.reload()
        worker.owned = frozenset({partition_of(mine, P)})
        changed = await worker._tick()
        assert [(a.vehicle_id, a.alarm_type) for a in changed.alarms] == [(ids[mine], "offline")]
        worker.owned = frozenset(range(P))  # everything: no filter, the other one goes too
        changed = await worker._tick()
        assert [(a.vehicle_id, a.alarm_type) for a in changed.alarms] == [(ids[other], "offline")]
    finally:
        await worker.close()
