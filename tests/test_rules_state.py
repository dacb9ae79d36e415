"""The rules engine's stored state (rules.state, table rule_state): a vehicle resumed from the
database mid-track raises exactly the alarms of one that ran through, with the compact JSON
(fresh rule states and fields at their defaults left out)."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from rules_factory import context, no_offline, offset
from shapely.geometry import LineString, Point

from gps_monitor.db.registry import ensure_company, ensure_vehicle
from gps_monitor.geofences import Geofence, GeofenceKind, Route
from gps_monitor.models import Position
from gps_monitor.tracks import read_track
from rules import fatigue, overspeed
from rules.context import RuleContext
from rules.engine import Engine, VehicleState
from rules.state import load_states, save_states, state_text


def _trip(shared_data: Path, vehicle_id: int = 1) -> tuple[list[Position], RuleContext]:
    """Liverpool bus trip 1101 with a 4-minute detour, and the context of a coach on it:
    route 14 (trip 1097), a watch circle and a forbidden circle on the way (every rule state
    kind: tracks per route and per fence), a 25 km/h limit, 20-minute fatigue limits."""
    trips: dict[str, list[Position]] = defaultdict(list)
    track = read_track(shared_data / "bods_liverpool_bus_route14_outbound.csv", "bods")
    for positions in track.values():
        for p in positions:
            trips[p.extras["trip_id"]].append(p)
    route = Route(
        id="14",
        name="route 14",
        line=LineString([(p.longitude, p.latitude) for p in trips["1097"]]),
        corridor_m=100,
    )
    trip = list(trips["1101"])
    for i in range(70, 80):
        lat, lon = offset(trip[i].latitude, trip[i].longitude, east_m=-280, north_m=280)
        trip[i] = trip[i].evolve(latitude=lat, longitude=lon)
    fences = [
        Geofence(
            id=f"{kind}-{i}",
            name=str(kind),
            kind=kind,
            geometry=Point(trip[i].longitude, trip[i].latitude),
            radius_m=250,
        )
        for kind, i in ((GeofenceKind.WATCH, 30), (GeofenceKind.FORBIDDEN, 110))
    ]
    ctx = context(
        "coach",
        rules=no_offline(fatigue_day_limit_s=1200, fatigue_night_limit_s=1200),
        speed_limit_kmh=25,
        geofences=fences,
        routes=[route],
        vehicle_id=vehicle_id,
    )
    return trip, ctx


async def test_a_vehicle_resumed_from_the_database_every_few_fixes_raises_the_same_alarms(
    shared_data: Path, pool: asyncpg.Pool
) -> None:
    company = await ensure_company(pool, "State Co")
    vehicle = await ensure_vehicle(
        pool, company_id=company.id, plate_number="渝A00001", terminal_id="013800000001"
    )
    trip, ctx = _trip(shared_data, vehicle.id)
    engine = Engine()
    through, through_alarms = VehicleState(), []
    for p in trip:
        through, out = engine.process(through, p, ctx)
        through_alarms += out
    resumed, resumed_alarms, written = VehicleState(), [], {}
    for start in range(0, len(trip), 7):
        for p in trip[start : start + 7]:
            resumed, out = engine.process(resumed, p, ctx)
            resumed_alarms += out
        async with pool.acquire() as conn, conn.transaction():
            written |= await save_states(conn, {vehicle.id: resumed}, written)
        resumed, text = (await load_states(pool))[vehicle.id]
        assert text == state_text(resumed)
    assert resumed_alarms == through_alarms
    types = {a.alarm_type for a in through_alarms}
    assert {"overspeed", "route_deviation", "geofence_enter", "forbidden_area_entry",
            "fatigue_warning", "fatigue_driving"} <= types  # fmt: skip
    # the stored JSON is the text written, as written (a text column since migration 0153)
    stored = await pool.fetchval("SELECT state FROM rule_state")
    assert stored == written[vehicle.id]


def test_the_text_of_each_state_along_a_trip_is_that_of_the_same_state_without_the_cache(
    shared_data: Path,
) -> None:
    """``VehicleState.dumps`` (the dumps of rule states carried from one state to the next)
    never gives the text of an earlier rule state: each state along the trip, every rule kind
    changing at some fix, writes what the same rules written afresh write."""
    trip, ctx = _trip(shared_data)
    engine = Engine()
    state, texts, cached = VehicleState(), set(), 0
    for p in trip:
        previous = dict(state.rules)
        state, _ = engine.process(state, p, ctx)
        cached += sum(previous.get(name) is rule for name, rule in state.rules.items())
        text = state_text(state)
        assert text == state_text(VehicleState(state.last, dict(state.rules)))
        texts.add(text)
    assert len(texts) == len(trip)  # every fix changed the state
    assert cached > len(trip)  # and most rules' states were carried over unchanged


async def test_the_last_fix_time_stored_with_a_state_is_the_fix_time_to_the_microsecond(
    pool: asyncpg.Pool,
) -> None:
    """``rule_state.last_fix_time`` (compared with ``positions.fix_time`` to find vehicles the
    engine has not caught up with) goes to PostgreSQL as epoch seconds in a float: it must come
    back as the fix time it was, microseconds included."""
    company = await ensure_company(pool, "State Co")
    base = datetime(2024, 1, 10, 2, 0, tzinfo=UTC)
    fix_times = [base + timedelta(microseconds=us) for us in (0, 1, 499_999, 500_000, 999_999)]
    fix_times.append(datetime(2038, 1, 19, 3, 14, 7, 999_999, tzinfo=UTC))
    states: dict[int, VehicleState] = {}
    for i, fix_time in enumerate([*fix_times, None]):
        vehicle = await ensure_vehicle(
            pool, company_id=company.id, plate_number=f"渝A1{i:04d}", terminal_id=f"0138001{i:05d}"
        )
        last = (fix_time.timestamp(), 29.5, 106.5, 40.0) if fix_time else None  # None: no fix yet
        states[vehicle.id] = VehicleState(last=last)
    async with pool.acquire() as conn, conn.transaction():
        await save_states(conn, states, {})
    stored = dict(await pool.fetch("SELECT vehicle_id, last_fix_time FROM rule_state"))
    assert [stored[v] for v in sorted(states)] == [*fix_times, None]


def test_fresh_rule_states_and_fields_at_their_defaults_are_not_stored() -> None:
    assert state_text(VehicleState()) == '{"last":null,"rules":{}}'
    state = VehicleState(
        last=(1704844800.0, 29.5, 106.5, 40.0),
        rules={
            overspeed.NAME: overspeed.State(),
            fatigue.NAME: fatigue.State(run_start_t=1704844000.0, run_driving_s=800.0, day=19732),
        },
    )
    text = state_text(state)
    assert json.loads(text) == {
        "last": [1704844800.0, 29.5, 106.5, 40.0],
        "rules": {"fatigue": {"run_start_t": 1704844000.0, "run_driving_s": 800.0, "day": 19732}},
    }
    loaded = VehicleState.from_json(json.loads(text))
    assert loaded.rules == {fatigue.NAME: state.rules[fatigue.NAME]}
    assert state_text(loaded) == text
    # a value equal to the default but of another type is kept (restored as it was)
    odd = VehicleState(rules={fatigue.NAME: fatigue.State(run_driving_s=0)})  # type: ignore[arg-type]
    assert json.loads(state_text(odd))["rules"] == {"fatigue": {"run_driving_s": 0}}


def test_a_state_pydantic_core_cannot_write_is_written_as_json_dumps_writes_it() -> None:
    state = VehicleState(rules={fatigue.NAME: fatigue.State(driver="A\ud800")})
    text = state_text(state)
    assert text == json.dumps(state.to_json(), separators=(",", ":"))
    assert "\\ud800" in text
