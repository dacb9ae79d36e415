"""`gps-monitor replay` (a real process) survives a restart of the broker under it (issue 14
item 16): one warning line, no traceback, and every distinct fix stored once."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import asyncpg
from broker_helpers import PrivateBroker, deploy_settings
from ingest_helpers import count_probe, running_worker, start_cli, wait_for

from gps_monitor.config import Settings


async def test_replay_reconnects_and_resumes_when_the_broker_restarts(
    settings: Settings, pool: asyncpg.Pool, shared_data: Path, tmp_path: Path
) -> None:
    broker = PrivateBroker(tmp_path, deploy_settings())
    broker.start()
    private = settings.model_copy(
        update={"mqtt": settings.mqtt.model_copy(update={"host": "127.0.0.1", "port": broker.port})}
    )
    path = shared_data / "tdrive_beijing_taxi_1.txt"  # 588 rows, 564 distinct fixes
    stored = count_probe(pool, "SELECT count(*) FROM positions")
    try:
        async with running_worker(private):
            proc = start_cli(
                ["replay", str(path), "--format", "tdrive", "--register", "--speedup", "0",
                 "--max-rate", "100", "--no-progress"],
                private, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )  # fmt: skip
            # a third of the way through, the broker restarts (stopped cleanly: it saves the
            # queued messages) and stays away for two seconds
            assert await wait_for(stored, lambda n: n >= 150, 60) >= 150
            await asyncio.to_thread(broker.stop)
            await asyncio.sleep(2)
            await asyncio.to_thread(broker.start)
            stdout, stderr = await asyncio.to_thread(proc.communicate, timeout=120)
            assert await wait_for(stored, lambda n: n >= 564, 60) == 564
    finally:
        broker.stop()
    errors = stderr.decode()
    assert proc.returncode == 0, errors
    # one line for the outage, nothing else (it printed 17,536 tracebacks and exited)
    (warning,) = errors.splitlines()
    assert warning.startswith(f"replay: broker 127.0.0.1:{broker.port} lost after ")
    assert warning.endswith("reconnecting and resuming")
    assert b"published 588 position(s)" in stdout
    assert await pool.fetchval("SELECT count(*) FROM rejected_messages") == 0
