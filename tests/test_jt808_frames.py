"""Every frame of ../shared/data/jt808_frames.tsv decodes to the values its source's test asserts.

Where the source test only says ``verifyPosition`` / ``verifyNull``, the base fields come from the
file's research-helper decode column, which was checked by hand against the byte layout of
JT/T 808-2013/2019 (and agrees with this independent decoder); the comments say which.
Times: the BCD time is GMT+8, so 07:21:21 on the wire is 23:21:21 UTC the day before.
"""

from __future__ import annotations

import csv
import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from gps_monitor.payload import parse_position
from ingest.jt808 import messages as m
from ingest.jt808.codec import FrameError, FrameSplitter, decode_frame, unescape

SHARED_DATA = Path(
    os.environ.get(
        "GPS_MONITOR_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"
    )
)
FRAMES_TSV = SHARED_DATA / "jt808_frames.tsv"
CST = timezone(timedelta(hours=8))


def cst(*args: int) -> datetime:
    return datetime(*args, tzinfo=CST).astimezone(UTC)  # type: ignore[misc]


# key: first 36 hex characters of hex_wire (unique in the file)
EXPECTED: dict[str, dict[str, Any]] = {
    # traccar: heartbeat, verifyNull (no position)
    "7e0002000004304832546500b7ca7e": {
        "header": (0x0002, "043048325465", 183, None),
        "kind": "none",
    },
    # traccar: 2013 auth, body is the ASCII code without a length prefix
    "7e0102000e01351122112200066175746865": {
        "header": (0x0102, "013511221122", 6, None),
        "auth": ("authentication", None, None),
    },
    "7e0102001009402784947000843230313131": {
        "header": (0x0102, "094027849470", 132, None),
        "auth": ("2011110811332196", None, None),
    },
    # traccar: 2013 register (45-byte body)
    "7e0100002d01351122112200050000000037": {
        "header": (0x0100, "013511221122", 5, None),
        "register": (0, 0, "70107", "HB-R03GBD", "2366104", 2, "苏BA6860", "2013"),
    },
    # traccar: 2011 layout (33-byte body, 8-byte model) without a version flag
    "7e01000021013345678906000f002c012f37": {
        "header": (0x0100, "013345678906", 15, None),
        "register": (44, 303, "70111", "BSJ-M7B ", "0000000", 1, "粤B88888", "2011"),
    },
    # traccar: 2019 register, IMEI as terminal id, empty plate
    "7e0100405c01000008664960775821645218": {
        "header": (0x0100, "00000866496077582164", 21016, 1),
        "register": (0, 0, "", "MD300", "866496077582164", 4, "", "2019"),
    },
    # traccar verifyPosition; fields per research decode (checked)
    "7e0200002a01383350174400190000000000": {
        "header": (0x0200, "013833501744", 25, None),
        "positions": [
            {
                "fix_time": cst(2015, 8, 18, 7, 21, 21),
                "latitude": 22.6426,
                "longitude": 114.032984,
                "altitude_m": 128,
                "speed_kmh": 0.0,
                "heading_deg": 8,
                "fix_valid": True,
                "acc_on": False,
                "status_flags": 0xC2,
                "mileage_km": 75.7,
                "extras": {"fuel_l": 0.0, "tachograph_speed_kmh": 0.0},
            }
        ],
    },
    # traccar verifyPosition: south latitude from status bit 2; rssi 27, 4 satellites
    "7e0200002c00160128561400030000000000": {
        "header": (0x0200, "001601285614", 3, None),
        "positions": [
            {
                "fix_time": cst(2017, 1, 17, 10, 5, 42),
                "latitude": -6.152508,
                "longitude": 106.720475,
                "altitude_m": 22,
                "speed_kmh": 0.0,
                "fix_valid": True,
                "acc_on": True,
                "status_flags": 0x00040007,
                "satellites": 4,
                "mileage_km": 4326.4,
                "extras": {"signal_strength": 27},
            }
        ],
    },
    # traccar verifyAttribute rpm=55.0 (from the "$OBD-RT" vendor item 0xE6)
    "7e0200009e017721028890061b0000000000": {
        "header": (0x0200, "017721028890", 1563, None),
        "positions": [
            {
                "fix_time": cst(2024, 1, 10, 17, 26, 5),
                "latitude": 31.060692,
                "longitude": 121.414285,
                "altitude_m": 43,
                "speed_kmh": 45.0,
                "satellites": 22,
                "mileage_km": 57.2,
                "extras": {"signal_strength": 25, "obd": {"rpm": 55.0}},
            }
        ],
    },
    # traccar verifyAttribute alarm=tampering: traccar maps alarm bit 16 or 17 to tampering
    # (bits 15-17 are reserved in JT/T 808-2013); the flags are kept as sent: bit 17.
    "7e02000033421030000018004c0002000000": {
        "header": (0x0200, "421030000018", 76, None),
        "positions": [
            {
                "fix_time": cst(2021, 1, 18, 9, 58, 53),
                "alarm_flags": 1 << 17,
                "latitude": 22.375883,
                "longitude": 113.562653,
                "speed_kmh": 24.1,
                "heading_deg": 252,
                "altitude_m": 12,
            }
        ],
    },
    # traccar verifyPositions: 8 positions, type 1 = blind-area re-upload
    "7e0704014301356777777707f50008010026": {
        "header": (0x0704, "013567777777", 2037, None),
        "reupload": True,
        "count": 8,
        "positions": {
            0: {
                "fix_time": cst(2016, 5, 27, 9, 6, 24),
                "latitude": 22.639634,
                "longitude": 114.031952,
                "speed_kmh": 0.0,
                "fix_valid": True,
            },
            7: {
                "fix_time": cst(2016, 5, 27, 9, 10, 2),
                "latitude": 22.64055,
                "longitude": 114.032432,
            },
        },
    },
    # traccar verifyAttribute satellites=14 (2019 header, type 0). The file's note says
    # "speed raw 22 = 2.2 km/h"; the bytes say otherwise: altitude 0x0016 = 22 m, speed 0x0000.
    "7e0704402d0100000866496077582164881d": {
        "header": (0x0704, "00000866496077582164", 34845, 1),
        "reupload": False,
        "count": 1,
        "positions": {
            0: {
                "satellites": 14,
                "speed_kmh": 0.0,
                "altitude_m": 22,
                "latitude": -27.263378,
                "longitude": 153.037383,
                "fix_time": cst(2026, 5, 9, 16, 42, 27),
            }
        },
    },
    # traccar Jt808FrameDecoderTest: pure escaping vector, not a message
    "7e307d02087d01557e": {"unescaped": "307e087d55"},
    # SmallChi JT808_0x0200Test
    "7e0200002601122334455000000000000100": {
        "header": (0x0200, "011223344550", 0, None),
        "positions": [
            {
                "alarm_flags": 1,
                "status_flags": 2,
                "latitude": 12.222222,
                "longitude": 132.444444,
                "altitude_m": 40,
                "speed_kmh": 6.0,
                "heading_deg": 0,
                "fix_time": cst(2018, 7, 15, 10, 10, 10),
                "mileage_km": 10.0,
                "extras": {"fuel_l": 5.5},
            }
        ],
    },
    # SmallChi JT808_0x0704Test: MsgNum 8888, 2 positions, type 0
    "7e0704005311223344556622b80002000026": {
        "header": (0x0704, "112233445566", 8888, None),
        "reupload": False,
        "count": 2,
        "positions": {
            0: {
                "alarm_flags": 1,
                "status_flags": 2,
                "latitude": 12.222222,
                "longitude": 132.444444,
                "speed_kmh": 6.0,
                "heading_deg": 0,
                "fix_time": cst(2018, 7, 15, 10, 10, 10),
                "mileage_km": 10.0,
                "extras": {"fuel_l": 5.5},
            },
            1: {
                "alarm_flags": 2,
                "status_flags": 1,
                "latitude": 13.333333,
                "longitude": 132.555555,
                "speed_kmh": 5.4,
                "heading_deg": 120,
                "fix_time": cst(2018, 7, 15, 10, 10, 30),
                "mileage_km": 9.6,
                "fix_valid": False,
                "acc_on": True,
                "extras": {"fuel_l": 6.6},
            },
        },
    },
    # SmallChi JT808_0x0100Test (2019): phone "123456789" once leading zeros are stripped
    "7e010040540100000000000123456789000a": {
        "header": (0x0100, "00000000000123456789", 10, 1),
        "terminal_id": "123456789",
        "register": (40, 50, "1234", "smallchi123", "CHI123", 1, "粤A12345", "2019"),
    },
    # go-jt808 parse_test 0x0102 (2019)
    "7e0102402f01000000000172998417380000": {
        "header": (0x0102, "00000000017299841738", 0, 1),
        "auth": ("17299841738", "123456789012345", "3.7.15"),
    },
    # go-jt808 parse_test 0x0100 (2019)
    "7e0100405301000000000172998417380000": {
        "header": (0x0100, "00000000017299841738", 0, 1),
        "register": (31, 115, "cd", "www.808.com", "7654321", 1, "测A1234", "2019"),
    },
    # go-jt808 jt808_test 2019 heartbeat
    "7e0002400001000000000172998417380000": {
        "header": (0x0002, "00000000017299841738", 0, 1),
        "kind": "none",
    },
    # go-jt808 t_0x0200_addition_test: raw units 11 -> 1.1 km, 22 -> 2.2 L, 33 -> 3.3 km/h
    "7e020000800123456789017fff0000040000": {
        "header": (0x0200, "012345678901", 32767, None),
        "positions": [
            {
                "mileage_km": 1.1,
                "satellites": 40,
                "fix_valid": False,
                "alarm_flags": 0x400,
                "status_flags": 0x800,
                "speed_kmh": 0.3,
                "heading_deg": 99,
                "altitude_m": 312,
                "extras": {
                    "fuel_l": 2.2,
                    "tachograph_speed_kmh": 3.3,
                    "manual_alarm_event_id": 44,
                    "vehicle_signal_flags": 99,
                    "io_status_flags": 10,
                    "signal_strength": 30,
                    "analog": {"ad0": 20, "ad1": 0},
                    "overspeed_alarm": {"location_type": 0x42, "area_id": 0x42},
                    "area_alarm": {"location_type": 0x4D, "area_id": 0x4D, "direction": 0x4D},
                    "route_time_alarm": {"section_id": 0x58, "duration_s": 0x58, "result": 0x58},
                },
            }
        ],
    },
    # go-jt808 frame_reader_test: two frames in one read
    "7e000200000123456789017fff0a7e7e0100": {
        "frames": [(0x0002, "012345678901", 32767), (0x0100, "014419999999", 1)],
    },
}


def _rows() -> list[Any]:
    if not FRAMES_TSV.exists():
        return [pytest.param(None, id="jt808_frames.tsv-absent")]
    with FRAMES_TSV.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [pytest.param(row, id=f"{i:02d}-{row['msg_id']}") for i, row in enumerate(rows)]


def _check(actual: dict[str, Any], expected: dict[str, Any], where: str) -> None:
    for key, value in expected.items():
        assert key in actual, f"{where}: {key} missing"
        if isinstance(value, dict):
            _check(actual[key], value, f"{where}.{key}")
        elif isinstance(value, float):
            assert actual[key] == pytest.approx(value, abs=1e-9), f"{where}.{key}"
        else:
            assert actual[key] == value, f"{where}.{key}"


def _positions(frame: Any, reports: list[m.LocationReport], reupload: bool | None) -> list[dict]:
    if reupload is None:
        evidence = [m.location_evidence(frame)]
    else:
        evidence = m.batch_evidence(frame, m.decode_batch(frame.body))
    out = []
    for report, proof in zip(reports, evidence, strict=True):
        contract = m.to_contract(report, utc_offset_min=480, evidence=proof, reupload=reupload)
        # the object must satisfy the ingest MQTT contract as the ingest worker reads it
        parsed = parse_position(contract, frame.header.terminal_id)
        contract["fix_time"] = parsed.fix_time
        out.append(contract)
    if reupload is None:
        assert out[0]["extras"]["raw_frame_hex"] == frame.wire.hex()
    else:  # the frame once, on the first report; each report its own bytes
        assert out[0]["extras"]["raw_frames_hex"] == {"1": frame.wire.hex()}
        assert all("raw_frames_hex" not in p["extras"] for p in out[1:])
        for p, report in zip(out, reports, strict=True):
            assert m.decode_location(bytes.fromhex(p["extras"]["raw_report_hex"])) == report
    return out


@pytest.mark.parametrize("row", _rows())
def test_frame_decodes_to_the_values_its_source_asserts(row: dict[str, str] | None) -> None:
    if row is None:
        pytest.skip(f"{FRAMES_TSV} not found (set GPS_MONITOR_SHARED_DATA)")
    wire = bytes.fromhex(row["hex_wire"])
    expected = EXPECTED[row["hex_wire"].lower()[:36]]
    if "unescaped" in expected:
        assert unescape(wire[1:-1]).hex() == expected["unescaped"]
        with pytest.raises(FrameError):
            decode_frame(wire[1:-1], wire)
        return
    candidates = FrameSplitter().feed(wire)
    frames = [decode_frame(content, raw) for content, raw in candidates]
    if "frames" in expected:
        assert [(f.header.msg_id, f.header.phone, f.header.serial) for f in frames] == expected[
            "frames"
        ]
        return
    assert len(frames) == 1
    frame = frames[0]
    assert frame.wire == wire
    header = frame.header
    assert (header.msg_id, header.phone, header.serial, header.version) == expected["header"]
    assert header.terminal_id == expected.get("terminal_id", header.phone.lstrip("0"))
    if "register" in expected:
        request = m.decode_register(frame.body, is_2019=header.is_2019)
        assert (
            request.province_id,
            request.city_id,
            request.maker_id,
            request.model,
            request.device_id,
            request.plate_color,
            request.plate_number,
            request.layout,
        ) == expected["register"]
    elif "auth" in expected:
        auth = m.decode_auth(frame.body, is_2019=header.is_2019)
        assert (auth.auth_code, auth.imei, auth.software_version) == expected["auth"]
    elif header.msg_id == m.MSG_LOCATION:
        [position] = _positions(frame, [m.decode_location(frame.body)], None)
        _check(position, expected["positions"][0], "position")
    elif header.msg_id == m.MSG_BATCH:
        batch = m.decode_batch(frame.body)
        assert batch.reupload is expected["reupload"]
        positions = _positions(frame, batch.reports, batch.reupload)
        assert len(positions) == expected["count"]
        assert all(p["reupload"] is expected["reupload"] for p in positions)
        for index, values in expected["positions"].items():
            _check(positions[index], values, f"position[{index}]")
    else:
        assert expected["kind"] == "none" and frame.body == b""


def test_every_expectation_matches_a_frame_in_the_file() -> None:
    if not FRAMES_TSV.exists():
        pytest.skip(f"{FRAMES_TSV} not found")
    with FRAMES_TSV.open(encoding="utf-8") as handle:
        keys = {row["hex_wire"].lower()[:36] for row in csv.DictReader(handle, delimiter="\t")}
    assert keys == set(EXPECTED)
