"""Active safety end to end (issue 12 item 8) on the real Mosquitto and PostgreSQL: a simulated
terminal reports an ADAS forward-collision alarm with two attachments in a 0x0200 (item 0x64);
the gateway answers 0x9208 with the attachment server's address and the alarm number; ingest
stores the position, the rules worker raises the ``active_safety`` alarm with that number; the
terminal uploads a photo and a video to the attachment server (0x1210, 0x1211, data frames,
0x1212), one data frame lost and asked for again in 0x9212; both files are stored under their
SHA-256 and shown with the alarm. The alarm number is random and stored: uploads survive a
restart of the attachment server, and a number computed from the alarm identification (the
public alarm key) is refused. Bad input: an alarm number never issued, a peer trickling bytes, a
file name with ``../`` and NUL."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from ingest_helpers import drop_session, running_worker, wait_for
from web_helpers import World, make_world, rest_client

from gps_monitor.active_safety import alarm_key
from gps_monitor.config import AttachmentsSettings, Jt808Settings, MediaSettings, Settings
from gps_monitor.db import registry
from gps_monitor.media_store import MediaStore
from gps_monitor.models import PlateColor
from ingest.jt808 import jsatl
from ingest.jt808 import messages as m
from ingest.jt808.attachments import AttachmentServer
from ingest.jt808.attachments_sim import adas_report
from ingest.jt808.auth import TerminalAuthenticator
from ingest.jt808.codec import FrameSplitter, decode_frame, encode_frame
from ingest.jt808.media_sim import sim_photo
from ingest.jt808.publisher import MqttPublisher
from ingest.jt808.server import Jt808Gateway
from ingest.jt808.sim import SimTerminal
from rules.worker import RulesWorker, rules_client_id

PHONE = "13900000021"


@dataclass
class Chain:
    settings: Settings
    world: World
    port: int
    vehicle_id: int
    attachments: AttachmentServer
    store: MediaStore
    gateway: Jt808Gateway


@contextlib.asynccontextmanager
async def chain(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path, *, rules: bool = True, **at: Any
) -> AsyncIterator[Chain]:
    """Gateway and attachment server (free ports), with ingest and rules workers in process."""
    settings = settings.model_copy(
        update={
            "jt808": Jt808Settings(client_id=f"{settings.mqtt.client_id}-gw"),
            "media": MediaSettings(directory=str(tmp_path / "media")),
            "attachments": AttachmentsSettings(port=0, **at),
        }
    )
    world = await make_world(pool, settings)
    vehicle = await registry.ensure_vehicle(
        pool, company_id=world.company_a, plate_number="渝A80021", terminal_id=PHONE,
        plate_color=PlateColor.YELLOW,
    )  # fmt: skip
    store = MediaStore(settings.media.directory)
    authenticator = TerminalAuthenticator(pool, policy="registry", check_plate=True)
    async with running_worker(settings), MqttPublisher(settings, connect_timeout_s=5) as pub:
        gateway = Jt808Gateway(settings, authenticator, pub)
        attachments = AttachmentServer(settings, store, pool, gateway)
        attachment_server = await attachments.start("127.0.0.1", 0)
        server = await gateway.start("127.0.0.1", 0)
        worker = RulesWorker(settings)
        tasks = [asyncio.create_task(worker.run())] if rules else []
        try:
            if rules:
                await asyncio.wait_for(worker.ready.wait(), 10)
            yield Chain(settings, world, server.sockets[0].getsockname()[1], vehicle.id,
                        attachments, store, gateway)  # fmt: skip
        finally:
            server.close()
            attachment_server.close()
            await gateway.close_connections()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if rules:
                await drop_session(settings, rules_client_id(settings))


async def connected(c: Chain) -> SimTerminal:
    terminal = SimTerminal(PHONE, reply_timeout_s=10)
    await terminal.connect("127.0.0.1", c.port)
    await terminal.register("渝A80021", int(PlateColor.YELLOW))
    assert await terminal.authenticate() == m.RESULT_OK
    return terminal


async def test_adas_alarm_with_attachments_is_raised_uploaded_resent_stored_and_shown(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    photo = sim_photo(30_000, seed=3)
    video = random.Random(4).randbytes(100_000)
    async with chain(settings, pool, tmp_path) as c:
        terminal = await connected(c)
        terminal.camera.attachments = [
            ("00_64_0101_0_{number}.jpg", photo), ("02_64_0101_1_{number}.mp4", video),
        ]  # fmt: skip
        terminal.camera.drop_segments = {1}  # the second 16 KiB data frame of each file
        report = adas_report("TERM001", 7, attachments=2)
        assert await terminal.send_location(report) == m.RESULT_OK
        reader = asyncio.create_task(terminal.linger(30))
        try:
            rows = await wait_for(
                lambda: pool.fetch("SELECT * FROM media ORDER BY id"), lambda r: len(r) == 2
            )
            alarm = await wait_for(
                lambda: pool.fetchrow("SELECT * FROM alarms WHERE alarm_type = 'active_safety'"),
                lambda r: r is not None,
            )
        finally:
            reader.cancel()
            await terminal.close()
        identification = bytes.fromhex(report.items[0x64][-16:].hex())
        key = alarm_key(PHONE, identification)
        [number] = terminal.camera.attachments_sent
        stored = await pool.fetchrow("SELECT * FROM jsatl_alarm_numbers")
        assert (stored["alarm_number"], stored["terminal_id"], stored["alarm_key"]) == (
            number, PHONE, key,
        )  # fmt: skip
        assert number != key and len(number) == 32
        assert alarm["details"]["alarm_key"] == key and alarm["level"] == 2
        assert alarm["details"]["name"] == "adas_forward_collision"
        assert [(r["media_type"], r["complete"], r["alarm_number"], r["alarm_key"])
                for r in rows] == [
            ("image", True, number, key), ("video", True, number, key),
        ]  # fmt: skip
        assert rows[0]["sha256"] == hashlib.sha256(photo).hexdigest()
        assert rows[1]["sha256"] == hashlib.sha256(video).hexdigest()
        assert rows[0]["file_name"] == f"00_64_0101_0_{number}.jpg"
        assert c.store.path(rows[1]["sha256"]).read_bytes() == video
        async with rest_client(c.settings) as client:
            listed = await client.get("/api/media", params={"alarm_id": alarm["id"]},
                                      headers=c.world.auth("op_a"))  # fmt: skip
            assert sorted(i["sha256"] for i in listed.json()) == sorted(r["sha256"] for r in rows)
            hidden = await client.get("/api/media", params={"alarm_id": alarm["id"]},
                                      headers=c.world.auth("op_b"))  # fmt: skip
            assert hidden.json() == []


async def _open(c: Chain) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", c.attachments.port)


async def _frames(
    reader: asyncio.StreamReader,
    timeout_s: float = 5,
    until: Callable[[list[Any]], bool] | None = None,
) -> list[Any]:
    """The frames the server sends until it closes the connection, ``until(frames)`` holds
    (the answer to the last frame sent is in) or ``timeout_s`` passes."""
    splitter, out = FrameSplitter(8192), []
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(timeout_s):
            while data := await reader.read(4096):
                out += [decode_frame(content, wire) for content, wire in splitter.feed(data)]
                if until is not None and until(out):
                    break
    return out


def _replies(frames: list[Any], msg_id: int) -> int:
    return sum(f.header.msg_id == msg_id for f in frames)


async def test_an_alarm_number_never_issued_is_refused_and_the_connection_closed(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    async with chain(settings, pool, tmp_path, rules=False) as c:
        reader, writer = await _open(c)
        info = jsatl.AttachmentInfo("TERM001", bytes(16), "F" * 32, 0, ((b"a.jpg", 10),))
        writer.write(encode_frame(jsatl.MSG_ATTACHMENT_INFO, PHONE, 0,
                                  jsatl.encode_attachment_info(info)))  # fmt: skip
        frames = await _frames(reader)
        writer.close()
    assert [m.decode_general_reply(f.body)[2] for f in frames] == [m.RESULT_FAILURE]
    assert c.attachments.stats.refused == 1
    assert await pool.fetchval("SELECT count(*) FROM media") == 0


async def test_only_the_files_0x1210_announced_are_accepted_each_once(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """One issued alarm number is no licence to write file after file into the store: a 0x1211
    for a name the 0x1210 did not list is refused (result 1), as is a second 0x1211 for a file
    already stored on this connection; the announced file is accepted."""
    async with chain(settings, pool, tmp_path, rules=False) as c:
        terminal = await connected(c)
        assert await terminal.send_location(adas_report("TERM001", 7, 1)) == m.RESULT_OK
        issued = await wait_for(
            lambda: pool.fetchrow("SELECT * FROM jsatl_alarm_numbers"), lambda r: r is not None
        )
        reader, writer = await _open(c)
        info = jsatl.AttachmentInfo("TERM001", issued["identification"], issued["alarm_number"],
                                    0, ((b"a.jpg", 3),))  # fmt: skip
        serial = iter(range(100))

        def send(msg_id: int, body: bytes) -> None:
            writer.write(encode_frame(msg_id, PHONE, next(serial), body))

        send(jsatl.MSG_ATTACHMENT_INFO, jsatl.encode_attachment_info(info))
        send(jsatl.MSG_FILE_INFO, jsatl.encode_file_info(b"other.jpg", 0, 3))  # not announced
        send(jsatl.MSG_FILE_INFO, jsatl.encode_file_info(b"a.jpg", 0, 3))
        writer.write(jsatl.encode_data_frame(b"a.jpg", 0, b"abc"))
        send(jsatl.MSG_FILE_DONE, jsatl.encode_file_info(b"a.jpg", 0, 3))
        send(jsatl.MSG_FILE_INFO, jsatl.encode_file_info(b"a.jpg", 0, 3))  # again: refused
        # the answer to the last frame is the fourth 0x8001 (each file and the DB behind it
        # takes its time on a loaded machine: a fixed 3 s window could close before it)
        frames = await _frames(
            reader, timeout_s=15, until=lambda fs: _replies(fs, m.MSG_PLATFORM_REPLY) >= 4
        )
        writer.close()
        await terminal.close()
    results = [m.decode_general_reply(f.body)[2] for f in frames if f.header.msg_id == 0x8001]
    assert results == [m.RESULT_OK, m.RESULT_FAILURE, m.RESULT_OK, m.RESULT_FAILURE]
    assert await pool.fetchval("SELECT count(*) FROM media") == 1


async def _upload_one(
    port: int, phone: str, identification: bytes, number: str, data: bytes
) -> list[int]:
    """0x1210 naming ``number``, then one file ``a.jpg`` (0x1211, one data frame, 0x1212); the
    results of the platform's 0x8001 answers and of its 0x9212 (-1 when it sent none)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    serial = iter(range(100))

    def send(msg_id: int, body: bytes) -> None:
        writer.write(encode_frame(msg_id, phone, next(serial), body))

    info = jsatl.AttachmentInfo("TERM001", identification, number, 0, ((b"a.jpg", len(data)),))
    send(jsatl.MSG_ATTACHMENT_INFO, jsatl.encode_attachment_info(info))
    send(jsatl.MSG_FILE_INFO, jsatl.encode_file_info(b"a.jpg", 0, len(data)))
    writer.write(jsatl.encode_data_frame(b"a.jpg", 0, data))
    send(jsatl.MSG_FILE_DONE, jsatl.encode_file_info(b"a.jpg", 0, len(data)))
    # the 0x9212 answers the last frame sent (a refused 0x1210 closes the connection instead)
    frames = await _frames(
        reader, timeout_s=15, until=lambda fs: _replies(fs, jsatl.MSG_FILE_DONE_REPLY) >= 1
    )
    writer.close()
    replies = [m.decode_general_reply(f.body)[2] for f in frames if f.header.msg_id == 0x8001]
    done = [jsatl.decode_file_done_reply(f.body)[1] for f in frames if f.header.msg_id == 0x9212]
    return [*replies, *(done or [-1])]


async def test_an_issued_alarm_number_is_still_accepted_after_a_restart(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """The number issued in 0x9208 is stored, not held in memory: after the attachment server
    that issued it is closed and a new one started (a gateway restart), the upload for it is
    accepted and linked to the alarm through its key."""
    async with chain(settings, pool, tmp_path, rules=False) as c:
        terminal = await connected(c)
        report = adas_report("TERM001", 9, 1)
        assert await terminal.send_location(report) == m.RESULT_OK
        issued = await wait_for(
            lambda: pool.fetchrow("SELECT * FROM jsatl_alarm_numbers"), lambda r: r is not None
        )
        await terminal.close()
        assert c.attachments._server is not None
        c.attachments._server.close()
        restarted = AttachmentServer(c.settings, c.store, pool, c.gateway)
        server = await restarted.start("127.0.0.1", 0)
        try:
            results = await _upload_one(restarted.port, PHONE, issued["identification"],
                                        issued["alarm_number"], b"jpeg")  # fmt: skip
            rows = await wait_for(lambda: pool.fetch("SELECT * FROM media"), bool)
        finally:
            server.close()
    assert results[:3] == [m.RESULT_OK, m.RESULT_OK, 0]
    identification = bytes.fromhex(report.items[0x64][-16:].hex())
    assert [(r["alarm_number"], r["alarm_key"], r["complete"]) for r in rows] == [
        (issued["alarm_number"], alarm_key(PHONE, identification), True)
    ]


async def test_the_same_file_uploaded_again_for_an_alarm_is_stored_once(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """A terminal that uploads an alarm's file again (it missed the 0x9212, or repeats the whole
    upload) gets result 0 again, but the alarm keeps one media row for it."""
    async with chain(settings, pool, tmp_path, rules=False) as c:
        terminal = await connected(c)
        assert await terminal.send_location(adas_report("TERM001", 13, 1)) == m.RESULT_OK
        issued = await wait_for(
            lambda: pool.fetchrow("SELECT * FROM jsatl_alarm_numbers"), lambda r: r is not None
        )
        await terminal.close()
        args = (c.attachments.port, PHONE, issued["identification"], issued["alarm_number"])
        first = await _upload_one(*args, b"jpeg")
        again = await _upload_one(*args, b"jpeg")
    assert first == again == [m.RESULT_OK, m.RESULT_OK, 0]
    rows = await pool.fetch("SELECT * FROM media")
    assert [(r["sha256"], r["complete"]) for r in rows] == [
        (hashlib.sha256(b"jpeg").hexdigest(), True)
    ]


async def test_a_computed_or_foreign_alarm_number_is_refused(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Knowing a terminal's phone number, alarm time and sequence is not enough: the number the
    platform used to derive from them (now the public alarm key) opens nothing, nor does a
    number issued to another terminal."""
    async with chain(settings, pool, tmp_path, rules=False) as c:
        terminal = await connected(c)
        report = adas_report("TERM001", 11, 1)
        assert await terminal.send_location(report) == m.RESULT_OK
        issued = await wait_for(
            lambda: pool.fetchrow("SELECT * FROM jsatl_alarm_numbers"), lambda r: r is not None
        )
        await terminal.close()
        identification = bytes.fromhex(report.items[0x64][-16:].hex())
        computed = await _upload_one(c.attachments.port, PHONE, identification,
                                     alarm_key(PHONE, identification), b"fake")  # fmt: skip
        foreign = await _upload_one(c.attachments.port, "13900000099", identification,
                                    issued["alarm_number"], b"fake")  # fmt: skip
    assert computed == [m.RESULT_FAILURE, -1] and foreign == [m.RESULT_FAILURE, -1]
    assert c.attachments.stats.refused == 2
    assert await pool.fetchval("SELECT count(*) FROM media") == 0


async def _trickle(c: Chain, byte: bytes) -> float | None:
    """Send ``byte`` every 0.2 s; seconds until the server closed the connection (None: not
    within 8 s)."""
    reader, writer = await _open(c)
    started = time.monotonic()
    try:
        for _ in range(40):
            try:
                writer.write(byte)
                await writer.drain()
                async with asyncio.timeout(0.2):
                    if await reader.read(1) == b"":
                        return time.monotonic() - started
            except TimeoutError:
                continue
            except ConnectionError:
                return time.monotonic() - started
        return None
    finally:
        writer.close()


async def test_a_peer_trickling_bytes_is_closed_after_the_read_timeout(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    async with chain(settings, pool, tmp_path, rules=False, read_timeout_s=1.0) as c:
        head = await _trickle(c, b"\x30")  # a data frame head, one byte every 0.2 s
        garbage = await _trickle(c, b"\x55")  # bytes that never make anything complete
        terminal = await connected(c)  # the gateway and the server still serve others
        assert await terminal.heartbeat() == m.RESULT_OK
        await terminal.close()
    assert head is not None and head < 3
    assert garbage is not None and garbage < 3
    assert c.attachments.stats.closed_timeout == 2


async def test_a_file_name_with_dot_dot_and_nul_is_stored_under_our_own_name(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    data = os.urandom(5000)
    async with chain(settings, pool, tmp_path, rules=False) as c:
        terminal = await connected(c)
        terminal.camera.attachments = [("../../../evil\x00.jpg", data)]
        assert await terminal.send_location(adas_report("TERM001", 9, 1)) == m.RESULT_OK
        reader = asyncio.create_task(terminal.linger(20))
        try:
            row = await wait_for(lambda: pool.fetchrow("SELECT * FROM media"),
                                 lambda r: r is not None)  # fmt: skip
        finally:
            reader.cancel()
            await terminal.close()
    assert row["complete"] and row["sha256"] == hashlib.sha256(data).hexdigest()
    assert row["file_name"] == "../../../evil\\x00.jpg"  # shown, never a path
    assert c.store.path(row["sha256"]).read_bytes() == data
    assert not (tmp_path / "evil").exists() and not list(tmp_path.parent.glob("evil*"))
    stored = [p for p in (tmp_path / "media").rglob("*") if p.is_file()]
    assert stored == [c.store.path(row["sha256"])]


async def test_the_jt808_sim_process_reports_an_adas_alarm_and_uploads_its_attachments(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    from ingest_helpers import worker_env

    track = tmp_path / "track.csv"
    fix_time = datetime.now(UTC).replace(microsecond=0).isoformat()
    track.write_text(
        f"terminal_id,fix_time,latitude,longitude,speed_kmh\n{PHONE},{fix_time},29.5,106.5,40\n"
    )
    async with chain(settings, pool, tmp_path, rules=False) as c:
        sim = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gps_monitor.cli", "jt808-sim", str(track), "--format", "csv",
            "--port", str(c.port), "--adas-alarms", "1", "--linger-s", "8",
            env=worker_env(c.settings), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        rows = await wait_for(lambda: pool.fetch("SELECT * FROM media"), lambda r: len(r) == 2)
        output, _ = await asyncio.wait_for(sim.communicate(), 30)
    assert f"terminal {PHONE} reported 1 ADAS alarm(s)" in output.decode(), output.decode()
    assert sorted(r["media_type"] for r in rows) == ["image", "video"]
    assert all(r["complete"] and r["alarm_number"] for r in rows)
