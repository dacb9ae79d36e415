"""Pure position-quality verdicts (gps_monitor.quality), stepped fix by fix."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from gps_monitor.config import QualitySettings
from gps_monitor.geo import distance_m
from gps_monitor.models import Position, Quality, VehicleClass
from gps_monitor.quality import (
    DriftState,
    invalid_reason,
    judge_drift,
    judge_late_drift,
    max_plausible_speed_kmh,
)

SETTINGS = QualitySettings()
BASE = datetime(2026, 1, 26, 8, 0, tzinfo=UTC)


def fix(second: int, lat: float = 29.56, lon: float = 106.55, **fields: object) -> Position:
    return Position(
        terminal_id="T1",
        fix_time=BASE + timedelta(seconds=second),
        latitude=lat,
        longitude=lon,
        **{"speed_kmh": 30.0, **fields},  # type: ignore[arg-type]
    )


def test_zero_coordinates_are_invalid() -> None:
    assert invalid_reason(fix(0, 0.0, 0.0), BASE, SETTINGS) == "zero_coordinates"


def test_fix_flag_off_is_invalid() -> None:
    assert invalid_reason(fix(0, fix_valid=False), BASE, SETTINGS) == "fix_not_valid"


def test_out_of_range_coordinates_are_invalid() -> None:
    assert invalid_reason(fix(0, 95.0, 106.5), BASE, SETTINGS) == "latitude_out_of_range"
    assert invalid_reason(fix(0, 29.5, 186.5), BASE, SETTINGS) == "longitude_out_of_range"


def test_a_fix_8_hours_ahead_is_invalid_but_5_minutes_ahead_is_tolerated() -> None:
    assert invalid_reason(fix(8 * 3600), BASE, SETTINGS) == "future_fix_time"
    assert invalid_reason(fix(300), BASE, SETTINGS) is None


def test_a_one_fix_jump_is_drift_and_stays_drift() -> None:
    state = DriftState()
    verdicts = []
    # 10 s apart, ~11 m steps; the third fix is 50 km away, the fourth back on the road
    for p in (fix(0), fix(10, 29.5601), fix(20, 30.01), fix(30, 29.5603)):
        verdict = judge_drift(state, p, SETTINGS)
        verdicts.append((verdict.quality, verdict.cleared))
        state = verdict.state
    assert verdicts == [
        (Quality.OK, None),
        (Quality.OK, None),
        (Quality.DRIFT, None),
        (Quality.OK, None),
    ]


def test_a_real_relocation_is_not_drift_once_the_next_fix_agrees() -> None:
    # a terminal switched on again after a ferry crossing: far away, then staying there
    state = DriftState()
    first = judge_drift(state, fix(0), SETTINGS)
    moved = judge_drift(first.state, fix(60, 30.2), SETTINGS)
    confirmed = judge_drift(moved.state, fix(70, 30.2001), SETTINGS)
    assert moved.quality == Quality.DRIFT  # suspect at first
    assert confirmed.quality == Quality.OK
    assert confirmed.cleared is not None and confirmed.cleared.fix_time == fix(60).fix_time


def test_a_short_hop_below_the_minimum_distance_is_never_drift() -> None:
    # two fixes 1 s apart, 100 m: 360 km/h implied, but under drift_min_distance_m (500 m)
    first = judge_drift(DriftState(), fix(0), SETTINGS)
    hop = judge_drift(first.state, fix(1, 29.5609), SETTINGS)
    assert hop.quality == Quality.OK


def test_a_late_fix_is_judged_with_its_real_neighbours() -> None:
    before, after = fix(0), fix(20, 29.5602)
    assert judge_late_drift(before, fix(10, 29.5601), after, SETTINGS) == Quality.OK
    assert judge_late_drift(before, fix(10, 31.0), after, SETTINGS) == Quality.DRIFT
    assert judge_late_drift(None, fix(10, 31.0), after, SETTINGS) == Quality.DRIFT
    assert judge_late_drift(None, fix(10), None, SETTINGS) == Quality.OK


def test_a_one_fix_jump_sent_twice_does_not_confirm_itself() -> None:
    # issue 14 item 9: the spike row arrives again (same fix time, same position); only a
    # different, later fix that agrees with it may clear it
    state = DriftState()
    for p in (fix(0), fix(10, 29.5601)):
        state = judge_drift(state, p, SETTINGS).state
    spike = judge_drift(state, fix(20, 29.61), SETTINGS)  # 5.5 km in 10 s
    again = judge_drift(spike.state, fix(20, 29.61), SETTINGS)
    back = judge_drift(again.state, fix(30, 29.5603), SETTINGS)
    assert spike.quality == Quality.DRIFT
    assert (again.quality, again.cleared) == (Quality.DRIFT, None)
    assert again.state == spike.state
    assert (back.quality, back.cleared) == (Quality.OK, None)
    assert back.state.anchor is not None and back.state.anchor.fix_time == fix(30).fix_time


def test_a_copy_of_the_spike_with_another_position_does_not_confirm_it_either() -> None:
    state = judge_drift(DriftState(), fix(0), SETTINGS).state
    spike = judge_drift(state, fix(20, 29.61), SETTINGS)
    # same fix time, a few metres off (a resend re-encoded with rounding)
    again = judge_drift(spike.state, fix(20, 29.61001), SETTINGS)
    assert (again.quality, again.cleared, again.state) == (Quality.DRIFT, None, spike.state)
    confirmed = judge_drift(again.state, fix(30, 29.6101), SETTINGS)
    assert confirmed.cleared is not None and confirmed.cleared.fix_time == fix(20).fix_time


def test_a_resent_good_fix_keeps_a_pending_suspect() -> None:
    state = judge_drift(DriftState(), fix(0), SETTINGS).state
    spike = judge_drift(state, fix(20, 29.61), SETTINGS)
    resent_anchor = judge_drift(spike.state, fix(0), SETTINGS)
    assert (resent_anchor.quality, resent_anchor.state) == (Quality.OK, spike.state)


def test_a_reported_speed_above_the_class_bound_is_invalid() -> None:
    # issue 14 item 10: 626 km/h derived from a GPS jump; 150 km/h is a real (if illegal) speed
    coach = max_plausible_speed_kmh(VehicleClass.COACH, SETTINGS)
    hazmat = max_plausible_speed_kmh(VehicleClass.HAZMAT, SETTINGS)
    assert (coach, hazmat) == (200.0, 160.0)
    assert invalid_reason(fix(0, speed_kmh=626.0), BASE, SETTINGS, max_speed_kmh=coach) == (
        "implausible_speed"
    )
    assert invalid_reason(fix(0, speed_kmh=150.0), BASE, SETTINGS, max_speed_kmh=coach) is None
    assert invalid_reason(fix(0, speed_kmh=170.0), BASE, SETTINGS, max_speed_kmh=hazmat) == (
        "implausible_speed"
    )
    assert invalid_reason(fix(0, speed_kmh=626.0), BASE, SETTINGS) is None  # class unknown


def test_plausible_speed_bounds_are_settings_with_checked_values() -> None:
    custom = QualitySettings(max_plausible_speed_kmh={"coach": 150.0})
    assert max_plausible_speed_kmh("coach", custom) == 150.0
    assert max_plausible_speed_kmh("hazmat", custom) == 150.0  # unlisted: highest bound given
    with pytest.raises(ValidationError, match="expected vehicle classes among"):
        QualitySettings(max_plausible_speed_kmh={"taxi": 150.0})
    with pytest.raises(ValidationError, match="expected a finite speed above 0"):
        QualitySettings(max_plausible_speed_kmh={"coach": 0.0})


def test_an_ok_verdict_carries_the_distance_from_the_fix_it_was_judged_against() -> None:
    first = judge_drift(DriftState(), fix(0), SETTINGS)
    assert first.distance_m is None  # nothing to measure from
    step = judge_drift(first.state, fix(10, 29.5601), SETTINGS)
    assert step.distance_m == distance_m(29.56, 106.55, 29.5601, 106.55)
    moved = judge_drift(step.state, fix(60, 30.2), SETTINGS)
    assert moved.quality == Quality.DRIFT and moved.distance_m is None
    confirmed = judge_drift(moved.state, fix(70, 30.2001), SETTINGS)
    assert confirmed.cleared is not None
    assert confirmed.distance_m == distance_m(30.2, 106.55, 30.2001, 106.55)  # from the suspect
    again = judge_drift(confirmed.state, fix(70, 30.2001), SETTINGS)
    assert again.distance_m is None  # the same fix again: nothing measured
