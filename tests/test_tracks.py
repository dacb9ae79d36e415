"""Track file readers: real files from ../shared/data and small hand-written ones per format."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import pytest

from gps_monitor.db.registry import check_terminal_id
from gps_monitor.errors import GpsMonitorError, PayloadError
from gps_monitor.geo import distance_m
from gps_monitor.tracks import derived_terminal_id, read_track, replay_order


def test_tdrive_times_are_beijing_local_and_speed_is_derived(shared_data: Path) -> None:
    tracks = read_track(shared_data / "tdrive_beijing_taxi_1.txt", "tdrive")
    track = tracks["tdrive-1"]
    assert len(track) == 588 and len({p.fix_time for p in track}) == 564
    # first row: 1,2008-02-02 15:36:08,116.51172,39.92123 (longitude first)
    assert track[0].fix_time == datetime(2008, 2, 2, 7, 36, 8, tzinfo=UTC)
    assert (track[0].latitude, track[0].longitude) == (39.92123, 116.51172)
    second = track[1]
    expected_kmh = distance_m(39.92123, 116.51172, 39.93883, 116.51135) / 600 * 3.6
    assert second.speed_kmh == pytest.approx(expected_kmh)
    assert second.heading_deg is not None and (second.heading_deg > 350 or second.heading_deg < 10)
    assert all(a.fix_time <= b.fix_time for a, b in pairwise(track))


def test_bods_groups_the_8_buses_in_fix_time_order(shared_data: Path) -> None:
    tracks = read_track(shared_data / "bods_liverpool_bus_route14_outbound.csv", "bods")
    assert len(tracks) == 8
    assert sum(len(t) for t in tracks.values()) == 1533
    first = tracks["bods-4716"][0]
    assert first.fix_time == datetime(2026, 1, 26, 15, 57, 2, tzinfo=UTC)  # timestamps are UTC
    assert first.heading_deg is None  # empty bearing while stationary, nothing to derive from
    assert tracks["bods-4716"][1].heading_deg == 53.0  # the file's bearing is kept
    merged = replay_order(tracks)
    assert all(a.fix_time <= b.fix_time for a, b in pairwise(merged))


def test_csv_with_optional_columns(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(
        "terminal_id,fix_time,latitude,longitude,speed_kmh,heading_deg,acc_on,fix_valid\n"
        "013800000001,2026-01-26T08:00:10+08:00,29.5601,106.55,,,1,true\n"
        "013800000001,2026-01-26T08:00:00+08:00,29.56,106.55,12.5,90,1,true\n"
        "013800000002,2026-01-26T00:00:05Z,29.57,106.56,0,,0,0\n"
    )
    tracks = read_track(path, "csv")
    one = tracks["013800000001"]
    assert [p.fix_time.isoformat() for p in one] == [
        "2026-01-26T00:00:00+00:00",
        "2026-01-26T00:00:10+00:00",
    ]
    assert one[0].speed_kmh == 12.5 and one[0].heading_deg == 90
    # no speed in the file for the second fix: ~11 m in 10 s
    assert one[1].speed_kmh == pytest.approx(distance_m(29.56, 106.55, 29.5601, 106.55) / 10 * 3.6)
    assert one[1].heading_deg == pytest.approx(0, abs=1)
    two = tracks["013800000002"][0]
    assert two.acc_on is False and two.fix_valid is False


def test_csv_without_the_optional_columns(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("terminal_id,fix_time,latitude,longitude\nT1,2026-01-26T08:00:00+08:00,1,2\n")
    assert read_track(path, "csv")["T1"][0].speed_kmh == 0.0


def test_jsonl_lines_follow_the_mqtt_contract(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    lines = [
        {"terminal_id": "T1", "fix_time": 1769385600000, "latitude": 29.56, "longitude": 106.55,
         "speed_kmh": 40.0, "alarm_flags": 2, "mileage_km": 1200.5},
        {"terminal_id": "T1", "fix_time": "2026-01-26T08:00:30+08:00", "latitude": 29.561,
         "longitude": 106.55, "speed_kmh": 41.0},
    ]  # fmt: skip
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    track = read_track(path, "jsonl")["T1"]
    assert track[0].fix_time == datetime(2026, 1, 26, 0, 0, tzinfo=UTC)
    assert track[0].alarm_flags == 2 and track[0].mileage_km == 1200.5
    assert track[1].speed_kmh == 41.0  # the file's speed is kept, not derived


def test_geolife_plt(tmp_path: Path) -> None:
    path = tmp_path / "20081023025304.plt"
    path.write_text(
        "Geolife trajectory\nWGS 84\nAltitude is in Feet\nReserved 3\n"
        "0,2,255,My Track,0,0,2,8421376\n0\n"
        "39.984702,116.318417,0,492,39744.1201851852,2008-10-23,02:53:04\n"
        "39.984683,116.31845,0,-777,39744.1202546296,2008-10-23,02:53:10\n"
    )
    track = read_track(path, "geolife")["geolife-20081023025304"]
    assert track[0].fix_time == datetime(2008, 10, 23, 2, 53, 4, tzinfo=UTC)
    assert track[0].altitude_m == pytest.approx(492 * 0.3048)
    assert track[1].altitude_m is None  # -777 = unknown
    assert track[1].speed_kmh > 0


@pytest.mark.parametrize(
    ("fmt", "text", "message"),
    [
        ("csv", "id,time,lat,lon\n", "line 1: expected header terminal_id,fix_time"),
        ("csv", "terminal_id,fix_time,latitude,longitude\nT1,2026-01-26 08:00:00,1,2\n",
         "line 2: expected fix_time with a UTC offset"),
        ("csv", "terminal_id,fix_time,latitude,longitude\nT1,2026-01-26T08:00:00Z,north,2\n",
         "line 2: expected latitude as a number, got 'north'"),
        ("tdrive", "1,2008-02-02 15:36:08,116.5,39.9\n1,2008/02/02 15:46,116.5,39.9\n",
         "line 2: expected time as YYYY-MM-DD HH:MM:SS (Beijing time)"),
        ("tdrive", "1,2008-02-02 15:36:08,116.5\n", "line 1: expected taxi_id,YYYY-MM-DD"),
        ("jsonl", '{"terminal_id": "T1", "fix_time": 1769385600000}\n',
         "line 1: expected an MQTT-contract position (latitude: required field is missing)"),
        ("jsonl", "not json\n", "line 1: expected one JSON object per line"),
    ],
)  # fmt: skip
def test_bad_lines_name_the_line_what_was_expected_and_what_came(
    tmp_path: Path, fmt: str, text: str, message: str
) -> None:
    path = tmp_path / f"bad.{fmt}"
    path.write_text(text)
    with pytest.raises(PayloadError) as caught:
        read_track(path, fmt)
    assert caught.value.reason == "bad_track"
    assert message in str(caught.value)


def test_unknown_format_and_empty_file_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_text("")
    with pytest.raises(GpsMonitorError, match="expected one of csv, jsonl, tdrive"):
        read_track(path, "gpx")
    with pytest.raises(GpsMonitorError, match="expected at least one fix"):
        read_track(path, "tdrive")


def _jump_track(tmp_path: Path) -> Path:
    """A tdrive track (no speed column): 10 s steps of ~110 m, one fix jumped 6.1 km away."""
    path = tmp_path / "jump.txt"
    rows = [(0, 116.40, 39.900), (10, 116.40, 39.901), (20, 116.40, 39.956), (30, 116.40, 39.902)]
    path.write_text(
        "".join(f"7,2008-02-02 15:00:{s:02d},{lon},{lat}\n" for s, lon, lat in rows),
        encoding="utf-8",
    )
    return path


def test_speeds_are_derived_from_good_fixes_never_from_a_jump(tmp_path: Path) -> None:
    # issue 14 item 10: the fix after the jump got 626 km/h from the spike
    track = read_track(_jump_track(tmp_path), "tdrive")["tdrive-7"]
    step_kmh = distance_m(39.900, 116.40, 39.901, 116.40) / 10 * 3.6
    assert track[1].speed_kmh == pytest.approx(step_kmh)
    # the jump itself reports what the terminal last reported, not 2,000 km/h
    assert track[2].speed_kmh == pytest.approx(step_kmh)
    # after the jump: from the last good fix (20 s back), not from the spike (10 s back)
    assert track[3].speed_kmh == pytest.approx(
        distance_m(39.901, 116.40, 39.902, 116.40) / 20 * 3.6
    )
    assert track[3].heading_deg == pytest.approx(0, abs=1)  # still northbound, not back south
    assert max(p.speed_kmh for p in track) < 50


def test_a_real_relocation_derives_the_next_speed_from_the_confirmed_fix(tmp_path: Path) -> None:
    path = tmp_path / "ferry.txt"
    rows = [(0, 39.900), (10, 39.956), (20, 39.9561)]  # 6 km in 10 s, then staying there
    path.write_text("".join(f"8,2008-02-02 15:00:{s:02d},116.4,{lat}\n" for s, lat in rows))
    track = read_track(path, "tdrive")["tdrive-8"]
    assert track[2].speed_kmh == pytest.approx(distance_m(39.956, 116.4, 39.9561, 116.4) / 10 * 3.6)


def test_a_long_geolife_file_name_gives_a_valid_terminal_id(tmp_path: Path) -> None:
    # issue 14 item 16: such a file only replayed with --terminal-id
    body = (
        "Geolife trajectory\nWGS 84\nAltitude is in Feet\nReserved 3\n"
        "0,2,255,My Track,0,0,2,8421376\n0\n"
        "39.984702,116.318417,0,492,39744.1201851852,2008-10-23,02:53:04\n"
    )
    long_a = tmp_path / "000_Trajectory_20081023025304.plt"
    long_b = tmp_path / "000_Trajectory_20081024020959.plt"
    odd = tmp_path / "user 000#trip.plt"
    for path in (long_a, long_b, odd):
        path.write_text(body)
    ids = [next(iter(read_track(p, "geolife"))) for p in (long_a, long_b, odd)]
    assert all(check_terminal_id(t) == t and t.startswith("geolife-") for t in ids)
    assert len(set(ids)) == 3  # the hash suffix keeps names sharing a beginning apart
    assert ids[0] == next(iter(read_track(long_a, "geolife")))  # deterministic
    assert derived_terminal_id("geolife", "20081023025304") == "geolife-20081023025304"
    assert derived_terminal_id("bods", "SN56 ABC/2") == "bods-SN56-ABC-2-" + ids_hash("SN56 ABC/2")


def ids_hash(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]
