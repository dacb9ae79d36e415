"""The demo in the present: the shipped Liverpool buses rebased to now and the shipped demo
rules raise overspeed, route deviation and forbidden-zone alarms within the first minutes,
through the real ingest and rules services on the real PostgreSQL and Mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import itertools
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from ingest_helpers import wait_for

from gps_monitor.config import Settings
from gps_monitor.demo import (
    DEMO_COMPANY,
    DEMO_FORMAT,
    DEMO_STAGGER_S,
    demo_file,
    demo_rules,
    install_demo_rules,
    rebase_tracks,
    replay_start,
)
from gps_monitor.errors import ConfigurationError
from gps_monitor.models import VehicleClass
from gps_monitor.tracks import read_track, replay_order
from ingest.replay import publish_positions, register_terminals

FIRST_MINUTES = 9  # the replay's first 9 minutes


def test_rebasing_moves_each_bus_to_now_keeping_order_and_spacing() -> None:
    tracks = read_track(demo_file(), DEMO_FORMAT)
    now = datetime(2026, 12, 6, 15, 0, tzinfo=UTC)
    start, compression = replay_start(tracks, now, 1.0)
    assert start == now + timedelta(seconds=2) and compression == 1.0
    rebased = rebase_tracks(tracks, start)
    firsts = sorted(ps[0].fix_time for ps in rebased.values())
    assert firsts == [start + timedelta(seconds=k * DEMO_STAGGER_S) for k in range(8)]
    for terminal, ps in tracks.items():
        moved = rebased[terminal]
        assert [b.fix_time - a.fix_time for a, b in itertools.pairwise(ps)] == [
            b.fix_time - a.fix_time for a, b in itertools.pairwise(moved)
        ]
        assert [(p.latitude, p.longitude, p.speed_kmh) for p in moved] == [
            (p.latitude, p.longitude, p.speed_kmh) for p in ps
        ]
    # 2x: half the spacing, same speeds; 0: a replay that ended just now
    fast = rebase_tracks(tracks, start, speedup=2.0)
    ps, moved = tracks["bods-4716"], fast["bods-4716"]
    assert moved[-1].fix_time - moved[0].fix_time == (ps[-1].fix_time - ps[0].fix_time) / 2
    start, _ = replay_start(tracks, now, 0)
    assert max(p.fix_time for ps in rebase_tracks(tracks, start).values() for p in ps) == now
    for bad in (0.5, 4, -1):
        with pytest.raises(ConfigurationError, match="--speedup: expected 0, or 1 to 3"):
            replay_start(tracks, now, bad)


def test_shipped_demo_rules_are_a_speed_zone_a_forbidden_zone_and_an_assigned_route() -> None:
    fences, routes, plates = demo_rules()
    assert sorted(str(f.kind) for f in fences) == ["forbidden", "speed_zone"]
    assert [r.corridor_m for r in routes] == [100.0]
    assert plates[routes[0].id] == ["BODS-4803"]


@contextlib.asynccontextmanager
async def _services(settings: Settings):  # type: ignore[no-untyped-def]
    """The demo's ingest and rules services (its SERVICES entries), in-process."""
    tasks = []
    try:
        for module_name in ("ingest.cli", "rules.worker"):
            ready = asyncio.Event()
            module = importlib.import_module(module_name)
            tasks.append(asyncio.create_task(module.serve(settings, ready)))
            await asyncio.wait_for(ready.wait(), 60)
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_demo_buses_in_the_present_violate_the_demo_rules_within_minutes(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    tracks = read_track(demo_file(), DEMO_FORMAT)
    async with pool.acquire() as conn:
        vehicles = await register_terminals(
            conn, sorted(tracks), company=DEMO_COMPANY, vehicle_class=VehicleClass.COACH
        )
        assigned = await install_demo_rules(conn)
    assert assigned == {"demo-route": [vehicles["bods-4803"].id]}
    # the replay as `make demo` starts it, seen FIRST_MINUTES later: its fixes up to now
    now = datetime.now(UTC)
    rebased = rebase_tracks(tracks, now - timedelta(minutes=FIRST_MINUTES))
    sent = [p for p in replay_order(rebased) if p.fix_time <= now]
    async with _services(settings):
        published = await publish_positions(settings, sent, speedup=0, progress=False)
        assert published == len(sent)
        wanted = {"overspeed", "route_deviation", "forbidden_area_entry"}

        expected = len({(p.terminal_id, p.fix_time) for p in sent})
        since = now - timedelta(minutes=FIRST_MINUTES + 1)

        async def probe() -> tuple[list[asyncpg.Record], int]:
            rows = await pool.fetch(
                "SELECT a.alarm_type, a.started_at, v.plate_number FROM alarms a "
                "JOIN vehicles v ON v.id = a.vehicle_id ORDER BY a.started_at"
            )
            stored = await pool.fetchval(
                "SELECT count(*) FROM positions WHERE fix_time > $1", since
            )
            return rows, stored

        # the alarms can come before ingest has stored the replay's last positions: wait for
        # both before the services stop (stopping them earlier leaves the rest on the broker)
        rows, _ = await wait_for(
            probe,
            lambda got: wanted <= {r["alarm_type"] for r in got[0]} and got[1] >= expected,
            timeout_s=90,
        )
    found = {r["alarm_type"] for r in rows}
    assert wanted <= found, [(r["alarm_type"], r["plate_number"]) for r in rows]
    for row in rows:
        if row["alarm_type"] in wanted:  # raised within the replay's first minutes: near now
            assert now - timedelta(minutes=FIRST_MINUTES) <= row["started_at"] <= now, row
    deviations = {r["plate_number"] for r in rows if r["alarm_type"] == "route_deviation"}
    assert deviations == {"BODS-4803"}  # the route applies to the bus it is assigned to
    stored = await pool.fetch(
        "SELECT v.terminal_id, p.fix_time, p.quality, p.quality_reason FROM positions p "
        "JOIN vehicles v ON v.id = p.vehicle_id WHERE p.fix_time > $1",
        since,
    )
    missing = {(p.terminal_id, p.fix_time) for p in sent} - {
        (r["terminal_id"], r["fix_time"]) for r in stored
    }
    assert not missing, sorted(missing)[:5]
    flagged = [tuple(r) for r in stored if r["quality"] != "ok"]
    assert not flagged, flagged[:5]
    assert len(stored) == expected
