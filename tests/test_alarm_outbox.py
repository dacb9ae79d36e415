"""The alarm outbox (migrations 0022, 0151, 0154) against the real PostgreSQL: a PUBACK takes out
of ``alarm_outbox`` only the batch that was published, never a later change of the same alarm
queued meanwhile (the rules worker publishes up to four committed batches at once); a burst of
alarm events is one outbox row."""

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
    return await _save_all(pool, [alarm])


async def _save_all(pool: asyncpg.Pool, alarms: list[Alarm]) -> QueuedAlarms:
    async with pool.acquire() as conn, conn.transaction():
        return await save_alarm_events(conn, alarms)


async def test_a_puback_of_an_earlier_change_leaves_a_later_change_of_the_alarm_queued(
    pool: asyncpg.Pool,
) -> None:
    opened = await _opened(pool)
    change_a = await _save(pool, opened)  # batch n: opened, its publish in flight
    change_b = await _save(  # batch n+1 closes it before batch n's PUBACK
        pool, replace(opened, ended_at=opened.started_at + timedelta(minutes=2), event="closed")
    )
    (alarm_id,) = {a.id for a in change_a.alarms}
    assert [a.id for a in change_b.alarms] == [alarm_id]
    assert len(change_a.batch_ids) == len(change_b.batch_ids) == 1
    assert change_a.batch_ids != change_b.batch_ids

    await mark_published(pool, change_a.batch_ids)  # batch n's PUBACK
    pending = await pending_publications(pool)  # what a restart now would republish
    assert [(a.id, a.event) for a in pending.alarms] == [(alarm_id, "closed")]
    assert pending.batch_ids == change_b.batch_ids

    await mark_published(pool, change_b.batch_ids)  # batch n+1's PUBACK
    assert await pending_publications(pool) == QueuedAlarms()
    assert await pool.fetchval("SELECT count(*) FROM alarm_outbox") == 0


async def test_an_alarm_queued_by_two_pending_batches_is_republished_once_as_stored_now(
    pool: asyncpg.Pool,
) -> None:
    """A worker that died before either PUBACK: the restart publishes the alarm once, closed,
    and both rows go with that publication."""
    opened = await _opened(pool)
    change_a = await _save(pool, opened)
    change_b = await _save(
        pool, replace(opened, ended_at=opened.started_at + timedelta(minutes=2), event="closed")
    )
    pending = await pending_publications(pool)
    assert [(a.id, a.event) for a in pending.alarms] == [(change_a.alarms[0].id, "closed")]
    assert pending.batch_ids == change_a.batch_ids | change_b.batch_ids
    await mark_published(pool, pending.batch_ids)
    assert await pool.fetchval("SELECT count(*) FROM alarm_outbox") == 0


async def test_a_burst_of_alarm_events_is_one_outbox_row_republished_in_full(
    pool: asyncpg.Pool,
) -> None:
    opened = await _opened(pool)
    burst = [replace(opened, dedup_key=f"outbox-burst-{i}") for i in range(300)]
    queued = await _save_all(pool, burst)
    assert len(queued.alarms) == 300
    assert await pool.fetchval("SELECT count(*) FROM alarm_outbox") == 1
    pending = await pending_publications(pool)
    assert [a.dedup_key for a in pending.alarms] == [a.dedup_key for a in burst]
    assert pending.batch_ids == queued.batch_ids


async def test_an_alarm_stored_again_unchanged_is_not_queued_again(pool: asyncpg.Pool) -> None:
    opened = await _opened(pool)
    first = await _save(pool, opened)
    assert await _save(pool, opened) == QueuedAlarms()  # reprocessing: nothing to publish
    assert (await pending_publications(pool)).batch_ids == first.batch_ids
    assert await pool.fetchval("SELECT count(*) FROM alarm_outbox") == 1


async def test_an_outbox_row_whose_alarm_was_deleted_goes_with_the_next_republication(
    pool: asyncpg.Pool,
) -> None:
    opened = await _opened(pool)
    queued = await _save(pool, opened)
    await pool.execute("DELETE FROM alarms WHERE id = $1", queued.alarms[0].id)
    pending = await pending_publications(pool)
    assert pending == QueuedAlarms([], queued.batch_ids)
    await mark_published(pool, pending.batch_ids)
    assert await pool.fetchval("SELECT count(*) FROM alarm_outbox") == 0


def test_queued_alarms_added_keep_the_rows_of_both() -> None:
    """``_one_by_one`` adds the results of its commits: every row they queued goes out with
    their publication."""
    earlier = QueuedAlarms([], frozenset({10, 11}))
    later = QueuedAlarms([], frozenset({12}))
    assert (earlier + later).batch_ids == (later + earlier).batch_ids == {10, 11, 12}
