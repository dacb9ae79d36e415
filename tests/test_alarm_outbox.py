"""The alarm outbox (migrations 0022, 0151) against the real PostgreSQL: a PUBACK takes out of
``alarm_outbox`` only the change that was published, never a later change of the same alarm
queued meanwhile (the rules worker publishes up to four committed batches at once)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import asyncpg

from gps_monitor.db.alarms import (
    QueuedAlarms,
    mark_published,
    pending_publications,
    save_alarm_events,
)
from gps_monitor.db.registry import ensure_company, ensure_vehicle
from gps_monitor.models import Alarm, VehicleClass


async def _opened(pool: asyncpg.Pool) -> Alarm:
    company = await ensure_company(pool, "Outbox Test Co")
    vehicle = await ensure_vehicle(
        pool,
        company_id=company.id,
        plate_number="渝A0151",
        terminal_id="013800000151",
        vehicle_class=VehicleClass.FREIGHT,
    )
    return Alarm(
        alarm_type="overspeed",
        dedup_key="outbox-race",
        vehicle_id=vehicle.id,
        company_id=company.id,
        terminal_id=vehicle.terminal_id,
        started_at=datetime(2024, 1, 10, 2, 0, tzinfo=UTC),
        details={"max_speed_kmh": 75.0},
    )


async def _save(pool: asyncpg.Pool, alarm: Alarm) -> QueuedAlarms:
    async with pool.acquire() as conn, conn.transaction():
        return await save_alarm_events(conn, [alarm])


async def test_a_puback_of_an_earlier_change_leaves_a_later_change_of_the_alarm_queued(
    pool: asyncpg.Pool,
) -> None:
    opened = await _opened(pool)
    change_a = await _save(pool, opened)  # batch n: opened, its publish in flight
    change_b = await _save(  # batch n+1 closes it before batch n's PUBACK
        pool, replace(opened, ended_at=opened.started_at + timedelta(minutes=2), event="closed")
    )
    (alarm_id,) = change_a.change_ids
    assert change_b.change_ids.keys() == {alarm_id}
    assert change_b.change_ids[alarm_id] > change_a.change_ids[alarm_id]

    await mark_published(pool, change_a.change_ids)  # batch n's PUBACK
    pending = await pending_publications(pool)  # what a restart now would republish
    assert [(a.id, a.event) for a in pending.alarms] == [(alarm_id, "closed")]
    assert pending.change_ids == change_b.change_ids

    await mark_published(pool, change_b.change_ids)  # batch n+1's PUBACK
    assert await pending_publications(pool) == QueuedAlarms()
    assert await pool.fetchval("SELECT count(*) FROM alarm_outbox") == 0


async def test_an_alarm_stored_again_unchanged_is_not_queued_again(pool: asyncpg.Pool) -> None:
    opened = await _opened(pool)
    first = await _save(pool, opened)
    assert await _save(pool, opened) == QueuedAlarms()  # reprocessing: nothing to publish
    assert (await pending_publications(pool)).change_ids == first.change_ids


def test_queued_alarms_added_keep_the_newer_change_id_of_an_alarm() -> None:
    """``_one_by_one`` adds the results of its commits: one alarm changed by two of them must
    be taken out of the outbox only up to the later change."""
    earlier = QueuedAlarms([], {7: 10, 8: 11})
    later = QueuedAlarms([], {7: 12})
    assert (earlier + later).change_ids == {7: 12, 8: 11}
    assert (later + earlier).change_ids == {7: 12, 8: 11}
