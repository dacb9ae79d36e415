"""Rules settings are validated whichever way they come (constructor, ``--set``, environment):
times of day, time zone names, finite numbers; ``evaluate`` exits 2 naming the setting, what
was expected and what came."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from gps_monitor.config import RulesSettings, describe_validation_error
from gps_monitor.errors import GeometryError
from gps_monitor.geofences import parse_geojson


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"night_start_local": "25:00"},
            "night_start_local: expected a local time of day HH:MM within 00:00-23:59, got '25:00'",
        ),
        ({"night_end_local": "06:60"}, "night_end_local: expected a local time of day"),
        ({"night_ban_start_local": "2am"}, "night_ban_start_local: expected a local time"),
        ({"night_ban_end_local": "24:00"}, "night_ban_end_local: expected a local time"),
        (
            {"timezone": "Mars/Phobos"},
            "timezone: expected an IANA time zone name such as Asia/Shanghai, got 'Mars/Phobos'",
        ),
        ({"fatigue_day_limit_s": float("nan")}, "fatigue_day_limit_s: expected a finite number"),
        ({"offline_after_s": float("inf")}, "offline_after_s: expected a finite number"),
        (
            {"overspeed_min_duration_s": -3},
            "overspeed_min_duration_s: expected a number greater than or equal to 0, got -3",
        ),
        ({"route_deviation_min_distance_m": -1}, "route_deviation_min_distance_m: expected"),
    ],
)
def test_rules_settings_reject_bad_values_naming_the_setting(
    changes: dict[str, object], expected: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        RulesSettings(**changes)  # type: ignore[arg-type]
    assert describe_validation_error(caught.value).startswith(expected)


def test_rules_settings_read_a_one_digit_hour_as_hh_mm() -> None:
    assert RulesSettings(night_end_local="6:00").night_end_local == "06:00"
    assert RulesSettings(night_start_local="23:59").night_start_local == "23:59"


def _evaluate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gps_monitor.cli", "evaluate", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | (env or {}),
    )


def test_evaluate_exits_2_on_bad_rule_settings_from_set_option_or_environment(
    shared_data: Path,
) -> None:
    track = [str(shared_data / "tdrive_beijing_taxi_1.txt"), "--format", "tdrive"]
    cases = [
        (
            ["--vehicle-class", "coach", "--set", "night_start_local=25:00"],
            None,
            "--set night_start_local: expected a local time of day HH:MM within 00:00-23:59, "
            "got '25:00'",
        ),
        (["--speed-limit-kmh", "nan"], None, "--speed-limit-kmh: expected a finite positive"),
        (["--speed-limit-kmh", "inf"], None, "--speed-limit-kmh: expected a finite positive"),
        (
            ["--set", "timezone=Mars/Phobos"],
            None,
            "--set timezone: expected an IANA time zone name such as Asia/Shanghai, "
            "got 'Mars/Phobos'",
        ),
        (
            ["--set", "overspeed.min_duration_s=-3"],
            None,
            "--set overspeed_min_duration_s: expected a number greater than or equal to 0, got -3",
        ),
        (
            [],
            {"GPS_MONITOR_RULES_NIGHT_START_LOCAL": "25:00"},
            "GPS_MONITOR_RULES_NIGHT_START_LOCAL: expected a local time of day HH:MM",
        ),
        (
            [],
            {"GPS_MONITOR_RULES_FATIGUE_DAY_LIMIT_S": "nan"},
            "GPS_MONITOR_RULES_FATIGUE_DAY_LIMIT_S: expected a finite number, got 'nan'",
        ),
    ]
    for args, env, expected in cases:
        done = _evaluate(*track, *args, env=env)
        assert done.returncode == 2, (args, env, done.stderr)
        assert expected in done.stderr, (args, env, done.stderr)
        assert "Traceback" not in done.stderr and "('" not in done.stderr
        assert done.stdout == ""


NAN_FENCE = (
    '{"type": "FeatureCollection", "features": [{"type": "Feature", '
    '"properties": {"id": "a", "kind": "forbidden"}, "geometry": {"type": "Polygon", '
    '"coordinates": [[[116.4, 39.9], [116.5, NaN], [116.5, 40.0], [116.4, 39.9]]]}}]}'
)


def test_geojson_with_a_nan_coordinate_is_refused_without_a_numpy_warning(
    tmp_path: Path,
) -> None:
    import json

    # pytest turns warnings into errors: a RuntimeWarning from shapely/numpy fails this
    with pytest.raises(GeometryError, match=r"expected finite lon/lat degrees, got \(116.5, nan\)"):
        parse_geojson(json.loads(NAN_FENCE))
    fences = tmp_path / "nan.geojson"
    fences.write_text(NAN_FENCE)
    track = tmp_path / "t.csv"
    track.write_text(
        "terminal_id,fix_time,latitude,longitude,speed_kmh\nT,2024-01-10T00:00:00Z,39.9,116.4,10\n"
    )
    done = _evaluate(str(track), "--geofences", str(fences))
    assert done.returncode == 2
    assert "RuntimeWarning" not in done.stderr
    assert done.stderr.strip() == (
        f"gps-monitor evaluate: {fences}: geofence 'a': expected finite lon/lat degrees, "
        "got (116.5, nan)"
    )
