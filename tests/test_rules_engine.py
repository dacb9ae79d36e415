"""Night ban, offline, device alarms, and the engine itself: rule order, a rule that raises,
duplicates, JSON state round trip."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest
from rules_factory import LAT0, Runner, context, drive, no_offline, position

from gps_monitor.models import Quality
from rules import engine as engine_module
from rules.engine import RULES, Engine, VehicleState

# --- night ban 02:00-05:00 -------------------------------------------------------------------


def test_coach_moving_at_0200_raises_night_ban_not_at_0159() -> None:
    before = Runner(context("coach", rules=no_offline()))
    before.feed(drive("2024-01-10 01:50:00", [(9 * 60 + 59, 60)], interval_s=1))  # to 01:59:59
    assert before.of("night_ban") == []
    run = Runner(context("coach", rules=no_offline()))
    run.feed(drive("2024-01-10 01:50:00", [(15 * 60, 60)], interval_s=60))
    # moving from the 02:00 fix; raised at 02:01, once 60 s and 500 m are behind it (1 km)
    assert run.raised_at("night_ban") == [datetime(2024, 1, 10, 2, 1)]
    (opened,) = run.of("night_ban", "opened")
    assert opened.started_at == datetime.fromisoformat("2024-01-10T02:00:00+08:00")
    assert opened.details["min_duration_s"] == 60.0
    assert opened.details["min_distance_m"] == 500.0
    assert opened.details["duration_s_at_open"] == 60.0
    assert opened.details["distance_m"] == pytest.approx(1000, rel=0.01)


def test_a_coach_rolling_240_m_into_a_stop_after_0200_raises_no_night_ban() -> None:
    # issue 14 item 12: 240 m at walking pace just after 02:00, then parked for the night
    run = Runner(context("coach", rules=no_offline()))
    rolling = drive("2024-01-10 02:00:30", [(86, 10)], interval_s=2)
    end = rolling[-1]
    parked = [
        position(end.fix_time + timedelta(minutes=m), lat=end.latitude, lon=end.longitude)
        for m in range(1, 11)
    ]
    run.feed(rolling + parked)
    assert run.of("night_ban") == []


def test_night_ban_needs_both_the_minimum_duration_and_distance() -> None:
    fast_and_short = Runner(context("coach", rules=no_offline()))
    moving = drive("2024-01-10 02:10:00", [(30, 100)], interval_s=5)  # 833 m in 30 s
    end = moving[-1]
    stop = [
        position(end.fix_time + timedelta(minutes=m), lat=end.latitude, lon=end.longitude)
        for m in range(1, 7)
    ]
    fast_and_short.feed(moving + stop)
    assert fast_and_short.of("night_ban") == []
    creeping = Runner(context("coach", rules=no_offline()))
    creeping.feed(drive("2024-01-10 02:10:00", [(290, 6)], interval_s=10))  # 483 m in 290 s
    assert creeping.of("night_ban") == []
    assert creeping.of("night_ban") == []  # over 60 s, under 500 m
    creeping.feed(drive("2024-01-10 02:14:50", [(300, 6)], interval_s=10, include_start=False))
    (opened,) = creeping.of("night_ban", "opened")  # kept creeping: 500 m reached
    assert opened.started_at == datetime.fromisoformat("2024-01-10T02:10:00+08:00")
    instant = Runner(
        context("coach", rules=no_offline(night_ban_min_duration_s=0, night_ban_min_distance_m=0))
    )
    instant.feed(drive("2024-01-10 02:10:00", [(30, 100)], interval_s=5))
    assert instant.raised_at("night_ban") == [datetime(2024, 1, 10, 2, 10)]


def test_night_ban_closes_at_0500_and_after_a_stop() -> None:
    run = Runner(context("coach", rules=no_offline()))
    run.feed(drive("2024-01-10 04:50:00", [(20 * 60, 60)], interval_s=60))
    (closed,) = run.of("night_ban", "closed")
    assert closed.ended_at == datetime.fromisoformat("2024-01-10T05:00:00+08:00")
    stop = Runner(context("coach", rules=no_offline()))
    moving = drive("2024-01-10 02:30:00", [(600, 60)], interval_s=60)
    e = moving[-1]
    parked = [
        position(e.fix_time + timedelta(minutes=m), lat=e.latitude, lon=e.longitude)
        for m in range(1, 7)
    ]
    stop.feed(moving + parked)
    (closed2,) = stop.of("night_ban", "closed")
    assert closed2.ended_at == parked[0].fix_time  # the stop began at the first fix standing still


def test_night_ban_exemption_and_classes() -> None:
    exempt = Runner(context("coach", rules=no_offline(), night_ban_exempt=True))
    exempt.feed(drive("2024-01-10 02:10:00", [(600, 60)], interval_s=60))
    assert exempt.of("night_ban") == []
    freight = Runner(context("freight", rules=no_offline()))
    freight.feed(drive("2024-01-10 02:10:00", [(600, 60)], interval_s=60))
    assert freight.of("night_ban") == []


# --- offline ---------------------------------------------------------------------------------


def test_offline_after_5_min_without_messages_fix_clock() -> None:
    run = Runner(context())
    start = datetime.fromisoformat("2024-01-10T10:00:00+08:00")
    run.feed([position(start), position(start + timedelta(seconds=300))])  # exactly 5 min: online
    assert run.of("offline") == []
    run.feed([position(start + timedelta(seconds=601))])  # 301 s gap
    (opened,) = run.of("offline", "opened")
    (closed,) = run.of("offline", "closed")
    assert opened.started_at == start + timedelta(seconds=300)
    assert closed.ended_at == start + timedelta(seconds=601)


def test_offline_timer_fires_without_any_new_position() -> None:
    ctx = context(clock="wall")
    engine = Engine()
    received = datetime.fromisoformat("2024-01-10T10:00:00+08:00")
    state, _ = engine.process(VehicleState(), position(received, received_at=received), ctx)
    t0 = received.timestamp()
    state, alarms = engine.tick(state, t0 + 300, ctx)
    assert alarms == []
    state, alarms = engine.tick(state, t0 + 301, ctx)
    assert [a.alarm_type for a in alarms] == ["offline"]
    state, alarms = engine.tick(state, t0 + 900, ctx)
    assert alarms == []  # one alarm per episode


def test_hazmat_reappearing_far_away_is_offline_displacement() -> None:
    start = datetime.fromisoformat("2024-01-10T10:00:00+08:00")
    far_lat = LAT0 + 0.02  # 2.2 km north
    for vehicle_class, expected in (("hazmat", 1), ("freight", 0)):
        run = Runner(context(vehicle_class))
        run.feed([position(start), position(start + timedelta(minutes=20), lat=far_lat)])
        assert len(run.of("offline_displacement")) == expected
    near = Runner(context("hazmat"))
    near.feed([position(start), position(start + timedelta(minutes=20), lat=LAT0 + 0.005)])
    assert near.of("offline_displacement") == []  # 556 m <= 1 km


# --- device alarms ---------------------------------------------------------------------------


def test_sos_bit_opens_and_closes_a_device_alarm() -> None:
    run = Runner(context(rules=no_offline()))
    start = datetime.fromisoformat("2024-01-10T10:00:00+08:00")
    flags = [0, 1, 1, 1, 0, 1 << 28]
    run.feed(
        [position(start + timedelta(seconds=10 * i), alarm_flags=f) for i, f in enumerate(flags)]
    )
    names = [(a.event, a.details["name"]) for a in run.of("device_alarm")]
    assert names == [("opened", "sos"), ("closed", "sos"), ("opened", "illegal_movement")]


def test_device_alarm_bits_held_or_not_configured_change_nothing() -> None:
    """Fixes whose configured bits are as they were (SOS held; bit 3, not configured, coming
    and going) leave the rule's state the very object it was: no alarm, nothing to store."""
    run = Runner(context(rules=no_offline()))
    start = datetime.fromisoformat("2024-01-10T10:00:00+08:00")
    flags = [1, 1, 1 | 1 << 3, 1 << 3 | 1, 1, 1 << 3, 0, 1 << 3]
    states = []
    for i, f in enumerate(flags):
        run.feed([position(start + timedelta(seconds=10 * i), alarm_flags=f)])
        states.append(run.state.rules["device_alarm"])
    names = [(a.event, a.details["name"]) for a in run.of("device_alarm")]
    assert names == [("opened", "sos"), ("closed", "sos")]
    assert all(states[i] is states[0] for i in range(1, 5))  # SOS held through bit 3's changes
    assert states[5] is not states[4] and states[7] is states[6] == states[5]


# --- engine ----------------------------------------------------------------------------------


def test_rule_order_is_one_visible_tuple() -> None:
    assert [m.NAME for m in RULES] == [
        "offline",
        "device_alarm",
        "active_safety",
        "overspeed",
        "fatigue",
        "night_ban",
        "route_deviation",
        "geofence",
    ]


def test_a_rule_that_raises_is_logged_with_the_vehicle_and_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(state: object, fix: object, ctx: object) -> object:
        raise RuntimeError("boom")

    bad = SimpleNamespace(NAME="broken", State=lambda: None, process=broken)
    rules = (engine_module.offline, bad, engine_module.overspeed)
    run = Runner(context(rules=no_offline(), speed_limit_kmh=60), engine=Engine(rules))  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, logger="rules.engine"):
        run.feed(drive("2024-01-10 10:00:00", [(30, 80)]))
    assert len(run.of("overspeed", "opened")) == 1  # the others still ran
    assert "rule broken failed for vehicle 1 (terminal T1)" in caplog.text
    assert run.engine.errors == 31


def test_invalid_and_duplicate_positions_are_excluded() -> None:
    run = Runner(context(rules=no_offline(), speed_limit_kmh=60))
    track = drive("2024-01-10 10:00:00", [(30, 80)])
    invalid = [p.evolve(quality=Quality.INVALID) for p in track]
    run.feed(invalid)
    assert run.of("overspeed") == []
    run.feed(track[:20] + track[5:15] + track[20:])  # redelivered fixes in the middle
    assert len(run.of("overspeed", "opened")) == 1
    assert Engine.order(run.state, track[3]) == "late"
    assert Engine.order(run.state, track[-1]) == "duplicate"


def test_state_round_trips_through_json_mid_track_with_the_same_alarms() -> None:
    # a coach from 20:00: overspeed once the night limit (80) applies, fatigue (2 h at night)
    track = drive("2024-01-10 20:00:00", [(3 * 3600, 85), (600, 0), (3600, 95)], interval_s=30)
    through = Runner(context("coach", rules=no_offline()))
    through.feed(track)
    resumed = Runner(context("coach", rules=no_offline()))
    for chunk_start in range(0, len(track), 97):
        resumed.feed(track[chunk_start : chunk_start + 97])
        resumed.state = VehicleState.from_json(json.loads(json.dumps(resumed.state.to_json())))
    assert [a for _, a in through.events] == [a for _, a in resumed.events]
    assert len(through.events) > 3
