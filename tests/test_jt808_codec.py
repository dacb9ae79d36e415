"""JT/T 808 framing: escaping, checksum, header versions, the stream splitter and sub-packages.

Vectors come from ../shared/data/jt808_frames.tsv (traccar, SmallChi/JT808, go-jt808 test
suites) and, for platform replies, from the xtream-codec JT/T 808 codec test data
(hylexus/xtream-codec, debug UI ``codecMockData``), an implementation independent of ours.
"""

from __future__ import annotations

from functools import reduce

import pytest

from ingest.jt808 import messages as m
from ingest.jt808.codec import (
    FrameError,
    FrameSplitter,
    SubpackageAssembler,
    checksum,
    decode_frame,
    encode_frame,
    escape,
    gbk_fixed,
    terminal_id_from_phone,
    unescape,
)

HEARTBEAT_2013 = bytes.fromhex("7e0002000004304832546500b7ca7e")  # traccar, real device
HEARTBEAT_2019 = bytes.fromhex("7e0002400001000000000172998417380000027e")  # go-jt808
TWO_FRAMES = bytes.fromhex(  # go-jt808 frame_reader_test: two frames in one read
    "7e000200000123456789017fff0a7e7e0100002d0144199999990001000b006537303434335848583030303032"
    "0000000000000000000000006964303030303301d4c1413138383838927e"
)


def _content(wire: bytes) -> bytes:
    assert wire[0] == 0x7E and wire[-1] == 0x7E
    return wire[1:-1]


def test_escape_vector_from_traccar_frame_decoder():
    # Jt808FrameDecoderTest: 7e307d02087d01557e -> 7e307e087d557e
    assert unescape(bytes.fromhex("307d02087d0155")) == bytes.fromhex("307e087d55")
    assert escape(bytes.fromhex("307e087d55")) == bytes.fromhex("307d02087d0155")


def test_escape_round_trip_of_every_byte_value():
    data = bytes(range(256)) * 2
    escaped = escape(data)
    assert 0x7E not in escaped
    assert unescape(escaped) == data


def test_unescaped_7d_is_an_escape_error():
    with pytest.raises(FrameError) as error:
        unescape(bytes.fromhex("00027d0300"))
    assert error.value.reason == "escape"
    with pytest.raises(FrameError):
        unescape(bytes.fromhex("00027d"))


def test_checksum_is_xor_of_header_and_body():
    data = unescape(_content(HEARTBEAT_2013))
    assert checksum(data[:-1]) == data[-1] == 0xCA
    assert checksum(b"") == 0


def test_2013_header_decodes():
    frame = decode_frame(_content(HEARTBEAT_2013))
    header = frame.header
    assert (header.msg_id, header.phone, header.serial) == (0x0002, "043048325465", 183)
    assert header.version is None and not header.is_2019
    assert header.terminal_id == "43048325465"
    assert frame.body == b""


def test_2019_header_decodes_and_reencodes_to_the_same_bytes():
    frame = decode_frame(_content(HEARTBEAT_2019))
    header = frame.header
    assert header.version == 1 and header.is_2019
    assert header.phone == "00000000017299841738"
    assert header.terminal_id == "17299841738"
    # go-jt808 TestEncode "2019版本": the header re-encodes to the same bytes
    assert encode_frame(0x0002, header.phone, header.serial, version=1) == HEARTBEAT_2019


def test_terminal_id_strips_leading_zeros_consistently_across_versions():
    assert terminal_id_from_phone("013511221122") == "13511221122"
    assert terminal_id_from_phone("00000000013511221122") == "13511221122"
    assert terminal_id_from_phone("000000000000") == "0"


def test_wrong_checksum_is_rejected():
    bad = bytearray(_content(HEARTBEAT_2013))
    bad[-1] ^= 0x01
    with pytest.raises(FrameError) as error:
        decode_frame(bytes(bad))
    assert error.value.reason == "checksum"


def test_wrong_body_length_is_rejected():
    # heartbeat whose props claim a 1-byte body; checksum recomputed so only the length is wrong
    data = bytearray(unescape(_content(HEARTBEAT_2013))[:-1])
    data[3] = 0x01
    content = escape(bytes(data) + bytes([checksum(data)]))
    with pytest.raises(FrameError) as error:
        decode_frame(content)
    assert error.value.reason == "length"


def test_truncated_frames_are_rejected():
    content = _content(HEARTBEAT_2013)
    for cut in (1, 5, 10):
        with pytest.raises(FrameError) as error:
            decode_frame(content[:cut])
        assert error.value.reason in ("truncated", "checksum", "length")
    with pytest.raises(FrameError) as error:
        decode_frame(content[:4])
    assert error.value.reason == "truncated"


def test_encode_escapes_7e_and_7d_in_body_and_checksum():
    body = bytes([0x7E, 0x7D, 0x01, 0x02])
    wire = encode_frame(0x0200, "13800000001", 0x7E7D, body)
    assert 0x7E not in wire[1:-1]
    frame = decode_frame(wire[1:-1])
    assert frame.body == body
    assert frame.header.serial == 0x7E7D


def test_platform_general_reply_2019_matches_independent_vector_byte_for_byte():
    # xtream-codec BuiltinMessage8001: clientFlowId 111, clientMessageId 0x0200, result 0
    expected = bytes.fromhex("7e8001400501000000000139123443290000006f020000dc7e")
    body = m.encode_general_reply(111, 0x0200, m.RESULT_OK)
    wire = encode_frame(0x8001, "00000000013912344329", 0, body, version=1)
    assert wire == expected
    assert wire[-2] == 0xDC  # a non-zero checksum byte


def test_register_reply_2019_matches_independent_vector_byte_for_byte():
    # xtream-codec BuiltinMessage8100: clientFlowId 111, result 0, authCode "ok..ok..ok"
    expected = bytes.fromhex("7e8100400d01000000000139123443290000006f006f6b2e2e6f6b2e2e6f6bd27e")
    body = m.encode_register_reply(111, m.REGISTER_OK, "ok..ok..ok")
    assert encode_frame(0x8100, "00000000013912344329", 0, body, version=1) == expected


def test_general_reply_2013_to_real_heartbeat_byte_for_byte():
    # Hand-assembled: 8001, props 0005, phone 043048325465, platform serial 0001,
    # body = answered serial 00b7 (183), answered id 0002, result 00.
    fields = "80010005043048325465000100b7000200"
    code = reduce(lambda a, b: a ^ b, bytes.fromhex(fields))
    expected = bytes.fromhex("7e" + fields + f"{code:02x}" + "7e")
    assert code != 0
    body = m.encode_general_reply(183, 0x0002, m.RESULT_OK)
    assert encode_frame(0x8001, "043048325465", 1, body) == expected


def test_splitter_yields_two_frames_from_one_read():
    splitter = FrameSplitter()
    frames = [decode_frame(c, w) for c, w in splitter.feed(TWO_FRAMES)]
    assert [f.header.msg_id for f in frames] == [0x0002, 0x0100]
    assert frames[0].wire.hex() == "7e000200000123456789017fff0a7e"
    assert splitter.garbage_bytes == 0


def test_splitter_reassembles_a_frame_split_across_reads():
    splitter = FrameSplitter()
    out = []
    for i in range(len(HEARTBEAT_2013)):  # one byte per read
        out += splitter.feed(HEARTBEAT_2013[i : i + 1])
    assert len(out) == 1
    assert decode_frame(*out[0]).header.serial == 183
    assert out[0][1] == HEARTBEAT_2013


def test_splitter_skips_garbage_before_and_between_frames():
    splitter = FrameSplitter()
    stream = b"GET / HTTP/1.1\r\n" + HEARTBEAT_2013 + b"\x01\x02junk" + HEARTBEAT_2019
    decoded, bad = [], []
    for content, wire in splitter.feed(stream):
        try:
            decoded.append(decode_frame(content, wire))
        except FrameError as error:
            bad.append(error.reason)
    assert [f.header.msg_id for f in decoded] == [0x0002, 0x0002]
    assert splitter.garbage_bytes == len(b"GET / HTTP/1.1\r\n")
    assert len(bad) == 1  # the junk between the frames, dropped


def test_splitter_drops_an_oversize_buffer_and_resynchronises():
    splitter = FrameSplitter(max_frame_bytes=64)
    assert splitter.feed(b"\x7e" + b"\x00" * 100) == []
    assert splitter.overflows == 1
    out = splitter.feed(b"\x00" * 10 + HEARTBEAT_2013)
    assert [decode_frame(c, w).header.serial for c, w in out] == [183]


def test_subpackaged_message_is_reassembled_in_index_order():
    body = m.encode_batch(
        [
            m.LocationReport(0, 3, 22_639_634, 114_031_952, 10, 100, 90, "160527090624"),
            m.LocationReport(0, 3, 22_639_718, 114_031_952, 10, 100, 90, "160527090653"),
        ],
        m.BATCH_TYPE_REUPLOAD,
    )
    half = len(body) // 2
    first = encode_frame(0x0704, "13567777777", 40, body[:half], subpackage=(2, 1))
    second = encode_frame(0x0704, "13567777777", 41, body[half:], subpackage=(2, 2))
    assembler = SubpackageAssembler(timeout_s=60)
    packet2 = decode_frame(second[1:-1], second)
    packet1 = decode_frame(first[1:-1], first)
    assert packet1.header.subpackage_total == 2 and packet1.header.subpackage_index == 1
    assert assembler.add(packet2, 0.0) is None  # out of order on purpose
    whole = assembler.add(packet1, 1.0)
    assert whole is not None
    assert whole.body == body
    assert whole.wire == first + second
    assert whole.header.subpackage_total is None and whole.header.serial == 40  # completed by 1
    batch = m.decode_batch(whole.body)
    assert batch.reupload and len(batch.reports) == 2
    assert assembler.pending == 0


def test_incomplete_subpackage_expires():
    wire = encode_frame(0x0704, "13567777777", 7, b"\x00\x01", subpackage=(3, 1))
    assembler = SubpackageAssembler(timeout_s=5)
    assert assembler.add(decode_frame(wire[1:-1]), 0.0) is None
    other = encode_frame(0x0704, "13567777777", 70, b"\x00", subpackage=(2, 1))
    assembler.add(decode_frame(other[1:-1]), 10.0)
    assert assembler.expired == 1 and assembler.pending == 1
    with pytest.raises(FrameError):
        bad = encode_frame(0x0704, "13567777777", 9, b"", subpackage=(2, 3))
        assembler.add(decode_frame(bad[1:-1]), 11.0)


@pytest.mark.parametrize(
    ("value", "size", "expected"),
    [
        ("京A12345", 8, "京A12345".encode("gbk")),  # exactly full
        ("京A12345", 4, "京A1".encode("gbk")),  # cut between characters
        ("A京B", 2, b"A\x00"),  # 京 does not fit whole: left out, not halved
        ("张三丰", 5, "张三".encode("gbk") + b"\x00"),
        (None, 3, b"\x00\x00\x00"),
        ("ab", 4, b"ab\x00\x00"),
    ],
)
def test_a_fixed_width_string_is_cut_between_gbk_characters(
    value: str | None, size: int, expected: bytes
) -> None:
    field = gbk_fixed(value, size)
    assert field == expected and len(field) == size
    text = field.rstrip(b"\x00").decode("gbk")  # whole characters only: decodes strictly
    assert (value or "").startswith(text)
