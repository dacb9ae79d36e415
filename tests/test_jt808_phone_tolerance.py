"""Issue 12 item 3: a terminal whose header phone field holds non-BCD nibbles (A-F) is served
like any other, as traccar and jt808-server serve it, with the field's hex as its terminal id,
instead of its frames (and so its registration) being dropped as bad.

The frames are real device frames of ../shared/data/jt808_frames.tsv (traccar's
Jt808ProtocolDecoderTest: the 0x0100 of 013511221122 and the 0x0200 of 013833501744) with
one phone byte changed to 0x2a and the check code recomputed. Real TCP, Mosquitto and
PostgreSQL.
"""

from __future__ import annotations

from functools import reduce
from operator import xor

from jt808_helpers import add_vehicle, next_message, running_gateway, subscription

from ingest.jt808 import messages as m
from ingest.jt808.codec import decode_frame, encode_frame, escape, unescape
from ingest.jt808.sim import SimTerminal

# traccar Jt808ProtocolDecoderTest (real devices), as in jt808_frames.tsv
REGISTER_2013 = (
    "7E0100002D013511221122000500000000373031303748422D52303347424400000000000000000000003233"
    "363631303402CBD5424136383630387E"
)
LOCATION_2013 = (
    "7E0200002A013833501744001900000000000000C201597FA806CC01580080000000081508180721210104"
    "000002F502020000030200009F7E"
)
PHONE_FIELD = bytes.fromhex("01351122112a")  # last byte 0x22 -> 0x2a: nibble A is not BCD
TERMINAL_ID = "1351122112a"


def with_phone(wire_hex: str, phone_field: bytes, offset: int = 4) -> bytes:
    """A real frame with its phone field replaced and its check code recomputed."""
    plain = bytearray(unescape(bytes.fromhex(wire_hex)[1:-1]))
    plain[offset : offset + len(phone_field)] = phone_field
    plain[-1] = reduce(xor, plain[:-1], 0)
    return b"\x7e" + escape(bytes(plain)) + b"\x7e"


def test_a_non_bcd_phone_field_decodes_to_its_hex_and_replies_echo_it():
    frame = decode_frame(with_phone(REGISTER_2013, PHONE_FIELD)[1:-1])
    assert frame.header.phone == "01351122112a"
    assert not frame.header.phone_is_bcd
    assert frame.header.terminal_id == TERMINAL_ID
    reply = encode_frame(m.MSG_PLATFORM_REPLY, frame.header.phone, 1, b"\x00\x05\x01\x00\x00")
    assert unescape(reply[1:-1])[4:10] == PHONE_FIELD
    # 2019 header: 10-byte field, same id rule (leading zeros stripped)
    field_2019 = bytes(4) + PHONE_FIELD
    wire = encode_frame(m.MSG_HEARTBEAT, field_2019.hex(), 3, version=1)
    header = decode_frame(wire[1:-1]).header
    assert (header.phone, header.terminal_id) == (field_2019.hex(), TERMINAL_ID)
    assert unescape(wire[1:-1])[5:15] == field_2019


async def test_a_terminal_with_a_non_bcd_phone_registers_reports_and_is_published(settings, pool):
    await add_vehicle(pool, TERMINAL_ID, "苏BA6860", plate_color=2)
    async with (
        subscription(settings) as queue,
        running_gateway(settings, pool) as (gateway, port),
    ):
        terminal = SimTerminal(PHONE_FIELD.hex())
        await terminal.connect("127.0.0.1", port)
        await terminal.send_raw(with_phone(REGISTER_2013, PHONE_FIELD))
        reply = await terminal.read_frame()
        assert unescape(reply.wire[1:-1])[4:10] == PHONE_FIELD  # answered to its own field
        serial, result, code = m.decode_register_reply(reply.body)
        assert (serial, result) == (5, m.REGISTER_OK) and code
        assert await terminal.authenticate(code) == m.RESULT_OK
        await terminal.send_raw(with_phone(LOCATION_2013, PHONE_FIELD))
        reply = await terminal.read_frame()
        assert m.decode_general_reply(reply.body) == (25, m.MSG_LOCATION, m.RESULT_OK)
        topic, position = await next_message(queue)
        assert topic == f"{settings.mqtt.topic_prefix}gps/v1/{TERMINAL_ID}/position"
        assert (position["latitude"], position["longitude"]) == (22.6426, 114.032984)
        await terminal.close()
    assert gateway.stats.frames_non_bcd_phone == 3
    assert not gateway.stats.frames_bad
    stored = await pool.fetchrow(
        "SELECT phone_bcd FROM jt808_terminals WHERE terminal_id = $1", TERMINAL_ID
    )
    assert stored["phone_bcd"] == PHONE_FIELD.hex()
