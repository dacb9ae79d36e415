"""Memory the JT/T 808 gateway holds for a peer is bounded (issue 14 item 2): sub-packages are
reassembled only for an authenticated terminal (or a registration), within a packet count per
message and a byte cap per connection and across the gateway, and freed when the connection
closes; the frame splitter holds at most ``max_frame_bytes``. Real TCP against the real
gateway; what is measured is the bytes the reassembly structures hold, not the RSS."""

from __future__ import annotations

import asyncio

from ingest_helpers import wait_for
from jt808_helpers import (
    add_vehicle,
    authenticated,
    general_reply_of,
    location_report,
    running_gateway,
)

from ingest.jt808 import messages as m
from ingest.jt808.codec import FrameSplitter, encode_frame
from ingest.jt808.server import Jt808Gateway
from ingest.jt808.sim import SimTerminal

PACKET_BODY = bytes(range(256)) * 3 + bytes(232)  # 1000 bytes, several to be escaped


def packet(phone: str, serial: int, total: int, index: int, body: bytes = PACKET_BODY) -> bytes:
    """One packet of a sub-packaged 0x0704 (first packet's serial = serial - index + 1)."""
    return encode_frame(m.MSG_BATCH, phone, serial, body, subpackage=(total, index))


async def send_packets(terminal: SimTerminal, packets: list[bytes]) -> list[int]:
    """Send the packets one at a time; the 0x8001 result of each."""
    results = []
    for wire in packets:
        await terminal.send_raw(wire)
        _, msg_id, result = general_reply_of(await terminal.read_frame())
        assert msg_id == m.MSG_BATCH
        results.append(result)
    return results


def held(gateway: Jt808Gateway) -> int:
    return gateway.subpackage_budget.held_bytes


async def held_once_closed(gateway: Jt808Gateway, expected: int) -> int:
    """The held bytes once the gateway has seen a close (polled until ``expected``)."""

    async def probe() -> int:
        return held(gateway)

    return int(await wait_for(probe, lambda value: value == expected, timeout_s=5))


async def test_unauthenticated_subpackages_are_refused_and_nothing_is_held(settings, pool):
    """The audit's attack: a connection that never authenticated announcing 65,535 packets per
    message, spread over many messages. Before: every packet answered 0 and kept."""
    async with running_gateway(settings, pool) as (gateway, port):
        attacker = SimTerminal("13800000066")
        await attacker.connect("127.0.0.1", port)
        wires = [packet("13800000066", 1000 * k + 1, 65535, 1) for k in range(20)]
        wires += [packet("13800000066", 5, 65535, i) for i in range(2, 60)]
        results = await send_packets(attacker, wires)
        assert held(gateway) == 0 and gateway.held_bytes() == 0
        assert await attacker.heartbeat() == m.RESULT_OK  # answered, not crashed
        await attacker.close()
    assert results == [m.RESULT_FAILURE] * len(wires)
    assert gateway.stats.unauthenticated_refused == len(wires)


async def test_subpackages_are_capped_per_message_connection_and_gateway_and_freed_on_close(
    settings, pool
):
    for phone in ("13800000001", "13800000002", "13800000003"):
        await add_vehicle(pool, phone, f"测A{phone[-5:]}")
    caps = {
        "subpackage_max_packets": 64,
        "subpackage_max_connection_bytes": 12_000,
        "subpackage_max_total_bytes": 20_000,
    }
    async with running_gateway(settings, pool, **caps) as (gateway, port):
        one = await authenticated(port, "13800000001")
        two = await authenticated(port, "13800000002")
        # more packets than a message may have: refused, nothing held
        assert await send_packets(one, [packet("13800000001", 100, 65, 1)]) == [1]
        assert held(gateway) == 0
        # one connection fills its cap with unfinished messages (one packet each)
        first = await send_packets(one, [packet("13800000001", 10 * k, 4, 1) for k in range(10)])
        held_by_one = held(gateway)
        assert held_by_one <= 12_000 and first.count(m.RESULT_OK) >= 5
        assert first[-1] == m.RESULT_FAILURE
        # another connection gets what is left of the gateway's cap, then refusals
        second = await send_packets(two, [packet("13800000002", 10 * k, 4, 1) for k in range(10)])
        assert held(gateway) <= 20_000 and second[0] == m.RESULT_OK
        assert second[-1] == m.RESULT_FAILURE
        assert gateway.held_bytes() == held(gateway)  # splitters hold nothing between frames
        # closing the first connection frees what it held
        before_close = held(gateway)
        await one.close()
        after_close = await held_once_closed(gateway, before_close - held_by_one)
        assert after_close == before_close - held_by_one
        # with room again, a real upload completes on a third connection
        three = await authenticated(port, "13800000003")
        body = m.encode_batch([location_report_at(s) for s in range(0, 50, 2)])
        cut = len(body) // 2
        parts = [
            packet("13800000003", 40, 2, 1, body[:cut]),
            packet("13800000003", 41, 2, 2, body[cut:]),
        ]
        assert await send_packets(three, parts) == [m.RESULT_OK, m.RESULT_OK]
        await two.close()
        await three.close()
        assert await held_once_closed(gateway, 0) == 0
    refused = gateway.stats.subpackages_refused
    assert refused["subpackage_packets"] == 1
    assert refused["subpackage_connection_bytes"] >= 1
    assert refused["subpackage_total_bytes"] >= 1
    assert gateway.stats.positions_published == 25


async def test_a_peer_that_never_sends_a_delimiter_holds_at_most_max_frame_bytes(settings, pool):
    await add_vehicle(pool, "13800000001", "测A00001")
    async with running_gateway(settings, pool, max_frame_bytes=4096) as (gateway, port):
        terminal = await authenticated(port, "13800000001")
        peaks = []
        for _ in range(16):  # 2 MiB without 0x7E
            await terminal.send_raw(b"\x55" * 131_072)
            await asyncio.sleep(0.01)
            peaks.append(gateway.held_bytes())
        assert await terminal.heartbeat() == m.RESULT_OK  # in sync again at the next 0x7E
        await terminal.close()
    assert max(peaks) <= 4096
    assert gateway.stats.buffer_overflows >= 16


def test_splitter_drops_a_candidate_longer_than_max_frame_bytes_without_decoding() -> None:
    splitter = FrameSplitter(max_frame_bytes=1024)
    heartbeat = encode_frame(m.MSG_HEARTBEAT, "13800000001", 1)
    candidates = splitter.feed(heartbeat + b"\x7e" + b"\x01" * 5000 + b"\x7e" + heartbeat)
    assert [wire for _, wire in candidates] == [heartbeat, heartbeat]
    assert splitter.overflows == 1 and splitter.buffered_bytes == 0


def location_report_at(second: int) -> m.LocationReport:
    return location_report(f"26010108{second // 60:02d}{second % 60:02d}")


async def test_a_subpackaged_registration_is_reassembled_before_authentication(settings, pool):
    await add_vehicle(pool, "13800000001", "测A00001")
    request = m.RegisterRequest(50, 100, "GPSM", "SIM-808", "0000001", 2, "测A00001", "2013")
    body = m.encode_register(request, is_2019=False)
    async with running_gateway(settings, pool) as (gateway, port):
        terminal = SimTerminal("13800000001")
        await terminal.connect("127.0.0.1", port)
        first = encode_frame(m.MSG_REGISTER, "13800000001", 3, body[:20], subpackage=(2, 1))
        await terminal.send_raw(first)
        assert general_reply_of(await terminal.read_frame()) == (3, m.MSG_REGISTER, 0)
        second = encode_frame(m.MSG_REGISTER, "13800000001", 4, body[20:], subpackage=(2, 2))
        await terminal.send_raw(second)
        reply = await terminal.read_frame()
        await terminal.close()
    assert reply.header.msg_id == m.MSG_REGISTER_REPLY
    serial, result, code = m.decode_register_reply(reply.body)
    assert (serial, result, len(code)) == (4, m.REGISTER_OK, 16)
    assert held(gateway) == 0
