"""Quality verdicts through the running worker: stored, flagged, and the live marker never
moves back. Also the accepted-positions topic the rules engine and the map consume."""

from __future__ import annotations

import asyncio
import json
import operator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import asyncpg
from ingest_helpers import count_probe, position_json, publish_raw, running_worker, wait_for

from gps_monitor import mqtt, topics
from gps_monitor.config import Settings
from gps_monitor.db import registry
from gps_monitor.db.positions import latest_position
from gps_monitor.models import VehicleClass

TERMINAL = "013800000010"
TOPIC = f"gps/v1/{TERMINAL}/position"
BASE = (datetime.now(UTC) - timedelta(days=1)).replace(microsecond=0)


def at(second: int) -> str:
    return (BASE + timedelta(seconds=second)).isoformat()


async def _stored(pool: asyncpg.Pool) -> dict[int, tuple[str, str | None, bool]]:
    rows = await pool.fetch("SELECT fix_time, quality, quality_reason, late FROM positions")
    return {
        int((r["fix_time"] - BASE).total_seconds()): (r["quality"], r["quality_reason"], r["late"])
        for r in rows
    }


async def test_quality_verdicts_late_batch_and_live_marker(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    company = await registry.ensure_company(pool, "Quality test company")
    vehicle = await registry.ensure_vehicle(
        pool, company_id=company.id, plate_number="渝A00010", terminal_id=TERMINAL
    )
    future = (datetime.now(UTC) + timedelta(hours=8)).replace(microsecond=0)
    accepted: list[dict[str, Any]] = []

    async def listen(ready: asyncio.Event) -> None:
        async with mqtt.build_client(settings.mqtt, client_id=settings.mqtt.client_id + "-l") as c:
            await c.subscribe(topics.accepted_filter(settings.mqtt.topic_prefix), qos=1)
            ready.set()
            async for message in c.messages:
                assert message.topic.value == topics.accepted_topic(0, settings.mqtt.topic_prefix)
                accepted.extend(json.loads(bytes(message.payload)))

    ready = asyncio.Event()
    listener = asyncio.create_task(listen(ready))
    await asyncio.wait_for(ready.wait(), 10)
    positions = count_probe(pool, "SELECT count(*) FROM positions")
    async with running_worker(settings):
        await publish_raw(
            settings,
            [
                (TOPIC, position_json(at(0), 29.56, 106.55)),
                (TOPIC, position_json(at(10), 0.0, 0.0)),
                (TOPIC, position_json(at(20), 29.5601, 106.55, fix_valid=False)),
                (TOPIC, position_json(at(30), 95.0, 106.55)),
                (TOPIC, position_json(future.isoformat(), 29.5602, 106.55)),
                (TOPIC, position_json(at(40), 29.5602, 106.55)),
                (TOPIC, position_json(at(50), 30.01, 106.55)),  # one-fix jump, 50 km in 10 s
                (TOPIC, position_json(at(60), 29.5604, 106.55)),  # back: the jump was drift
                (TOPIC, position_json(at(600), 30.2, 106.55)),  # relocation, suspect at first
            ],
        )
        assert await wait_for(positions, lambda n: n >= 9) == 9
        # the next fix agrees with the relocated one: it was real, re-flagged ok
        await publish_raw(settings, [(TOPIC, position_json(at(610), 30.2001, 106.55))])
        assert await wait_for(positions, lambda n: n >= 10) == 10
        marker = await latest_position(pool, vehicle.id)
        # a blind-area upload of older fixes arrives (补报), one of them a jump
        late_batch = (
            "["
            + ",".join(
                position_json(at(s), lat, 106.55, reupload=True)
                for s, lat in ((100, 29.561), (110, 29.5611), (120, 31.0), (130, 29.5612))
            )
            + "]"
        )
        await publish_raw(settings, [(f"gps/v1/{TERMINAL}/batch", late_batch)])
        assert await wait_for(positions, lambda n: n >= 14) == 14
        after_late = await latest_position(pool, vehicle.id)
        await wait_for(lambda: asyncio.sleep(0, len(accepted)), lambda n: n >= 15, 30)
    listener.cancel()

    stored = await _stored(pool)
    future_s = int((future - BASE).total_seconds())
    assert stored == {
        0: ("ok", None, False),
        10: ("invalid", "zero_coordinates", False),
        20: ("invalid", "fix_not_valid", False),
        30: ("invalid", "latitude_out_of_range", False),
        future_s: ("invalid", "future_fix_time", False),
        40: ("ok", None, False),
        50: ("drift", "implausible_jump", False),
        60: ("ok", None, False),
        600: ("ok", None, False),  # relocation confirmed by the next fix: not drift
        610: ("ok", None, False),
        100: ("ok", None, True),
        110: ("ok", None, True),
        120: ("drift", "implausible_jump", True),
        130: ("ok", None, True),
    }
    assert await pool.fetchval("SELECT bool_and(reupload) FROM positions WHERE late") is True
    # the live marker is the newest ok fix and the late batch did not move it back...
    assert marker is not None and after_late is not None
    assert marker["fix_time"] == BASE + timedelta(seconds=610)
    assert after_late["fix_time"] == marker["fix_time"]
    assert after_late["latitude"] == marker["latitude"]
    # ...but the vehicle was heard from
    assert after_late["last_message_at"] > marker["last_message_at"]
    # distance from the previous ok fix: ~22 m from t=40 to t=60 (the jump in between skipped)
    step = await pool.fetchrow(
        "SELECT distance_m, interval_s FROM positions WHERE fix_time = $1",
        BASE + timedelta(seconds=60),
    )
    assert 15 < step["distance_m"] < 30 and step["interval_s"] == 20
    # every stored position went out on the accepted topic with its verdict
    published = [(p["fix_time"], p["quality"], p["late"]) for p in accepted]
    # 14 stored, plus the relocation again once confirmed: first as drift, then as ok
    assert len(accepted) == 15
    assert [q for t, q, _ in published if t == at(600)] == ["drift", "ok"]
    assert (at(120), "drift", True) in published
    assert (future.isoformat(), "invalid", False) in published
    assert all(p["vehicle_id"] == vehicle.id and p["received_at"] for p in accepted)


async def test_latest_position_never_moves_back_across_batches(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    company = await registry.ensure_company(pool, "Marker test company")
    vehicle = await registry.ensure_vehicle(
        pool, company_id=company.id, plate_number="渝A00011", terminal_id="013800000011"
    )
    topic = "gps/v1/013800000011/position"
    positions = count_probe(pool, "SELECT count(*) FROM positions")
    seen: list[datetime] = []
    async with running_worker(settings):
        for n, second in enumerate((100, 50, 200, 150, 10, 300, 250), start=1):
            await publish_raw(settings, [(topic, position_json(at(second), 29.56, 106.55))])
            assert await wait_for(positions, partial(operator.le, n)) == n
            row = await latest_position(pool, vehicle.id)
            assert row is not None
            seen.append(row["fix_time"])
    assert [int((t - BASE).total_seconds()) for t in seen] == [100, 100, 200, 200, 200, 300, 300]
    late = await pool.fetch("SELECT fix_time FROM positions WHERE late ORDER BY fix_time")
    assert [int((r["fix_time"] - BASE).total_seconds()) for r in late] == [10, 50, 150, 250]


async def test_a_redelivered_position_is_stored_once_and_published_again_as_stored(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    company = await registry.ensure_company(pool, "Redelivery test company")
    vehicle = await registry.ensure_vehicle(
        pool, company_id=company.id, plate_number="渝A00012", terminal_id="013800000012"
    )
    topic = "gps/v1/013800000012/position"
    accepted: list[dict[str, Any]] = []

    async def listen(ready: asyncio.Event) -> None:
        async with mqtt.build_client(settings.mqtt, client_id=settings.mqtt.client_id + "-l") as c:
            await c.subscribe(topics.accepted_filter(settings.mqtt.topic_prefix), qos=1)
            ready.set()
            async for message in c.messages:
                accepted.extend(json.loads(bytes(message.payload)))

    ready = asyncio.Event()
    listener = asyncio.create_task(listen(ready))
    await asyncio.wait_for(ready.wait(), 10)
    positions = count_probe(pool, "SELECT count(*) FROM positions")
    first = position_json(at(0), 29.56, 106.55)
    async with running_worker(settings) as worker:
        await publish_raw(settings, [(topic, first), (topic, position_json(at(30), 40.0, 106.55))])
        assert await wait_for(positions, lambda n: n >= 2) == 2
        # the same message again, as the broker redelivers it after a crash before the ack
        await publish_raw(settings, [(topic, first)])
        await wait_for(lambda: asyncio.sleep(0, len(accepted)), lambda n: n >= 3, 30)
    listener.cancel()
    assert await pool.fetchval("SELECT count(*) FROM positions") == 2
    assert worker.stats["already_stored"] == 1
    assert [(p["fix_time"], p["quality"], p["late"]) for p in accepted] == [
        (at(0), "ok", False),
        (at(30), "drift", False),  # 1150 km in 30 s
        (at(0), "ok", False),  # republished as stored, not re-judged as late
    ]
    assert {p["vehicle_id"] for p in accepted} == {vehicle.id}


async def test_a_spike_sent_twice_stays_drift_and_adds_no_mileage(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """Issue 14 item 9: the duplicate of a one-fix jump arrives in a later batch; it must not
    confirm the jump (which stored it as ok: +6 km of mileage, a 300 km/h day maximum)."""
    company = await registry.ensure_company(pool, "Spike twice company")
    vehicle = await registry.ensure_vehicle(
        pool, company_id=company.id, plate_number="渝A00013", terminal_id="013800000013"
    )
    topic = "gps/v1/013800000013/position"
    spike = position_json(at(20), 29.615, 106.55, speed_kmh=61.0)  # 6.1 km in 10 s
    positions = count_probe(pool, "SELECT count(*) FROM positions")
    async with running_worker(settings) as worker:
        await publish_raw(
            settings,
            [
                (topic, position_json(at(0), 29.56, 106.55, speed_kmh=40.0)),
                (topic, position_json(at(10), 29.5601, 106.55, speed_kmh=42.0)),
                (topic, spike),
            ],
        )
        assert await wait_for(positions, lambda n: n >= 3) == 3
        await publish_raw(settings, [(topic, spike)])  # the device sends the row again
        stats = partial(asyncio.sleep, 0, worker.stats)
        await wait_for(stats, lambda s: s["already_stored"] >= 1, 30)
        assert worker.stats["already_stored"] == 1
        await publish_raw(settings, [(topic, position_json(at(30), 29.5603, 106.55))])
        assert await wait_for(positions, lambda n: n >= 4) == 4
    stored = await _stored(pool)
    assert stored == {
        0: ("ok", None, False),
        10: ("ok", None, False),
        20: ("drift", "implausible_jump", False),
        30: ("ok", None, False),
    }
    mileage_m, max_speed = await pool.fetchrow(
        "SELECT sum(distance_m), max(speed_kmh) FROM positions "
        "WHERE vehicle_id = $1 AND quality = 'ok'",
        vehicle.id,
    )
    assert 30 < mileage_m < 40  # 11 m + 22 m along the road, not 2 x 6 km to the spike and back
    assert max_speed == 42.0


async def test_an_implausible_reported_speed_is_stored_invalid_and_not_the_day_maximum(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """Issue 14 item 10: a reported speed no coach drives (626 km/h) is kept but flagged."""
    company = await registry.ensure_company(pool, "Speed bound company")
    vehicle = await registry.ensure_vehicle(
        pool,
        company_id=company.id,
        plate_number="渝A00014",
        terminal_id="013800000014",
        vehicle_class=VehicleClass.COACH,
    )
    topic = "gps/v1/013800000014/position"
    positions = count_probe(pool, "SELECT count(*) FROM positions")
    async with running_worker(settings):
        await publish_raw(
            settings,
            [
                (topic, position_json(at(0), 29.56, 106.55, speed_kmh=95.0)),
                (topic, position_json(at(10), 29.5609, 106.55, speed_kmh=626.0)),
                (topic, position_json(at(20), 29.5618, 106.55, speed_kmh=130.0)),
            ],
        )
        assert await wait_for(positions, lambda n: n >= 3) == 3
    assert await _stored(pool) == {
        0: ("ok", None, False),
        10: ("invalid", "implausible_speed", False),
        20: ("ok", None, False),  # 130 km/h on a coach is a violation, not a fault: kept ok
    }
    assert (
        await pool.fetchval(
            "SELECT max(speed_kmh) FROM positions WHERE vehicle_id = $1 AND quality = 'ok'",
            vehicle.id,
        )
        == 130.0
    )
