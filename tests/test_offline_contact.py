"""Issue 12 item 1: any message keeps a terminal online (DOMAIN.md: offline = no *message* for
longer than the threshold). A terminal that only heartbeats stays online; one that goes silent
goes offline; a heartbeat ends its offline episode. Contact travels one way, like positions:
gateway -> ``gps/v1/{terminal_id}/heartbeat`` -> ingest (``latest_positions.last_message_at``,
rate-limited per terminal) -> the rules worker's offline timer.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from ingest_helpers import drop_session, publish_raw, running_worker, wait_for, worker_env
from jt808_helpers import add_vehicle, authenticated, location_report

from gps_monitor.config import IngestSettings, Settings
from ingest.jt808 import messages as m
from ingest.jt808.sim import sim_plate
from rules.worker import rules_client_id

HEARTBEATER = "13900000021"
SILENT = "13900000022"


async def _latest(pool: asyncpg.Pool, terminal_id: str) -> Any:
    return await pool.fetchrow(
        "SELECT l.last_message_at, l.fix_time FROM latest_positions l "
        "JOIN vehicles v ON v.id = l.vehicle_id WHERE v.terminal_id = $1",
        terminal_id,
    )


async def test_ingest_records_heartbeats_as_contact_at_most_once_per_interval(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    for phone in (HEARTBEATER, SILENT):
        await add_vehicle(pool, phone, sim_plate(phone))
    settings = settings.model_copy(update={"ingest": IngestSettings(contact_min_interval_s=3600)})
    async with running_worker(settings) as worker:
        await publish_raw(settings, [(f"gps/v1/{HEARTBEATER}/heartbeat", b"")])
        first = await wait_for(lambda: _latest(pool, HEARTBEATER), lambda row: row is not None)
        assert first is not None and first["fix_time"] is None  # contact, no position
        await publish_raw(
            settings,
            [(f"gps/v1/{HEARTBEATER}/heartbeat", '{"msg_id": "0x0002"}')] * 5
            + [
                ("gps/v1/nobody/heartbeat", b"{}"),
                (f"gps/v1/{SILENT}/heartbeat", b"[1]"),
            ],
        )
        rejected = await wait_for(
            lambda: pool.fetch("SELECT topic, reason FROM rejected_messages ORDER BY id"),
            lambda rows: len(rows) >= 2,
        )
        assert worker.stats["contacts_throttled"] == 5
        assert worker.stats["contacts"] == 1
    assert (await _latest(pool, HEARTBEATER))["last_message_at"] == first["last_message_at"]
    assert [(r["topic"].rsplit("/", 2)[-2], r["reason"]) for r in rejected] == [
        ("nobody", "unknown_terminal"),
        (SILENT, "wrong_type"),  # a heartbeat is empty or a JSON object
    ]
    assert await pool.fetchval("SELECT count(*) FROM raw_messages") == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gps_monitor.cli", *args], env=env, stdout=out, stderr=out
        )


async def _wait_for_line(proc: subprocess.Popen[bytes], log: Path, line: bytes) -> None:
    deadline = time.monotonic() + 30
    while line not in log.read_bytes():  # noqa: ASYNC240
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{proc.args} did not log {line!r}:\n{log.read_text()[-3000:]}")  # noqa: ASYNC240
        await asyncio.sleep(0.1)


async def test_heartbeats_keep_a_terminal_online_and_silence_takes_it_offline(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Real ``gps-monitor jt808``, ``ingest`` and ``rules`` processes; offline after 6 s."""
    for phone in (HEARTBEATER, SILENT):
        await add_vehicle(pool, phone, sim_plate(phone))
    port = _free_port()
    env = worker_env(settings) | {
        "GPS_MONITOR_RULES_OFFLINE_AFTER_S": "6",
        "GPS_MONITOR_RULES_OFFLINE_CHECK_INTERVAL_S": "0.5",
        "GPS_MONITOR_INGEST_CONTACT_MIN_INTERVAL_S": "1",
        "GPS_MONITOR_JT808_CLIENT_ID": f"{settings.mqtt.client_id}-gw",
    }
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name, args, ready in (
            ("ingest", ["ingest", "--no-upgrade"], b"ingest consuming"),
            ("rules", ["rules", "--no-upgrade"], b"rules worker consuming"),
            # not "listening" alone: the attachment server says it first, before the gateway binds
            (
                "jt808",
                ["jt808", "--host", "127.0.0.1", "--port", str(port)],
                b"jt808 gateway listening",
            ),
        ):
            log = tmp_path / f"{name}.log"
            procs.append(_spawn(args, env, log))
            await _wait_for_line(procs[-1], log, ready)
        beating = await authenticated(port, HEARTBEATER)
        silent = await authenticated(port, SILENT)
        assert await beating.send_location(location_report("260101080000")) == m.RESULT_OK
        assert await silent.send_location(location_report("260101080000")) == m.RESULT_OK
        # 13 s: more than twice the threshold; one terminal heartbeats every second
        for _ in range(13):
            assert await beating.heartbeat() == m.RESULT_OK
            await asyncio.sleep(1)
        offline = await pool.fetch(
            "SELECT v.terminal_id, a.ended_at FROM alarms a JOIN vehicles v "
            "ON v.id = a.vehicle_id WHERE a.alarm_type = 'offline'"
        )
        assert [(r["terminal_id"], r["ended_at"]) for r in offline] == [(SILENT, None)]
        # the silent one's heartbeat (no position) ends its episode
        assert await silent.heartbeat() == m.RESULT_OK
        ended = await wait_for(
            lambda: pool.fetchval(
                "SELECT a.ended_at FROM alarms a JOIN vehicles v ON v.id = a.vehicle_id "
                "WHERE a.alarm_type = 'offline' AND v.terminal_id = $1",
                SILENT,
            ),
            lambda value: value is not None,
        )
        assert ended is not None
        details = await pool.fetchval("SELECT details FROM alarms WHERE alarm_type = 'offline'")
        details = json.loads(details) if isinstance(details, str) else details
        assert details["offline_s"] > 6
        await beating.close()
        await silent.close()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        await drop_session(settings)
        await drop_session(settings, rules_client_id(settings))
