"""Issue 12 item 7 on the wire: 0x0702 driver identity in its 2011, 2013 and 2019 layouts, checked
against frames and bodies from the public test suites of other JT/T 808 implementations, decoded
field by field; the bodies the simulated terminal writes re-encoded byte for byte where the
public vector pads the way we do (on the right); 0x8702 encoded.

Only the bytes are copied. Provenance beside each vector:
- SmallChi/JT808 @ c9552b0f9eadc6906aeeaa501335c312ce082232,
  src/JT808.Protocol.Test/MessageBody/JT808_0x0702Test.cs (test method named)
- yezhihao/jt808-server @ 309beff0f21fce2d53a8e2f401f990ba1b3dd550,
  jtt808-protocol/src/test/resources/JT808.txt (line numbers given)
- traccar/traccar @ 9e5c458ad0bf44ceaddf72534bf6874787f41b6c,
  src/test/java/org/traccar/protocol/Jt808ProtocolDecoderTest.java (line 42)
No public suite among the three holds a 0x8702 frame (its body is empty); ours is checked
against the header layout of the standard.
"""

from __future__ import annotations

from datetime import date, datetime

import pytest

from gps_monitor.command_kinds import checked_body
from gps_monitor.commands import Command
from ingest.jt808.codec import Frame, FrameError, FrameSplitter, decode_frame, encode_frame
from ingest.jt808.driver import (
    MSG_DRIVER_IDENTITY,
    MSG_QUERY_DRIVER,
    DriverIdentity,
    decode_driver_identity,
    encode_driver_identity,
)
from ingest.jt808.driver_uplink import encode_query_driver

SMALLCHI = "SmallChi/JT808@c9552b0f:src/JT808.Protocol.Test/MessageBody/JT808_0x0702Test.cs"
YEZHIHAO = "yezhihao/jt808-server@309beff0:jtt808-protocol/src/test/resources/JT808.txt"
TRACCAR = (
    "traccar/traccar@9e5c458a:src/test/java/org/traccar/protocol/Jt808ProtocolDecoderTest.java"
)
AUTHORITY = "中华人民共和国道路运输从业人员从业资格证"
# SmallChi Test3 and Test3_1: the same card (certificate padded on the left, then the right)
KOIKE_2013 = DriverIdentity(
    "2013", "inserted", datetime(2018, 8, 16, 9, 16, 16), "ok", "koike", "qwe123456aaa",
    "qwertx", date(2018, 8, 16),
)  # fmt: skip


def frame_of(wire_hex: str) -> Frame:
    [(content, raw)] = FrameSplitter().feed(bytes.fromhex(wire_hex))
    return decode_frame(content, raw)


# (source, body hex, expected)
BODIES = [
    (  # SmallChi Test1_2: 2013 removal, status and time only
        SMALLCHI + " Test1_2",
        "02180816091616",
        DriverIdentity("2013", "removed", datetime(2018, 8, 16, 9, 16, 16)),
    ),
    (  # SmallChi Test2_2: card inserted, read failed (key authentication)
        SMALLCHI + " Test2_2",
        "0118081609161601",
        DriverIdentity(
            "2013", "inserted", datetime(2018, 8, 16, 9, 16, 16), "key_authentication_failed"
        ),
    ),
    (  # SmallChi Test3 (their serializer pads the certificate on the left)
        SMALLCHI + " Test3",
        "0118081609161600056B6F696B6500000000000000007177653132333435366161610671776572747820180816",
        KOIKE_2013,
    ),
    (  # SmallChi Test2011_2: the 2011 layout (no status, ID card + 40-byte certificate)
        SMALLCHI + " Test2011_2",
        "02746B0000313233343536373839313233343536373839000000000000000000000000000000000000000000"
        "0000000000000071776531323334353661616106717765727478",
        DriverIdentity(
            "2011",
            name="tk",
            certificate_no="qwe123456aaa",
            issuing_authority="qwertx",
            id_card_no="123456789123456789",
        ),
    ),
]

# bodies we write the same way (certificate and ID card padded on the right)
REENCODED = [
    (
        SMALLCHI + " Test3_1",
        "0118081609161600056B6F696B6571776531323334353661616100000000000000000671776572747820180816",
        KOIKE_2013,
    ),
    (
        SMALLCHI + " Test_2019_2",
        "0119120111111100056B6F696B65717765313233343536616161000000000000000006717765727478201912"
        "013132333435363738393031323334353637000000",
        DriverIdentity(
            "2019",
            "inserted",
            datetime(2019, 12, 1, 11, 11, 11),
            "ok",
            "koike",
            "qwe123456aaa",
            "qwertx",
            date(2019, 12, 1),
            "12345678901234567",
        ),
    ),
]

# whole frames as received: (source, wire hex, terminal id, 2019 header, expected)
FRAMES = [
    (  # a device's frame: 2013 header, name padded to 20 bytes, empty authority, ID card
        SMALLCHI + " Test4_1",
        "7E070200620182712086250202012604091727390014C4E3BAC30000000000000000000000000000000034"
        "31363735363139393030363035343334390000180000000000000000000000000000000000000000000000"
        "002034040934313637353631393930303630353433343900007D027E",
        "18271208625",
        False,
        DriverIdentity(
            "2019",
            "inserted",
            datetime(2026, 4, 9, 17, 27, 39),
            "ok",
            "你好",
            "416756199006054349",
            None,
            date(2034, 4, 9),
            "416756199006054349",
        ),
    ),
    (  # 2019 header, 2019 layout
        SMALLCHI + " Test5_1",
        "7E0702404D0100000000041587677411001101260617171000000AB2E2CAD4D4B1BCD720204138383838382A"
        "2A2A2A2A2A2A2A2A2A2A2A00000D32303236303430323134303838201510203436303330303838383838383838"
        "383838383838B27E",
        "41587677411",
        True,
        DriverIdentity(
            "2019",
            "inserted",
            datetime(2026, 6, 17, 17, 10, 0),
            "ok",
            "测试员甲",
            "A88888************",
            "2026040214088",
            date(2015, 10, 20),
            "46030088888888888888",
        ),
    ),
    (  # line 21: a removal that repeats the driver (2013 header)
        YEZHIHAO + " line 21",
        "7e0702004e0123456789017fff022007211830000004d5c5c8fd313233343536373839303132330000000000"
        "000028d6d0bbaac8cbc3f1b9b2bacdb9fab5c0c2b7d4cbcae4b4d3d2b5c8cbd4b1b4d3d2b5d7cab8f1d6a420"
        "190630307e",
        "12345678901",
        False,
        DriverIdentity(
            "2013",
            "removed",
            datetime(2020, 7, 21, 18, 30, 0),
            None,
            "张三",
            "1234567890123",
            AUTHORITY,
            date(2019, 6, 30),
        ),
    ),
    (  # line 22: the same, 2019 header and ID card
        YEZHIHAO + " line 22",
        "7e070240620100000000017299841738ffff022007211830000004d5c5c8fd31323334353637383930313233"
        "0000000000000028d6d0bbaac8cbc3f1b9b2bacdb9fab5c0c2b7d4cbcae4b4d3d2b5c8cbd4b1b4d3d2b5d7ca"
        "b8f1d6a42019063033313031313532303031303130313030335800007b7e",
        "17299841738",
        True,
        DriverIdentity(
            "2019",
            "removed",
            datetime(2020, 7, 21, 18, 30, 0),
            None,
            "张三",
            "1234567890123",
            AUTHORITY,
            date(2019, 6, 30),
            "31011520010101003X",
        ),
    ),
    (  # line 42: empty name and authority, validity all zeros
        TRACCAR + " line 42",
        "7e0702002201827061151401bc0125100915075100003030323962383835000000000000000000000000000000"
        "00002b7e",
        "18270611514",
        False,
        DriverIdentity(
            "2013",
            "inserted",
            datetime(2025, 10, 9, 15, 7, 51),
            "ok",
            None,
            "0029b885",
        ),
    ),
]


@pytest.mark.parametrize(("source", "body_hex", "expected"), BODIES + REENCODED)
def test_0702_bodies_decode_field_by_field(
    source: str, body_hex: str, expected: DriverIdentity
) -> None:
    assert decode_driver_identity(bytes.fromhex(body_hex)) == expected, source


@pytest.mark.parametrize(("source", "body_hex", "identity"), REENCODED)
def test_0702_bodies_reencode_byte_for_byte(
    source: str, body_hex: str, identity: DriverIdentity
) -> None:
    assert encode_driver_identity(identity).hex() == body_hex.lower(), source


@pytest.mark.parametrize(("source", "wire_hex", "terminal_id", "is_2019", "expected"), FRAMES)
def test_0702_frames_from_devices_and_suites(
    source: str, wire_hex: str, terminal_id: str, is_2019: bool, expected: DriverIdentity
) -> None:
    frame = frame_of(wire_hex)
    assert frame.header.msg_id == MSG_DRIVER_IDENTITY, source
    assert (frame.header.terminal_id, frame.header.is_2019) == (terminal_id, is_2019)
    assert decode_driver_identity(frame.body) == expected, source


@pytest.mark.parametrize(
    ("body_hex", "why"),
    [
        ("", "empty"),
        ("0318081609161600", "status 0x03"),
        ("0118081609161601ff", "bytes after a failed read"),
        ("0118081609161600056b6f696b65", "cut after the name"),
    ],
)
def test_0702_that_fits_no_layout_is_refused_saying_what_came(body_hex: str, why: str) -> None:
    with pytest.raises(FrameError) as caught:
        decode_driver_identity(bytes.fromhex(body_hex))
    assert caught.value.reason == "body", why
    assert "expected a 2011, 2013 or 2019 driver identity" in str(caught.value)
    assert body_hex in str(caught.value)


def test_0x8702_is_an_empty_request_in_the_terminals_header_version() -> None:
    assert checked_body("query_driver", {}, text_max_bytes=100) == {}
    command = Command(
        "c1", "13900000001", "query_driver", {}, datetime(2030, 1, 1), datetime(2030, 1, 2)
    )
    assert encode_query_driver(command, False) == (MSG_QUERY_DRIVER, b"")
    # 2013: id 8702, props 0000 (empty body), BCD[6] phone, serial 0005, check code
    wire = encode_frame(MSG_QUERY_DRIVER, "13900000001", 5, b"")
    assert wire.hex() == "7e870200000139000000010005" + "b9" + "7e"  # 87^02^39^05 = b9
    # 2019: version flag (bit 14), version 1, BCD[10] phone
    wire19 = encode_frame(MSG_QUERY_DRIVER, "13900000001", 5, b"", version=1)
    assert wire19.hex().startswith("7e8702400001000000000139000000010005")
    with pytest.raises(FrameError):
        decode_driver_identity(b"\x05")
