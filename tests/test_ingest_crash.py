"""SIGKILL the ingest worker (a real ``gps-monitor ingest`` process) in the middle of a replay,
start it again: every published position is stored exactly once, and every message once in
``raw_messages``."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

import asyncpg
import pytest
from ingest_helpers import count_probe, drop_session, start_cli, wait_for

from gps_monitor.config import Settings
from gps_monitor.tracks import read_track, replay_order
from ingest.replay import publish_positions, register_terminals


def _log_has(log: Path, text: bytes) -> bool:
    return text in log.read_bytes()


def _log_tail(log: Path) -> str:
    return log.read_text()[-3000:]


async def _start_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        proc = start_cli(["ingest", "--no-upgrade"], settings, stdout=out, stderr=out)
    deadline = time.monotonic() + 30
    while not _log_has(log, b"ingest consuming"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"ingest worker did not subscribe:\n{_log_tail(log)}")
        await asyncio.sleep(0.05)
    return proc


@pytest.mark.slow
async def test_sigkill_mid_replay_then_restart_stores_every_position_exactly_once(
    settings: Settings, pool: asyncpg.Pool, shared_data: Path, tmp_path: Path
) -> None:
    tracks = read_track(shared_data / "bods_liverpool_bus_route14_outbound.csv", "bods")
    await register_terminals(pool, sorted(tracks))
    ordered = replay_order(tracks)
    expected = {(p.terminal_id, p.fix_time) for p in ordered}
    log = tmp_path / "ingest.log"
    stored = count_probe(pool, "SELECT count(*) FROM positions")

    worker = await _start_worker(settings, log)
    try:
        # Paced so that the downtime (a cold start of the CLI on a busy machine can take
        # seconds) stays below Mosquitto's default per-client queue of 1000 messages.
        replay = asyncio.create_task(
            publish_positions(settings, ordered, speedup=0, max_rate=120, progress=False)
        )
        await wait_for(stored, lambda n: n >= 300)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        killed_at = await pool.fetchval("SELECT count(*) FROM positions")
        assert not replay.done()  # killed in the middle of the replay
        worker = await _start_worker(settings, log)
        published = await replay
        final = await wait_for(stored, lambda n: n >= len(expected), timeout_s=60)
        await asyncio.sleep(1.0)  # nothing more arrives late
        final = await pool.fetchval("SELECT count(*) FROM positions")
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(10)
        except subprocess.TimeoutExpired:
            worker.kill()
        await drop_session(settings)

    rows = await pool.fetch(
        "SELECT v.terminal_id, p.fix_time FROM positions p JOIN vehicles v ON v.id = p.vehicle_id"
    )
    assert published == len(ordered)
    assert 300 <= killed_at < len(expected)
    assert final == len(expected)  # nothing lost, nothing twice (one row per vehicle, fix time)
    assert {(r["terminal_id"], r["fix_time"]) for r in rows} == expected
    assert await pool.fetchval("SELECT count(*) FROM rejected_messages") == 0
    # one raw_messages row per message, also for those redelivered after the kill (issue 14)
    raw = await pool.fetchrow(
        "SELECT count(*) AS n, count(DISTINCT (topic, payload)) AS distinct_n FROM raw_messages"
    )
    assert raw["n"] == raw["distinct_n"] == len(expected)
