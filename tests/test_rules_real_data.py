"""The rules engine on real tracks (../shared/data; skipped when absent).

Liverpool buses (UK BODS, route 14 outbound, Open Government Licence v3.0): a route built from
one trip with a 100 m corridor; the other 15 trips raise no route_deviation, and one of them with
an inserted detour raises exactly one.

Beijing taxi (Microsoft T-Drive sample, read in place, never copied): overspeed at 60 km/h.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections import defaultdict
from datetime import datetime
from pathlib import Path

from pyproj import Geod
from rules_factory import offset
from shapely.geometry import LineString

from gps_monitor.config import Settings
from gps_monitor.geofences import Route
from gps_monitor.models import Position
from gps_monitor.tracks import read_track
from rules.evaluate import evaluate_track

REFERENCE_TRIP = "1097"


def _trips(shared_data: Path) -> dict[str, list[Position]]:
    tracks = read_track(shared_data / "bods_liverpool_bus_route14_outbound.csv", "bods")
    trips: dict[str, list[Position]] = defaultdict(list)
    for positions in tracks.values():
        for p in positions:
            trips[p.extras["trip_id"]].append(p)
    return trips


def _quiet_offline() -> Settings:
    base = Settings()
    return base.model_copy(update={"rules": base.rules.model_copy(update={"offline_after_s": 1e9})})


def _route(trips: dict[str, list[Position]]) -> Route:
    # Trip 1097 (bus 4842, 16:05-16:58 UTC, 150 fixes, Queen Square to Petherick Road) is the
    # reference. Built from some other trips, trip 1103 (bus 4722) leaves the line by ~300 m for
    # four minutes after Queen Square: those buses took different streets out of the city centre,
    # which is a real difference in the data, not noise. Trip 1097 follows the street 1103 used.
    line = LineString([(p.longitude, p.latitude) for p in trips[REFERENCE_TRIP]])
    return Route(id="14", name="Liverpool 14 outbound", line=line, corridor_m=100)


def _deviations(positions: list[Position], route: Route) -> list[object]:
    alarms = evaluate_track(
        {positions[0].terminal_id: positions},
        _quiet_offline(),
        fmt="bods",
        vehicle_class="coach",
        routes=[route],
    )
    return [a for a in alarms if a.alarm_type == "route_deviation"]


def test_liverpool_other_trips_on_route_14_raise_no_route_deviation(shared_data: Path) -> None:
    trips = _trips(shared_data)
    route = _route(trips)
    others = [t for t in sorted(trips) if t != REFERENCE_TRIP]
    assert len(others) == 15
    for trip_id in others:
        assert _deviations(trips[trip_id], route) == [], trip_id


def test_liverpool_trip_with_an_inserted_detour_raises_exactly_one(shared_data: Path) -> None:
    trips = _trips(shared_data)
    route = _route(trips)
    trip = list(trips["1101"])  # bus 4841, 148 fixes
    # detour: 10 consecutive fixes in the middle (about 4 min) moved 400 m north-west
    for i in range(70, 80):
        lat, lon = offset(trip[i].latitude, trip[i].longitude, east_m=-280, north_m=280)
        trip[i] = trip[i].evolve(latitude=lat, longitude=lon)
    (alarm,) = _deviations(trip, route)
    assert alarm.started_at == trip[70].fix_time  # type: ignore[attr-defined]
    assert alarm.ended_at == trip[80].fix_time  # type: ignore[attr-defined]
    assert 300 < alarm.details["max_offset_m"] < 500  # type: ignore[attr-defined]


def test_beijing_taxi_overspeed_episodes_at_60_and_35_kmh(shared_data: Path) -> None:
    """Checked by hand against the raw file.

    How: the file has no speed, so speed is distance over time between consecutive distinct
    fixes (24 duplicate rows dropped). Independently of our code, with pyproj's geodesic on the
    raw lines, the fastest interval of the whole week is 7,910 m in 600 s = 47.5 km/h, from
    2008-02-06 14:27:43 to 14:37:43 Beijing time; no other interval exceeds 38.7 km/h. So a 60 km/h
    limit raises no overspeed at all (the list is empty), and the implied-speed check below
    re-derives that maximum from the file.

    With a 35 km/h limit, the intervals above it are 02-05 09:48:34-09:58:34 (35.9 km/h, a single
    fix above: no measured duration, no episode), 02-06 14:17:43-14:27:43 (38.7), 14:27:43-14:37:43
    (47.5), 14:37:43-14:47:43 (35.7) (three consecutive fixes above: one episode from the fix at
    14:27:43 to the first fix back at or below, 14:57:43), and 02-07 10:51:28-11:01:28 (35.6,
    single fix). So exactly one episode, 06:27:43Z-06:57:43Z, max 47.5 km/h.
    """
    file = shared_data / "tdrive_beijing_taxi_1.txt"
    geod = Geod(ellps="WGS84")
    rows = {}
    for line in file.read_text().splitlines():
        _, stamp, lon, lat = line.split(",")
        rows[datetime.fromisoformat(stamp)] = (float(lon), float(lat))
    times = sorted(rows)
    speeds = [
        geod.inv(*rows[a], *rows[b])[2] / (b - a).total_seconds() * 3.6
        for a, b in itertools.pairwise(times)
    ]
    assert round(max(speeds), 1) == 47.5

    tracks = read_track(file, "tdrive")
    settings = _quiet_offline()

    def overspeed(limit_kmh: float) -> list[tuple[str, str | None, float]]:
        alarms = evaluate_track(tracks, settings, fmt="tdrive", speed_limit_kmh=limit_kmh)
        return [
            (
                a.started_at.isoformat(),
                a.ended_at.isoformat() if a.ended_at else None,
                a.details["max_speed_kmh"],
            )
            for a in alarms
            if a.alarm_type == "overspeed"
        ]

    assert overspeed(60) == []
    assert overspeed(35) == [
        ("2008-02-06T06:27:43+00:00", "2008-02-06T06:57:43+00:00", 47.46),
    ]


def test_evaluate_cli_prints_one_json_object_per_alarm_deterministically(
    shared_data: Path, tmp_path: Path
) -> None:
    cmd = [
        sys.executable,
        "-m",
        "gps_monitor.cli",
        "evaluate",
        str(shared_data / "tdrive_beijing_taxi_1.txt"),
        "--format",
        "tdrive",
        "--speed-limit-kmh",
        "35",
        "--set",
        "fatigue.day_limit_s=7200",
    ]
    first = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120)
    second = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120)
    assert first.stdout == second.stdout
    objects = [json.loads(line) for line in first.stdout.splitlines()]
    assert {"overspeed", "offline", "fatigue_driving"} <= {o["type"] for o in objects}
    starts = [o["started_at"] for o in objects]
    assert starts == sorted(starts)
    for o in objects:
        assert {"type", "terminal_id", "started_at", "ended_at", "late", "details"} <= set(o)


def test_evaluate_cli_exits_2_on_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("1,not a time,116.4,39.9\n")
    base = [sys.executable, "-m", "gps_monitor.cli", "evaluate"]
    for args, expected in (
        ([str(bad), "--format", "tdrive"], "expected"),
        ([str(tmp_path / "missing.csv")], "cannot read"),
        ([str(bad), "--format", "tdrive", "--set", "nope=1"], "RULE.KEY=VALUE"),
        ([str(bad), "--format", "tdrive", "--set", "overspeed.min_duration_s=-3"], "--set"),
    ):
        done = subprocess.run(base + args, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, (args, done.stderr)
        assert expected in done.stderr
        assert done.stdout == ""


def test_beijing_taxi_gaps_count_only_the_driving_their_displacement_needs(
    shared_data: Path,
) -> None:
    """T-Drive reports every 600 s, over fatigue_gap_s (300 s), so nearly every interval is a
    data gap judged by its evidence: of 587 intervals, 442 end within 200 m (stops), 51 are
    covered at 20 km/h or more (driven), 68 are ambiguous (200 m to 20 km/h), among them the
    3.3-6.6 h gaps with 0.6-17 km of displacement.

    Before, every ambiguous gap counted as driving in full: 2008-02-05 showed 44,828 s of
    driving, 35,587 s of it gap time, and five days raised daily_driving_limit. Now an
    ambiguous gap counts the time its displacement needs (20 km/h up to 1 h, 60 km/h beyond):
    with the default limits (4 h continuous, 8 h a day) the taxi raises neither alarm. With the
    daily limit at 1 s every day's total shows up, with how much of it is assumed; 2008-02-05
    has the most: 16,003 s, of which 6,762 s come from its 22 ambiguous gaps (35,587 s long).
    """
    tracks = read_track(shared_data / "tdrive_beijing_taxi_1.txt", "tdrive")
    settings = _quiet_offline()
    alarms = evaluate_track(tracks, settings, fmt="tdrive")
    assert not {"fatigue_driving", "daily_driving_limit"} & {a.alarm_type for a in alarms}

    rules = settings.rules.model_copy(update={"daily_driving_limit_s": 1.0})
    daily = {
        a.details["day"]: a.details
        for a in evaluate_track(tracks, settings.model_copy(update={"rules": rules}), fmt="tdrive")
        if a.alarm_type == "daily_driving_limit"
    }
    feb5 = daily["2008-02-05"]
    assert (feb5["driving_s"], feb5["ambiguous_gaps"], feb5["ambiguous_s"]) == (
        16002.6,
        22,
        35587.0,
    )
    assert feb5["ambiguous_driving_s"] == 6761.6
    assert max(d["driving_s"] for d in daily.values()) == 16002.6
