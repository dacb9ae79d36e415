"""A large sub-packaged blind-area upload (0x0704) is stored whole (issue 14 item 4): its
positions reference the frame once instead of each carrying all of it, the publishes stay under
ingest's payload limit, and the terminal's result 0 comes only after the broker has them.
Real TCP -> real gateway -> Mosquitto -> real ingest worker -> PostgreSQL."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from ingest_helpers import count_probe, running_worker, wait_for
from jt808_helpers import add_vehicle, authenticated, general_reply_of, running_gateway

from gps_monitor.config import IngestSettings, Settings
from ingest.jt808 import messages as m
from ingest.jt808.codec import encode_frame
from ingest.jt808.server import batch_payloads
from ingest.jt808.sim import SimTerminal

PHONE = "13800000001"
START = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)  # 08:00 GMT+8


def blind_area_reports(count: int) -> list[m.LocationReport]:
    """``count`` fixes 10 s apart along a line, with mileage and satellites items."""
    reports = []
    for i in range(count):
        local = START + timedelta(seconds=10 * i, hours=8)
        reports.append(
            m.LocationReport(
                alarm_flags=0,
                status_flags=m.STATUS_ACC_ON | m.STATUS_POSITIONED,
                latitude_e6=29_563_000 + 100 * i,
                longitude_e6=106_551_000 + 100 * i,
                altitude_m=250,
                speed_dkmh=400 + i,
                heading_deg=45,
                bcd_time=local.strftime("%y%m%d%H%M%S"),
                items={0x01: (123_400 + i).to_bytes(4, "big"), 0x31: bytes([9])},
            )
        )
    return reports


async def send_subpackaged(terminal: SimTerminal, body: bytes, packet_bytes: int) -> list[bytes]:
    """Send ``body`` as a sub-packaged 0x0704 of ``packet_bytes``-byte packets; asserts each
    packet is answered 0; returns the packets' wire bytes."""
    parts = [body[i : i + packet_bytes] for i in range(0, len(body), packet_bytes)]
    first = terminal.serial
    wires = []
    for index, part in enumerate(parts, start=1):
        serial = first + index - 1
        wire = encode_frame(m.MSG_BATCH, PHONE, serial, part, subpackage=(len(parts), index))
        await terminal.send_raw(wire)
        assert general_reply_of(await terminal.read_frame()) == (serial, m.MSG_BATCH, 0)
        wires.append(wire)
    return wires


async def stored_rows(pool: asyncpg.Pool) -> list[Any]:
    return await pool.fetch(
        "SELECT p.fix_time, p.speed_kmh, p.reupload, p.extras, r.payload FROM positions p "
        "JOIN raw_messages r ON r.id = p.raw_message_id ORDER BY p.fix_time"
    )


async def upload(settings: Settings, pool: asyncpg.Pool, count: int) -> tuple[list[bytes], Any]:
    """Upload ``count`` fixes in 1000-byte packets; wait until ingest stored them."""
    await add_vehicle(pool, PHONE, "测A00001")
    reports = blind_area_reports(count)
    body = m.encode_batch(reports, m.BATCH_TYPE_REUPLOAD)
    async with running_worker(settings), running_gateway(settings, pool) as (gateway, port):
        terminal = await authenticated(port, PHONE)
        wires = await send_subpackaged(terminal, body, 1000)
        await terminal.close()
        await wait_for(count_probe(pool, "SELECT count(*) FROM positions"), lambda n: n >= count)
    assert gateway.stats.positions_published == count
    return wires, await stored_rows(pool)


def check_positions_and_evidence(rows: list[Any], wires: list[bytes], count: int) -> None:
    assert [r["fix_time"] for r in rows] == [
        START + timedelta(seconds=10 * i) for i in range(count)
    ]
    assert [r["speed_kmh"] for r in rows] == pytest.approx([(400 + i) / 10 for i in range(count)])
    assert all(r["reupload"] for r in rows)
    extras = [r["extras"] for r in rows]
    # each position carries its own report, which decodes to that fix
    for i, extra in enumerate(extras):
        report = m.decode_location(bytes.fromhex(extra["raw_report_hex"]))
        assert report.speed_dkmh == 400 + i and extra["jt808_frame"]["report_index"] == i
    # each packet as received is carried exactly once; together they are the whole frame
    carried: dict[int, str] = {}
    for extra in extras:
        for index, wire_hex in extra.get("raw_frames_hex", {}).items():
            assert int(index) not in carried
            carried[int(index)] = wire_hex
    assert [carried[i] for i in sorted(carried)] == [w.hex() for w in wires]
    whole = b"".join(wires)
    assert {e["jt808_frame"]["sha256"] for e in extras} == {hashlib.sha256(whole).hexdigest()}


async def test_200_reports_in_subpackages_are_all_stored_with_the_frame_once(settings, pool):
    """The audit: 200 reports in 7 packets passed the broker's packet limit (each of the 200
    positions carried the whole frame); 68 in 3 packets were refused by ingest as oversize."""
    wires, rows = await upload(settings, pool, 200)
    assert len(wires) == 8
    check_positions_and_evidence(rows, wires, 200)
    assert await pool.fetchval("SELECT count(*) FROM rejected_messages") == 0
    # linear, not quadratic: the whole upload took one payload of a few times the frame's size
    payloads = {bytes(r["payload"]) for r in rows}
    assert len(payloads) == 1 and len(payloads.pop()) < 30 * len(b"".join(wires))


async def test_an_upload_larger_than_ingests_payload_limit_is_split_under_it(settings, pool):
    limited = settings.model_copy(
        update={"ingest": settings.ingest.model_copy(update={"max_payload_bytes": 16_384})}
    )
    wires, rows = await upload(limited, pool, 600)
    check_positions_and_evidence(rows, wires, 600)
    assert await pool.fetchval("SELECT count(*) FROM rejected_messages") == 0
    sizes = [len(p) for p in {bytes(r["payload"]) for r in rows}]
    assert len(sizes) >= 5 and max(sizes) <= 16_384


def test_batch_payloads_stay_under_the_limits_and_a_position_too_large_alone_goes_alone() -> None:
    limits = IngestSettings(max_payload_bytes=1000, max_batch_positions=3)
    small = [b'{"n":%d}' % i for i in range(7)]
    huge = b'{"x":"' + b"a" * 1200 + b'"}'
    out = list(batch_payloads([*small[:4], huge, *small[4:]], limits))
    assert out == [
        (b'[{"n":0},{"n":1},{"n":2}]', 3),
        (b'[{"n":3}]', 1),
        (huge, 1),  # a bare object, for the position topic: ingest files it with its reason
        (b'[{"n":4},{"n":5},{"n":6}]', 3),
    ]
    many = [b'{"p":"' + b"b" * 90 + b'"}'] * 25
    sizes = [(len(p), n) for p, n in batch_payloads(many, IngestSettings(max_payload_bytes=256))]
    assert sum(n for _, n in sizes) == 25 and max(size for size, _ in sizes) <= 256
