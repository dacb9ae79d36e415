"""The JT/T 809 service end to end: real Mosquitto, real PostgreSQL, a real ingest worker, the
``jt809`` service and the superior-platform simulator over real TCP sockets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from broker_helpers import free_port
from ingest_helpers import drop_session, position_json, publish_raw, running_worker, wait_for

from gps_monitor.config import Jt809Settings, Settings
from gps_monitor.db import jt809 as outbox
from gps_monitor.db.jt809 import OutboxEntry
from gps_monitor.models import Alarm, Position
from jt809 import exchange as x
from jt809 import messages as m
from jt809.codec import FrameCodec, FrameSplitter
from jt809.links import LinkStats, MainLink, build_codec
from jt809.service import Jt809Service, check_settings
from jt809.sim import SuperiorSimulator

PLATE = "渝A80901"
TERMINAL = "13800000809"
START = datetime(2026, 1, 26, 0, 0, tzinfo=UTC)
BUFFERED = "SELECT count(*) FROM jt809_outbox WHERE kind = 'position'"


def jt809_settings(settings: Settings, superior_port: int, **fields: object) -> Settings:
    jt = Jt809Settings(
        superior_host="127.0.0.1",
        superior_port=superior_port,
        user_id=20180920,
        password="pw809",
        access_code=20180920,
        slave_host="127.0.0.1",
        slave_port=free_port(),
        heartbeat_interval_s=0.3,
        link_timeout_s=5,
        reconnect_delay_s=0.1,
        reconnect_delay_max_s=0.4,
        reupload_rate_per_s=200,
        client_id=f"{settings.mqtt.client_id}-jt809",
        stats_interval_s=3600,
        **fields,  # type: ignore[arg-type]
    )
    return settings.model_copy(update={"jt809": jt})


async def register_vehicle(pool: asyncpg.Pool) -> int:
    company = await pool.fetchval("INSERT INTO companies (name) VALUES ('809 客运') RETURNING id")
    return int(
        await pool.fetchval(
            "INSERT INTO vehicles (company_id, plate_number, plate_color, vehicle_class, "
            "terminal_id) VALUES ($1, $2, 1, 'coach', $3) RETURNING id",
            company,
            PLATE,
            TERMINAL,
        )
    )


@contextlib.asynccontextmanager
async def running_service(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Jt809Service]:
    """The jt809 service in-process, subscribed before the block starts."""
    check_settings(settings)
    service = Jt809Service(settings, pool)
    task = asyncio.create_task(service.run())
    try:
        await asyncio.wait_for(service.ready.wait(), 10)
        yield service
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def fixes(first: int, count: int) -> list[tuple[str, str]]:
    """``count`` positions 10 s apart from fix number ``first`` (a short eastward drive)."""
    return [
        (
            f"gps/v1/{TERMINAL}/position",
            position_json(
                (START + timedelta(seconds=10 * i)).isoformat(),
                29.5630 + i * 1e-4,
                106.5515 + i * 1e-4,
                speed_kmh=40.0 + i % 20,
                heading_deg=45,
            ),
        )
        for i in range(first, first + count)
    ]


def fix_times(first: int, count: int) -> set[datetime]:
    return {START + timedelta(seconds=10 * i) for i in range(first, first + count)}


@pytest.fixture
async def superior() -> AsyncIterator[tuple[SuperiorSimulator, int]]:
    codec = build_codec(Jt809Settings(access_code=20180920))
    sim = SuperiorSimulator(codec, user_id=20180920, password="pw809")
    port = await sim.start()
    yield sim, port
    await sim.stop()


async def test_live_positions_reach_the_superior_as_0x1202_with_plate_and_coordinates(
    settings: Settings, pool: asyncpg.Pool, superior: tuple[SuperiorSimulator, int]
) -> None:
    sim, port = superior
    settings = jt809_settings(settings, port)
    await register_vehicle(pool)
    async with running_worker(settings), running_service(settings, pool) as service:
        await wait_for(lambda: _value(service.main.status), lambda s: s == "up", 30)
        await publish_raw(settings, fixes(0, 20))
        await wait_for(lambda: _value(len(sim.record.positions)), lambda n: n >= 20, 20)
        await wait_for(lambda: _value(sim.record.heartbeats), lambda n: n >= 1, 5)
    await drop_session(settings, settings.jt809.client_id)
    record = sim.record
    assert record.logins[0] == m.Login(20180920, "pw809", "127.0.0.1", settings.jt809.slave_port)
    assert record.login_results == [0] and record.slave_login_results == [0]
    assert set(record.access_codes) == {20180920}
    assert record.logouts == 1  # 0x1003 at shutdown
    assert len(record.positions) == 20
    assert {p.msg_id for p in record.positions} == {m.MSG_REALTIME_POSITION}
    assert {(p.plate_number, p.plate_color) for p in record.positions} == {(PLATE, 1)}
    assert {p.gnss.fix_time for p in record.positions} == fix_times(0, 20)
    by_time = {p.gnss.fix_time: p.gnss for p in record.positions}
    seventh = by_time[START + timedelta(seconds=70)]
    assert (seventh.latitude, seventh.longitude) == (29.5637, 106.5522)
    assert (seventh.speed_kmh, seventh.heading_deg) == (47, 45)
    assert seventh.fix_time_local.hour == 8  # GMT+8 on the wire


async def test_outage_and_restart_buffer_in_the_database_and_replay_as_0x1203(
    settings: Settings, pool: asyncpg.Pool, superior: tuple[SuperiorSimulator, int]
) -> None:
    sim, port = superior
    # without the slave-link fallback: everything waits in the buffer while the main link is down
    settings = jt809_settings(settings, port, resend_after_cut_s=0, slave_fallback=False)
    await register_vehicle(pool)
    async with running_worker(settings):
        async with running_service(settings, pool) as service:
            await wait_for(lambda: _value(service.main.status), lambda s: s == "up", 30)
            await publish_raw(settings, fixes(0, 10))
            await wait_for(lambda: _value(len(sim.record.positions)), lambda n: n >= 10, 20)
            # the superior goes away: the link is cut and new connections are refused
            sim.stop_listening()
            await sim.drop_main_links()
            await wait_for(lambda: _value(service.main.status), lambda s: s != "up", 30)
            await publish_raw(settings, fixes(10, 17))
            buffered = await wait_for(lambda: pool.fetchval(BUFFERED), lambda n: n >= 17)
            assert buffered == 17
        # the service restarts while the superior is still away; the buffer stays
        await publish_raw(settings, fixes(27, 3))
        await asyncio.sleep(0.5)
        await sim.start(port=port)
        async with running_service(settings, pool):
            await wait_for(lambda: _value(len(sim.record.positions)), lambda n: n >= 30, 30)
            left = await wait_for(lambda: pool.fetchval(BUFFERED), lambda n: n == 0)
    await drop_session(settings, settings.jt809.client_id)
    assert left == 0
    received = sim.record.positions
    assert {p.gnss.fix_time for p in received} == fix_times(0, 30)  # nothing lost
    assert len(received) == 30  # nothing twice (resend_after_cut_s=0)
    replayed = [p for p in received if p.msg_id == m.MSG_REUPLOAD_POSITIONS]
    assert {p.gnss.fix_time for p in replayed} >= fix_times(10, 17)
    # up to 5 per 0x1203, oldest first
    assert sim.record.reupload_messages == 4  # 17 buffered -> 5 + 5 + 5 + 2
    assert [p.gnss.fix_time for p in replayed] == sorted(p.gnss.fix_time for p in replayed)
    sessions = await pool.fetch("SELECT up_at, down_at FROM jt809_link_sessions ORDER BY id")
    assert len(sessions) >= 2 and sessions[0]["down_at"] is not None


async def test_2019_link_carries_0x1202_as_jt808_location_bodies(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    sim = SuperiorSimulator(
        build_codec(Jt809Settings(access_code=20180920, version=2019)),
        user_id=20180920,
        password="pw809",
    )
    port = await sim.start()
    settings = jt809_settings(settings, port, version=2019, platform_id="12345678901")
    await register_vehicle(pool)
    try:
        async with running_worker(settings), running_service(settings, pool) as service:
            await wait_for(lambda: _value(service.main.status), lambda s: s == "up", 30)
            await publish_raw(settings, fixes(0, 5))
            await wait_for(lambda: _value(len(sim.record.positions)), lambda n: n >= 5, 20)
    finally:
        await sim.stop()
    await drop_session(settings, settings.jt809.client_id)
    assert sim.record.login_results == [0] and sim.record.slave_login_results == [0]
    assert {p.gnss.fix_time for p in sim.record.positions} == fix_times(0, 5)
    (login,) = sim.record.logins  # the 2019 0x1001 layout, decoded by the superior
    assert (login.access_code, login.down_link_ip) == (20180920, "127.0.0.1")
    assert login.down_link_port == settings.jt809.slave_port
    third = {p.gnss.fix_time: p.gnss for p in sim.record.positions}[START + timedelta(seconds=20)]
    assert (third.latitude, third.longitude, third.speed_kmh) == (29.5632, 106.5517, 42)


async def test_refused_login_is_logged_with_its_code_and_positions_wait_in_the_buffer(
    settings: Settings,
    pool: asyncpg.Pool,
    superior: tuple[SuperiorSimulator, int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim, port = superior
    sim.refuse_with = 2
    settings = jt809_settings(settings, port)
    await register_vehicle(pool)
    async with running_worker(settings), running_service(settings, pool) as service:
        await wait_for(lambda: _value(len(sim.record.login_results)), lambda n: n >= 2, 30)
        assert service.main.status.startswith("refused: login refused by the superior: result 2")
        await publish_raw(settings, fixes(0, 4))
        buffered = await wait_for(lambda: pool.fetchval(BUFFERED), lambda n: n >= 4)
        sim.refuse_with = None
        await wait_for(lambda: _value(len(sim.record.positions)), lambda n: n >= 4, 20)
    await drop_session(settings, settings.jt809.client_id)
    assert buffered == 4
    assert "result 2 (access code incorrect)" in caplog.text
    assert {p.gnss.fix_time for p in sim.record.positions} == fix_times(0, 4)


async def test_alarms_go_up_as_0x1402_with_the_809_warn_type(
    settings: Settings, pool: asyncpg.Pool, superior: tuple[SuperiorSimulator, int]
) -> None:
    sim, port = superior
    settings = jt809_settings(settings, port)
    vehicle_id = await register_vehicle(pool)
    company_id = await pool.fetchval("SELECT company_id FROM vehicles WHERE id = $1", vehicle_id)

    def alarm(alarm_type: str, event: str = "opened", **details: object) -> tuple[str, str]:
        value = Alarm(
            alarm_type=alarm_type,
            dedup_key=f"{vehicle_id}:{alarm_type}",
            vehicle_id=vehicle_id,
            company_id=company_id,
            terminal_id=TERMINAL,
            started_at=START,
            details=dict(details),
            id=77,
            event=event,
        )
        topic = f"alarms/v1/{company_id}/{vehicle_id}/{alarm_type}"
        return topic, __import__("json").dumps(value.to_dict())

    async with running_service(settings, pool) as service:
        await wait_for(lambda: _value(service.main.status), lambda s: s == "up", 30)
        await publish_raw(
            settings,
            [
                alarm("overspeed"),
                alarm("overspeed", event="closed"),  # one 0x1402 per episode
                alarm("device_alarm", bit=0),
                alarm("route_deviation"),
                alarm("offline"),
            ],
        )
        await wait_for(lambda: _value(len(sim.record.alarms)), lambda n: n >= 4, 30)
        await asyncio.sleep(0.3)
    await drop_session(settings, settings.jt809.client_id)
    got = [(plate, a.warn_type, a.info_id, a.warn_time) for plate, a in sim.record.alarms]
    assert got == [
        (PLATE, m.WARN_OVERSPEED, 77, START),
        (PLATE, m.WARN_EMERGENCY, 77, START),
        (PLATE, m.WARN_ROUTE_DEVIATION, 77, START),
        (PLATE, m.WARN_OTHER, 77, START),
    ]


async def test_slave_link_survives_garbage_and_bad_frames_and_checks_the_verify_code(
    settings: Settings, pool: asyncpg.Pool, superior: tuple[SuperiorSimulator, int]
) -> None:
    _sim, port = superior
    settings = jt809_settings(settings, port)
    codec = FrameCodec(2011, access_code=20180920)
    async with running_service(settings, pool) as service:
        await wait_for(lambda: _value(service.main.status), lambda s: s == "up", 30)
        reader, writer = await asyncio.open_connection("127.0.0.1", settings.jt809.slave_port)
        good_heartbeat = codec.encode(m.MSG_SLAVE_HEARTBEAT, b"", 1)
        bad_crc = good_heartbeat[:-3] + bytes([good_heartbeat[-3] ^ 0xFF]) + good_heartbeat[-2:]
        wrong_code = codec.encode(m.MSG_SLAVE_LOGIN, m.encode_slave_login(1), 2)
        writer.write(b"garbage\x00" + bad_crc + b"\x5b\x5a\x07\x5d" + wrong_code + good_heartbeat)
        await writer.drain()
        splitter = FrameSplitter(4096)
        answers: list[tuple[int, bytes]] = []
        while len(answers) < 2:
            data = await asyncio.wait_for(reader.read(4096), 5)
            assert data, "slave link closed"
            answers += [(f.msg_id, f.body) for f in map(codec.decode, splitter.feed(data))]
        writer.close()
        stats = service.stats
    assert answers == [(m.MSG_SLAVE_LOGIN_ANSWER, b"\x01"), (m.MSG_SLAVE_HEARTBEAT_ANSWER, b"")]
    assert stats.bad_frames["crc"] == 1 and stats.bad_frames["escape"] == 1
    assert stats.bad_frames["garbage_bytes"] == len(b"garbage\x00")  # counted, not silent
    await drop_session(settings, settings.jt809.client_id)


async def test_slave_link_requests_before_the_0x9001_login_are_dropped_not_acted_on(
    settings: Settings, pool: asyncpg.Pool, superior: tuple[SuperiorSimulator, int]
) -> None:
    """Review of issue 10: any peer reaching the slave-link port could inject a 查岗 (it was
    stored, listed on the duty page and counted in 平台查岗响应率) without 0x9001. Now only a
    connection logged in with the verify code of our 0x1002 is served."""
    _sim, port = superior
    settings = jt809_settings(settings, port)
    codec = FrameCodec(2011, access_code=20180920)
    query = x.PlatformQuery(x.QUERY_OBJECT_PLATFORM, "", 777, "伪造查岗")
    request = x.encode_envelope(
        x.MSG_PLATFORM_DOWN, x.Envelope(x.MSG_QUERY, x.encode_query(query, 2011)), 2011
    )
    stored = "SELECT count(*) FROM jt809_platform_queries WHERE info_id = 777"
    async with running_service(settings, pool) as service:
        await wait_for(lambda: _value(service.main.status), lambda s: s == "up", 30)
        _reader, writer = await asyncio.open_connection("127.0.0.1", settings.jt809.slave_port)
        writer.write(codec.encode(x.MSG_PLATFORM_DOWN, request, 1))
        await writer.drain()
        await wait_for(
            lambda: _value(service.stats.bad_frames["slave_not_logged_in"]), lambda n: n == 1, 10
        )
        assert await pool.fetchval(stored) == 0
        # the same connection, logged in with the verify code: served
        writer.write(
            codec.encode(m.MSG_SLAVE_LOGIN, m.encode_slave_login(service.main.verify_code or 0), 2)
        )
        writer.write(codec.encode(x.MSG_PLATFORM_DOWN, request, 3))
        await writer.drain()
        count = await wait_for(lambda: pool.fetchval(stored), lambda n: n == 1, 30)
        writer.close()
    await drop_session(settings, settings.jt809.client_id)
    assert count == 1


async def _value(value: object) -> object:
    return value


async def test_replayed_rows_leave_the_outbox_within_a_second_not_at_the_end_of_the_batch(
    settings: Settings, pool: asyncpg.Pool, superior: tuple[SuperiorSimulator, int]
) -> None:
    """Review of issue 10: the replay deleted what it sent once per 500-row batch, so a crash
    (kill -9) in a slow replay re-sent everything of the batch (65 positions twice after 13
    0x1203 in a manual run). Now sent rows leave at least once a second."""
    sim, port = superior
    vehicle_id = await register_vehicle(pool)
    entries = [
        OutboxEntry(
            "position",
            vehicle_id,
            START + timedelta(seconds=10 * i),
            Position(
                terminal_id=TERMINAL,
                fix_time=START + timedelta(seconds=10 * i),
                latitude=29.56,
                longitude=106.55 + i * 1e-4,
                speed_kmh=40.0,
                vehicle_id=vehicle_id,
            ).to_dict(),
            "link_down",
        )
        for i in range(60)
    ]
    await outbox.enqueue(pool, entries)
    settings = jt809_settings(settings, port)
    slow = settings.jt809.model_copy(update={"reupload_rate_per_s": 4})  # 12 x 0x1203: ~3 s
    settings = settings.model_copy(update={"jt809": slow})
    shrank_while_sending: list[tuple[int, int]] = []  # (rows left, 0x1203 received)
    async with running_service(settings, pool):
        while sim.record.reupload_messages < 12:
            before = sim.record.reupload_messages
            left = await pool.fetchval(BUFFERED)
            if left < 60 and before < 12:
                shrank_while_sending.append((left, before))
            await asyncio.sleep(0.1)
        await wait_for(lambda: pool.fetchval(BUFFERED), lambda n: n == 0)
    await drop_session(settings, settings.jt809.client_id)
    assert shrank_while_sending, "the outbox kept every sent row until the batch ended"
    # never deleted before it was sent
    assert all(60 - left <= 5 * (sent + 1) for left, sent in shrank_while_sending)
    assert len(sim.record.positions) == 60


async def test_a_superior_that_never_answers_the_login_is_named_in_the_status_and_log(
    settings: Settings, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    """Review of issue 10: a superior that accepts TCP and stays silent left the status at
    its previous value ("connecting", or a stale "closed by the superior") and logged
    "lost (TimeoutError: )". Now both say no 0x1002 came, and the service keeps retrying."""
    connections: list[int] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        while await reader.read(4096):
            pass
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    slow = jt809_settings(settings, port).jt809.model_copy(update={"login_timeout_s": 0.5})
    settings = settings.model_copy(update={"jt809": slow})
    try:
        async with running_service(settings, pool) as service:
            await wait_for(lambda: _value(len(connections)), lambda n: n >= 2, 30)
            status = service.main.status
            stored = await wait_for(
                lambda: pool.fetchval("SELECT status FROM jt809_link_status WHERE link = 'main'"),
                lambda s: s is not None and "0x1002" in s,
            )
    finally:
        server.close()
        await server.wait_closed()
        await drop_session(settings, settings.jt809.client_id)
    assert status == "down: TimeoutError: no 0x1002 login answer within 0.5 s"
    assert stored == status  # what the bureau page shows
    assert "no 0x1002 login answer within 0.5 s" in caplog.text


async def test_a_main_link_stops_when_its_cancellation_was_swallowed_inside_it(
    settings: Settings, superior: tuple[SuperiorSimulator, int]
) -> None:
    # asyncio.wait_for of Python 3.11 drops a cancellation that comes with a frame (CPython
    # gh-86296): the link went on serving, and the service's shutdown waited for it forever (a
    # CI run hung 300 s in test_outage_and_restart_... above). Here on_up swallows it, at once.
    _, port = superior
    jt = jt809_settings(settings, port).jt809
    up = asyncio.Event()

    async def on_up(_connection: object) -> None:
        up.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)

    async def on_down(_reason: str) -> None:
        return None

    link = MainLink(jt, build_codec(jt), LinkStats(), on_up, on_down)
    task = asyncio.create_task(link.run())
    try:
        await asyncio.wait_for(up.wait(), 10)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=5)
        assert done == {task}, "the link kept running after its cancellation"
        assert task.cancelled()
        assert link.connection is None  # the connection was closed on the way out
    finally:
        task.cancel()
