"""The JT/T 808 gateway over real TCP, the real Mosquitto and the real PostgreSQL registry:
registration and authentication, positions on MQTT only after PUBACK and only from
authenticated terminals, replies byte for byte, and broken input (bad frames, garbage,
split frames, slow-loris)."""

from __future__ import annotations

import asyncio
import struct
from datetime import UTC, datetime
from functools import reduce

import pytest
from jt808_helpers import (
    add_vehicle,
    authenticated,
    general_reply_of,
    location_report,
    next_message,
    running_gateway,
    subscription,
)

from gps_monitor.config import Jt808Settings
from gps_monitor.models import PlateColor
from ingest.jt808 import messages as m
from ingest.jt808.auth import TerminalAuthenticator
from ingest.jt808.codec import encode_frame, escape
from ingest.jt808.publisher import MqttPublisher
from ingest.jt808.server import Jt808Gateway
from ingest.jt808.sim import SimTerminal, TerminalError, sim_plate

# Real frames from ../shared/data/jt808_frames.tsv (traccar test suite, real devices).
LOCATION_13833501744 = bytes.fromhex(
    "7E0200002A013833501744001900000000000000C201597FA806CC01580080000000081508180721210104"
    "000002F502020000030200009F7E"
)
REGISTER_13511221122 = bytes.fromhex(
    "7E0100002D013511221122000500000000373031303748422D52303347424400000000000000000000003233"
    "363631303402CBD5424136383630387E"
)
BLIND_AREA_13567777777 = bytes.fromhex(
    "7E0704014301356777777707F5000801002600000000000000030159741206CBFD500172000000011605"
    "2709062401040000001D03020000002600000000000000030159746606CBFD50016B0000000116052709"
    "065301040000001D0302000000260000000000000003015975E406CBFE58013F00000001160527090727"
    "01040000001D0302000000260000000000000003015976DE06CBFF10012E000000011605270907560104"
    "0000001D0302000000260000000000000003015976BC06CBFED0012D0000000116052709083001040000"
    "001D0302000000260000000000000003015976FE06CBFEC001080000000116052709090001040000001D"
    "0302000000260000000000000003015976FE06CBFE7800FC0000000116052709093301040000001D0302"
    "000000260000000000000003015977A606CBFF3001080000000116052709100201040000001D03020000"
    "1F7E"
)


async def test_real_location_frame_reaches_mqtt_after_authentication(settings, pool):
    await add_vehicle(pool, "13833501744", "测A01744")
    async with (
        subscription(settings) as queue,
        running_gateway(settings, pool) as (gateway, port),
    ):
        terminal = await authenticated(port, "013833501744")
        await terminal.send_raw(LOCATION_13833501744)
        reply = await terminal.read_frame()
        # 8001, props 0005, phone, platform serial 2 (after 8100 and the auth reply),
        # answered serial 0x0019 and id 0x0200, result 0; checksum hand-computed
        fields = "8001000501383350174400020019020000"
        code = reduce(lambda a, b: a ^ b, bytes.fromhex(fields))
        assert reply.wire == bytes.fromhex("7e" + fields + f"{code:02x}" + "7e")
        topic, position = await next_message(queue)
        await terminal.close()
    assert topic == f"{settings.mqtt.topic_prefix}gps/v1/13833501744/position"
    assert position["fix_time"] == "2015-08-17T23:21:21+00:00"  # 07:21:21 GMT+8
    assert (position["latitude"], position["longitude"]) == (22.6426, 114.032984)
    assert position["speed_kmh"] == 0.0 and position["heading_deg"] == 8
    assert position["mileage_km"] == 75.7 and position["status_flags"] == 0xC2
    assert position["fix_valid"] is True and position["acc_on"] is False
    assert position["extras"]["raw_frame_hex"] == LOCATION_13833501744.hex()
    assert gateway.stats.positions_published == 1


async def test_unauthenticated_terminal_cannot_publish(settings, pool):
    await add_vehicle(pool, "13833501744", "测A01744")
    async with (
        subscription(settings) as queue,
        running_gateway(settings, pool) as (gateway, port),
    ):
        terminal = SimTerminal("013833501744")
        await terminal.connect("127.0.0.1", port)
        await terminal.send_raw(LOCATION_13833501744)  # before any authentication
        assert general_reply_of(await terminal.read_frame()) == (0x0019, 0x0200, m.RESULT_FAILURE)
        assert await terminal.authenticate("guessed-code") == m.RESULT_FAILURE
        report = m.decode_location(m.encode_location(location_report("260101080000")))
        assert await terminal.send_location(report) == m.RESULT_FAILURE
        # now properly: register, authenticate, send one fix
        await terminal.register(sim_plate("013833501744"), int(PlateColor.YELLOW))
        assert await terminal.authenticate() == m.RESULT_OK
        assert await terminal.send_location(report) == m.RESULT_OK
        _topic, position = await next_message(queue)
        await terminal.close()
    # the first (and only) message on the broker is the one sent after authentication
    assert position["fix_time"] == "2026-01-01T00:00:00+00:00"
    assert gateway.stats.unauthenticated_refused == 2
    assert gateway.stats.auth_refused == 1
    assert queue.empty()


async def test_another_terminals_positions_are_refused_on_an_authenticated_connection(
    settings, pool
):
    await add_vehicle(pool, "13800000001", "测A00001")
    async with running_gateway(settings, pool) as (gateway, port):
        terminal = await authenticated(port, "13800000001")
        # a frame claiming another phone number on this connection
        other = encode_frame(m.MSG_LOCATION, "13800000002", 9, m.encode_location(location_report()))
        await terminal.send_raw(other)
        assert general_reply_of(await terminal.read_frame()) == (9, 0x0200, m.RESULT_FAILURE)
        await terminal.close()
    assert gateway.stats.unauthenticated_refused == 1


async def test_registration_is_checked_against_the_vehicle_registry(settings, pool):
    await add_vehicle(pool, "13511221122", "苏BA6860", plate_color=PlateColor.YELLOW)
    await add_vehicle(pool, "13900000000", "粤B88888", plate_color=PlateColor.BLUE)
    async with running_gateway(settings, pool) as (_gateway, port):
        # the real 2013 register frame of terminal 013511221122, plate 苏BA6860 yellow
        terminal = SimTerminal("013511221122")
        await terminal.connect("127.0.0.1", port)
        await terminal.send_raw(REGISTER_13511221122)
        reply = await terminal.read_frame()
        assert reply.header.msg_id == m.MSG_REGISTER_REPLY
        assert reply.header.phone == "013511221122" and reply.header.version is None
        serial, result, code = m.decode_register_reply(reply.body)
        assert (serial, result) == (5, m.REGISTER_OK) and len(code) == 16
        # registering again: "terminal already registered" and no code (it has one)
        await terminal.send_raw(REGISTER_13511221122)
        again = m.decode_register_reply((await terminal.read_frame()).body)
        assert again == (5, m.REGISTER_TERMINAL_TAKEN, "")
        assert await terminal.authenticate(code) == m.RESULT_OK
        await terminal.close()

        outcomes = {}
        for phone, plate, color in (
            ("13700000000", "", 0),  # terminal not in the registry
            ("13511221122", "苏Z99999", 2),  # plate of no vehicle
            ("13511221122", "粤B88888", 1),  # plate of another terminal's vehicle
        ):
            terminal = SimTerminal(phone)
            await terminal.connect("127.0.0.1", port)
            with pytest.raises(Exception, match=r"registration refused, result \d") as error:
                await terminal.register(plate, color)
            outcomes[(phone, plate)] = str(error.value)[-1]
            await terminal.close()
    # one answer for all three, so the answers do not tell which numbers or plates exist
    assert outcomes == {
        ("13700000000", ""): str(m.REGISTER_NO_VEHICLE),
        ("13511221122", "苏Z99999"): str(m.REGISTER_NO_VEHICLE),
        ("13511221122", "粤B88888"): str(m.REGISTER_NO_VEHICLE),
    }
    stored = await pool.fetchrow("SELECT * FROM jt808_terminals WHERE terminal_id = '13511221122'")
    assert stored["auth_code"] == code and stored["plate_number"] == "苏BA6860"
    assert (stored["maker_id"], stored["model"], stored["device_id"]) == (
        "70107",
        "HB-R03GBD",
        "2366104",
    )


async def test_logout_withdraws_the_auth_code(settings, pool):
    await add_vehicle(pool, "13800000001", "测A00001")
    async with running_gateway(settings, pool) as (_gateway, port):
        terminal = await authenticated(port, "13800000001")
        code = terminal.auth_code
        assert await terminal.logout() == m.RESULT_OK
        assert await terminal.send_location(location_report()) == m.RESULT_FAILURE
        assert await terminal.authenticate(code) == m.RESULT_FAILURE
        await terminal.close()


async def test_blind_area_upload_goes_out_as_one_reupload_batch(settings, pool):
    await add_vehicle(pool, "13567777777", "测A77777")
    async with (
        subscription(settings) as queue,
        running_gateway(settings, pool) as (_gateway, port),
    ):
        terminal = await authenticated(port, "013567777777")
        await terminal.send_raw(BLIND_AREA_13567777777)
        assert general_reply_of(await terminal.read_frame()) == (2037, 0x0704, m.RESULT_OK)
        topic, batch = await next_message(queue)
        await terminal.close()
    assert topic == f"{settings.mqtt.topic_prefix}gps/v1/13567777777/batch"
    assert len(batch) == 8 and all(p["reupload"] is True for p in batch)
    assert [p["fix_time"][11:19] for p in (batch[0], batch[-1])] == ["01:06:24", "01:10:02"]
    # the frame as received once, on the first position; each position its own report bytes
    assert batch[0]["extras"]["raw_frames_hex"] == {"1": BLIND_AREA_13567777777.hex()}
    assert all("raw_frames_hex" not in p["extras"] for p in batch[1:])
    assert [p["extras"]["jt808_frame"]["report_index"] for p in batch] == list(range(8))
    assert batch[3]["extras"]["raw_report_hex"] in BLIND_AREA_13567777777.hex()


async def test_subpackaged_batch_is_reassembled_and_published_once(settings, pool):
    await add_vehicle(pool, "13800000001", "测A00001")
    reports = [location_report(f"2601010800{s:02d}") for s in range(0, 60, 2)]
    body = m.encode_batch(reports, m.BATCH_TYPE_NORMAL)
    cut = len(body) // 3
    parts = [body[:cut], body[cut : 2 * cut], body[2 * cut :]]
    async with (
        subscription(settings) as queue,
        running_gateway(settings, pool) as (gateway, port),
    ):
        terminal = await authenticated(port, "13800000001", protocol="2019")
        first_serial = terminal.serial
        for index, part in enumerate(parts, start=1):
            wire = encode_frame(
                m.MSG_BATCH,
                "13800000001",
                first_serial + index - 1,
                part,
                version=1,
                subpackage=(3, index),
            )
            await terminal.send_raw(wire)
            reply = await terminal.read_frame()
            assert reply.header.version == 1  # answered in the 2019 header
            assert general_reply_of(reply) == (first_serial + index - 1, 0x0704, m.RESULT_OK)
        topic, batch = await next_message(queue)
        await terminal.close()
    assert topic.endswith("/13800000001/batch")
    assert [p["fix_time"] for p in batch] == [
        datetime(2026, 1, 1, 0, 0, s, tzinfo=UTC).isoformat() for s in range(0, 60, 2)
    ]
    assert all(p["reupload"] is False for p in batch)
    assert gateway.stats.positions_published == 30


async def test_bad_frames_are_dropped_and_counted_and_the_connection_stays_up(settings, pool):
    await add_vehicle(pool, "13800000001", "测A00001")
    phone = "13800000001"

    def location(serial: int, bcd: str) -> bytes:
        return encode_frame(m.MSG_LOCATION, phone, serial, m.encode_location(location_report(bcd)))

    good = location(100, "260101080000")
    wrong_checksum = bytearray(location(101, "260101080001"))
    wrong_checksum[-2] ^= 0x55
    if wrong_checksum[-2] in (0x7D, 0x7E):
        wrong_checksum[-2] ^= 0x01
    truncated = location(102, "260101080002")[:20]  # cut off; the next frame follows directly
    inner = (
        bytes.fromhex("0200")
        + struct.pack(">H", 28)
        + bytes.fromhex("013800000001")
        + (struct.pack(">H", 103) + m.encode_location(location_report("260101080003")))
    )
    wrong_length = bytearray(inner)
    wrong_length[3] = 27
    wrong_length_frame = (
        b"\x7e" + escape(bytes(wrong_length) + bytes([_xor(wrong_length)])) + (b"\x7e")
    )
    bad_escape = b"\x7e" + inner[:10] + b"\x7d\x05" + inner[10:] + bytes([_xor(inner)]) + b"\x7e"
    split = location(104, "260101080004")
    pair = location(105, "260101080005") + location(106, "260101080006")

    async with (
        subscription(settings) as queue,
        running_gateway(settings, pool) as (gateway, port),
    ):
        terminal = await authenticated(port, phone)
        await terminal.send_raw(b"\x00\x01garbage before" + good + b"junk between frames")
        await terminal.send_raw(bytes(wrong_checksum) + truncated)
        await terminal.send_raw(wrong_length_frame + bad_escape)
        for piece in (split[:7], split[7:19], split[19:]):  # one frame across three reads
            await terminal.send_raw(piece)
            await asyncio.sleep(0.05)
        await terminal.send_raw(pair)  # two frames in one read
        answered = [general_reply_of(await terminal.read_frame()) for _ in range(4)]
        fix_times = [(await next_message(queue))[1]["fix_time"] for _ in range(4)]
        assert await terminal.heartbeat() == m.RESULT_OK  # still connected
        await terminal.close()
    assert answered == [(s, 0x0200, m.RESULT_OK) for s in (100, 104, 105, 106)]
    assert [t[11:19] for t in fix_times] == ["00:00:00", "00:00:04", "00:00:05", "00:00:06"]
    # checksum: the garbage before the first frame (the connection is already in sync, so it
    # is a candidate frame), the junk between frames, the wrong checksum, and the truncated
    # frame (cut off by the next frame's 0x7E); then one wrong length and one bad escape
    assert dict(gateway.stats.frames_bad) == {"checksum": 4, "length": 1, "escape": 1}
    assert gateway.stats.positions_published == 4
    assert gateway.stats.idle_closed == 0


async def test_slow_loris_connection_is_closed_after_the_idle_timeout(settings, pool):
    await add_vehicle(pool, "13800000001", "测A00001")
    async with running_gateway(settings, pool, idle_timeout_s=0.6) as (gateway, port):
        # a live terminal heartbeating every 0.2 s outlives the timeout
        live = await authenticated(port, "13800000001")
        # a connection trickling one byte every 0.1 s, never completing a frame
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        frame = encode_frame(m.MSG_HEARTBEAT, "13800000001", 1)
        closed_after = None
        loop = asyncio.get_running_loop()
        started = loop.time()
        for i in range(40):
            try:
                writer.write(frame[i % (len(frame) - 1) : i % (len(frame) - 1) + 1])
                await writer.drain()
            except ConnectionError:
                closed_after = loop.time() - started
                break
            assert await live.heartbeat() == m.RESULT_OK
            if reader.at_eof() or (await _eof_within(reader, 0.1)):
                closed_after = loop.time() - started
                break
        writer.close()
        assert await live.heartbeat() == m.RESULT_OK
        await live.close()
    assert closed_after is not None, "the trickling connection was never closed"
    assert gateway.stats.idle_closed == 1


async def test_broker_unreachable_means_failure_reply_so_the_terminal_resends(settings, pool):
    await add_vehicle(pool, "13800000001", "测A00001")
    broken = settings.model_copy(
        update={"mqtt": settings.mqtt.model_copy(update={"port": _closed_port()})}
    )
    authenticator = TerminalAuthenticator(pool, policy="registry", check_plate=True)
    async with MqttPublisher(broken, connect_timeout_s=0.5) as publisher:
        gateway = Jt808Gateway(broken, authenticator, publisher)
        server = await gateway.start("127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        terminal = await authenticated(port, "13800000001")
        assert await terminal.send_location(location_report()) == m.RESULT_FAILURE
        await terminal.close()
        server.close()
        await gateway.close_connections()
        await server.wait_closed()
    assert gateway.stats.publish_failures == 1 and gateway.stats.positions_published == 0


async def test_terminal_time_zone_override_from_the_vehicle_registry(settings, pool):
    await add_vehicle(pool, "13800000001", "测A00001", utc_offset_min=0)
    async with (
        subscription(settings) as queue,
        running_gateway(settings, pool) as (_gateway, port),
    ):
        terminal = await authenticated(port, "13800000001")
        assert await terminal.send_location(location_report("260101080000")) == m.RESULT_OK
        _, position = await next_message(queue)
        await terminal.close()
    assert position["fix_time"] == "2026-01-01T08:00:00+00:00"  # this terminal's clock is UTC


# ------------------------------------------------------------------------------- helpers


def _xor(data: bytes | bytearray) -> int:
    return reduce(lambda a, b: a ^ b, data, 0)


async def _eof_within(reader: asyncio.StreamReader, timeout_s: float) -> bool:
    try:
        data = await asyncio.wait_for(reader.read(100), timeout_s)
    except TimeoutError:
        return False
    return data == b""


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_register_refusal_reply_byte_for_byte(settings, pool):
    async with running_gateway(settings, pool) as (_gateway, port):
        terminal = SimTerminal("013511221122")
        await terminal.connect("127.0.0.1", port)
        await terminal.send_raw(REGISTER_13511221122)  # no vehicle carries this terminal
        reply = await terminal.read_frame()
        await terminal.close()
    # 8100, props 0003, phone, platform serial 0, answered serial 0005, result 2 (the same
    # answer as for a known number with the wrong plate), no auth code
    fields = "810000030135112211220000000502"
    code = reduce(lambda a, b: a ^ b, bytes.fromhex(fields))
    assert code != 0
    assert reply.wire == bytes.fromhex("7e" + fields + f"{code:02x}" + "7e")


async def test_unsupported_and_encrypted_messages_get_result_3(settings, pool):
    await add_vehicle(pool, "13800000001", "测A00001")
    async with running_gateway(settings, pool) as (gateway, port):
        terminal = await authenticated(port, "13800000001")
        assert await terminal.general(0x0301, b"\x01") == m.RESULT_UNSUPPORTED  # event report
        # props bit 10: RSA-encrypted body
        body = m.encode_location(location_report())
        plain = bytearray(unescape_frame(encode_frame(m.MSG_LOCATION, "13800000001", 77, body)))
        plain[2] |= 0x04
        plain[-1] = _xor(plain[:-1])
        await terminal.send_raw(b"\x7e" + escape(bytes(plain)) + b"\x7e")
        assert general_reply_of(await terminal.read_frame()) == (77, 0x0200, m.RESULT_UNSUPPORTED)
        assert await terminal.heartbeat() == m.RESULT_OK
        await terminal.close()
    assert gateway.stats.unsupported == 2 and gateway.stats.positions_published == 0


async def test_known_terminal_policy_accepts_codes_issued_elsewhere(settings, pool):
    await add_vehicle(pool, "13800000001", "测A00001")
    authenticator = TerminalAuthenticator(pool, policy="known_terminal", check_plate=True)
    async with MqttPublisher(settings, connect_timeout_s=5) as publisher:
        gateway = Jt808Gateway(settings, authenticator, publisher)
        server = await gateway.start("127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        known = SimTerminal("13800000001")
        await known.connect("127.0.0.1", port)
        assert await known.authenticate("code-from-the-old-platform") == m.RESULT_OK
        assert await known.send_location(location_report()) == m.RESULT_OK
        unknown = SimTerminal("13800000002")
        await unknown.connect("127.0.0.1", port)
        assert await unknown.authenticate("code-from-the-old-platform") == m.RESULT_FAILURE
        await known.close()
        await unknown.close()
        server.close()
        await gateway.close_connections()
        await server.wait_closed()


async def test_jt808_command_serves_until_cancelled(settings, pool):
    from ingest.jt808.cli import serve

    await add_vehicle(pool, "13800000001", "测A00001")
    port = _closed_port()
    configured = settings.model_copy(
        update={
            "jt808": Jt808Settings(
                host="127.0.0.1", port=port, client_id=f"{settings.mqtt.client_id}-gw"
            )
        }
    )
    ready = asyncio.Event()
    async with subscription(settings) as queue:
        task = asyncio.create_task(serve(configured, ready, upgrade=True))
        await asyncio.wait_for(ready.wait(), 10)
        terminal = await authenticated(port, "13800000001")
        assert await terminal.send_location(location_report()) == m.RESULT_OK
        topic, _ = await next_message(queue)
        if topic.endswith("/status"):  # the gateway announces the terminal online first
            topic, _ = await next_message(queue)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # the gateway closed the terminal's connection on its way down
        with pytest.raises(TerminalError):
            await terminal.heartbeat()
        await terminal.close()
    assert topic.endswith("/13800000001/position")


def unescape_frame(wire: bytes) -> bytes:
    from ingest.jt808.codec import unescape

    return unescape(wire[1:-1])


async def test_connection_that_never_authenticates_is_closed(settings, pool):
    async with running_gateway(settings, pool, auth_timeout_s=0.5) as (gateway, port):
        terminal = SimTerminal("13800000009")
        await terminal.connect("127.0.0.1", port)
        closed = False
        for _ in range(20):  # valid heartbeats keep it from idling, not from the auth deadline
            try:
                assert await terminal.heartbeat() == m.RESULT_OK
            except (TerminalError, ConnectionError):
                closed = True
                break
            await asyncio.sleep(0.1)
        await terminal.close()
    assert closed
    assert gateway.stats.unauthenticated_closed == 1 and gateway.stats.idle_closed == 0
