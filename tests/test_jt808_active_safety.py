"""Active safety (issue 12 item 8, T/JSATL 12-2017 "苏标"): the 0x0200 items 0x64-0x67 and the
attachment messages against independent vectors, field by field and re-encoded byte for byte.

Vectors (bytes only) from SmallChi/JT808, commit c9552b0f9eadc6906aeeaa501335c312ce082232,
src/JT808.Protocol.Extensions/JT808.Protocol.Extensions.SuBiao.Test/: JT808_0x0200_0x64_Test.cs,
JT808_0x0200_0x65_Test.cs, JT808_0x0200_0x66_Test.cs, JT808_0x0200_0x67_Test.cs,
JT808_0x1210_Test.cs, JT808_0x1211_Test.cs, JT808_0x1212_Test.cs, JT808_0x9208_Test.cs,
JT808_0x9212_Test.cs; and the data frame from SmallChi/JTActiveSafety, commit
dbab79a98e436cd9fdf1db1c2f91d9c849eb02a9, src/JTActiveSafety.Protocol.Test/
JTActiveSafetySerializerTest.cs.
"""

from __future__ import annotations

from typing import Any

from ingest.jt808 import jsatl
from ingest.jt808 import messages as m

# each 0x0200 of these tests: alarm 1, status 2, lat 12222222, lon 132444444, alt 40, speed 60,
# heading 0, 2018-07-15 10:10:10, then one active-safety item
BASE = "000000010000000200BA7F0E07E4F11C0028003C000018071510101 0".replace(" ", "")
IDENT = "34343434343434" + "191210183100" + "03" + "02" + "00"  # 4444444, 2019-12-10 18:31, seq 3
ADAS = "642F" + "000000010C0605120A0B100F1100070000000D0000000E1912111831000013" + IDENT
DSM = "652F" + "000000010C060512010203041100070000000D0000000E1912111831000013" + IDENT
TYRE = ("663B" + "000000010C1100070000000D0000000E1912111831000013" + IDENT
        + "02" + "040001000300050002" + "090006000800" + "0A0007")  # fmt: skip
BSD = "6729" + "000000010C091100070000000D0000000E1912111831000013" + IDENT


def _item(hex_body: str) -> dict[str, Any]:
    report = m.decode_location(bytes.fromhex(BASE + hex_body))
    _, _, extras = m.decode_items(report.items)
    [item] = extras["active_safety"]
    assert "jt808_items" not in extras
    item_id, value = jsatl.encode_item(item)
    assert bytes([item_id, len(value)]) + value == bytes.fromhex(hex_body)  # byte for byte
    return item


def _common(item: dict[str, Any]) -> None:
    assert (item["alarm_id"], item["flag"], item["speed_kmh"], item["altitude_m"]) == (1, 12, 17, 7)
    assert (item["latitude"], item["longitude"]) == (13e-6, 14e-6)
    assert item["bcd_time"] == "191211183100" and item["vehicle_status"] == 19
    assert item["identification"] == {
        "terminal_id": "4444444", "bcd_time": "191210183100", "sequence": 3, "attachments": 2,
    }  # fmt: skip


def test_0x64_adas_item_field_by_field() -> None:
    item = _item(ADAS)
    _common(item)
    assert (item["source"], item["type"], item["level"]) == ("adas", 6, 5)
    assert item["name"] == "adas_road_sign_overspeed" and item["type_text"] == "道路标识超限报警"
    assert (item["front_vehicle_speed_kmh"], item["front_distance_100ms"]) == (18, 10)
    assert (item["departure_type"], item["road_sign_type"], item["road_sign_data"]) == (11, 16, 15)


def test_0x65_dsm_item_field_by_field() -> None:
    item = _item(DSM)
    _common(item)
    assert (item["source"], item["type"], item["level"], item["fatigue_degree"]) == (
        "dsm", 6, 5, 18,
    )  # fmt: skip
    assert item["name"] == "dsm_type_0x06"  # 0x06 is not a DSM type the standard names
    assert item["reserved_hex"] == "01020304"


def test_0x66_tyre_item_field_by_field() -> None:
    item = _item(TYRE)
    _common(item)
    assert item["tyres"] == [
        {"tyre_position": 4, "type": 1, "pressure_kpa": 3, "temperature_c": 5, "battery_pct": 2},
        {"tyre_position": 9, "type": 6, "pressure_kpa": 8, "temperature_c": 10, "battery_pct": 7},
    ]
    assert item["name"] == "tyre_pressure"  # bits 0 | 1 | 2 of the two events, first named


def test_0x67_blind_spot_item_field_by_field() -> None:
    item = _item(BSD)
    _common(item)
    assert (item["source"], item["type"]) == ("bsd", 9)


def test_a_cut_active_safety_item_is_kept_as_hex() -> None:
    report = m.decode_location(bytes.fromhex(BASE + "6405" + "0000000101"))
    _, _, extras = m.decode_items(report.items)
    assert "active_safety" not in extras and extras["jt808_items"] == {"0x64": "0000000101"}


def test_0x1210_attachment_information() -> None:
    body = bytes.fromhex(
        "34343434343434"
        + IDENT
        + "31" * 32
        + "00"
        + "02"
        + "08"
        + b"filename".hex()
        + "00000009"
        + "09"
        + b"filename1".hex()
        + "0000000A"
    )
    info = jsatl.decode_attachment_info(body)
    assert (info.terminal_id, info.alarm_number, info.info_type) == ("4444444", "1" * 32, 0)
    ident = jsatl.decode_identification(info.identification)
    assert (ident.terminal_id, ident.bcd_time, ident.sequence, ident.attachments) == (
        "4444444", "191210183100", 3, 2,
    )  # fmt: skip
    assert info.files == ((b"filename", 9), (b"filename1", 10))
    assert jsatl.encode_attachment_info(info) == body


def test_0x1211_0x1212_file_information() -> None:
    body = bytes.fromhex("0846696C654E616D650200000001")
    assert jsatl.decode_file_info(body) == (b"FileName", 2, 1)
    assert jsatl.encode_file_info(b"FileName", 2, 1) == body


def test_0x9208_and_0x9212_byte_for_byte() -> None:
    ident = bytes.fromhex("34343434343434191210183100030201")
    body = jsatl.encode_attachment_request("192.168.1.1", 5000, 5001, ident, "1" * 32)
    assert body.hex().upper() == (
        "0B3139322E3136382E312E311388138934343434343434191210183100030201" + "31" * 32 + "00" * 16
    )
    assert jsatl.decode_attachment_request(body) == ("192.168.1.1", 5000, 5001, ident, "1" * 32)
    vector = bytes.fromhex("0846696C654E616D65010202000000140000000A000000280000001E")
    # the vector's result code is 2 (the standard names 0 done and 1 resend); ours says 1
    assert jsatl.decode_file_done_reply(vector) == (b"FileName", 1, 2, [(20, 10), (40, 30)])
    assert jsatl.encode_file_done_reply(b"FileName", 1, [(20, 10), (40, 30)], result=2) == vector
    ours = jsatl.encode_file_done_reply(b"FileName", 1, [(20, 10), (40, 30)])
    assert jsatl.decode_file_done_reply(ours)[2] == 1
    done = jsatl.encode_file_done_reply(b"FileName", 1, [])
    assert done == bytes.fromhex("0846696C654E616D65010000")


def test_file_data_frame() -> None:
    wire = bytes.fromhex(
        "30 31 63 64 61 6C 61 72 6D 2E 78 6C 73 78" + " 00" * 40
        + " 00 00 00 01 00 00 00 05 01 02 03 04 05"
    )  # fmt: skip
    assert jsatl.decode_data_head(wire[: jsatl.DATA_HEAD_BYTES]) == (b"alarm.xlsx", 1, 5)
    assert wire[jsatl.DATA_HEAD_BYTES :] == bytes([1, 2, 3, 4, 5])
    assert jsatl.encode_data_frame(b"alarm.xlsx", 1, bytes([1, 2, 3, 4, 5])) == wire


def test_adas_and_dsm_items_become_active_safety_alarms_with_level_and_alarm_number() -> None:
    from rules_factory import Runner, context, no_offline, position

    from gps_monitor.active_safety import alarm_key

    def changed(item: dict[str, Any], **fields: Any) -> dict[str, Any]:
        return jsatl.decode_item(*jsatl.encode_item(item | fields))  # through the wire again

    adas = changed(_item(ADAS), type=0x01, level=2, flag=0)  # forward collision, 二级, event
    dsm_start = changed(_item(DSM), type=0x01, level=1, flag=1)  # fatigue, 一级, starts
    dsm_end = changed(dsm_start, flag=2)
    run = Runner(context("coach", rules=no_offline()))
    run.feed([
        position("2024-01-10 10:00:00", speed_kmh=60, extras={"active_safety": [adas]}),
        position("2024-01-10 10:00:05", speed_kmh=60, extras={"active_safety": [dsm_start]}),
        position("2024-01-10 10:00:10", speed_kmh=60, extras={"active_safety": [dsm_start]}),
        position("2024-01-10 10:00:30", speed_kmh=60, extras={"active_safety": [dsm_end]}),
    ])  # fmt: skip
    events = [(a.details["name"], a.event, a.level) for a in run.of("active_safety")]
    assert events == [
        ("adas_forward_collision", "closed", 2),  # an event: opened and ended at once
        ("dsm_fatigue", "opened", 3),  # 一级 -> 一般; the repeated start adds nothing
        ("dsm_fatigue", "closed", 3),
    ]
    first = run.of("active_safety")[0]
    number = alarm_key("T1", bytes.fromhex(adas["identification_hex"]))
    assert first.details["alarm_key"] == number and len(number) == 32
    assert first.details["type_text"] == "前向碰撞报警" and first.details["jsatl_level"] == 2
    assert first.details["identification"]["attachments"] == 2
    closed = run.of("active_safety", "closed")[1]
    assert (closed.ended_at - closed.started_at).total_seconds() == 25


def test_an_alarm_the_terminal_sends_again_is_raised_once() -> None:
    """The same ADAS event (same identification, hence the same alarm number) in a later report
    (the terminal resending, or repeating its last report in a 0x0201 answer or while tracked)
    is one alarm, not one per report; a new identification is a new alarm."""
    from rules_factory import Runner, context, no_offline, position

    adas = jsatl.decode_item(*jsatl.encode_item(_item(ADAS) | {"type": 0x01, "flag": 0}))
    ident = bytearray(bytes.fromhex(adas["identification_hex"]))
    ident[13] ^= 0xFF  # another sequence number: another alarm
    other = adas | {"identification_hex": bytes(ident).hex()}
    run = Runner(context("coach", rules=no_offline()))
    run.feed([
        position("2024-01-10 10:00:00", speed_kmh=60, extras={"active_safety": [adas]}),
        position("2024-01-10 10:00:01", speed_kmh=60, extras={"active_safety": [adas]}),
        position("2024-01-10 10:00:02", speed_kmh=60, extras={"active_safety": [adas]}),
        position("2024-01-10 10:00:03", speed_kmh=60, extras={"active_safety": [other]}),
    ])  # fmt: skip
    starts = [a.started_at.second for a in run.of("active_safety")]
    assert starts == [0, 3]


def test_the_simulators_position_answer_does_not_repeat_its_last_alarm() -> None:
    """jt808-sim answers 0x8201 / follows 0x8202 with its last report timed now: without the
    ADAS item of that report (else each answer was the alarm again, with a fresh 0x9208 and
    its attachments uploaded again)."""
    from ingest.jt808.attachments_sim import adas_report
    from ingest.jt808.sim import SimTerminal

    terminal = SimTerminal("13900000012")
    terminal.last_report = adas_report("T000012", 1, 2)
    answer = terminal.commands.current_report()
    assert 0x64 not in answer.items and 0x01 in answer.items  # mileage stays
    assert answer.latitude_e6 == terminal.last_report.latitude_e6
