"""Nobody can take over a terminal's identity through 0x0100 (issue 14 item 3): a registered
terminal's auth code is never handed out again to a peer that merely knows its phone number
and plate, and the 0x8100 answers do not tell which phone numbers exist. Real TCP, Mosquitto
and PostgreSQL; the forged fix of the audit is checked against the broker and the database."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from ingest_helpers import start_cli
from jt808_helpers import (
    add_vehicle,
    authenticated,
    location_report,
    next_message,
    running_gateway,
    subscription,
)

from gps_monitor.models import PlateColor
from ingest.jt808 import messages as m
from ingest.jt808.codec import encode_frame
from ingest.jt808.sim import SimTerminal, sim_plate

VICTIM = "13800000001"
YELLOW = int(PlateColor.YELLOW)


async def register_reply(port: int, phone: str, plate: str, color: int) -> tuple[int, int, str]:
    """(answered serial, result, auth code) of one 0x0100 on a fresh connection."""
    terminal = SimTerminal(phone)
    await terminal.connect("127.0.0.1", port)
    request = m.RegisterRequest(50, 100, "GPSM", "SIM-808", phone[-7:], color, plate, "2013")
    await terminal.send_raw(
        encode_frame(m.MSG_REGISTER, phone, 7, m.encode_register(request, is_2019=False))
    )
    reply = await terminal.read_frame()
    await terminal.close()
    assert reply.header.msg_id == m.MSG_REGISTER_REPLY
    return m.decode_register_reply(reply.body)


async def test_the_audits_impersonation_gets_no_code_and_stores_no_forged_fix(settings, pool):
    await add_vehicle(pool, VICTIM, sim_plate(VICTIM))
    forged = replace(location_report("260101080500"), speed_dkmh=1500)  # 150 km/h
    async with (
        subscription(settings) as queue,
        running_gateway(settings, pool) as (gateway, port),
    ):
        victim = await authenticated(port, VICTIM)
        assert await victim.send_location(location_report("260101080000")) == m.RESULT_OK
        await next_message(queue)
        # the audit: an empty plate skipped the plate check and returned the victim's code
        assert await register_reply(port, VICTIM, "", 0) == (7, m.REGISTER_NO_VEHICLE, "")
        # even with the right plate and colour (painted on the vehicle): no code
        right_plate = await register_reply(port, VICTIM, sim_plate(VICTIM), YELLOW)
        assert right_plate == (7, m.REGISTER_TERMINAL_TAKEN, "")
        attacker = SimTerminal(VICTIM)
        await attacker.connect("127.0.0.1", port)
        assert await attacker.authenticate("0" * 16) == m.RESULT_FAILURE
        assert await attacker.send_location(forged) == m.RESULT_FAILURE
        await attacker.close()
        # the real terminal keeps working with its code
        assert await victim.send_location(location_report("260101080010")) == m.RESULT_OK
        _, second = await next_message(queue)
        await victim.close()
        await asyncio.sleep(0.2)
    assert second["fix_time"] == "2026-01-01T00:00:10+00:00"
    assert queue.empty()  # the forged fix never reached the broker
    assert gateway.stats.registrations == {m.REGISTER_OK: 1, 2: 1, 3: 1}


async def test_answers_do_not_tell_which_numbers_or_plates_exist(settings, pool):
    await add_vehicle(pool, VICTIM, sim_plate(VICTIM))
    await add_vehicle(pool, "13800000002", sim_plate("13800000002"))
    async with running_gateway(settings, pool) as (_gateway, port):
        answers = {
            "unknown number": await register_reply(port, "13799999999", "测A99999", YELLOW),
            "empty plate": await register_reply(port, VICTIM, "", 0),
            "wrong plate": await register_reply(port, VICTIM, "测Z12345", YELLOW),
            "wrong colour": await register_reply(port, VICTIM, sim_plate(VICTIM), 1),
            "another's plate": await register_reply(port, VICTIM, sim_plate("13800000002"), YELLOW),
        }
    assert set(answers.values()) == {(7, m.REGISTER_NO_VEHICLE, "")}


async def test_a_terminal_that_logged_out_registers_again_with_a_new_code(settings, pool):
    await add_vehicle(pool, VICTIM, sim_plate(VICTIM))
    async with running_gateway(settings, pool) as (_gateway, port):
        terminal = await authenticated(port, VICTIM)
        old = terminal.auth_code
        assert await terminal.logout() == m.RESULT_OK
        new = await terminal.register(sim_plate(VICTIM), YELLOW)
        assert new != old
        assert await terminal.authenticate(old) == m.RESULT_FAILURE
        assert await terminal.authenticate(new) == m.RESULT_OK
        await terminal.close()


async def test_same_identity_policy_reissues_only_to_an_identical_offline_terminal(settings, pool):
    await add_vehicle(pool, VICTIM, sim_plate(VICTIM))
    async with running_gateway(settings, pool, reregistration="same_identity") as (_gw, port):
        first = await authenticated(port, VICTIM)
        old = first.auth_code
        # identical registration while the terminal is online: refused
        online = await register_reply(port, VICTIM, sim_plate(VICTIM), YELLOW)
        assert online == (7, m.REGISTER_TERMINAL_TAKEN, "")
        await first.close()
        await asyncio.sleep(0.2)  # the gateway sees the close
        # offline, but another device id: refused
        other = SimTerminal(VICTIM)
        await other.connect("127.0.0.1", port)
        plate = sim_plate(VICTIM)
        request = m.RegisterRequest(50, 100, "GPSM", "SIM-808", "9999999", YELLOW, plate, "2013")
        reply = await other.request(m.MSG_REGISTER, m.encode_register(request, is_2019=False))
        assert m.decode_register_reply(reply.body)[1:] == (m.REGISTER_TERMINAL_TAKEN, "")
        await other.close()
        # offline and identical (what SimTerminal sends): a new code; the old one is withdrawn
        again = SimTerminal(VICTIM)
        await again.connect("127.0.0.1", port)
        new = await again.register(sim_plate(VICTIM), YELLOW)
        assert new and new != old
        assert await again.authenticate(old) == m.RESULT_FAILURE
        assert await again.authenticate(new) == m.RESULT_OK
        await again.close()


async def test_forget_terminal_command_lets_a_replaced_terminal_register(settings, pool):
    await add_vehicle(pool, VICTIM, sim_plate(VICTIM))
    async with running_gateway(settings, pool) as (_gateway, port):
        terminal = await authenticated(port, VICTIM)
        await terminal.close()
        refused = await register_reply(port, VICTIM, sim_plate(VICTIM), YELLOW)
        assert refused[1] == m.REGISTER_TERMINAL_TAKEN
        process = start_cli(["jt808", "--forget-terminal", VICTIM], settings)
        assert await asyncio.to_thread(process.wait, 60) == 0
        replaced = await register_reply(port, VICTIM, sim_plate(VICTIM), YELLOW)
        assert replaced[1] == m.REGISTER_OK and len(replaced[2]) == 16
    process = start_cli(["jt808", "--forget-terminal", "13700000000"], settings)
    assert await asyncio.to_thread(process.wait, 60) == 1  # held no code
