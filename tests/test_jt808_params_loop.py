"""Issue 12 items 4, 5 and 9 end to end on the real Mosquitto and PostgreSQL: the web API queues
a command, the command dispatcher publishes it on ``cmd/v1``, the JT/T 808 gateway (real TCP
socket) sends 0x8104 / 0x8106 / 0x8103 / 0x8201 / 0x8202 / 0x8105, a simulated terminal answers
(the ``jt808-sim`` process, or its SimTerminal in-process), the gateway turns the answer into
``cmd_result`` with its body, and the command row is acknowledged with that body."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from ingest_helpers import wait_for
from jt808_helpers import location_report, next_message, subscription
from test_commands import PHONE_A, PHONE_B, Loop, command_loop, connected, jt808_sim, one_fix_track
from web_helpers import rest_client

from gps_monitor.config import Settings
from ingest.jt808 import messages as m
from ingest.jt808 import misc
from ingest.jt808 import params as p
from ingest.jt808.codec import Frame
from ingest.jt808.sim import SimTerminal
from ingest.jt808.sim_commands import param_value


@contextlib.asynccontextmanager
async def lingering(loop: Loop, phone: str = PHONE_A) -> AsyncIterator[SimTerminal]:
    """An authenticated simulated terminal that sent one fix and reads (and answers) whatever
    the gateway sends it until the block ends."""
    terminal = await connected(loop, phone)
    assert await terminal.send_location(location_report()) == m.RESULT_OK
    reader = asyncio.create_task(terminal.linger(120, heartbeat_s=60))
    try:
        yield terminal
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        await terminal.close()


async def post(
    client: httpx.AsyncClient, loop: Loop, name: str, body: dict[str, Any], who: str = "op_a",
    **fields: Any,
) -> httpx.Response:  # fmt: skip
    payload = {"vehicle_id": loop.vehicle_a, "name": name, "body": body, **fields}
    return await client.post("/api/commands", json=payload, headers=loop.world.auth(who))


async def answered(loop: Loop, row_id: int) -> asyncpg.Record:
    async def probe() -> asyncpg.Record | None:
        return await loop.pool.fetchrow(
            "SELECT state, result, result_detail, result_body FROM commands WHERE id = $1", row_id
        )

    row = await wait_for(probe, lambda r: r is not None and r["state"] not in ("queued", "sent"))
    assert row is not None
    return row


async def test_operator_queries_and_sets_parameters_and_each_change_is_audited_with_the_answer(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with (
        command_loop(settings, pool) as loop,
        rest_client(loop.settings) as client,
        lingering(loop) as terminal,
    ):
        # all parameters (0x8104 -> 0x0104 from the terminal's own table)
        created = await post(client, loop, "query_params", {})
        assert created.status_code == 201, created.text
        row = await answered(loop, created.json()["id"])
        assert (row["state"], row["result"]) == ("acknowledged", 0)
        params = {item["id"]: item for item in row["result_body"]["params"]}
        assert params["0x0055"] == {"id": "0x0055", "name": "overspeed_limit_kmh", "value": 100}
        assert params["0x005b"]["value"] == 5.0  # 1/10 km/h on the wire
        assert params["0xf000"] == {"id": "0xf000", "raw_hex": "0102030405"}  # vendor: raw
        assert row["result_body"]["count"] == len(terminal.parameters)

        # set the overspeed limit (0x8103 -> 0x0001), then ask for it alone (0x8106)
        created = await post(client, loop, "set_params", {"params": {"overspeed_limit_kmh": 80}})
        assert created.status_code == 201, created.text
        row = await answered(loop, created.json()["id"])
        assert (row["state"], row["result"], row["result_body"]) == ("acknowledged", 0, None)
        assert param_value(terminal, "overspeed_limit_kmh") == 80
        created = await post(client, loop, "query_params", {"names": ["overspeed_limit_kmh"]})
        row = await answered(loop, created.json()["id"])
        assert row["result_body"]["params"] == [
            {"id": "0x0055", "name": "overspeed_limit_kmh", "value": 80}
        ]

        # the change is in the audit trail twice: asked (command.create), answered
        trail = await pool.fetch(
            "SELECT a.action, a.username, a.details FROM audit_log a JOIN commands c "
            "ON a.object_type = 'command' AND a.object_id = c.id WHERE c.name = 'set_params' "
            "ORDER BY a.id"
        )
        assert [(t["action"], t["username"]) for t in trail] == [
            ("command.create", "op_a"), ("command.answer", "op_a")
        ]  # fmt: skip
        assert trail[0]["details"]["body"] == {"params": {"overspeed_limit_kmh": 80}}
        assert trail[1]["details"]["result"] == 0 and trail[1]["details"]["state"] == "acknowledged"
        # a query changes nothing: not audited as an answer
        assert (
            await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'command.answer'")
            == 1
        )

        # the API shows the row with the answer body
        listed = await client.get(
            f"/api/commands?vehicle_id={loop.vehicle_a}", headers=loop.world.auth("op_a")
        )
        assert listed.json()[0]["result_body"]["params"][0]["value"] == 80


async def test_bad_settings_answer_422_naming_the_parameter_and_range_and_queue_nothing(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with command_loop(settings, pool) as loop, rest_client(loop.settings) as client:
        response = await post(client, loop, "set_params", {"params": {"overspeed_limit_kmh": 300}})
        assert response.status_code == 422
        assert response.json()["detail"] == (
            "body.params.overspeed_limit_kmh: 0x0055 overspeed_limit_kmh: expected 1 to 200, "
            "got 300"
        )
        response = await post(client, loop, "set_params", {"params": {"main_server_address": "x"}})
        assert response.status_code == 422 and "cannot be set here" in response.text
        response = await post(client, loop, "track", {"interval_s": 5})
        assert response.status_code == 422 and "body.duration_s" in response.text
        response = await post(client, loop, "format_disk", {})
        assert response.status_code == 422 and "name: expected one of" in response.text
        # another company's vehicle: 404; terminal control is the bureau's: 403
        other = await client.post(
            "/api/commands",
            json={"vehicle_id": loop.vehicle_b, "name": "query_params", "body": {}},
            headers=loop.world.auth("op_a"),
        )
        assert other.status_code == 404
        reset = await post(client, loop, "terminal_control", {"action": "reset"})
        assert reset.status_code == 403 and "expected role bureau" in reset.text
        assert await pool.fetchval("SELECT count(*) FROM commands") == 0


async def test_position_query_answers_with_the_position_which_also_goes_the_position_path(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with (
        command_loop(settings, pool) as loop,
        rest_client(loop.settings) as client,
        subscription(loop.settings) as positions,
        lingering(loop),
    ):
        _, first = await next_message(positions)  # the fix the terminal sent on connecting
        assert "jt808_msg_id" not in first["extras"]
        created = await post(client, loop, "query_position", {})
        assert created.status_code == 201, created.text
        row = await answered(loop, created.json()["id"])
        assert (row["state"], row["result"]) == ("acknowledged", 0)
        body = row["result_body"]
        assert (body["latitude"], body["longitude"], body["speed_kmh"]) == (29.563, 106.551, 52.3)
        assert body["fix_valid"] is True
        topic, published = await next_message(positions)
        assert topic.endswith(f"gps/v1/{PHONE_A}/position")
        assert published["extras"]["jt808_msg_id"] == "0x0201"
        assert published["extras"]["raw_frame_hex"].startswith("7e0201")
        assert published["fix_time"] == body["fix_time"]


async def test_temporary_tracking_from_an_alarm_reports_every_interval_for_the_duration(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with (
        command_loop(settings, pool) as loop,
        rest_client(loop.settings) as client,
        subscription(loop.settings) as positions,
        lingering(loop) as terminal,
    ):
        await next_message(positions)
        alarm_id = await pool.fetchval(
            "INSERT INTO alarms (vehicle_id, company_id, alarm_type, dedup_key, started_at) "
            "VALUES ($1, $2, 'device_alarm', 'params-loop-sos', now()) RETURNING id",
            loop.vehicle_a,
            loop.world.company_a,
        )
        created = await post(
            client, loop, "track", {"interval_s": 1, "duration_s": 3}, alarm_id=alarm_id
        )
        assert created.status_code == 201, created.text
        assert created.json()["alarm_id"] == alarm_id
        row = await answered(loop, created.json()["id"])
        assert (row["state"], row["result"]) == ("acknowledged", 0)
        times = []
        for _ in range(3):
            _, position = await next_message(positions)
            times.append(datetime.fromisoformat(position["fix_time"]))
        assert terminal.commands.tracked_reports == 3
        await asyncio.sleep(1.5)  # the duration is over: no fourth report
        assert positions.empty() and terminal.commands.tracked_reports == 3
        assert all(
            timedelta(0) < b - a < timedelta(seconds=3) for a, b in itertools.pairwise(times)
        )
        # an alarm that is not this vehicle's: 404
        other = await post(client, loop, "track", {"interval_s": 5, "duration_s": 600},
                           alarm_id=alarm_id + 1000)  # fmt: skip
        assert other.status_code == 404


async def test_a_parameter_list_whose_count_lies_fails_the_command_with_the_reason(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with (
        command_loop(settings, pool) as loop,
        rest_client(loop.settings) as client,
        lingering(loop) as liar,
        lingering(loop, PHONE_B) as honest,
    ):

        async def lie(frame: Frame) -> None:
            # SmallChi/JT808@c9552b0f JT808_0x0104Test.cs Test4's body (a real terminal: count
            # 9, 7 parameters), answering this query's serial
            body = bytes.fromhex(
                "000009"
                "00000001040000000F00000002040000000A00000013103232332E3130382E3133332E"
                "31363300000000170100000000180400000328000000550400000078000000560400000000"
            )
            body = frame.header.serial.to_bytes(2, "big") + body[2:]
            _, wire = liar.frame(p.MSG_PARAMS_ANSWER, body)
            await liar.send_raw(wire)

        liar.commands.answer = lie  # type: ignore[method-assign]
        created = await post(client, loop, "query_params", {})
        row = await answered(loop, created.json()["id"])
        assert (row["state"], row["result"]) == ("failed", 2)
        assert "count says 9 parameters, the body ends in item 8" in row["result_detail"]
        assert row["result_body"]["raw_hex"].endswith("0400000000")  # kept, not shown as params
        assert loop.gateway.stats.frames_bad["body"] == 1
        # the gateway keeps serving: the other company's terminal answers its query
        created = await client.post(
            "/api/commands",
            json={"vehicle_id": loop.vehicle_b, "name": "query_params", "body": {"ids": [0x55]}},
            headers=loop.world.auth("op_b"),
        )
        row = await answered(loop, created.json()["id"])
        assert row["result_body"]["params"] == [
            {"id": "0x0055", "name": "overspeed_limit_kmh", "value": 100}
        ]
        assert honest.parameters  # it answered from its own table


async def test_terminal_control_reset_for_the_bureau(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with (
        command_loop(settings, pool) as loop,
        rest_client(loop.settings) as client,
        lingering(loop),
    ):
        created = await post(client, loop, "terminal_control", {"action": "reset"}, who="bureau")
        assert created.status_code == 201, created.text
        row = await answered(loop, created.json()["id"])
        assert (row["state"], row["result"]) == ("acknowledged", 0)
        actions = await pool.fetch(
            "SELECT action, role FROM audit_log WHERE object_type = 'command' ORDER BY id"
        )
        assert [(a["action"], a["role"]) for a in actions] == [
            ("command.create", "bureau"), ("command.answer", "bureau")
        ]  # fmt: skip


async def test_time_query_and_uploads_stored_raw_and_refused_before_authentication(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with command_loop(settings, pool) as loop:
        # 0x0004 is answered to any connection (a terminal may set its clock first)
        stranger = SimTerminal("13912345678", reply_timeout_s=10)
        await stranger.connect("127.0.0.1", loop.port)
        before = datetime.now(UTC).replace(microsecond=0)
        told = await stranger.query_time()
        assert before <= told <= datetime.now(UTC)
        # uploads from a connection not authenticated as that terminal: refused, not stored
        assert await stranger.general(misc.MSG_PASS_THROUGH_UP, b"\x41$OBD") == m.RESULT_FAILURE
        await stranger.close()

        terminal = await connected(loop)
        try:
            pass_body = bytes.fromhex("41") + b"$OBD-RT,12.3,0,20\r\n"
            can_body = bytes.fromhex(
                "00022000050350001203040102030401020304050607080103040506070801"
            )
            results = [
                await terminal.general(misc.MSG_PASS_THROUGH_UP, pass_body),
                await terminal.general(misc.MSG_CAN_DATA, can_body),
                await terminal.general(misc.MSG_CAN_DATA, can_body[:-1]),  # count lies
                await terminal.general(misc.MSG_UPGRADE_RESULT, bytes.fromhex("0001")),
            ]
        finally:
            await terminal.close()
        assert results == [0, 0, 2, 0]
        rows = await pool.fetch(
            "SELECT terminal_id, vehicle_id, msg_id, kind, body, decoded FROM terminal_uploads "
            "ORDER BY id"
        )
        assert [(r["terminal_id"], r["vehicle_id"], r["msg_id"], r["kind"]) for r in rows] == [
            (PHONE_A, loop.vehicle_a, 0x0900, "pass_through"),
            (PHONE_A, loop.vehicle_a, 0x0705, "can_data"),
            (PHONE_A, loop.vehicle_a, 0x0705, "can_data"),
            (PHONE_A, loop.vehicle_a, 0x0108, "upgrade_result"),
        ]
        assert [bytes(r["body"]) for r in rows] == [
            pass_body, can_body, can_body[:-1], b"\x00\x01"
        ]  # fmt: skip
        assert rows[0]["decoded"] == {"pass_type": 0x41, "content_bytes": 19}
        assert rows[1]["decoded"]["first_received"] == "20:00:05.350"
        assert rows[1]["decoded"]["items"][1]["data_hex"] == "0103040506070801"
        assert "count says 2 items" in rows[2]["decoded"]["problem"]
        assert rows[3]["decoded"] == {"upgrade_type": "terminal", "result": "failed"}

        # read back through the API: the operator's own vehicle, newest first; others 404
        async with rest_client(loop.settings) as client:
            url = f"/api/terminal-uploads?vehicle_id={loop.vehicle_a}"
            listed = (await client.get(url, headers=loop.world.auth("op_a"))).json()
            assert [u["kind"] for u in listed] == [
                "upgrade_result", "can_data", "can_data", "pass_through"
            ]  # fmt: skip
            assert (
                listed[-1]["body_hex"] == pass_body.hex() and len(listed[-1]["frame_sha256"]) == 64
            )
            assert (await client.get(url, headers=loop.world.auth("op_b"))).status_code == 404
            empty = f"/api/terminal-uploads?vehicle_id={loop.vehicle_b}"
            assert (await client.get(empty, headers=loop.world.auth("op_b"))).json() == []


async def test_set_params_from_the_api_reaches_the_jt808_sim_process(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    async with command_loop(settings, pool) as loop, rest_client(loop.settings) as client:
        sim = jt808_sim(loop, one_fix_track(tmp_path), "--linger-s", "20")
        try:
            await wait_for(
                lambda: _async(loop.gateway.downlink._links),  # type: ignore[union-attr]
                lambda links: PHONE_A in links,
            )
            created = await post(
                client, loop, "set_params", {"params": {"overspeed_limit_kmh": 80}}
            )
            row = await answered(loop, created.json()["id"])
            assert (row["state"], row["result"]) == ("acknowledged", 0)
            created = await post(client, loop, "query_params", {"names": ["overspeed_limit_kmh"]})
            row = await answered(loop, created.json()["id"])
            assert row["result_body"]["params"][0]["value"] == 80
        finally:
            sim.terminate()
            output, _ = sim.communicate(timeout=20)
        assert f"jt808-sim: terminal {PHONE_A} 0x8103 set overspeed_limit_kmh=80" in output
        assert f"jt808-sim: terminal {PHONE_A} 0x8106 answered 1 parameters" in output


async def _async(value: Any) -> Any:
    return value


def test_cmd_result_body_round_trips_through_the_contract() -> None:
    from gps_monitor.commands import answer_message, parse_answer

    payload = answer_message("c1", 0, datetime.now(UTC), body={"params": [{"id": "0x0055"}]})
    assert parse_answer(payload).body == {"params": [{"id": "0x0055"}]}
    assert parse_answer(json.dumps({"command_id": "c1", "result": 0}).encode()).body is None


async def test_an_upload_the_database_cannot_take_is_answered_1_so_the_terminal_resends(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with command_loop(settings, pool) as loop:
        terminal = await connected(loop)
        try:
            await pool.execute("ALTER TABLE terminal_uploads RENAME TO terminal_uploads_away")
            body = bytes.fromhex("0001")
            assert await terminal.general(misc.MSG_UPGRADE_RESULT, body) == m.RESULT_FAILURE
            await pool.execute("ALTER TABLE terminal_uploads_away RENAME TO terminal_uploads")
            assert await terminal.general(misc.MSG_UPGRADE_RESULT, body) == m.RESULT_OK
            assert await terminal.heartbeat() == m.RESULT_OK  # the connection lived on
        finally:
            await terminal.close()
        assert await pool.fetchval("SELECT count(*) FROM terminal_uploads") == 1
        assert loop.gateway.stats.handler_errors == 0  # an outage, not a crash in a handler
