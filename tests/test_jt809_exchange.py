"""JT/T 809 duty-exchange bodies (jt809/exchange.py) against published vectors.

Every hex vector is data from the xUnit tests of SmallChi/JT809 (MIT, an independent C#
implementation), commit 4528912cac289aaf333edadd0b297bc1be6071e4; the file each comes from is
named beside it. Only the bytes and the values those tests assert are used, no code. SmallChi's
times are written in its local time (UTC+8): "2020-04-23" there is 2020-04-22T16:00Z here.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jt809 import exchange as x
from jt809.codec import FrameCodec, FrameError

# src/JT809.Protocol.Test/JT809SubMessageBody/JT809_0x1400_0x1402Test.cs (Test_2019_1/2)
ALARM_2019_DATA = (
    "3132333435363738393030000B000000005EA06A00000000005EA06A00000000005EA1BB80D4C14131313131"
    "3100000000000000000000000000013132333435363738393030000000000000000A67666466343534353533"
)
# same file, Test_2019_3: a captured 2019 0x1400 frame
ALARM_2019_FRAME = (
    "5B0000007E00000002140001FEC19001020F0000000000000000005F616C491402000000564A433230323050"
    "54303838A001000000005F5F7B3E000000005F5F7B3E000000005F5F7B3EB2E2413933323238000000000000"
    "000000000000000200000000000000000000000000000000000008B3ACCAB1CDA3B3B5F77E5D"
)
# .../JT809_0x9300_0x9301Test.cs (Test3/Test4): 2019 查岗, object type 2, id "smallchi",
# info id 3344, "reply"
QUERY_2019 = "02736D616C6C6368690000000000000000000000000000000D10000000057265706C79"
# .../JT809_0x1300_0x1301Test.cs (Test1/Test2): 2011 answer, type 1, object "111", info id
# 1234, "22ha22"
QUERY_ANSWER_2011 = "01313131000000000000000000000004D200000006323268613232"
# same file, Test_2019_1/2: responder "smallchi", tel "12345678901", source type 111, sn 99
QUERY_ANSWER_2019 = (
    "01736D616C6C636869000000000000000031323334353637383930310000000000000000003131310000000000"
    "000000000000000000000000006F0000006300000006323268613232"
)
# .../JT809_0x9400_0x9401Test.cs (Test1/Test2): 督办, src 1, fatigue, 2018-09-27 10:24 (+8),
# id 0x123FFAA1, until 11:24 (+8), level 1, "smallchi", "12345678901", "123456@qq.com"
SUPERVISION = (
    "010002000000005BAC3F40123FFAA1000000005BAC4D5001736D616C6C636869000000000000000031323334"
    "353637383930310000000000000000003132333435364071712E636F6D000000000000000000000000000000"
    "00000000"
)
# src/JT809.Protocol.Test/AnalyzeTest.cs (line 28): the same 督办 in a whole 2011 0x9400 frame
# for 粤A12345, colour 2
SUPERVISION_FRAME = (
    "5B000000920000068294000133EFB8010000000000270FD4C141313233343500000000000000000000000000"
    "0294010000005C010002000000005A01AC3F40123FFAA1000000005A01AC4D5001736D616C6C636869000000"
    "000000000031323334353637383930310000000000000000003132333435364071712E636F6D000000000000"
    "000000000000000000000000007AEA5D"
)
# .../JT809_0x1400_0x1401Test.cs: supervision 9898, result 0
SUPERVISION_ANSWER = "000026AA00"
# .../JT809_0x9400_0x9402Test.cs (Test1, Test_2019_1): 劫警 0x000A
WARNING_2011 = "01000A000000005BE792C000000004BDD9BEAF"
WARNING_2019 = (
    "00000000000002DFDC1C35000A000000005EA56104000000005EA56104000000005EA56F14D4C14131323334"
    "35000000000000000000000000000100000000000002DFDC1C350000001600000004BDD9BEAF"
)
# .../JT809_0x9400_0x9403Test.cs (Test1): fatigue 0x0002 "疲劳驾驶报警"
EXCHANGE_ALARM_2011 = "010002000000005BE792C00000000CC6A3C0CDBCDDCABBB1A8BEAF"
# .../JT809_0x9500_0x9503Test.cs: sequence 333, priority 1, "汉_sfdf3dfs"
VEHICLE_TEXT = "0000014D010000000BBABA5F7366646633646673"
# .../JT809_0x1500_0x1503Test.cs: 2011 msg id 9999 result 0; 2019 source type 99, sn 11
VEHICLE_TEXT_ANSWER_2011 = "0000270F00"
VEHICLE_TEXT_ANSWER_2019 = "00630000000B00"
# .../JT809_0x1200_0x1201Test.cs (Test1/Test2): 2011 registration
REGISTRATION_2011 = (
    "31313131313131313131003131313131313131313100313131313131313100000000000000000000000031313131"
    "314141323232323232323232323232"
)
# same file, Test_2019_1/2
REGISTRATION_2019 = (
    "3131313131313131313100313131313131313131310031313131313131310000000000000000000000000000"
    "0000000000000000313233343536373839000000000000313131313141410000000000000000000000000000"
    "00000000000000000032323232323232323232323200"
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_2019_alarm_encodes_byte_for_byte_as_published() -> None:
    alarm = x.Alarm2019(
        source_platform_id="12345678900",
        warn_type=0x000B,
        warn_time=utc(2020, 4, 22, 16),
        start_time=utc(2020, 4, 22, 16),
        end_time=utc(2020, 4, 23, 16),
        plate_number="粤A11111",
        plate_color=1,
        destination_platform_id="12345678900",
        drv_line_id=0,
        info_content="gfdf454553",
    )
    assert x.encode_alarm_2019(alarm).hex().upper() == ALARM_2019_DATA
    assert x.decode_alarm_2019(bytes.fromhex(ALARM_2019_DATA)) == alarm


def test_captured_2019_alarm_frame_has_no_vehicle_envelope_and_decodes_field_by_field() -> None:
    frame = FrameCodec(2019).decode(bytes.fromhex(ALARM_2019_FRAME))
    envelope = x.decode_envelope(frame.msg_id, frame.body, 2019)
    assert (envelope.data_type, envelope.plate_number) == (x.MSG_ALARM_INFO, "")
    alarm = x.decode_alarm_2019(envelope.data)
    assert alarm.source_platform_id == "JC2020PT088"
    assert alarm.warn_type == 0xA001
    assert alarm.warn_time == alarm.start_time == alarm.end_time
    assert alarm.warn_time == datetime.fromtimestamp(0x5F5F7B3E, UTC)
    assert (alarm.plate_number, alarm.plate_color) == ("测A93228", 2)
    assert (alarm.destination_platform_id, alarm.drv_line_id) == ("", 0)
    assert alarm.info_content == "超时停车"
    # and our envelope writes the same bytes
    assert x.encode_envelope(frame.msg_id, envelope, 2019) == frame.body


def test_2011_alarm_envelope_keeps_the_vehicle() -> None:
    envelope = x.Envelope(x.MSG_ALARM_INFO, b"\x01", "粤A12345", 2)
    body = x.encode_envelope(0x1400, envelope, 2011)
    assert body[:21].rstrip(b"\x00").decode("gbk") == "粤A12345" and body[21] == 2
    assert x.decode_envelope(0x1400, body, 2011) == envelope
    with pytest.raises(FrameError, match="data_length says 1 bytes, got 0"):
        x.decode_envelope(0x1400, body[:-1], 2011)


def test_2019_query_decodes_and_encodes_as_published() -> None:
    query = x.decode_query(bytes.fromhex(QUERY_2019), 2019)
    assert query == x.PlatformQuery(2, "smallchi", 3344, "reply", 0)
    assert x.encode_query(query, 2019).hex().upper() == QUERY_2019


def test_2011_query_has_the_12_byte_object_id_of_the_standard() -> None:
    query = x.PlatformQuery(2, "C500123456", 77, "请回复值班人员姓名")
    raw = x.encode_query(query, 2011)
    assert len(raw) == 1 + 12 + 4 + 4 + 18
    assert x.decode_query(raw, 2011) == query
    with pytest.raises(FrameError, match="length says"):
        x.decode_query(raw + b"\x00", 2011)


def test_query_answers_encode_as_published_in_both_versions() -> None:
    answer = x.QueryAnswer(1, "111", 1234, "22ha22")
    assert x.encode_query_answer(answer, 2011).hex().upper() == QUERY_ANSWER_2011
    assert x.decode_query_answer(bytes.fromhex(QUERY_ANSWER_2011), 2011) == answer
    answer_2019 = x.QueryAnswer(
        1, "111", 0, "22ha22", "smallchi", "12345678901", 99, source_data_type=111
    )
    assert x.encode_query_answer(answer_2019, 2019).hex().upper() == QUERY_ANSWER_2019
    assert x.decode_query_answer(bytes.fromhex(QUERY_ANSWER_2019), 2019) == answer_2019


def test_supervision_decodes_as_published_alone_and_in_a_2011_frame() -> None:
    expected = x.SupervisionRequest(
        1, 0x0002, utc(2018, 9, 27, 2, 24), 0x123FFAA1, utc(2018, 9, 27, 3, 24), 1,
        "smallchi", "12345678901", "123456@qq.com",
    )  # fmt: skip
    assert x.decode_supervision(bytes.fromhex(SUPERVISION)) == expected
    assert x.encode_supervision(expected).hex().upper() == SUPERVISION
    frame = FrameCodec(2011).decode(bytes.fromhex(SUPERVISION_FRAME))
    envelope = x.decode_envelope(frame.msg_id, frame.body, 2011)
    assert (envelope.plate_number, envelope.plate_color) == ("粤A12345", 2)
    assert envelope.data_type == x.MSG_SUPERVISION
    assert x.decode_supervision(envelope.data) == expected
    assert x.encode_supervision_answer(9898, 0).hex().upper() == SUPERVISION_ANSWER
    assert x.decode_supervision_answer(bytes.fromhex(SUPERVISION_ANSWER)) == (9898, 0)


def test_superior_warnings_decode_as_published_in_both_versions() -> None:
    warning = x.decode_warning(bytes.fromhex(WARNING_2011), 2011)
    assert (warning.warn_src, warning.warn_type, warning.content) == (1, 0x000A, "劫警")
    assert warning.warn_time == utc(2018, 11, 11, 2, 24)
    assert x.encode_warning(warning, 2011).hex().upper() == WARNING_2011
    fatigue = x.decode_warning(bytes.fromhex(EXCHANGE_ALARM_2011), 2011)
    assert (fatigue.warn_type, fatigue.content) == (0x0002, "疲劳驾驶报警")
    w2019 = x.decode_warning(bytes.fromhex(WARNING_2019), 2019)
    assert (w2019.plate_number, w2019.plate_color, w2019.content) == ("粤A12345", 1, "劫警")
    assert w2019.warn_time == utc(2020, 4, 26, 10, 23)
    assert w2019.end_time == utc(2020, 4, 26, 11, 23)
    alarm = x.decode_alarm_2019(bytes.fromhex(WARNING_2019))
    assert alarm.source_platform_id == "12345678901" and alarm.drv_line_id == 22


def test_vehicle_text_and_its_answer_as_published() -> None:
    text = x.decode_vehicle_text(bytes.fromhex(VEHICLE_TEXT))
    assert text == x.VehicleText(333, 1, "汉_sfdf3dfs")
    assert x.encode_vehicle_text(text).hex().upper() == VEHICLE_TEXT
    assert x.encode_vehicle_text_answer(2011, 9999, 0, 0).hex().upper() == VEHICLE_TEXT_ANSWER_2011
    assert x.decode_vehicle_text_answer(bytes.fromhex(VEHICLE_TEXT_ANSWER_2019), 2019) == (11, 0)
    assert x.encode_vehicle_text_answer(2019, 0, 11, 0)[2:] == bytes.fromhex("0000000B00")


def test_vehicle_registration_as_published_in_both_versions() -> None:
    reg = x.VehicleRegistration("1111111111", "1111111111", "11111111", "11111AA", "222222222222")
    assert x.encode_registration(reg, 2011).hex().upper() == REGISTRATION_2011
    assert x.decode_registration(bytes.fromhex(REGISTRATION_2011), 2011) == reg
    reg_2019 = x.VehicleRegistration(
        "1111111111", "1111111111", "11111111", "11111AA", "222222222222", "123456789"
    )
    assert x.encode_registration(reg_2019, 2019).hex().upper() == REGISTRATION_2019
    assert x.decode_registration(bytes.fromhex(REGISTRATION_2019), 2019) == reg_2019


def test_alarm_result_layouts() -> None:
    assert x.encode_alarm_result(2011, 3344, 1) == bytes.fromhex("00000D1001")
    assert x.decode_alarm_result(x.encode_alarm_result(2019, 0, 1, 99), 2019) == (99, 1)
    assert x.encode_alarm_result(2019, 0, 1, 99)[:2] == b"\x14\x02"
    assert x.encode_alarm_result(2019, 0, 1, 7, x.MSG_EXCHANGE_ALARM) == bytes.fromhex(
        "94030000000701"
    )
