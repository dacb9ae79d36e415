"""The downlink command channel end to end, on the real Mosquitto and PostgreSQL: the web API
queues a text, the command dispatcher (ingest/commands.py) publishes it on ``cmd/v1``, the JT/T
808 gateway (real TCP socket) sends 0x8300, a simulated terminal (the ``jt808-sim`` process, or
its SimTerminal in-process) answers 0x0001, and the answer lands in ``commands``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import asyncpg
import httpx
import pytest
from ingest_helpers import wait_for, worker_env
from pydantic import ValidationError
from web_helpers import World, make_world, rest_client

from gps_monitor import topics
from gps_monitor.commands import CommandError, TextBody, build_text, text_gbk
from gps_monitor.config import CommandsSettings, Jt808Settings, Settings
from gps_monitor.db import registry
from gps_monitor.models import PlateColor
from ingest.commands import CommandDispatcher
from ingest.jt808 import messages as m
from ingest.jt808.auth import TerminalAuthenticator
from ingest.jt808.codec import decode_frame, encode_frame
from ingest.jt808.downlink import Downlink
from ingest.jt808.publisher import MqttPublisher
from ingest.jt808.server import Jt808Gateway
from ingest.jt808.sim import SimTerminal

PHONE_A = "13900000001"  # a vehicle of company A (JT/T 808 terminal ids are digits)
PHONE_B = "13900000002"  # company B


@dataclass
class Loop:
    settings: Settings
    pool: asyncpg.Pool
    world: World
    port: int
    vehicle_a: int
    vehicle_b: int
    gateway: Jt808Gateway
    dispatcher: CommandDispatcher


@contextlib.asynccontextmanager
async def command_loop(
    settings: Settings, pool: asyncpg.Pool, **commands: Any
) -> AsyncIterator[Loop]:
    """Gateway (with its downlink) on a free loopback port and the command dispatcher, both
    in this process on the real broker and database; two vehicles with JT/T 808 terminals."""
    settings = settings.model_copy(
        update={
            "jt808": Jt808Settings(client_id=f"{settings.mqtt.client_id}-gw"),
            "commands": CommandsSettings(**{"scan_interval_s": 0.3, **commands}),
        }
    )
    world = await make_world(pool, settings)
    a = await registry.ensure_vehicle(
        pool, company_id=world.company_a, plate_number="渝A80001", terminal_id=PHONE_A,
        plate_color=PlateColor.YELLOW,
    )  # fmt: skip
    b = await registry.ensure_vehicle(
        pool, company_id=world.company_b, plate_number="渝B80002", terminal_id=PHONE_B,
        plate_color=PlateColor.YELLOW,
    )  # fmt: skip
    authenticator = TerminalAuthenticator(pool, policy="registry", check_plate=True)
    dispatcher = CommandDispatcher(settings)
    async with MqttPublisher(settings, connect_timeout_s=5) as publisher:
        downlink = Downlink(settings, publisher)
        gateway = Jt808Gateway(settings, authenticator, publisher, downlink)
        server = await gateway.start("127.0.0.1", 0)
        tasks = [asyncio.create_task(downlink.run()), asyncio.create_task(dispatcher.run())]
        try:
            await asyncio.wait_for(downlink.ready.wait(), 10)
            await asyncio.wait_for(dispatcher.ready.wait(), 10)
            yield Loop(
                settings, pool, world, server.sockets[0].getsockname()[1], a.id, b.id, gateway,
                dispatcher,
            )  # fmt: skip
        finally:
            server.close()
            await gateway.close_connections()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def connected(loop: Loop, phone: str = PHONE_A, **kwargs: Any) -> SimTerminal:
    terminal = SimTerminal(phone, reply_timeout_s=10, **kwargs)
    await terminal.connect("127.0.0.1", loop.port)
    plate = {PHONE_A: "渝A80001", PHONE_B: "渝B80002"}[phone]
    await terminal.register(plate, int(PlateColor.YELLOW))
    assert await terminal.authenticate() == m.RESULT_OK
    return terminal


async def command_state(loop: Loop, row_id: int) -> asyncpg.Record:
    row = await loop.pool.fetchrow(
        "SELECT state, result, sent_at, answered_at, expires_at FROM commands WHERE id = $1",
        row_id,
    )
    assert row is not None
    return row


async def post_text(
    client: httpx.AsyncClient, loop: Loop, who: str = "op_a", **fields: Any
) -> httpx.Response:
    body = {"vehicle_id": loop.vehicle_a, "body": {"text": "您已超速行驶，请减速慢行"}}
    body.update(fields)
    return await client.post("/api/commands", json=body, headers=loop.world.auth(who))


def jt808_sim(loop: Loop, track: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gps_monitor.cli",
            "jt808-sim",
            str(track),
            "--format",
            "csv",
            "--port",
            str(loop.port),
            *extra,
        ],
        env=worker_env(loop.settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def one_fix_track(tmp_path: Path, phone: str = PHONE_A) -> Path:
    track = tmp_path / "track.csv"
    fix_time = datetime.now(UTC).replace(microsecond=0).isoformat()
    track.write_text(
        "terminal_id,fix_time,latitude,longitude,speed_kmh\n"
        f"{phone},{fix_time},29.56301,106.551556,40\n"
    )
    return track


# ------------------------------------------------------------------------------ wire format


def test_text_0x8300_bodies_in_the_2013_and_2019_layouts_byte_for_byte() -> None:
    raw = text_gbk("减速", 1000)
    assert raw == bytes.fromhex("bcf5cbd9")  # GBK 减 = BCF5, 速 = CBD9
    flags = m.text_flags(emergency=True, display=True, tts=True)
    assert flags == 0b0000_1101  # bit 0 emergency, bit 2 display, bit 3 TTS
    assert m.encode_text(flags, raw, is_2019=False) == bytes.fromhex("0d bcf5cbd9")
    # 2019 adds the text type byte (1 notice) after the flags
    assert m.encode_text(flags, raw, is_2019=True) == bytes.fromhex("0d 01 bcf5cbd9")
    assert m.decode_text(bytes.fromhex("0d01bcf5cbd9"), is_2019=True) == m.TextMessage(
        0x0D, "减速", 1
    )
    # the whole frame, hand-assembled: id 8300, props 0005, phone 013900000001, serial 0007
    frame = encode_frame(m.MSG_TEXT, "13900000001", 7, bytes.fromhex("0d bcf5cbd9"))
    content = bytes.fromhex("83000005013900000001" + "0007" + "0dbcf5cbd9")
    check = 0
    for byte in content:
        check ^= byte
    assert frame == b"\x7e" + content + bytes([check]) + b"\x7e"
    decoded = decode_frame(frame[1:-1])
    assert (decoded.header.msg_id, decoded.header.serial) == (m.MSG_TEXT, 7)


def test_terminal_general_response_0x0001_decodes_serial_id_and_result() -> None:
    body = m.encode_terminal_reply(7, m.MSG_TEXT, 1)
    assert body == bytes.fromhex("0007830001")
    assert m.decode_terminal_reply(body) == (7, m.MSG_TEXT, 1)


def test_text_checks_name_the_limit_and_the_character() -> None:
    with pytest.raises(CommandError, match=r"at most 10 bytes.*got 12"):
        text_gbk("请减速慢行请", 10)
    with pytest.raises(CommandError, match=r"'🚚' \(U\+1F69A\) at position 3"):
        text_gbk("请勿🚚", 100)
    command = build_text("1", TextBody(text="请减速"), text_max_bytes=6, expiry_s=60)
    assert command.expires_at - command.created_at == timedelta(seconds=60)
    message = json.loads(command.to_message())
    assert set(message) == {"command_id", "name", "created_at", "expires_at", "body"}
    assert message["body"] == {"text": "请减速", "emergency": False, "display": True, "tts": True}


# --------------------------------------------------------------------------------- the loop


async def test_text_from_the_api_reaches_the_jt808_sim_process_and_is_acknowledged(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    async with command_loop(settings, pool) as loop, rest_client(loop.settings) as client:
        sim = jt808_sim(loop, one_fix_track(tmp_path), "--linger-s", "20")
        try:
            await wait_for(
                lambda: _async(loop.gateway.downlink._links), lambda links: PHONE_A in links
            )  # type: ignore[union-attr]
            response = await post_text(client, loop, body={"text": "您已超速行驶，请减速慢行"})
            assert response.status_code == 201, response.text
            created = response.json()
            assert created["state"] == "queued" and created["terminal_id"] == PHONE_A
            row = await wait_for(
                lambda: command_state(loop, created["id"]), lambda r: r["state"] == "acknowledged"
            )
            assert row["state"] == "acknowledged" and row["result"] == 0
            assert row["sent_at"] is not None and row["answered_at"] >= row["sent_at"]
            api = (
                await client.get(f"/api/commands/{created['id']}", headers=loop.world.auth("op_a"))
            ).json()
            assert api["state"] == "acknowledged" and api["answered_at"]
        finally:
            sim.terminate()
            output, _ = sim.communicate(timeout=20)
        assert (
            f"jt808-sim: terminal {PHONE_A} text [display,tts]: 您已超速行驶，请减速慢行" in output
        )


async def _async(value: Any) -> Any:
    return value


async def test_a_command_for_an_offline_terminal_waits_and_is_sent_when_it_connects(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with command_loop(settings, pool) as loop, rest_client(loop.settings) as client:
        response = await post_text(client, loop, body={"text": "请减速", "emergency": True})
        row_id = response.json()["id"]
        await asyncio.sleep(1.0)  # three dispatcher scans: nothing is sent to an offline terminal
        assert (await command_state(loop, row_id))["state"] == "queued"
        terminal = await connected(loop)
        reader = asyncio.create_task(terminal.linger(10))  # answers texts as they come
        try:
            row = await wait_for(
                lambda: command_state(loop, row_id), lambda r: r["state"] == "acknowledged"
            )
            reader.cancel()
            assert row["state"] == "acknowledged"
            assert [(t.text, t.emergency, t.tts) for t in terminal.texts] == [
                ("请减速", True, True)
            ]
        finally:
            await terminal.close()


async def test_a_command_that_expires_before_the_terminal_connects_is_never_sent(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with (
        command_loop(settings, pool, min_expiry_s=0.5) as loop,
        rest_client(loop.settings) as client,
    ):
        response = await post_text(client, loop, expires_in_s=0.5)
        row_id = response.json()["id"]
        row = await wait_for(lambda: command_state(loop, row_id), lambda r: r["state"] == "expired")
        assert row["state"] == "expired" and row["sent_at"] is None
        terminal = await connected(loop)
        try:
            await terminal.linger(1.0)
            assert terminal.texts == []
        finally:
            await terminal.close()


async def test_a_sent_command_without_an_answer_expires(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with (
        command_loop(settings, pool, min_expiry_s=0.5) as loop,
        rest_client(loop.settings) as client,
    ):
        terminal = await connected(loop)  # connected, but never reads: no 0x0001 comes back
        try:
            response = await post_text(client, loop, expires_in_s=1.5)
            row_id = response.json()["id"]
            row = await wait_for(
                lambda: command_state(loop, row_id), lambda r: r["state"] == "expired"
            )
            assert row["state"] == "expired" and row["sent_at"] is not None
        finally:
            await terminal.close()


async def test_the_terminal_refusing_a_text_marks_the_command_failed_with_its_result(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with command_loop(settings, pool) as loop, rest_client(loop.settings) as client:
        terminal = await connected(loop, text_result=m.RESULT_UNSUPPORTED)
        try:
            reader = asyncio.create_task(terminal.linger(10))
            row_id = (await post_text(client, loop)).json()["id"]
            row = await wait_for(
                lambda: command_state(loop, row_id),
                lambda r: r["state"] != "queued" and r["state"] != "sent",
            )
            assert (row["state"], row["result"]) == ("failed", 3)
            reader.cancel()
        finally:
            await terminal.close()


async def test_a_2019_terminal_gets_the_2019_layout(settings: Settings, pool: asyncpg.Pool) -> None:
    async with command_loop(settings, pool) as loop, rest_client(loop.settings) as client:
        terminal = await connected(loop, protocol="2019")
        try:
            reader = asyncio.create_task(terminal.linger(10))
            row_id = (await post_text(client, loop, body={"text": "请系好安全带"})).json()["id"]
            await wait_for(
                lambda: command_state(loop, row_id), lambda r: r["state"] == "acknowledged"
            )
            assert [(t.text, t.text_type) for t in terminal.texts] == [("请系好安全带", 1)]
            reader.cancel()
        finally:
            await terminal.close()


async def test_a_malformed_answer_is_kept_with_its_reason_and_the_next_one_counts(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with command_loop(settings, pool) as loop, rest_client(loop.settings) as client:
        row_id = (await post_text(client, loop)).json()["id"]
        command_id = await pool.fetchval(
            "SELECT command_id::text FROM commands WHERE id = $1", row_id
        )
        prefix = loop.settings.mqtt.topic_prefix
        async with aiomqtt.Client("127.0.0.1", loop.settings.mqtt.port) as mq:
            topic = topics.cmd_result_topic(PHONE_A, prefix)
            await mq.publish(topic, b'{"command_id": 5', qos=1)
            await mq.publish(topic, json.dumps({"command_id": command_id, "result": 0}), qos=1)
        row = await wait_for(
            lambda: command_state(loop, row_id), lambda r: r["state"] == "acknowledged"
        )
        assert row["state"] == "acknowledged"
        rejected = await pool.fetchrow("SELECT topic, reason FROM rejected_messages")
        assert rejected is not None and rejected["reason"] == "malformed_answer"
        # another terminal cannot answer for this one
        other = await pool.fetchval("SELECT count(*) FROM commands WHERE terminal_id = $1", PHONE_B)
        assert other == 0


async def test_a_batch_of_answers_keeps_first_answer_wins_and_survives_a_non_uuid_id(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    # a long batch wait: the five answers below are recorded in one transaction
    async with (
        command_loop(settings, pool, batch_wait_s=0.5) as loop,
        rest_client(loop.settings) as client,
    ):
        first, second = [(await post_text(client, loop)).json()["id"] for _ in range(2)]
        ids = dict(
            await pool.fetch(
                "SELECT id, command_id::text FROM commands WHERE id = ANY($1::bigint[])",
                [first, second],
            )
        )
        prefix = loop.settings.mqtt.topic_prefix
        answers = [
            (PHONE_A, {"command_id": "not-a-uuid", "result": 0}),  # matches nothing
            (PHONE_A, {"command_id": ids[first], "result": 1}),  # counts
            (PHONE_A, {"command_id": ids[first], "result": 0}),  # too late: first one wins
            (PHONE_B, {"command_id": ids[second], "result": 1}),  # another terminal's command
            (PHONE_A, {"command_id": ids[second], "result": 0}),  # counts
        ]
        async with aiomqtt.Client("127.0.0.1", loop.settings.mqtt.port) as mq:
            for phone, body in answers:
                await mq.publish(topics.cmd_result_topic(phone, prefix), json.dumps(body), qos=1)
        row = await wait_for(
            lambda: command_state(loop, second), lambda r: r["state"] == "acknowledged"
        )
        assert row["state"] == "acknowledged" and row["result"] == 0
        row = await command_state(loop, first)
        assert row["state"] == "failed" and row["result"] == 1
        assert loop.dispatcher.answered == 2


# ------------------------------------------------------------------------------- bad input


async def test_bad_texts_answer_422_naming_the_limit_or_the_character(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with (
        command_loop(settings, pool, text_max_bytes=20) as loop,
        rest_client(loop.settings) as client,
    ):
        long = await post_text(client, loop, body={"text": "请" * 11})
        assert long.status_code == 422
        assert "at most 20 bytes" in long.text and "got 22" in long.text
        emoji = await post_text(client, loop, body={"text": "请减速🚚"})
        assert emoji.status_code == 422 and "U+1F69A" in emoji.text and "position 4" in emoji.text
        assert await pool.fetchval("SELECT count(*) FROM commands") == 0


async def test_an_expiry_outside_10_s_to_1_day_answers_422_and_queues_nothing(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with command_loop(settings, pool) as loop, rest_client(loop.settings) as client:
        for expires_in_s, shown in [(1e-300, "1e-300"), (0, "0"), (-5, "-5"), (9.5, "9.5"),
                                    (86401, "86401")]:  # fmt: skip
            response = await post_text(client, loop, expires_in_s=expires_in_s)
            assert response.status_code == 422, (expires_in_s, response.text)
            detail = response.json()["detail"]
            assert detail == f"expires_in_s: expected 10 to 86400 seconds, got {shown}"
        assert await pool.fetchval("SELECT count(*) FROM commands") == 0
        for expires_in_s in (10, 86400):
            response = await post_text(client, loop, expires_in_s=expires_in_s)
            assert response.status_code == 201, response.text
        lives = await pool.fetch(
            "SELECT extract(epoch FROM expires_at - created_at) AS s FROM commands ORDER BY id"
        )
        assert [float(r["s"]) for r in lives] == [10.0, 86400.0]


def test_the_default_expiry_of_reminders_obeys_the_same_bounds() -> None:
    # alarm handling (remind_driver) and 自动提醒 queue with commands.expiry_s
    with pytest.raises(ValidationError, match=r"expiry_s: expected 10 to 86400 s.*got 1e-300"):
        CommandsSettings(expiry_s=1e-300)
    with pytest.raises(ValidationError, match=r"got 172800"):
        CommandsSettings(expiry_s=172800)
    assert CommandsSettings(expiry_s=10).expiry_s == 10


async def test_unknown_terminal_and_another_companys_vehicle_answer_404(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with command_loop(settings, pool) as loop, rest_client(loop.settings) as client:
        unknown = await client.post(
            "/api/commands",
            json={"terminal_id": "13999999999", "body": {"text": "请减速"}},
            headers=loop.world.auth("bureau"),
        )
        assert unknown.status_code == 404
        foreign = await post_text(client, loop, who="op_b")  # vehicle of company A
        assert foreign.status_code == 404
        foreign_terminal = await client.post(
            "/api/commands",
            json={"terminal_id": PHONE_A, "body": {"text": "请减速"}},
            headers=loop.world.auth("op_b"),
        )
        assert foreign_terminal.status_code == 404
        enforcement = await post_text(client, loop, who="enforcement")
        assert enforcement.status_code == 403
        bureau = await post_text(client, loop, who="bureau")
        assert bureau.status_code == 201
        row_id = bureau.json()["id"]
        hidden = await client.get(f"/api/commands/{row_id}", headers=loop.world.auth("op_b"))
        assert hidden.status_code == 404
        listed = await client.get("/api/commands", headers=loop.world.auth("op_b"))
        assert listed.json() == []
        assert await pool.fetchval("SELECT count(*) FROM commands") == 1


# ------------------------------------------------------------------------- alarm handling


async def test_remind_driver_sends_the_text_and_the_alarm_and_evidence_show_the_answer(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    from web_helpers import store_alarm

    async with command_loop(settings, pool) as loop, rest_client(loop.settings) as client:
        alarm_id = await store_alarm(pool, loop.vehicle_a, loop.world.company_a)
        templates = (
            await client.get("/api/commands/templates", headers=loop.world.auth("op_a"))
        ).json()
        assert templates["templates"]["overspeed"] == "您已超速行驶，请减速慢行"
        # another company's operator cannot handle it; a text GBK cannot hold is refused
        foreign = await client.post(
            f"/api/alarms/{alarm_id}/handle",
            json={"method": "remind_driver", "remind": {"text": "请减速"}},
            headers=loop.world.auth("op_b"),
        )
        assert foreign.status_code == 404
        bad = await client.post(
            f"/api/alarms/{alarm_id}/handle",
            json={"method": "remind_driver", "remind": {"text": "请减速🚚"}},
            headers=loop.world.auth("op_a"),
        )
        assert bad.status_code == 422 and "U+1F69A" in bad.text
        assert (await pool.fetchval("SELECT status FROM alarms WHERE id = $1", alarm_id)) == "open"
        terminal = await connected(loop)
        reader = asyncio.create_task(terminal.linger(15))
        try:
            handled = await client.post(
                f"/api/alarms/{alarm_id}/handle",
                json={
                    "method": "remind_driver",
                    "note": "已提醒驾驶员减速",
                    "remind": {"text": "您已超速行驶，请减速慢行（平台）"},
                },
                headers=loop.world.auth("op_a"),
            )
            assert handled.status_code == 200, handled.text
            alarm = handled.json()
            assert alarm["status"] == "handled" and alarm["handling_method"] == "remind_driver"
            assert alarm["remind_state"] == "queued" and alarm["remind_command_id"]

            async def fetch() -> dict[str, Any]:
                r = await client.get(f"/api/alarms/{alarm_id}", headers=loop.world.auth("op_a"))
                return dict(r.json())

            alarm = await wait_for(fetch, lambda a: a["remind_state"] == "acknowledged")
            assert alarm["remind_state"] == "acknowledged" and alarm["remind_answered_at"]
            assert [t.text for t in terminal.texts] == ["您已超速行驶，请减速慢行（平台）"]
        finally:
            reader.cancel()
            await terminal.close()
        evidence = await client.get(
            "/api/reports/evidence",
            params={"alarm_id": alarm_id, "format": "json"},
            headers=loop.world.auth("op_a"),
        )
        handling = evidence.json()["handling"]
        assert handling["handling_method"] == "remind_driver"
        [reminder] = handling["reminders"]
        assert reminder["state"] == "acknowledged" and reminder["answered_at"]
        assert reminder["text"] == "您已超速行驶，请减速慢行（平台）"
        trail = await pool.fetch("SELECT action FROM audit_log ORDER BY id")
        assert [r["action"] for r in trail] == ["command.create", "alarm.handle"]


async def test_handling_needs_a_method_or_a_note(settings: Settings, pool: asyncpg.Pool) -> None:
    from web_helpers import store_alarm

    async with command_loop(settings, pool) as loop, rest_client(loop.settings) as client:
        alarm_id = await store_alarm(pool, loop.vehicle_a, loop.world.company_a)
        auth = loop.world.auth("op_a")
        empty = await client.post(f"/api/alarms/{alarm_id}/handle", json={}, headers=auth)
        assert empty.status_code == 422
        no_text = await client.post(
            f"/api/alarms/{alarm_id}/handle", json={"method": "remind_driver"}, headers=auth
        )
        assert no_text.status_code == 422 and "remind" in no_text.text
        phone = await client.post(
            f"/api/alarms/{alarm_id}/handle", json={"method": "phone_call"}, headers=auth
        )
        assert phone.status_code == 200
        assert phone.json()["handling_method"] == "phone_call"
        assert phone.json()["remind_command_id"] is None
        assert await pool.fetchval("SELECT count(*) FROM commands") == 0


async def test_automatic_reminder_once_per_alarm_and_rate_limited_per_vehicle(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    from web_helpers import store_alarm

    async with command_loop(
        settings, pool, auto_remind_alarm_types=["overspeed"], auto_remind_min_interval_s=600
    ) as loop:
        terminal = await connected(loop)
        reader = asyncio.create_task(terminal.linger(20))
        first = await store_alarm(pool, loop.vehicle_a, loop.world.company_a)
        second = await store_alarm(
            pool, loop.vehicle_a, loop.world.company_a,
            started_at=datetime.now(UTC) + timedelta(seconds=1),
        )  # fmt: skip
        fatigue = await store_alarm(
            pool, loop.vehicle_b, loop.world.company_b, alarm_type="fatigue_driving"
        )

        def message(alarm_id: int, alarm_type: str = "overspeed", **extra: Any) -> str:
            return json.dumps(
                {"id": alarm_id, "alarm_type": alarm_type, "terminal_id": PHONE_A,
                 "event": "opened", "late": False, "details": {}, **extra}
            )  # fmt: skip

        prefix = loop.settings.mqtt.topic_prefix
        topic = topics.alarm_topic(loop.world.company_a, loop.vehicle_a, "overspeed", prefix)
        async with aiomqtt.Client("127.0.0.1", loop.settings.mqtt.port) as mq:
            await mq.publish(topic, message(first), qos=1)
            await mq.publish(topic, message(first), qos=1)  # redelivered
            await mq.publish(topic, message(second), qos=1)  # same vehicle, within 10 min
            await mq.publish(topic, message(first, event="closed"), qos=1)
            await mq.publish(topic, message(fatigue, "fatigue_driving"), qos=1)  # not configured
        try:
            row = await wait_for(
                lambda: pool.fetchrow(
                    "SELECT c.state, c.alarm_id, c.created_by, c.body->>'text' AS text "
                    "FROM alarms a JOIN commands c ON c.id = a.remind_command_id WHERE a.id = $1",
                    first,
                ),
                lambda r: r is not None and r["state"] == "acknowledged",
            )
            assert row["state"] == "acknowledged" and row["created_by"] is None
            assert row["text"] == "您已超速行驶，请减速慢行"
            await asyncio.sleep(1.0)  # the later messages are processed in order by now
            assert await pool.fetchval("SELECT count(*) FROM commands") == 1
            assert [t.text for t in terminal.texts] == ["您已超速行驶，请减速慢行"]
            status = await pool.fetchval("SELECT status FROM alarms WHERE id = $1", first)
            assert status == "open"  # a person still handles it
        finally:
            reader.cancel()
            await terminal.close()


async def test_the_ingest_worker_leaves_answers_and_status_to_the_dispatcher(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    from ingest_helpers import publish_raw, running_worker

    await make_world(pool, settings)
    vehicle = await registry.ensure_vehicle(
        pool, company_id=(await registry.ensure_company(pool, "甲运输公司")).id,
        plate_number="渝A80001", terminal_id=PHONE_A,
    )  # fmt: skip
    fix = json.dumps(
        {"fix_time": datetime.now(UTC).isoformat(), "latitude": 29.56, "longitude": 106.55,
         "speed_kmh": 30}
    )  # fmt: skip
    async with running_worker(settings):
        await publish_raw(
            settings,
            [
                (f"gps/v1/{PHONE_A}/status", b'{"online": true}'),
                (f"gps/v1/{PHONE_A}/cmd_result", b'{"command_id": "x", "result": 0}'),
                (f"gps/v1/{PHONE_A}/position", fix),
            ],
        )
        stored = await wait_for(
            lambda: pool.fetchval(
                "SELECT count(*) FROM positions WHERE vehicle_id = $1", vehicle.id
            ),
            lambda n: n >= 1,
        )
    assert stored == 1
    # neither filed as a bad topic nor stored as a raw position message
    assert await pool.fetchval("SELECT count(*) FROM rejected_messages") == 0
    assert await pool.fetchval("SELECT count(*) FROM raw_messages") == 1
