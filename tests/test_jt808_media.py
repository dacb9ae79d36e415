"""Photo evidence (issue 12 item 6): JT/T 808 0x8801 / 0x0805 / 0x0800 / 0x0801 / 0x8800 / 0x8003
against independent vectors, and the whole loop on the real Mosquitto and PostgreSQL: the API
asks for a photo about an alarm, the dispatcher publishes ``take_photo``, the gateway sends
0x8801, the simulated terminal answers 0x0805 and uploads in sub-packages with one packet lost,
the gateway asks for it (0x8800), the terminal resends, the photo is stored under its SHA-256,
linked to the alarm and shown by the API; bad uploads are stored as incomplete with the reason.

Vectors (bytes only) from SmallChi/JT808, commit c9552b0f9eadc6906aeeaa501335c312ce082232,
src/JT808.Protocol.Test/MessageBody/: JT808_0x0800Test.cs, JT808_0x0801Test.cs (the 2013 body
and the real sub-packaged frames Package1/Package2), JT808_0x0805Test.cs, JT808_0x8800Test.cs,
JT808_0x8801Test.cs, JT808_0x8003Test.cs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import asyncpg
import pytest
from ingest_helpers import wait_for
from pypdf import PdfReader
from web_helpers import World, make_world, rest_client, store_alarm

from gps_monitor import topics
from gps_monitor.config import CommandsSettings, Jt808Settings, MediaSettings, Settings
from gps_monitor.db import registry
from gps_monitor.media import TakePhotoBody
from gps_monitor.media_store import MediaStore
from gps_monitor.models import PlateColor
from ingest.commands import CommandDispatcher
from ingest.jt808 import media as jm
from ingest.jt808 import messages as m
from ingest.jt808.auth import TerminalAuthenticator
from ingest.jt808.codec import decode_frame, encode_frame
from ingest.jt808.downlink import Downlink
from ingest.jt808.media_sim import sim_photo, simulated_report
from ingest.jt808.publisher import MqttPublisher
from ingest.jt808.server import Jt808Gateway
from ingest.jt808.sim import SimTerminal

PHONE_A = "13900000011"
PHONE_B = "13900000012"

# SmallChi/JT808 JT808_0x0801Test.cs Package1 / Package2: two packets (1 and 2 of 10) of a real
# photo upload; the bytes up to the JPEG start of packet 1 and the header of packet 2.
PACKAGE1_START = bytes.fromhex(
    "7e080123240138123456782031000a00010000271d0000010100000000000c200301d2400a063296a501e1"
    "00000000190104092952ffd8ffc4001f0000010501010101010100000000000000000102030405060708090a"
    "0bffc400b5100002010303020403050504040000017d0101020300041105122131410613516107227114328191"
)
PACKAGE2_START = bytes.fromhex("7e080123000138123456782032000a0002")


# --------------------------------------------------------------------------- wire format


def test_0x0800_multimedia_event_decodes_field_by_field() -> None:
    head = jm.decode_media_event(bytes.fromhex("000015C101020106"))
    assert head == jm.MediaHead(5569, 1, 2, 1, 6)
    assert head.encode().hex().upper() == "000015C101020106"


def test_0x0801_body_decodes_head_position_and_data_and_reencodes() -> None:
    body = bytes.fromhex(
        "00000A070000017B000000010000000200BA7F0E07E4F11C0028003C000018111523261001020304"
    )
    head, report = jm.decode_upload_head(body)
    assert head == jm.MediaHead(2567, 0, 0, 1, 123)  # image, JPEG, timed, channel 123
    assert (report.alarm_flags, report.status_flags) == (1, 2)
    assert (report.latitude_e6, report.longitude_e6, report.altitude_m) == (12222222, 132444444, 40)
    assert (report.speed_dkmh, report.heading_deg, report.bcd_time) == (60, 0, "181115232610")
    assert report.fix_time() == datetime(2018, 11, 15, 15, 26, 10, tzinfo=UTC)
    assert body[jm.UPLOAD_HEAD_BYTES :] == bytes([1, 2, 3, 4])
    assert jm.encode_upload_head(head, report) + bytes([1, 2, 3, 4]) == body


def test_real_sub_packaged_0x0801_packets_give_header_head_and_jpeg_start() -> None:
    # the first packet's wire bytes up to the JPEG data: a frame cut short is not a frame, so
    # check the header fields and the head by hand on the unescaped prefix
    raw = PACKAGE1_START[1:]
    msg_id, props = struct.unpack_from(">HH", raw, 0)
    assert msg_id == 0x0801 and props & (1 << 13) and props & 0x3FF == 0x324  # 804-byte body
    assert raw[4:10].hex() == "013812345678"
    serial, total, index = struct.unpack_from(">HHH", raw, 10)
    assert (serial, total, index) == (0x2031, 10, 1)
    head, report = jm.decode_upload_head(raw[16:])
    assert head == jm.MediaHead(0x271D, 0, 0, 1, 1)
    assert report.bcd_time == "190104092952"
    assert raw[16 + jm.UPLOAD_HEAD_BYTES : 16 + jm.UPLOAD_HEAD_BYTES + 2] == b"\xff\xd8"  # JPEG
    raw2 = PACKAGE2_START[1:]
    assert struct.unpack_from(">HHH", raw2, 10) == (0x2032, 10, 2)  # the next serial


def test_0x0805_camera_answer_decodes_and_reencodes() -> None:
    body = bytes.fromhex("30A80000020000301200003124")
    assert jm.decode_camera_reply(body) == (12456, 0, [0x3012, 0x3124])
    assert jm.encode_camera_reply(12456, 0, [0x3012, 0x3124]) == body


def test_0x8801_camera_command_decodes_and_take_photo_encodes() -> None:
    body = bytes.fromhex("8000000A7E010809EB7E78F5")
    order = jm.decode_camera(body)
    assert order == jm.CameraCommand(128, 0, 2686, 1, 8, 9, 235, 126, 120, 245)
    photo = TakePhotoBody(
        channel=128, count=1, interval_s=2686, save=True, resolution=8, quality=9,
        brightness=235, contrast=126, saturation=120, chroma=245,
    )  # fmt: skip
    assert jm.encode_camera(photo) == bytes.fromhex("800001" + "0A7E010809EB7E78F5")


def test_0x8800_frames_byte_for_byte() -> None:
    missing = encode_frame(0x8800, "123456789", 0, jm.encode_upload_reply(129, [0x0102, 0x0304]))
    assert missing.hex().upper() == "7E8800000900012345678900000000008102010203048F7E"
    complete = encode_frame(0x8800, "123456789", 0, jm.encode_upload_reply(129, []))
    assert complete.hex().upper() == "7E88000004000123456789000000000081847E"
    # the 2011 form (JT808_0x8800Test.cs: count 0 present) decodes as complete too
    frame = decode_frame(bytes.fromhex("8800000500012345678900010000008100847E")[:-1])
    assert jm.decode_upload_reply(frame.body) == (129, [])
    assert jm.decode_upload_reply(bytes.fromhex("000000810201020304")) == (129, [0x0102, 0x0304])


def test_0x8003_resend_request_decodes_and_reencodes() -> None:
    body = bytes.fromhex("04D20201020203")
    assert jm.decode_resend_request(body, is_2019=False) == (1234, [0x0102, 0x0203])
    assert jm.encode_resend_request(1234, [0x0102, 0x0203], is_2019=False) == body
    assert jm.encode_resend_request(1234, [7], is_2019=True) == bytes.fromhex("04D200010007")


def test_media_store_keeps_content_under_its_digest_in_key_order(tmp_path: Path) -> None:
    store = MediaStore(tmp_path)
    spool = store.spool()
    for key, data in ((1, b"ab"), (3, b"ef"), (2, b"cd"), (2, b"XX")):
        spool.write(key, data)
    stored = store.commit(spool)
    assert stored.sha256 == hashlib.sha256(b"abcdef").hexdigest() and stored.size_bytes == 6
    assert store.path(stored.sha256).read_bytes() == b"abcdef"
    assert list((tmp_path / "spool").iterdir()) == []
    assert store.verify(stored.sha256)
    with pytest.raises(ValueError, match="64 lowercase hex"):
        store.path("../../etc/passwd")


# ------------------------------------------------------------------------------ the loop


@dataclass
class Loop:
    settings: Settings
    pool: asyncpg.Pool
    world: World
    port: int
    vehicle_a: int
    gateway: Jt808Gateway
    media: jm.MediaUploads
    store: MediaStore


@contextlib.asynccontextmanager
async def photo_loop(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path, **media: Any
) -> AsyncIterator[Loop]:
    """Gateway with downlink and photo handling, and the command dispatcher, in this process on
    the real broker and database; vehicle A (company A) and B (company B) with terminals."""
    settings = settings.model_copy(
        update={
            "jt808": Jt808Settings(client_id=f"{settings.mqtt.client_id}-gw"),
            "commands": CommandsSettings(scan_interval_s=0.3),
            "media": MediaSettings(directory=str(tmp_path / "media"), **media),
        }
    )
    world = await make_world(pool, settings)
    a = await registry.ensure_vehicle(
        pool, company_id=world.company_a, plate_number="渝A80011", terminal_id=PHONE_A,
        plate_color=PlateColor.YELLOW,
    )  # fmt: skip
    await registry.ensure_vehicle(
        pool, company_id=world.company_b, plate_number="渝B80012", terminal_id=PHONE_B,
        plate_color=PlateColor.YELLOW,
    )  # fmt: skip
    authenticator = TerminalAuthenticator(pool, policy="registry", check_plate=True)
    dispatcher = CommandDispatcher(settings)
    store = MediaStore(settings.media.directory)
    async with MqttPublisher(settings, connect_timeout_s=5) as publisher:
        downlink = Downlink(settings, publisher)
        gateway = Jt808Gateway(settings, authenticator, publisher, downlink)
        uploads = jm.MediaUploads(settings, store, pool, gateway, downlink)
        server = await gateway.start("127.0.0.1", 0)
        tasks = [
            asyncio.create_task(downlink.run()),
            asyncio.create_task(dispatcher.run()),
            asyncio.create_task(uploads.run()),
        ]
        try:
            await asyncio.wait_for(downlink.ready.wait(), 10)
            await asyncio.wait_for(dispatcher.ready.wait(), 10)
            port = server.sockets[0].getsockname()[1]
            yield Loop(settings, pool, world, port, a.id, gateway, uploads, store)
        finally:
            server.close()
            await gateway.close_connections()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            uploads.close()


async def connected(loop: Loop, phone: str = PHONE_A) -> SimTerminal:
    terminal = SimTerminal(phone, reply_timeout_s=10)
    await terminal.connect("127.0.0.1", loop.port)
    plate = {PHONE_A: "渝A80011", PHONE_B: "渝B80012"}[phone]
    await terminal.register(plate, int(PlateColor.YELLOW))
    assert await terminal.authenticate() == m.RESULT_OK
    return terminal


async def test_photo_about_an_alarm_loses_a_packet_is_resent_stored_and_shown(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    async with photo_loop(settings, pool, tmp_path) as loop, rest_client(loop.settings) as client:
        alarm_id = await store_alarm(pool, loop.vehicle_a, loop.world.company_a, level=1)
        other_alarm = await store_alarm(pool, loop.vehicle_a, loop.world.company_a,
                                        alarm_type="fatigue_driving")  # fmt: skip
        terminal = await connected(loop)
        terminal.camera.photo_bytes = 20_000
        terminal.camera.drop_packets = {3}
        reader = asyncio.create_task(terminal.linger(30))
        try:
            foreign = await client.post(
                "/api/media/take-photo", json={"alarm_id": alarm_id},
                headers=loop.world.auth("op_b"),
            )  # fmt: skip
            assert foreign.status_code == 404
            asked = await client.post(
                "/api/media/take-photo", json={"alarm_id": alarm_id, "body": {"channel": 2}},
                headers=loop.world.auth("op_a"),
            )  # fmt: skip
            assert asked.status_code == 201, asked.text
            command_row = asked.json()

            async def stored() -> tuple[Any, Any]:
                media = await pool.fetchrow("SELECT * FROM media WHERE terminal_id = $1", PHONE_A)
                command = await pool.fetchrow(
                    "SELECT state, result, result_detail FROM commands WHERE id = $1",
                    command_row["id"],
                )
                return media, command

            # the 0x0805 answer reaches the command through the broker and the dispatcher, the
            # upload reaches the media table on its own: either can be stored first
            row, command = await wait_for(
                stored,
                lambda got: got[0] is not None and got[1]["state"] not in ("queued", "sent"),
            )
            assert row is not None
        finally:
            reader.cancel()
            await terminal.close()
        assert command["state"] == "acknowledged"
        assert "multimedia ids [1]" in command["result_detail"]
        assert terminal.camera.uploaded == [1]
        photo = sim_photo(20_000, seed=1)
        assert row["complete"] and row["incomplete_reason"] is None and row["missing"] is None
        assert row["sha256"] == hashlib.sha256(photo).hexdigest()
        assert row["size_bytes"] == len(photo) and row["content_type"] == "image/jpeg"
        assert (row["multimedia_id"], row["channel"], row["event_code"]) == (1, 2, 0)
        assert row["alarm_id"] == alarm_id != other_alarm
        assert row["command_id"] == command_row["id"]
        report = simulated_report()
        assert row["latitude"] == pytest.approx(report.latitude)
        assert row["speed_kmh"] == pytest.approx(52.3) and row["fix_time"] is not None
        assert loop.media.stats.resend_requests == 1
        assert loop.store.path(row["sha256"]).read_bytes() == photo

        listed = await client.get("/api/media", params={"alarm_id": alarm_id},
                                  headers=loop.world.auth("op_a"))  # fmt: skip
        assert [i["id"] for i in listed.json()] == [row["id"]]
        assert (await client.get("/api/media", params={"alarm_id": alarm_id},
                                 headers=loop.world.auth("op_b"))).json() == []  # fmt: skip
        content = await client.get(f"/api/media/{row['id']}/content",
                                   headers=loop.world.auth("op_a"))  # fmt: skip
        assert content.status_code == 200 and content.content == photo
        assert content.headers["content-type"] == "image/jpeg"
        assert content.headers["x-content-sha256"] == row["sha256"]
        assert f'filename="{row["sha256"]}.jpg"' in content.headers["content-disposition"]
        hidden = await client.get(f"/api/media/{row['id']}/content",
                                  headers=loop.world.auth("op_b"))  # fmt: skip
        assert hidden.status_code == 404
        # the evidence report lists it with its digest and prints the photo
        evidence = await client.get(
            "/api/reports/evidence", params={"alarm_id": alarm_id, "format": "json"},
            headers=loop.world.auth("op_a"),
        )  # fmt: skip
        assert [i["sha256"] for i in evidence.json()["media"]] == [row["sha256"]]
        printed = await client.get(
            "/api/reports/evidence", params={"alarm_id": alarm_id, "format": "pdf"},
            headers=loop.world.auth("op_a"),
        )  # fmt: skip
        assert printed.status_code == 200, printed.text
        pages = PdfReader(io.BytesIO(printed.content)).pages
        text = "".join("".join(page.extract_text().split()) for page in pages)
        assert f"SHA-256{row['sha256']}" in text and "照片/视频证据" in text
        assert len(pages[-1].images) == 1
        # evidence altered on disk: refused, not served
        loop.store.path(row["sha256"]).write_bytes(b"tampered")
        altered = await client.get(f"/api/media/{row['id']}/content",
                                   headers=loop.world.auth("op_a"))  # fmt: skip
        assert altered.status_code == 409


async def _upload_raw(
    terminal: SimTerminal, data: bytes, *, total: int, send: list[int], packet_bytes: int = 500
) -> int:
    """Send packets ``send`` of an upload announcing ``total`` packets; returns the first
    packet's serial."""
    head = jm.MediaHead(77, 0, 0, 1, 1)
    body = jm.encode_upload_head(head, simulated_report()) + data
    packets = [body[i : i + packet_bytes] for i in range(0, len(body), packet_bytes)]
    first = terminal.serial
    for index in send:
        serial = first + index - 1
        wire = encode_frame(0x0801, terminal.phone, serial, packets[index - 1],
                            subpackage=(total, index))  # fmt: skip
        await terminal.send_raw(wire)
    terminal.serial = first + total
    return first


async def _frames(terminal: SimTerminal, msg_id: int, timeout_s: float) -> list[Any]:
    """The gateway's ``msg_id`` frames (0x8800 / 0x8003) to the terminal within ``timeout_s``."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(timeout_s):
            while True:
                await terminal.read_frame()  # 0x8001s; the camera keeps 0x8800 / 0x8003
    return [f for f in terminal.camera.take_replies() if f.header.msg_id == msg_id]


async def test_a_packet_count_that_lies_is_asked_for_then_stored_incomplete_with_the_reason(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    async with photo_loop(
        settings, pool, tmp_path, packet_timeout_s=0.5, resend_max_requests=2
    ) as loop:
        terminal = await connected(loop)
        other = await connected(loop, PHONE_B)
        data = sim_photo(3000, seed=5)
        # announces 12 packets, sends the first 5 (the rest never come)
        first = await _upload_raw(terminal, data, total=12, send=[1, 2, 3, 4, 5])
        requests = await _frames(terminal, jm.MSG_RESEND_REQUEST, 2.5)
        assert len(requests) == 2
        serial, missing = jm.decode_resend_request(requests[0].body, is_2019=False)
        assert serial == first and missing == list(range(6, 13))
        # the gateway kept serving another terminal meanwhile
        assert await other.heartbeat() == m.RESULT_OK
        row = await wait_for(
            lambda: pool.fetchrow("SELECT * FROM media WHERE terminal_id = $1", PHONE_A),
            lambda r: r is not None,
        )
        await terminal.close()
        await other.close()
    assert row["complete"] is False and row["missing"] == list(range(6, 13))
    assert row["incomplete_reason"].startswith("missing_packets: packets 6-12 of 12 never came")
    assert "after 2 resend request(s)" in row["incomplete_reason"]
    body = jm.encode_upload_head(jm.MediaHead(77, 0, 0, 1, 1), simulated_report()) + data
    kept = body[jm.UPLOAD_HEAD_BYTES : 5 * 500]
    assert row["sha256"] == hashlib.sha256(kept).hexdigest() and row["size_bytes"] == len(kept)
    assert row["multimedia_id"] == 77


async def test_an_upload_above_the_size_limit_is_stored_incomplete_and_refused(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    async with photo_loop(settings, pool, tmp_path, max_upload_bytes=2048) as loop:
        terminal = await connected(loop)
        data = sim_photo(6000, seed=9)
        await _upload_raw(terminal, data, total=(len(data) + 36 + 499) // 500,
                          send=list(range(1, (len(data) + 36 + 499) // 500 + 1)))  # fmt: skip
        row = await wait_for(
            lambda: pool.fetchrow("SELECT * FROM media WHERE terminal_id = $1", PHONE_A),
            lambda r: r is not None,
        )
        assert await terminal.heartbeat() == m.RESULT_OK
        await terminal.close()
    assert row["complete"] is False and row["incomplete_reason"].startswith("size_limit")
    assert "at most 2048 bytes" in row["incomplete_reason"]
    assert row["size_bytes"] <= 2048


async def test_a_level_1_or_2_alarm_opening_takes_a_photo_once_per_vehicle_interval(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    async with photo_loop(
        settings, pool, tmp_path, auto_photo_max_level=2, auto_photo_min_interval_s=600
    ) as loop:
        terminal = await connected(loop)
        reader = asyncio.create_task(terminal.linger(30))
        urgent = await store_alarm(pool, loop.vehicle_a, loop.world.company_a, level=1)
        again = await store_alarm(pool, loop.vehicle_a, loop.world.company_a, level=2,
                                  alarm_type="fatigue_driving")  # fmt: skip
        minor = await store_alarm(pool, loop.vehicle_a, loop.world.company_a, level=3,
                                  alarm_type="geofence_enter")  # fmt: skip

        def message(alarm_id: int, level: int, **extra: Any) -> str:
            return json.dumps(
                {"id": alarm_id, "alarm_type": "overspeed", "terminal_id": PHONE_A,
                 "event": "opened", "late": False, "details": {}, "level": level, **extra}
            )  # fmt: skip

        prefix = loop.settings.mqtt.topic_prefix
        topic = topics.alarm_topic(loop.world.company_a, loop.vehicle_a, "overspeed", prefix)
        async with aiomqtt.Client("127.0.0.1", loop.settings.mqtt.port) as mq:
            await mq.publish(topic, message(minor, 3), qos=1)  # not urgent enough
            await mq.publish(topic, message(urgent, 1, late=True), qos=1)  # late: no photo
            await mq.publish(topic, message(urgent, 1), qos=1)
            await mq.publish(topic, message(urgent, 1), qos=1)  # redelivered
            await mq.publish(topic, message(again, 2), qos=1)  # same vehicle, within 10 min
        try:
            row = await wait_for(
                lambda: pool.fetchrow("SELECT * FROM media WHERE terminal_id = $1", PHONE_A),
                lambda r: r is not None,
            )
            await asyncio.sleep(1.0)
            commands = await pool.fetch("SELECT name, alarm_id, created_by FROM commands")
        finally:
            reader.cancel()
            await terminal.close()
    assert [(c["name"], c["alarm_id"], c["created_by"]) for c in commands] == [
        ("take_photo", urgent, None)
    ]
    assert row["alarm_id"] == urgent and row["complete"]
    remind = await pool.fetchval("SELECT remind_command_id FROM alarms WHERE id = $1", urgent)
    assert remind is None  # a photo is not a reminder to the driver
