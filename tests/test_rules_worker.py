"""The live rules service against the real Mosquitto and PostgreSQL: alarms stored and published
as they open and close, reprocessing never duplicates, late (blind-area) fixes re-evaluated with
their stored neighbours and marked late, and SIGKILL + restart of a real ``gps-monitor rules``
process gives the same alarms as a run straight through."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import asyncpg
import pytest
from ingest_helpers import drop_session, wait_for, worker_env
from rules_factory import drive
from rules_factory import position as position_at

from gps_monitor import mqtt, topics
from gps_monitor.config import AlarmsSettings, Settings
from gps_monitor.db.geofences import save_geofences
from gps_monitor.db.registry import ensure_company, ensure_vehicle
from gps_monitor.geofences import parse_geojson
from gps_monitor.models import Position, VehicleClass
from rules.context import GeoContext, LocalClock, RuleContext, VehicleProfile
from rules.engine import Engine, VehicleState, merge_events
from rules.worker import RulesWorker, rules_client_id


def _quiet(settings: Settings) -> Settings:
    """Offline out of the way (the wall clock of a test run is not what these tests check)."""
    rules = settings.rules.model_copy(update={"offline_after_s": 86400.0})
    return settings.model_copy(update={"rules": rules})


async def _vehicle(pool: asyncpg.Pool) -> tuple[int, int]:
    company = await ensure_company(pool, "Rules Test Co")
    vehicle = await ensure_vehicle(
        pool,
        company_id=company.id,
        plate_number="渝A12345",
        terminal_id="013800000001",
        vehicle_class=VehicleClass.FREIGHT,
        speed_limit_kmh=60,
    )
    return company.id, vehicle.id


def _accepted(positions: list[Position], company_id: int, vehicle_id: int) -> list[Position]:
    now = datetime.now(UTC)
    return [
        p.evolve(
            vehicle_id=vehicle_id,
            company_id=company_id,
            terminal_id="013800000001",
            received_at=now,
        )
        for p in positions
    ]


async def _publish(
    settings: Settings,
    company_id: int,
    vehicle_id: int,
    chunks: list[list[Position]],
    rate_per_s: float = 0.0,
) -> None:
    topic = topics.accepted_topic(0, settings.mqtt.topic_prefix)
    async with mqtt.build_client(settings.mqtt, client_id=f"{settings.mqtt.client_id}-pub") as c:
        for chunk in chunks:
            await c.publish(topic, json.dumps([p.to_dict() for p in chunk]), qos=1)
            if rate_per_s:
                await asyncio.sleep(1.0 / rate_per_s)


@contextlib.asynccontextmanager
async def _running(settings: Settings) -> AsyncIterator[RulesWorker]:
    worker = RulesWorker(settings)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.ready.wait(), 15)
        yield worker
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await drop_session(settings, rules_client_id(settings))


def _spawn(env: dict[str, str], out: IO[bytes]) -> subprocess.Popen[bytes]:
    """A real ``gps-monitor rules`` process."""
    return subprocess.Popen(
        [sys.executable, "-m", "gps_monitor.cli", "rules", "--no-upgrade"],
        env=env,
        stdout=out,
        stderr=out,
    )


async def _alarm_rows(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT * FROM alarms ORDER BY started_at, alarm_type, dedup_key")


async def test_worker_stores_and_publishes_alarms_as_they_open_and_close_once(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    settings = _quiet(settings)
    # the level setting reaches the worker: a freight overspeed is 2 by default, 1 here
    settings = settings.model_copy(
        update={"alarms": AlarmsSettings(levels={"overspeed@freight": 1})}
    )
    company_id, vehicle_id = await _vehicle(pool)
    track = _accepted(
        drive("2024-01-10 10:00:00", [(20, 50), (30, 75), (20, 50)]), company_id, vehicle_id
    )
    received: list[dict[str, object]] = []

    async def listen(ready: asyncio.Event) -> None:
        async with mqtt.build_client(settings.mqtt, client_id=f"{settings.mqtt.client_id}-l") as c:
            await c.subscribe(topics.alarm_filter(settings.mqtt.topic_prefix), qos=1)
            ready.set()
            async for message in c.messages:
                received.append({"topic": str(message.topic), **json.loads(message.payload)})

    ready = asyncio.Event()
    listener = asyncio.create_task(listen(ready))
    await ready.wait()
    try:
        async with _running(settings):
            await _publish(
                settings,
                company_id,
                vehicle_id,
                [track[i : i + 10] for i in range(0, len(track), 10)],
            )
            rows = await wait_for(
                lambda: _alarm_rows(pool), lambda r: len(r) == 1 and r[0]["ended_at"] is not None
            )
            await wait_for(lambda: asyncio.sleep(0, len(received)), lambda n: n >= 2)
            # the same positions again (e.g. redelivery): nothing new stored or published
            await _publish(settings, company_id, vehicle_id, [track])
            await asyncio.sleep(1.0)
            again = await _alarm_rows(pool)
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
    assert [(r["alarm_type"], r["late"]) for r in rows] == [("overspeed", False)]
    assert rows[0]["details"]["limit_source"] == "vehicle"
    assert len(again) == 1 and again[0]["updated_at"] == rows[0]["updated_at"]
    assert [m["event"] for m in received] == ["opened", "closed"]
    expected_topic = topics.alarm_topic(
        company_id, vehicle_id, "overspeed", settings.mqtt.topic_prefix
    )
    assert {m["topic"] for m in received} == {expected_topic}
    assert received[1]["ended_at"] == rows[0]["ended_at"].isoformat()
    assert rows[0]["level"] == 1
    assert [m["level"] for m in received] == [1, 1]


async def test_an_alarm_stored_but_never_published_is_published_when_the_worker_comes_back(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """The outbox (migration 0022): a worker that committed an alarm and then lost the broker or
    died before the PUBACK leaves it in alarm_outbox; the next session publishes it, once."""
    settings = _quiet(settings)
    company_id, vehicle_id = await _vehicle(pool)
    started = datetime(2024, 1, 10, 2, 0, tzinfo=UTC)
    await pool.execute(
        "WITH a AS (INSERT INTO alarms (vehicle_id, company_id, alarm_type, dedup_key, started_at,"
        " ended_at, details) VALUES ($1, $2, 'overspeed', 'outbox-probe', $3, $4, $5)"
        " RETURNING id) INSERT INTO alarm_outbox (alarm_ids) SELECT array_agg(id) FROM a",
        vehicle_id, company_id, started, started + timedelta(minutes=2), {"max_speed_kmh": 75.0},
    )  # fmt: skip
    received: list[dict[str, object]] = []

    async def listen(ready: asyncio.Event) -> None:
        async with mqtt.build_client(settings.mqtt, client_id=f"{settings.mqtt.client_id}-l") as c:
            await c.subscribe(topics.alarm_filter(settings.mqtt.topic_prefix), qos=1)
            ready.set()
            async for message in c.messages:
                received.append(json.loads(message.payload))

    ready = asyncio.Event()
    listener = asyncio.create_task(listen(ready))
    await ready.wait()
    try:
        async with _running(settings):
            await wait_for(lambda: asyncio.sleep(0, len(received)), lambda n: n >= 1)
            pending = await wait_for(
                lambda: pool.fetchval("SELECT count(*) FROM alarm_outbox"), lambda v: v == 0
            )
        async with _running(settings):  # a second session has nothing left to send
            await asyncio.sleep(0.5)
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
    assert pending == 0
    assert [(m["dedup_key"], m["event"], m["terminal_id"]) for m in received] == [
        ("outbox-probe", "closed", "013800000001")
    ]


async def _store_positions(pool: asyncpg.Pool, positions: list[Position]) -> None:
    await pool.executemany(
        "INSERT INTO positions (vehicle_id, fix_time, received_at, latitude, longitude, "
        "speed_kmh, fix_valid, quality, late) VALUES ($1, $2, $3, $4, $5, $6, true, 'ok', $7)",
        [
            (p.vehicle_id, p.fix_time, p.received_at, p.latitude, p.longitude, p.speed_kmh, p.late)
            for p in positions
        ],
    )


async def test_late_fixes_are_evaluated_with_their_neighbours_and_marked_late(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    settings = _quiet(settings)
    company_id, vehicle_id = await _vehicle(pool)
    track = _accepted(
        drive("2024-01-10 10:00:00", [(60, 50), (30, 80), (60, 50)]), company_id, vehicle_id
    )
    live = track[:30] + track[120:]
    blind = [p.evolve(late=True) for p in track[30:120]]  # a blind-area upload of the middle
    await _store_positions(pool, track[:30] + blind + track[120:])  # as ingest stores them
    async with _running(settings):
        await _publish(settings, company_id, vehicle_id, [live])
        await asyncio.sleep(0.5)
        assert await _alarm_rows(pool) == []  # live data alone: no overspeed
        await _publish(settings, company_id, vehicle_id, [blind[:45], blind[45:]])
        rows = await wait_for(lambda: _alarm_rows(pool), lambda r: len(r) >= 1)
        await asyncio.sleep(0.5)
        rows = await _alarm_rows(pool)
    assert [(r["alarm_type"], r["late"]) for r in rows] == [("overspeed", True)]
    start = datetime.fromisoformat("2024-01-10T10:01:01+08:00")
    assert rows[0]["started_at"] == start
    assert rows[0]["ended_at"] == start + timedelta(seconds=30)


@pytest.mark.slow
async def test_sigkill_and_restart_gives_the_same_alarms_as_running_through(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    company_id, vehicle_id = await _vehicle(pool)
    # 40 min at 1 Hz: 30 s above the limit every 2 min -> 20 overspeed episodes, plus fatigue
    # warning thresholds lowered so fatigue alarms open and close along the way
    legs = [(90, 50), (30, 75)] * 20
    track = _accepted(drive("2024-01-10 10:00:00", legs), company_id, vehicle_id)
    chunks = [track[i : i + 20] for i in range(0, len(track), 20)]
    overrides = {
        "offline_after_s": 86400.0,
        "fatigue_day_limit_s": 1200.0,
        "fatigue_warning_before_s": 300.0,
        "fatigue_min_rest_s": 600.0,
    }

    # the reference: the same engine straight through, in process
    rules = settings.rules.model_copy(update=overrides)
    ctx = RuleContext(
        vehicle=VehicleProfile(
            vehicle_id=vehicle_id,
            company_id=company_id,
            terminal_id="013800000001",
            vehicle_class="freight",
            speed_limit_kmh=60,
        ),
        settings=rules,
        quality=settings.quality,
        geo=GeoContext([], []),
        local=LocalClock(rules.timezone),
        clock="wall",
    )
    state, events, engine = VehicleState(), [], Engine()
    for p in track:
        state, out = engine.process(state, p, ctx)
        events += out
    reference = merge_events(events)
    assert len([a for a in reference if a.alarm_type == "overspeed"]) == 20
    assert any(a.alarm_type == "fatigue_driving" for a in reference)

    env = worker_env(settings) | {
        f"GPS_MONITOR_RULES_{k.upper()}": str(v) for k, v in overrides.items()
    }
    log = tmp_path / "rules.log"
    last_fix = lambda: pool.fetchval("SELECT last_fix_time FROM rule_state")  # noqa: E731

    async def start() -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            proc = _spawn(env, out)
        deadline = time.monotonic() + 30
        while log.read_bytes().count(b"rules worker consuming") < starts + 1:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"rules worker did not subscribe:\n{log.read_text()[-3000:]}")
            await asyncio.sleep(0.05)
        return proc

    starts = 0
    worker = await start()
    starts += 1
    try:
        # the first third, processed; then the rest streams in and the worker is killed while
        # it is arriving (and being processed): the rest is queued by the broker meanwhile
        third = len(chunks) // 3
        await _publish(settings, company_id, vehicle_id, chunks[:third])
        end_of_third = chunks[third - 1][-1].fix_time
        await wait_for(last_fix, lambda t: t is not None and t >= end_of_third)
        publishing = asyncio.create_task(
            _publish(settings, company_id, vehicle_id, chunks[third:], rate_per_s=40)
        )
        await asyncio.sleep(0.3)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        killed_at = await last_fix()
        assert not publishing.done()  # killed in the middle of the track
        worker = await start()
        await publishing
        final = await wait_for(last_fix, lambda t: t == track[-1].fix_time, timeout_s=60)
        await asyncio.sleep(0.5)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(10)
        except subprocess.TimeoutExpired:
            worker.kill()
        await drop_session(settings, rules_client_id(settings))
    assert end_of_third <= killed_at < track[-1].fix_time and final == track[-1].fix_time
    rows = await _alarm_rows(pool)
    got = sorted((r["dedup_key"], r["started_at"], r["ended_at"], r["details"]) for r in rows)
    want = sorted((a.dedup_key, a.started_at, a.ended_at, a.details) for a in reference)
    assert got == want


async def test_offline_is_raised_by_the_timer_without_new_positions(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    rules = settings.rules.model_copy(
        update={"offline_after_s": 1.0, "offline_check_interval_s": 0.2}
    )
    settings = settings.model_copy(update={"rules": rules})
    company_id, vehicle_id = await _vehicle(pool)
    first = _accepted([position_at("2024-01-10 10:00:00")], company_id, vehicle_id)
    async with _running(settings):
        await _publish(settings, company_id, vehicle_id, [first])
        rows = await wait_for(lambda: _alarm_rows(pool), lambda r: len(r) == 1, timeout_s=15)
        assert [(r["alarm_type"], r["ended_at"]) for r in rows] == [("offline", None)]
        # the vehicle reports again: the episode closes
        again = _accepted([position_at("2024-01-10 10:00:05")], company_id, vehicle_id)
        await _publish(settings, company_id, vehicle_id, [again])
        rows = await wait_for(
            lambda: _alarm_rows(pool), lambda r: r and r[0]["ended_at"] is not None
        )
    assert rows[0]["started_at"] == first[0].received_at
    assert rows[0]["ended_at"] == again[0].received_at


async def test_worker_picks_up_a_geofence_saved_while_it_runs(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    rules = settings.rules.model_copy(update={"offline_after_s": 86400.0, "reload_interval_s": 0.1})
    settings = settings.model_copy(update={"rules": rules})
    company_id, vehicle_id = await _vehicle(pool)
    track = _accepted(
        drive("2024-01-10 10:00:00", [(120, 60)], interval_s=5), company_id, vehicle_id
    )
    async with _running(settings):
        await _publish(settings, company_id, vehicle_id, [track[:2]])
        await asyncio.sleep(0.3)
        # a forbidden square 500-1500 m east of the start, saved while the worker runs
        west, east = track[0].longitude + 0.0059, track[0].longitude + 0.0176
        south, north = track[0].latitude - 0.0045, track[0].latitude + 0.0045
        fences, _ = parse_geojson(
            {
                "type": "Feature",
                "properties": {"id": "no-go", "kind": "forbidden"},
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [
                        [[west, south], [east, south], [east, north], [west, north], [west, south]]
                    ],
                },
            }
        )
        async with pool.acquire() as conn:
            await save_geofences(conn, fences)
        await asyncio.sleep(0.3)
        await _publish(settings, company_id, vehicle_id, [track[2:]])
        rows = await wait_for(
            lambda: _alarm_rows(pool), lambda r: len(r) == 1 and r[0]["ended_at"] is not None
        )
    assert rows[0]["alarm_type"] == "forbidden_area_entry"
    assert rows[0]["details"]["geofence_id"] == "no-go"


async def test_offline_timer_covers_vehicles_silent_since_before_the_worker_started(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """A vehicle whose last message predates the worker (ingest stored it, the worker never
    evaluated it) goes offline on the timer; one that never sent anything is not connected, not
    offline; one that sent a message just now is online."""
    rules = settings.rules.model_copy(
        update={"offline_after_s": 60.0, "offline_check_interval_s": 0.2}
    )
    settings = settings.model_copy(update={"rules": rules})
    company_id, silent_id = await _vehicle(pool)
    never = await ensure_vehicle(
        pool, company_id=company_id, plate_number="渝A00002", terminal_id="013800000002"
    )
    recent = await ensure_vehicle(
        pool, company_id=company_id, plate_number="渝A00003", terminal_id="013800000003"
    )
    silent_at = (datetime.now(UTC) - timedelta(minutes=10)).replace(microsecond=0)
    fix_at = silent_at - timedelta(seconds=3)
    await pool.executemany(
        "INSERT INTO latest_positions (vehicle_id, last_message_at, fix_time, received_at, "
        "latitude, longitude, speed_kmh) VALUES ($1, $2, $3, $2, 29.5, 106.5, 0)",
        [(silent_id, silent_at, fix_at), (recent.id, datetime.now(UTC), datetime.now(UTC))],
    )
    async with _running(settings):
        rows = await wait_for(lambda: _alarm_rows(pool), lambda r: len(r) >= 1, timeout_s=15)
        await asyncio.sleep(1.0)  # several more ticks: nothing for the other two
        rows = await _alarm_rows(pool)
        assert [(r["vehicle_id"], r["alarm_type"], r["ended_at"]) for r in rows] == [
            (silent_id, "offline", None)
        ]
        assert rows[0]["started_at"] == silent_at
        assert rows[0]["details"]["last_fix_time"] == fix_at.isoformat()
        # it reports again: the episode closes
        again = _accepted([position_at("2024-01-10 10:00:05")], company_id, silent_id)
        await _publish(settings, company_id, silent_id, [again])
        rows = await wait_for(
            lambda: _alarm_rows(pool), lambda r: r and r[0]["ended_at"] is not None
        )
    assert rows[0]["ended_at"] == again[0].received_at
    assert never.id not in {r["vehicle_id"] for r in await _alarm_rows(pool)}
