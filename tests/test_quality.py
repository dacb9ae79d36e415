"""Pure position-quality verdicts (gps_monitor.quality), stepped fix by fix."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gps_monitor.config import QualitySettings
from gps_monitor.models import Position, Quality
from gps_monitor.quality import DriftState, invalid_reason, judge_drift, judge_late_drift

SETTINGS = QualitySettings()
BASE = datetime(2026, 1, 26, 8, 0, tzinfo=UTC)


def fix(second: int, lat: float = 29.56, lon: float = 106.55, **fields: object) -> Position:
    return Position(
        terminal_id="T1",
        fix_time=BASE + timedelta(seconds=second),
        latitude=lat,
        longitude=lon,
        speed_kmh=30.0,
        **fields,  # type: ignore[arg-type]
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
