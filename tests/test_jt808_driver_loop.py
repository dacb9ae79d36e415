"""Issue 12 item 7 through the real gateway (TCP), Mosquitto and PostgreSQL: the simulated
terminal inserts IC cards (0x0702), positions carry the driver whose card is in, a driver change
closes one card session and opens the next, a removal closes it, and ``query_driver`` from the
web API goes out as 0x8702 and comes back answered by the terminal's 0x0702."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
from ingest_helpers import wait_for
from jt808_helpers import location_report, next_message, subscription
from test_commands import PHONE_A, Loop, command_loop, connected, jt808_sim
from test_jt808_params_loop import answered, post
from web_helpers import rest_client

from gps_monitor.config import Settings
from gps_monitor.db import drivers
from ingest.jt808 import messages as m
from ingest.jt808.driver import MSG_DRIVER_IDENTITY
from ingest.jt808.sim import SimTerminal

AUTHORITY = "重庆市交通运输委员会"


async def sessions_of(loop: Loop) -> list[tuple[str, datetime, datetime | None, str | None]]:
    rows = await drivers.sessions(loop.pool, loop.vehicle_a)
    return [(r["certificate_no"], r["card_in_at"], r["card_out_at"], r["ended_by"]) for r in rows][
        ::-1
    ]


async def test_cards_in_and_out_make_driver_sessions_and_positions_carry_the_driver(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with command_loop(settings, pool) as loop, subscription(loop.settings) as positions:
        terminal = await connected(loop)
        # no card yet: the position carries no driver
        assert await terminal.send_location(location_report("260101080000")) == m.RESULT_OK
        _, first = await next_message(positions)
        assert "driver" not in (first.get("extras") or {})

        # driver A (card time is the terminal's local time, GMT+8)
        result = await terminal.insert_card(
            "500101198001011234", "张三", datetime(2026, 1, 1, 8, 1), AUTHORITY,
            valid_until=date(2030, 6, 30),
        )  # fmt: skip
        assert result == m.RESULT_OK
        assert await terminal.send_location(location_report("260101080200")) == m.RESULT_OK
        _, second = await next_message(positions)
        assert second["extras"]["driver"] == {
            "certificate_no": "500101198001011234",
            "name": "张三",
        }
        row = await pool.fetchrow("SELECT * FROM drivers")
        assert (row["name"], row["issuing_authority"], row["valid_until"]) == (
            "张三", AUTHORITY, date(2030, 6, 30),
        )  # fmt: skip

        # driver B takes over: A's session is closed ('replaced') when B's card goes in
        await terminal.insert_card("500101198502022345", "李四", datetime(2026, 1, 1, 12, 0))
        assert await terminal.send_location(location_report("260101120100")) == m.RESULT_OK
        _, third = await next_message(positions)
        assert third["extras"]["driver"]["name"] == "李四"

        # B pulls his card: the next position carries nobody
        await terminal.remove_card(datetime(2026, 1, 1, 16, 30))
        assert await terminal.send_location(location_report("260101163100")) == m.RESULT_OK
        _, fourth = await next_message(positions)
        assert "driver" not in fourth["extras"]
        assert await sessions_of(loop) == [
            ("500101198001011234", datetime(2026, 1, 1, 0, 1, tzinfo=UTC),
             datetime(2026, 1, 1, 4, 0, tzinfo=UTC), "replaced"),
            ("500101198502022345", datetime(2026, 1, 1, 4, 0, tzinfo=UTC),
             datetime(2026, 1, 1, 8, 30, tzinfo=UTC), "removed"),
        ]  # fmt: skip
        assert (await drivers.driver_at(pool, loop.vehicle_a, datetime(2026, 1, 1, 3, tzinfo=UTC)))[
            "name"
        ] == "张三"

        # a body that fits no layout: result 2, nothing stored, the terminal still served
        assert await terminal.general(MSG_DRIVER_IDENTITY, bytes.fromhex("0318")) == (
            m.RESULT_MESSAGE_ERROR
        )
        assert await pool.fetchval("SELECT count(*) FROM driver_sessions") == 2
        # every report kept as received, the bad one with the reason
        kept = await pool.fetch(
            "SELECT encode(body, 'hex') AS body_hex, decoded FROM terminal_uploads "
            "WHERE kind = 'driver_identity' ORDER BY id"
        )
        assert [k["decoded"].get("status") for k in kept[:3]] == ["inserted", "inserted", "removed"]
        assert kept[-1]["body_hex"] == "0318"
        assert "expected a 2011, 2013 or 2019 driver identity" in kept[-1]["decoded"]["problem"]
        assert await terminal.heartbeat() == m.RESULT_OK
        await terminal.close()

        # the API: the operator of the vehicle's company sees its sessions, another gets 404
        async with rest_client(loop.settings) as client:
            url = f"/api/driver-sessions?vehicle_id={loop.vehicle_a}"
            listed = await client.get(url, headers=loop.world.auth("op_a"))
            assert listed.status_code == 200, listed.text
            assert [(r["name"], r["ended_by"]) for r in listed.json()] == [
                ("李四", "removed"), ("张三", "replaced"),
            ]  # fmt: skip
            assert listed.json()[1]["issuing_authority"] == AUTHORITY
            other = await client.get(url, headers=loop.world.auth("op_b"))
            assert other.status_code == 404
            empty = f"/api/driver-sessions?vehicle_id={loop.vehicle_b}"
            assert (await client.get(empty, headers=loop.world.auth("bureau"))).json() == []


async def test_after_a_gateway_restart_the_driver_whose_card_is_in_comes_from_the_database(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with command_loop(settings, pool) as loop, subscription(loop.settings) as positions:
        terminal = await connected(loop)
        await terminal.insert_card("500101198001011234", "张三", datetime(2026, 1, 1, 8, 1))
        code = terminal.auth_code
        await terminal.close()
        # what a restarted gateway knows: nothing in memory (its handlers' cache emptied)
        handlers = loop.gateway._handlers[MSG_DRIVER_IDENTITY].__self__  # type: ignore[attr-defined]
        handlers._current.clear()
        terminal = SimTerminal(PHONE_A, reply_timeout_s=10)
        await terminal.connect("127.0.0.1", loop.port)
        assert await terminal.authenticate(code) == m.RESULT_OK
        assert await terminal.send_location(location_report("260101090000")) == m.RESULT_OK
        _, position = await next_message(positions)
        assert position["extras"]["driver"]["certificate_no"] == "500101198001011234"
        await terminal.close()


async def test_query_driver_goes_out_as_0x8702_and_the_0702_answers_it(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with command_loop(settings, pool) as loop, rest_client(loop.settings) as client:
        terminal = await connected(loop, protocol="2019")
        terminal.driver = None
        assert await terminal.send_location(location_report()) == m.RESULT_OK
        reader = asyncio.create_task(terminal.linger(60, heartbeat_s=30))
        try:
            # the card goes in without a report (the sim only sets its reader)
            from ingest.jt808.driver import DriverIdentity

            terminal.driver = DriverIdentity(
                "2019", "inserted", datetime(2026, 1, 1, 8, 0), "ok", "王五",
                "500101199003033456", AUTHORITY, date(2031, 1, 1), "500101199003033456",
            )  # fmt: skip
            created = await post(client, loop, "query_driver", {})
            assert created.status_code == 201, created.text
            row = await answered(loop, created.json()["id"])
            assert (row["state"], row["result"]) == ("acknowledged", 0)
            body = row["result_body"]
            assert (body["layout"], body["status"], body["name"]) == ("2019", "inserted", "王五")
            assert body["certificate_no"] == "500101199003033456"
            assert body["id_card_no"] == "500101199003033456"
            # and the answer opened the driver's session like any card report
            session = await wait_for(
                lambda: drivers.current_driver(pool, loop.vehicle_a), lambda r: r is not None
            )
            assert session is not None and session["name"] == "王五"
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            await terminal.close()


async def test_the_jt808_sim_process_hands_the_track_from_one_driver_to_the_next(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    track = tmp_path / "track.csv"
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    rows = [
        f"{PHONE_A},{(start + timedelta(minutes=i)).isoformat()},29.5,{106.5 + i / 100},40"
        for i in range(4)
    ]
    track.write_text("terminal_id,fix_time,latitude,longitude,speed_kmh\n" + "\n".join(rows))
    async with command_loop(settings, pool) as loop:
        sim = jt808_sim(
            loop,
            track,
            "--driver",
            "500101198001011234:张三",
            "--driver",
            "500101198502022345:李四",
        )
        output, _ = await asyncio.to_thread(sim.communicate, timeout=60)
        assert sim.returncode == 0, output
        assert await sessions_of(loop) == [
            ("500101198001011234", start, start + timedelta(minutes=2), "replaced"),
            ("500101198502022345", start + timedelta(minutes=2), start + timedelta(minutes=3),
             "removed"),
        ]  # fmt: skip
