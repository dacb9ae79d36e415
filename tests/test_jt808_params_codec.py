"""Issue 12 items 4, 5 and 9 on the wire: every new message checked against frames from the
public test suites of other JT/T 808 implementations, decoded field by field and, where the
platform encodes the message, re-encoded byte for byte (header, serial and check code included).

Only the bytes are copied. Provenance beside each vector:
- SmallChi/JT808 @ c9552b0f9eadc6906aeeaa501335c312ce082232, src/JT808.Protocol.Test/...
- yezhihao/jt808-server @ 309beff0f21fce2d53a8e2f401f990ba1b3dd550,
  jtt808-protocol/src/test/resources/JT808.txt (line numbers given; 2013 and 2019 headers)
- traccar/traccar @ 9e5c458ad0bf44ceaddf72534bf6874787f41b6c,
  src/test/java/org/traccar/protocol/Jt808ProtocolDecoderTest.java (line numbers given)
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gps_monitor.command_kinds import checked_body
from gps_monitor.commands import CommandError
from gps_monitor.terminal_params import ParameterError, check_settings
from ingest.jt808 import messages as m
from ingest.jt808 import misc, query
from ingest.jt808 import params as p
from ingest.jt808.codec import Frame, FrameError, FrameSplitter, decode_frame, encode_frame
from ingest.jt808.terminal_commands import BODY_ENCODERS as ENCODERS

SMALLCHI = "SmallChi/JT808@c9552b0f:src/JT808.Protocol.Test/"
YEZHIHAO = "yezhihao/jt808-server@309beff0:jtt808-protocol/src/test/resources/JT808.txt"
TRACCAR = (
    "traccar/traccar@9e5c458a:src/test/java/org/traccar/protocol/Jt808ProtocolDecoderTest.java"
)


def frame_of(wire_hex: str) -> Frame:
    wire = bytes.fromhex(wire_hex)
    [(content, raw)] = FrameSplitter().feed(wire)
    return decode_frame(content, raw)


def reencoded(frame: Frame, msg_id: int, body: bytes) -> str:
    """``body`` framed with the vector's own header fields, as wire hex."""
    header = frame.header
    return encode_frame(msg_id, header.phone, header.serial, body, version=header.version).hex()


# ------------------------------------------------------------------------------ 0x0104


# SmallChi MessageBody/JT808_0x0104Test.cs Test2_1
SMALLCHI_0104 = (
    "7E0104001E000123456789000A00140200000001040000000A000000130D7777772E62616964752E636F6DF27E"
)
# SmallChi MessageBody/JT808_0x0104Test.cs Test5: a real terminal (server device.gps51.com),
# 35 parameters, 28 of them vendor ids 0xF000-0xF022
SMALLCHI_0104_DEVICE = (
    "7E0104020D019019000002002381042300000001040000007800000013106465766963652E67707335312E636F6D"
    "00000018040000032800000029040000001E00000030040000000F000000800400000ED900000090040000000200"
    "00F00010313735373732393638372C32383830300000F001020A780000F0025941504E3A61706E3A2C636F70733A"
    "302C322C223436303030222C372C61706E5F6375723A312C22222C22222C22222C312C61706E5F696E666F3A636D"
    "696F74786178642E6A732E4D4E433030382E4D43433436302E475052530000F0030943656E746F724E6F3A0000F0"
    "040200640000F00501000000F00601000000F00701000000F0080F3836383130383037343239323936340000F009"
    "1438393836303444333130323244303535373638330000F00A0A45533130315F303830340000F00C0A4553313031"
    "5F563330310000F00D0F3436303038353332313630373638330000F00E01000000F00F011E0000F01001F60000F0"
    "1101000000F01201030000F01304000186A00000F0142D303039352D303032342D2D303030392D303432372D3033"
    "34332D303331332D303431302D303032322D303030380000F01501460000F01601000000F01701010000F0180100"
    "0000F0190E312C312C31302C312C332C302C330000F0201C363030322C326337632C5175656374656C2C45473830"
    "30414B2D434E0000F0210F3131363635313438333838383433320000F0220100747E"
)
# SmallChi MessageBody/JT808_0x0104Test.cs Test2_2: one JT/T 1078 parameter 0x0077 (190 bytes)
SMALLCHI_0104_1078 = (
    "7E010400C604052458039503D800020100000077BE09010101002D1400000064000500141400000320001F020101"
    "002D0F00000064000500191900000840001F030101002D0F00000064000500191900000840001F040101002D0F00"
    "000064000500191900000840001F050101002D0F00000064010500191900000840001F060101002D0F0000006400"
    "0500191900000840001F070101002D0F000000640103001919000004CE001F080101002D0F000000640005001919"
    "00000840001F090101000F0F000000C8010500191900000400001F127E"
)
# SmallChi MessageBody/JT808_0x0104Test.cs Test4: a real terminal whose count says 9 but
# whose body holds 7 parameters (the source's test only checks the type it deserialises to)
SMALLCHI_0104_COUNT_LIES = (
    "7E0104004B01801550511313AE00000900000001040000000F00000002040000000A00000013103232332E313038"
    "2E3133332E31363300000000170100000000180400000328000000550400000078000000560400000000027E"
)


def test_0x0104_from_smallchi_decodes_typed_values_in_the_terminals_order() -> None:
    frame = frame_of(SMALLCHI_0104)
    assert (frame.header.msg_id, frame.header.phone, frame.header.serial) == (
        0x0104, "000123456789", 10
    )  # fmt: skip
    body = p.answer_body(p.decode_answer(frame.body))
    assert body == {
        "answer_serial": 20,
        "count": 2,
        "params": [
            {"id": "0x0001", "name": "heartbeat_interval_s", "value": 10},
            {"id": "0x0013", "name": "main_server_address", "value": "www.baidu.com"},
        ],
    }
    # the terminal side (jt808-sim) writes the same body
    items = [p.ParamItem(0x0001, bytes.fromhex("0000000a")), p.ParamItem(0x0013, b"www.baidu.com")]
    assert reencoded(frame, 0x0104, p.encode_answer(20, items)) == SMALLCHI_0104.lower()


def test_0x0104_of_a_real_terminal_keeps_vendor_ids_and_misfit_lengths_raw() -> None:
    frame = frame_of(SMALLCHI_0104_DEVICE)
    body = p.answer_body(p.decode_answer(frame.body))
    assert (body["answer_serial"], body["count"]) == (0x8104, 35)
    by_id = {item["id"]: item for item in body["params"]}
    assert by_id["0x0001"]["value"] == 120  # heartbeat_interval_s
    assert by_id["0x0013"]["value"] == "device.gps51.com"
    assert by_id["0x0018"] == {"id": "0x0018", "name": "server_tcp_port", "value": 808}
    assert by_id["0x0029"]["value"] == 30  # report_interval_default_s
    assert by_id["0x0030"]["value"] == 15  # turn_angle_deg
    assert by_id["0x0080"] == {"id": "0x0080", "name": "odometer_km", "value": 380.1}  # 3801
    # 0x0090 (GNSS mode) is a BYTE; this terminal sends 4 bytes: kept raw with the reason
    assert by_id["0x0090"] == {
        "id": "0x0090", "name": "gnss_mode", "raw_hex": "00000002",
        "problem": "expected 1 bytes (byte), got 4",
    }  # fmt: skip
    # unknown (vendor) ids are kept, as hex, in order
    assert by_id["0xf000"] == {"id": "0xf000", "raw_hex": b"1757729687,28800".hex()}
    assert by_id["0xf022"] == {"id": "0xf022", "raw_hex": "00"}
    assert sum(1 for item in body["params"] if item["id"].startswith("0xf0")) == 28


def test_0x0104_with_a_jt1078_parameter_keeps_its_190_bytes_raw() -> None:
    frame = frame_of(SMALLCHI_0104_1078)
    answer = p.decode_answer(frame.body)
    assert (frame.header.phone, answer.answer_serial) == ("040524580395", 2)
    [item] = p.answer_body(answer)["params"]
    assert item["id"] == "0x0077" and len(bytes.fromhex(item["raw_hex"])) == 0xBE


def test_0x0104_whose_count_lies_is_refused_with_the_reason() -> None:
    frame = frame_of(SMALLCHI_0104_COUNT_LIES)
    with pytest.raises(FrameError, match="count says 9 parameters, the body ends in item 8"):
        p.decode_answer(frame.body)
    # and the other way round: fewer announced than present
    body = p.encode_answer(1, [p.ParamItem(1, b"\x00\x00\x00\x1e"), p.ParamItem(2, b"\0\0\0\1")])
    lied = body[:2] + b"\x01" + body[3:]
    with pytest.raises(FrameError, match="count says 1 parameters, 9 bytes left after them"):
        p.decode_answer(lied)


@pytest.mark.parametrize(
    ("line", "wire_hex", "version"),
    [
        (
            7,
            "7e010401ff0123456789017fff00682600000001044945425200000002047068555400000003047953445900000004044a754c3300000005046d58384f00000006044666315200000007046a33795400000010106833745f79776d46584a666c6f303444000000111059333145495234534f6d317842344654000000121041353035535f7975495343706769314d00000013106c6b6332315f3850695659326573786800000014103036676268576a356632556f52364c6b000000151068714c544f3859424d326e477a79426a0000001610516575586d596535726576504d7335580000001710424872616e6d505361656a775a5a735a00000018045256425400000019046e7948370000001a106e585975494d53415a35536a47396f6f0000001b04357a674e0000001c04557533570000001d106c6c54376139574b63624e3054524346000000200453477a57000000210456366d710000002204696d43690000002310374963334c31614f6e4570644d6163430000002410455f57464658444a5a50336e6e33484e0000002510626e624461427166336d746950736f620000002610645239726a63596f355f6f326f41324800000027046676786a00000028046836506c0000002904664751510000002c045f52464a0000002d044d4330480000002e044943356a0000002f04666b657200000030046e595f6a00000031026a41000000320409302130ff7e",
            None,
        ),
        (
            8,
            "7e010441ff0100000000017299841738ffff00682600000001044b68767300000002046e764e65000000030449716b57000000040452704a360000000504524d6d5200000006043535774e00000007044743525a000000101058676767375a3558584b44376e625661000000111035625067564c37537a4c616672774e36000000121048684e7669576777494d6e493555624d000000131064527432655967746479316a464857450000001410676554657949565f7a537362694a6e540000001510556f6868585171533565773575385562000000161068336d7550796a6e584d387933587173000000171075397a57597452444c4863614e6a527800000018044e586a4f000000190438646c690000001a104e30775635786d4a664d6f63386166500000001b04626c36760000001c04383665370000001d104f344c42704b737445687a4f4c5646350000002004386c525500000021045041666e000000220457456b3900000023106138334c43765737546d5051736e31520000002410427559785f4937584e694f63364e4d490000002510653756707a595579763576596433346c0000002610544e376c476643386a4b4d496e4c396700000027045057586e0000002804674c636c0000002904474f6a640000002c04454931570000002d04634e507a0000002e04534454420000002f04525f647a00000030045a4a683000000031026c64000000320409302130a47e",
            1,
        ),
    ],
)
def test_0x0104_from_jt808_server_in_both_headers(
    line: int, wire_hex: str, version: int | None
) -> None:
    # yezhihao JT808.txt lines 7 (2013) and 8 (2019): 38 parameters, values generated at random
    frame = frame_of(wire_hex)
    assert frame.header.version == version
    answer = p.decode_answer(frame.body)
    body = p.answer_body(answer)
    assert (body["answer_serial"], body["count"]) == (104, 38)
    assert body["params"][0]["id"] == "0x0001" and isinstance(body["params"][0]["value"], int)
    assert body["params"][-1] == {"id": "0x0032", "raw_hex": "09302130"}  # not in our table
    assert reencoded(frame, 0x0104, p.encode_answer(104, list(answer.items))) == wire_hex


# ------------------------------------------------------------------- 0x8103 / 0x8104 / 0x8106


def test_0x8103_set_heartbeat_is_smallchis_frame_byte_for_byte() -> None:
    # SmallChi MessageBody/JT808_0x8103Test.cs Test1: 0x0001 heartbeat interval = 10 s
    wire = "7E8103000A000123456789000A0100000001040000000A057E"
    frame = frame_of(wire)
    assert p.decode_set(frame.body) == (p.ParamItem(0x0001, bytes.fromhex("0000000a")),)
    body = checked_body("set_params", {"params": {"heartbeat_interval_s": 10}}, text_max_bytes=1)
    msg_id, encoded = ENCODERS["set_params"](body, False)
    assert reencoded(frame, msg_id, encoded) == wire.lower()


def test_0x8103_from_jt808_server_reencodes_byte_for_byte() -> None:
    # yezhihao JT808.txt line 41: 38 items (random values)
    wire = "7e810301fd0123456789017fff2600000001046d55786e0000000204736c505f000000030462696a7a000000040461693662000000050432453431000000060463577434000000070461425f6c00000010107345365359394c463539674c3045374d0000001110497145484f4c36573846744b64576c7000000012107453664c774a46314e775f4c43316b7a0000001310356d6a653355465a484b6e79554e4c57000000141045514b415639685249736e4556736b620000001510315943597777534c62524f6a587273480000001610374e344652665845636e47316243367500000017104e465f4b37577962795f43345230627500000018045138624a00000019044957344c0000001a105535365544723742575462374c5a65530000001b04377033610000001c04536f4c780000001d104f6676565a4935466a69477877717074000000200462424545000000210469365343000000220445396543000000231054395454534b4c384a64357378337866000000241057433755557751634f4268314977394400000025106b384f6e644b5659306e5444584759620000002610766e5a4c6b45777a70464976376471340000002704336e745100000028046656644f00000029044c5335710000002c046242574f0000002d04326a396b0000002e04453356410000002f047352377000000030046635775f0000003102497a000000320409302130367e"  # noqa: E501
    frame = frame_of(wire)
    items = p.decode_set(frame.body)
    assert len(items) == 38 and items[10] == p.ParamItem(0x0013, b"5mje3UFZHKnyUNLW")
    assert reencoded(frame, 0x8103, p.encode_items(list(items))) == wire


def test_0x8103_overspeed_limit_and_warning_difference_in_wire_units() -> None:
    body = checked_body(
        "set_params",
        {"params": {"overspeed_limit_kmh": 80, "overspeed_warning_diff_kmh": 5.5}},
        text_max_bytes=1,
    )
    msg_id, encoded = ENCODERS["set_params"](body, False)
    # 0x0055 DWORD 80 km/h; 0x005B WORD in 1/10 km/h: 55
    assert (msg_id, encoded.hex()) == (0x8103, "020000005504000000500000005b020037")


def test_0x8104_query_all_is_smallchis_frame_byte_for_byte() -> None:
    # SmallChi MessageBody/JT808_0x8104Test.cs Test1 (empty body)
    wire = "7E8104000001234567890000010D7E"
    frame = frame_of(wire)
    assert (frame.header.phone, frame.header.serial, frame.body) == ("012345678900", 1, b"")
    msg_id, body = ENCODERS["query_params"](
        checked_body("query_params", {}, text_max_bytes=1), False
    )
    assert reencoded(frame, msg_id, body) == wire.lower()


@pytest.mark.parametrize(
    ("source", "wire_or_body", "ids"),
    [
        (f"{SMALLCHI}MessageBody/JT808_0x8106Test.cs", "020000000100000002", [1, 2]),
        (
            f"{YEZHIHAO} line 45",
            "7e810600190123456789017fff0600000001000000030000000500000007000000090000007fe67e",
            [1, 3, 5, 7, 9, 0x7F],
        ),
        (
            f"{YEZHIHAO} line 46",
            "7e810640190100000000017299841738ffff0600000001000000030000000500000007000000090000007fee7e",
            [1, 3, 5, 7, 9, 0x7F],
        ),
    ],
)
def test_0x8106_query_by_id_byte_for_byte(source: str, wire_or_body: str, ids: list[int]) -> None:
    body = checked_body("query_params", {"ids": ids}, text_max_bytes=1)
    msg_id, encoded = ENCODERS["query_params"](body, False)
    assert msg_id == 0x8106
    if not wire_or_body.startswith("7e"):
        assert encoded.hex() == wire_or_body and p.decode_query_some(encoded) == ids
        return
    frame = frame_of(wire_or_body)
    assert p.decode_query_some(frame.body) == ids
    assert reencoded(frame, msg_id, encoded) == wire_or_body


def test_0x8106_by_our_names() -> None:
    body = checked_body(
        "query_params", {"names": ["overspeed_limit_kmh", "overspeed_duration_s"]}, text_max_bytes=1
    )
    assert ENCODERS["query_params"](body, False) == (0x8106, bytes.fromhex("020000005500000056"))


# ------------------------------------------------------------------- 0x8201 / 0x0201 / 0x8202


@pytest.mark.parametrize(
    ("source", "wire_hex"),
    [
        (
            f"{SMALLCHI}MessageBody/JT808_0x0201Test.cs Test1",
            "7E0201002811223344556622B83039000000010000000200BA7F0E07E4F11C0028003C000018071510101001040000006402020037517E",
        ),
    ],
)
def test_0x0201_from_smallchi_field_by_field(source: str, wire_hex: str) -> None:
    frame = frame_of(wire_hex)
    assert (frame.header.phone, frame.header.serial) == ("112233445566", 8888)
    answer = query.decode_position_answer(frame.body)
    r = answer.report
    assert answer.answer_serial == 12345
    assert (r.alarm_flags, r.status_flags, r.latitude_e6, r.longitude_e6) == (
        1, 2, 12222222, 132444444
    )  # fmt: skip
    assert (r.altitude_m, r.speed_dkmh, r.heading_deg, r.bcd_time) == (40, 60, 0, "180715101010")
    assert r.items == {0x01: (100).to_bytes(4, "big"), 0x02: (55).to_bytes(2, "big")}
    position = m.to_contract(r, utc_offset_min=480, evidence={})
    assert position["fix_time"] == "2018-07-15T02:10:10+00:00"  # GMT+8 -> UTC
    assert (position["speed_kmh"], position["mileage_km"], position["extras"]["fuel_l"]) == (
        6.0, 10.0, 5.5
    )  # fmt: skip
    assert reencoded(frame, 0x0201, query.encode_position_answer(12345, r)) == wire_hex.lower()


@pytest.mark.parametrize(
    ("line", "wire_hex"),
    [
        (
            91,
            "7e020100240123456789017fff686200002a5a000074280000a3e50000db4fbc732711012c200512121259010400313233547e",
        ),
        (
            92,
            "7e020140240100000000017299841738ffff686200002a5a000074280000a3e50000db4fbc732711012c2005121212590104003132335c7e",
        ),
    ],
)
def test_0x0201_from_jt808_server_in_both_headers(line: int, wire_hex: str) -> None:
    frame = frame_of(wire_hex)
    answer = query.decode_position_answer(frame.body)
    r = answer.report
    assert answer.answer_serial == 0x6862
    assert (r.alarm_flags, r.status_flags, r.latitude_e6, r.longitude_e6) == (
        0x2A5A, 0x7428, 0xA3E5, 0xDB4F
    )  # fmt: skip
    assert (r.speed_dkmh, r.heading_deg, r.bcd_time, r.items) == (
        10001,
        300,
        "200512121259",
        {1: b"\x00123"},
    )
    assert reencoded(frame, 0x0201, query.encode_position_answer(0x6862, r)) == wire_hex


def test_0x8201_is_an_empty_body() -> None:
    body = checked_body("query_position", {}, text_max_bytes=1)
    assert ENCODERS["query_position"](body, False) == (0x8201, b"")


@pytest.mark.parametrize(
    ("source", "wire_or_body", "interval_s", "duration_s"),
    [
        (f"{SMALLCHI}MessageBody/JT808_0x8202Test.cs", "00450000007B", 69, 123),
        # every 5 s for 10 min: the 临时跟踪 the alarm dialog sends
        (f"{YEZHIHAO} line 49", "7e820200060123456789017fff000500000258d17e", 5, 600),
        (f"{YEZHIHAO} line 50", "7e820240060100000000017299841738ffff000500000258d97e", 5, 600),
    ],
)
def test_0x8202_temporary_tracking_byte_for_byte(
    source: str, wire_or_body: str, interval_s: int, duration_s: int
) -> None:
    body = checked_body(
        "track", {"interval_s": interval_s, "duration_s": duration_s}, text_max_bytes=1
    )
    msg_id, encoded = ENCODERS["track"](body, False)
    assert msg_id == 0x8202
    if not wire_or_body.startswith("7e"):
        assert encoded.hex().upper() == wire_or_body
        return
    frame = frame_of(wire_or_body)
    assert query.decode_track(frame.body) == (interval_s, duration_s)
    assert reencoded(frame, msg_id, encoded) == wire_or_body


# --------------------------------------------------------------------------- item 9


def test_0x8004_time_answer_byte_for_byte_in_utc() -> None:
    # SmallChi MessageBody/JT808_0x8004Test.cs (body) and Simples/Demo7.cs (2019 frame)
    assert misc.encode_time_answer(datetime(2019, 11, 26, 15, 58, 50, tzinfo=UTC)).hex() == (
        "191126155850"
    )
    wire = "7E8004400601000000001234567890120001191202101010517E"
    frame = frame_of(wire)
    assert misc.decode_time_answer(frame.body) == datetime(2019, 12, 2, 10, 10, 10, tzinfo=UTC)
    body = misc.encode_time_answer(datetime(2019, 12, 2, 18, 10, 10, tzinfo=UTC).astimezone())
    assert body.hex() == "191202181010"  # any zone in, UTC out
    again = misc.encode_time_answer(datetime(2019, 12, 2, 10, 10, 10, tzinfo=UTC))
    assert reencoded(frame, 0x8004, again) == wire.lower()


@pytest.mark.parametrize(
    ("source", "wire_hex", "phone", "pass_type", "content"),
    [
        (
            f"{SMALLCHI}MessageBody/JT808_0x0900Test.cs",
            "7E09000009000123456789000A83736D616C6C6368691D7E",
            "000123456789",
            0x83,
            b"smallchi",
        ),
        (
            f"{YEZHIHAO} line 95",
            "7e0900000f0123456789017fff006173647a786371776531323333354c7e",
            "012345678901",
            0x00,
            b"asdzxcqwe12335",
        ),
        (
            f"{YEZHIHAO} line 96",
            "7e0900400f0100000000017299841738ffff006173647a78637177653132333335447e",
            "00000000017299841738",
            0x00,
            b"asdzxcqwe12335",
        ),
        # real devices: a driver-card line (type 0x40) and an OBD line (type 0x41, serial port 1)
        (
            f"{TRACCAR} line 90",
            "7e0900001b41305888975883194000184754534c7c367c317c307c31303231383039347c317c0d0ab47e",
            "413058889758",
            0x40,
            bytes.fromhex("0018") + b"GTSL|6|1|0|10218094|1|\r\n",
        ),
        (
            f"{TRACCAR} line 101",
            "7e0900004a018178393931007941244f42442d52542c31322e332c302c32302c302e30302c302e30302c302c31302e38392c33312e31352c3138312e36382c3138312c35342e32362c3536352e39362c302c302c300d0ae97e",
            "018178393931",
            0x41,
            b"$OBD-RT,12.3,0,20,0.00,0.00,0,10.89,31.15,181.68,181,54.26,565.96,0,0,0\r\n",
        ),
    ],
)
def test_0x0900_pass_through_type_and_content(
    source: str, wire_hex: str, phone: str, pass_type: int, content: bytes
) -> None:
    frame = frame_of(wire_hex)
    assert frame.header.phone == phone
    assert misc.decode_pass_through(frame.body) == misc.PassThrough(pass_type, content)
    assert misc.encode_pass_through(pass_type, content) == frame.body


def test_0x8900_pass_through_down_is_smallchis_body() -> None:
    # SmallChi MessageBody/JT808_0x8900Test.cs: type 0x0B, content 0000303901
    body = checked_body(
        "pass_through", {"pass_type": 0x0B, "content_hex": "0000303901"}, text_max_bytes=1
    )
    assert ENCODERS["pass_through"](body, False) == (0x8900, bytes.fromhex("0B0000303901"))


def test_0x0705_can_data_item_by_item() -> None:
    # SmallChi MessageBody/JT808_0x0705Test.cs: 2 items, first received 20:00:05.350
    can = misc.decode_can_data(
        bytes.fromhex("00022000050350001203040102030401020304050607080103040506070801")
    )
    assert (can.first_received_bcd, can.first_received) == ("2000050350", "20:00:05.350")
    assert [i.as_json() for i in can.items] == [
        {"can_id": "0x00120304", "channel": 0, "extended_frame": False, "averaged": False,
         "bus_id": "0x00120304", "data_hex": "0102030401020304"},
        {"can_id": "0x05060708", "channel": 0, "extended_frame": False, "averaged": False,
         "bus_id": "0x05060708", "data_hex": "0103040506070801"},
    ]  # fmt: skip
    assert misc.encode_can_data("2000050350", list(can.items)).hex() == (
        "00022000050350001203040102030401020304050607080103040506070801"
    )
    # yezhihao JT808.txt lines 25/26: 3 items; its time digits 0000235959 are no time of day
    for wire in (
        "7e0705002b0123456789017fff000300002359590102030401020304050607080102030401020304050607080102030401020304050607080d7e",
        "7e0705402b0100000000017299841738ffff00030000235959010203040102030405060708010203040102030405060708010203040102030405060708057e",
    ):
        can = misc.decode_can_data(frame_of(wire).body)
        assert (can.first_received_bcd, can.first_received, len(can.items)) == (
            "0000235959",
            None,
            3,
        )
        assert can.items[2] == misc.CanItem(0x01020304, bytes(range(1, 9)))
    with pytest.raises(FrameError, match=r"count says 3 items \(43 bytes\), got 42 bytes"):
        misc.decode_can_data(
            bytes.fromhex(
                "000300002359590102030401020304050607080102030401020304050607080102030401020304050607"
            )
        )


@pytest.mark.parametrize(
    ("source", "body_or_wire", "decoded"),
    [
        (
            f"{SMALLCHI}MessageBody/JT808_0x0108Test.cs",
            "3400",
            {"upgrade_type": "gnss_module", "result": "success"},
        ),
        (
            f"{YEZHIHAO} line 11",
            "7e010800020123456789017fff3402357e",
            {"upgrade_type": "gnss_module", "result": "cancelled"},
        ),
        (
            f"{YEZHIHAO} line 12",
            "7e010840020100000000017299841738ffff34023d7e",
            {"upgrade_type": "gnss_module", "result": "cancelled"},
        ),
    ],
)
def test_0x0108_upgrade_result(source: str, body_or_wire: str, decoded: dict[str, str]) -> None:
    body = (
        frame_of(body_or_wire).body
        if body_or_wire.startswith("7e")
        else bytes.fromhex(body_or_wire)
    )
    assert misc.decode_upgrade_result(body) == decoded


def test_0x8105_terminal_control_byte_for_byte() -> None:
    # SmallChi MessageBody/JT808_0x8105Test.cs: command word 5 (factory reset), no parameters
    wire = "7E81050001012345678900000105087E"
    frame = frame_of(wire)
    body = checked_body("terminal_control", {"action": "factory_reset"}, text_max_bytes=1)
    msg_id, encoded = ENCODERS["terminal_control"](body, False)
    assert reencoded(frame, msg_id, encoded) == wire.lower()
    reset = checked_body("terminal_control", {"action": "reset"}, text_max_bytes=1)
    assert ENCODERS["terminal_control"](reset, False) == (0x8105, b"\x04")
    # yezhihao JT808.txt line 43: command word 123 with parameters, decoded
    frame = frame_of("7e810500100123456789017fff7b61733b3132333b7a78633b3132333b947e")
    assert misc.decode_terminal_control(frame.body) == (123, "as;123;zxc;123;")


# ----------------------------------------------------------------------------- checks


def test_settings_out_of_range_name_the_parameter_its_id_the_range_and_the_value() -> None:
    with pytest.raises(
        ParameterError, match=r"0x0055 overspeed_limit_kmh: expected 1 to 200, got 500"
    ):
        check_settings({"overspeed_limit_kmh": 500})
    with pytest.raises(
        ParameterError, match=r"0x0056 overspeed_duration_s: expected a whole number"
    ):
        check_settings({"overspeed_duration_s": 2.5})
    with pytest.raises(
        ParameterError, match=r"0x005b overspeed_warning_diff_kmh: expected a multiple of 0.1"
    ):
        check_settings({"overspeed_warning_diff_kmh": 2.55})
    with pytest.raises(ParameterError, match=r"params.main_server_address: .*cannot be set here"):
        check_settings({"main_server_address": "evil.example"})
    with pytest.raises(ParameterError, match=r"params.speed: .*an unknown name"):
        check_settings({"speed": 1})
    with pytest.raises(ParameterError, match="at least one"):
        check_settings({})
    assert check_settings({"overspeed_limit_kmh": 80.0, "overspeed_warning_diff_kmh": 5}) == {
        "overspeed_limit_kmh": 80, "overspeed_warning_diff_kmh": 5.0
    }  # fmt: skip


def test_command_bodies_are_checked_before_anything_is_queued() -> None:
    with pytest.raises(CommandError, match=r"body.params.overspeed_limit_kmh: .*got 0"):
        checked_body("set_params", {"params": {"overspeed_limit_kmh": 0}}, text_max_bytes=1)
    with pytest.raises(CommandError, match=r"body.interval_s: .*less than or equal to 3600"):
        checked_body("track", {"interval_s": 5000, "duration_s": 60}, text_max_bytes=1)
    with pytest.raises(CommandError, match=r"body.names: .*'nonsense'"):
        checked_body("query_params", {"names": ["nonsense"]}, text_max_bytes=1)
    with pytest.raises(CommandError, match=r"body.action"):
        checked_body("terminal_control", {"action": "power_off"}, text_max_bytes=1)
    with pytest.raises(CommandError, match=r"name: expected one of text, query_params"):
        checked_body("self_destruct", {}, text_max_bytes=1)
