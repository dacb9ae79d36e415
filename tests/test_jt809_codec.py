"""JT/T 809 framing, CRC, escaping, encryption and bodies against published frames.

Every hex vector below is data taken from the xUnit tests of SmallChi/JT809 (MIT, an
independent C# implementation), commit 4528912 ("v2.2.8"); the file each comes from is named
beside it. Only the bytes and the values those tests assert are used, no code.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gps_monitor.models import Position
from jt809 import messages as m
from jt809.codec import (
    EncryptionKeys,
    FrameCodec,
    FrameError,
    FrameSplitter,
    crc16,
    crypt,
    escape,
    unescape,
)

# src/JT809.Protocol.Test/JT809Packages/JT809_0x1001PackageTest.cs (Test1/Test2): a 2011 login,
# MsgSN 133, access code 20180920, EncryptKey 9999 (flag 0), user 20180920, password
# "20180920", down link 127.0.0.1:809.
LOGIN_2011 = (
    "5B000000480000008510010133EFB8010000000000270F0133EFB832303138303932303132372E302E302E31"
    "000000000000000000000000000000000000000000000003296A915D"
)
# src/JT809.Protocol.Test/JT809Packages/JT809_0x1001EncryptPackageTest.cs: the same login
# encrypted with M1=30000000, IA1=20000000, IC1=20000000 and key 256178.
LOGIN_2011_ENCRYPTED = (
    "5B000000480000008510010133EFB8010000010003E8B2D37D9CC4900C77DC78F8676527D8AE12243CFB64CC"
    "2FBA619AEFAD33ACCB3256F67BFF19DF33097841098665703FE36E5D"
)
KEYS = EncryptionKeys(m1=30000000, ia1=20000000, ic1=20000000)
# src/JT809.Protocol.Test/JT809SubMessageBody/JT809_0x1200_0x1201Test.cs (line 124): a 2019
# frame whose header time 0x5EA507B8 contains 5E, escaped as 5E 02.
VEHICLE_REGISTRATION_2019 = (
    "5B000000AC000006821200013415F4010000000000270F000000005E02A507B8D4C141313233343500000000"
    "0000000000000000000112010000006E31313131313131313131003131313131313131313100313131313131"
    "3131000000000000000000000000000000000000000000003132333435363738390000000000003131313131"
    "41410000000000000000000000000000000000000000000000323232323232323232323232006D7A5D"
)
# src/JT809.Protocol.Test/AnalyzeTest.cs (line 28): a 2011 frame with two 5A 01 escapes (5B in
# the body).
ESCAPED_2011 = (
    "5B000000920000068294000133EFB8010000000000270FD4C141313233343500000000000000000000000000"
    "0294010000005C010002000000005A01AC3F40123FFAA1000000005A01AC4D5001736D616C6C636869000000"
    "000000000031323334353637383930310000000000000000003132333435364071712E636F6D000000000000"
    "000000000000000000000000007AEA5D"
)
# src/JT809.Protocol.Test/JT809SubMessageBody/JT809_0x1400_0x1402Test.cs (Test_2019_3): a
# captured 2019 0x1400 frame.
ALARM_2019 = (
    "5B0000007E00000002140001FEC19001020F0000000000000000005F616C491402000000564A433230323050"
    "54303838A001000000005F5F7B3E000000005F5F7B3E000000005F5F7B3EB2E2413933323238000000000000"
    "000000000000000200000000000000000000000000000000000008B3ACCAB1CDA3B3B5F77E5D"
)
# src/JT809.Protocol.Test/JT809SubMessageBody/JT809_0x1200_0x1202Test.cs (Test1/Test2): 2011
# GNSS data of 2012-07-19 15:15:15, lon 133123456, lat 24123456, vec1 50, vec2 51, vec3 150,
# direction 45, altitude 45, state 3, alarm 257.
GNSS_2011 = "00130707DC0F0F0F07EF4D80017018400032003300000096002D002D0000000300000101"
# .../JT809_0x1200_0x1203Test.cs (Test1): three of them at 15:15:15, 16:16:16, 17:17:17.
REUPLOAD_2011 = (
    "0300130707DC0F0F0F07EF4D80017018400032003300000096002D002D000000030000010100130707DC1010"
    "1007EF4D80017018400032003300000096002D002D000000030000010100130707DC11111107EF4D80017018"
    "400032003300000096002D002D0000000300000101"
)
# .../JT809_0x1400_0x1402Test.cs (Test1): warn src 1, type 0x000B, time 0x5BAA5B80, info id
# 3344, text "gfdf454553".
ALARM_INFO_2011 = "01000B000000005BAA5B8000000D100000000A67666466343534353533"


def test_crc16_is_ccitt_false_check_value() -> None:
    assert crc16(b"123456789") == 0x29B1


def test_login_frame_decodes_as_published() -> None:
    frame = FrameCodec(2011).decode(bytes.fromhex(LOGIN_2011))
    header = frame.header
    assert (header.msg_length, header.msg_sn, header.msg_id) == (72, 133, m.MSG_LOGIN)
    assert (header.access_code, header.encrypt_key, header.version) == (20180920, 9999, b"\1\0\0")
    assert m.decode_login(frame.body) == m.Login(20180920, "20180920", "127.0.0.1", 809)


def test_login_frame_encodes_byte_for_byte() -> None:
    codec = FrameCodec(2011, access_code=20180920)
    body = m.encode_login(m.Login(20180920, "20180920", "127.0.0.1", 809))
    assert codec.encode(m.MSG_LOGIN, body, 133, encrypt_key=9999).hex().upper() == LOGIN_2011


def test_encrypted_login_round_trips_with_published_keys() -> None:
    codec = FrameCodec(2011, access_code=20180920, keys=KEYS, encrypt=True)
    body = m.encode_login(m.Login(20180920, "20180920", "127.0.0.1", 809))
    wire = codec.encode(m.MSG_LOGIN, body, 133, encrypt_key=256178)
    assert wire.hex().upper() == LOGIN_2011_ENCRYPTED
    frame = codec.decode(bytes.fromhex(LOGIN_2011_ENCRYPTED))
    assert frame.header.encrypt_flag == 1 and frame.header.encrypt_key == 256178
    assert m.decode_login(frame.body).password == "20180920"


def test_simple_encryption_matches_published_vector() -> None:
    # src/JT809.Protocol.Test/JT809Encrypt/JT809EncryptTest.cs: 01..07 with key 256178.
    assert crypt(bytes(range(1, 8)), 256178, KEYS).hex().upper() == "D34C7078A73A41"
    assert crypt(bytes.fromhex("D34C7078A73A41"), 256178, KEYS) == bytes(range(1, 8))


def test_encrypted_frame_without_keys_is_refused() -> None:
    with pytest.raises(FrameError) as caught:
        FrameCodec(2011).decode(bytes.fromhex(LOGIN_2011_ENCRYPTED))
    assert caught.value.reason == "body"


def test_2019_header_with_escaped_time_decodes_and_reencodes() -> None:
    wire = bytes.fromhex(VEHICLE_REGISTRATION_2019)
    # That implementation writes version 01 00 00 in 2019 headers too.
    codec = FrameCodec(2019, access_code=0x013415F4, version_flag=b"\x01\x00\x00")
    frame = codec.decode(wire)
    assert frame.header.msg_length == 0xAC and frame.header.msg_id == m.MSG_VEHICLE_DYNAMIC
    assert frame.header.sent_at == datetime.fromtimestamp(0x5EA507B8, UTC)
    vehicle = m.decode_vehicle_message(frame.body)
    assert (vehicle.plate_number, vehicle.plate_color, vehicle.data_type) == ("粤A12345", 1, 0x1201)
    sent_at = frame.header.sent_at
    again = codec.encode(
        frame.msg_id, frame.body, frame.header.msg_sn, encrypt_key=9999, sent_at=sent_at
    )
    assert again == wire


def test_2019_captured_alarm_frame_passes_crc_and_length() -> None:
    frame = FrameCodec(2019).decode(bytes.fromhex(ALARM_2019))
    assert frame.msg_id == m.MSG_VEHICLE_ALARM and frame.header.version == b"\x01\x02\x0f"
    assert frame.header.sent_at == datetime.fromtimestamp(0x5F616C49, UTC)


def test_escaped_2011_frame_round_trips() -> None:
    wire = bytes.fromhex(ESCAPED_2011)
    codec = FrameCodec(2011, access_code=0x0133EFB8)
    frame = codec.decode(wire)
    assert frame.body.count(0x5B) == 2 and frame.header.msg_length == 0x92
    assert codec.encode(frame.msg_id, frame.body, frame.header.msg_sn, encrypt_key=9999) == wire


def test_escape_covers_all_four_bytes_and_inverts() -> None:
    data = bytes([0x01, 0x5B, 0x5A, 0x5D, 0x5E, 0x02])
    assert escape(data) == bytes.fromhex("015a015a025e015e0202")
    assert unescape(escape(data)) == data
    with pytest.raises(FrameError) as caught:
        unescape(bytes.fromhex("015a03"))
    assert caught.value.reason == "escape"


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda b: b[:-3] + bytes([b[-3] ^ 1]) + b[-2:], "crc"),
        (lambda b: b[:4] + bytes([b[4] + 1]) + b[5:], "crc"),
        (lambda b: b[:10] + b"\x5a\x07" + b[12:], "escape"),
        (lambda b: b[:8] + b[-1:], "truncated"),
    ],
)
def test_damaged_frames_raise_with_reason(damage, reason) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FrameError) as caught:
        FrameCodec(2011).decode(damage(bytes.fromhex(LOGIN_2011)))
    assert caught.value.reason == reason


def test_length_that_lies_is_refused_even_with_a_good_crc() -> None:
    codec = FrameCodec(2011)
    content = bytearray(unescape(bytes.fromhex(LOGIN_2011)[1:-1]))
    content[3] = 0x50  # msg_length 80, the frame is 72
    content[-2:] = crc16(content[:-2]).to_bytes(2, "big")
    with pytest.raises(FrameError) as caught:
        codec.decode(b"\x5b" + escape(bytes(content)) + b"\x5d")
    assert caught.value.reason == "length"


def test_splitter_skips_garbage_and_joins_split_frames() -> None:
    login = bytes.fromhex(LOGIN_2011)
    splitter = FrameSplitter(max_frame_bytes=4096)
    assert splitter.feed(b"\x00\xffjunk" + login[:10]) == []
    assert splitter.feed(login[10:] + login + login[:3]) == [login, login]
    assert splitter.feed(login[3:]) == [login]
    assert splitter.garbage_bytes == 6


def test_splitter_drops_oversize_frames() -> None:
    splitter = FrameSplitter(max_frame_bytes=64)
    assert splitter.feed(bytes.fromhex(LOGIN_2011)) == []  # 72 bytes > 64
    assert splitter.feed(b"\x5b" + b"\x00" * 100) == []
    assert splitter.oversize == 2
    assert splitter.feed(b"\x5b\x01\x5d") == [b"\x5b\x01\x5d"]


def test_gnss_data_decodes_and_encodes_as_published() -> None:
    gnss = m.decode_gnss(bytes.fromhex(GNSS_2011))
    assert gnss.fix_time_local.replace(tzinfo=None) == datetime(2012, 7, 19, 15, 15, 15)
    assert (gnss.longitude_e6, gnss.latitude_e6) == (133123456, 24123456)
    assert (gnss.speed_kmh, gnss.tachograph_speed_kmh, gnss.mileage_km) == (50, 51, 150)
    assert (gnss.heading_deg, gnss.altitude_m, gnss.state, gnss.alarm) == (45, 45, 3, 257)
    assert m.encode_gnss(gnss).hex().upper() == GNSS_2011


def test_reupload_of_three_positions_matches_published() -> None:
    positions = m.decode_reupload(bytes.fromhex(REUPLOAD_2011))
    assert [p.fix_time_local.hour for p in positions] == [15, 16, 17]
    assert m.encode_reupload(positions).hex().upper() == REUPLOAD_2011


def test_alarm_info_matches_published() -> None:
    alarm = m.decode_alarm_info(bytes.fromhex(ALARM_INFO_2011))
    assert (alarm.warn_src, alarm.warn_type, alarm.info_id) == (1, m.WARN_ROUTE_DEVIATION, 3344)
    assert alarm.info_content == "gfdf454553"
    assert alarm.warn_time == datetime.fromtimestamp(0x5BAA5B80, UTC)
    assert m.encode_alarm_info(alarm).hex().upper() == ALARM_INFO_2011


def test_position_becomes_gnss_in_beijing_time_with_hemisphere_bits() -> None:
    position = Position(
        terminal_id="t1",
        fix_time=datetime(2026, 1, 26, 0, 0, 5, tzinfo=UTC),
        latitude=-33.865143,
        longitude=151.2099,
        speed_kmh=62.6,
        heading_deg=271.4,
        altitude_m=310,
        status_flags=3,
        alarm_flags=1,
        mileage_km=12345.6,
    )
    gnss = m.gnss_from_position(position)
    assert gnss.fix_time_local.hour == 8 and gnss.fix_time == position.fix_time
    assert (gnss.latitude_e6, gnss.longitude_e6) == (33865143, 151209900)
    assert gnss.state == 3 | m.STATUS_SOUTH and gnss.latitude == pytest.approx(-33.865143)
    assert (gnss.speed_kmh, gnss.heading_deg, gnss.mileage_km, gnss.alarm) == (63, 271, 12346, 1)
    assert m.decode_gnss(m.encode_gnss(gnss)) == gnss


def test_vehicle_message_length_that_lies_is_refused() -> None:
    body = m.encode_vehicle_message(m.VehicleMessage("京A12345", 2, 0x1202, b"\x00" * 36))
    assert m.decode_vehicle_message(body).plate_number == "京A12345"
    with pytest.raises(FrameError):
        m.decode_vehicle_message(body[:-1])


@pytest.mark.parametrize(
    ("alarm_type", "details", "warn_type"),
    [
        ("overspeed", {}, 0x0001),
        ("fatigue_driving", {}, 0x0002),
        ("device_alarm", {"bit": 0}, 0x0003),
        ("forbidden_area_entry", {}, 0x0004),
        ("keep_in_area_exit", {}, 0x0005),
        ("route_deviation", {}, 0x000B),
        ("daily_driving_limit", {}, 0x000D),
        ("offline", {}, 0x000E),
        ("device_alarm", {"bit": 5}, 0x000E),
    ],
)
def test_alarm_types_map_to_809_warn_types(alarm_type, details, warn_type) -> None:  # type: ignore[no-untyped-def]
    assert m.warn_type_for(alarm_type, details) == warn_type


# .../JT809_0x1200_0x1202Test.cs (Test_2019_3/4): 2019 0x1202 data wrapping a JT/T 808-2019
# 0x0200 body (alarm 1, status 2, lat 12222222, lon 132444444, altitude 40, speed 60 (1/10
# km/h), heading 0, 2018-07-15 10:10:10, item 0x01 mileage 100, item 0x02 fuel 55) and platform
# ids 11111111111 / 22222222222 / 33333333333 with alarms 1 / 2 / 3 (encrypt flag 1 there).
POSITION_2019 = (
    "0100000026000000010000000200BA7F0E07E4F11C0028003C000018071510101001040000006402020037"
    "313131313131313131313100000001323232323232323232323200000002333333333333333333333300000003"
)


def test_2019_position_data_decodes_as_published() -> None:
    data = bytes.fromhex(POSITION_2019)
    gnss, used = m.decode_position_2019(data)
    assert used == len(data) and gnss.encrypted == 1
    assert gnss.fix_time_local.replace(tzinfo=None) == datetime(2018, 7, 15, 10, 10, 10)
    assert (gnss.latitude_e6, gnss.longitude_e6, gnss.altitude_m) == (12222222, 132444444, 40)
    assert (gnss.speed_kmh, gnss.state, gnss.alarm, gnss.mileage_km) == (6, 2, 1, 10)


def test_2019_position_data_wraps_the_0x0200_body_byte_for_byte() -> None:
    location = bytes.fromhex(POSITION_2019)[5:43]
    wrapped = m.encode_gnss_2019(location, "11111111111", 1)
    published = bytes.fromhex(POSITION_2019)
    # our encrypt flag is 0 and platform ids 2 and 3 are empty; the rest is the published bytes
    assert wrapped[1:58] == published[1:58] and wrapped[0] == 0
    assert wrapped[58:] == bytes(30)


def test_2019_position_round_trips_from_our_position() -> None:
    position = Position(
        terminal_id="t1",
        fix_time=datetime(2026, 1, 26, 0, 0, 5, tzinfo=UTC),
        latitude=29.563010,
        longitude=106.551556,
        speed_kmh=62.5,
        heading_deg=271,
        mileage_km=12345.6,
    )
    gnss, _ = m.decode_position_2019(m.encode_position_2019(position, "12345678901"))
    assert gnss.fix_time == position.fix_time
    assert (gnss.latitude, gnss.longitude) == (29.56301, 106.551556)
    assert (gnss.speed_kmh, gnss.mileage_km) == (62, 12346)


# JT/T 809-2019 0x1001 field table (USERID u32, PASSWORD 8, MSG_GNSSCENTERID u32, DOWN_LINK_IP
# 32, DOWN_LINK_PORT u16 = 50 bytes), the layout zboyco/jtt809 pkg/jtt809/registration.go
# (commit 6f2c0c86e4221f5ed2da3b420ea4d081af505e4b) encodes and checks; bytes built from it.
LOGIN_2019_BODY = (
    "0133EFB8" + "3230313830393230" + "0133EFB8" + "3132372E302E302E31".ljust(64, "0") + "0329"
)


def test_2019_login_carries_the_access_code_after_the_password() -> None:
    """Review of issue 10: the 2019 0x1001 was sent in the 2011 layout (46 bytes, no
    MSG_GNSSCENTERID), which a 2019 superior reads with the IP shifted by 4 bytes."""
    login = m.Login(20180920, "20180920", "127.0.0.1", 809, access_code=20180920)
    assert m.encode_login(login, 2019) == bytes.fromhex(LOGIN_2019_BODY)
    assert m.decode_login(bytes.fromhex(LOGIN_2019_BODY), 2019) == login
    assert len(m.encode_login(login, 2011)) == 46  # 2011 unchanged (vector above)
