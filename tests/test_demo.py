"""``gps-monitor demo --exit-after-replay`` with no configured services: it starts an embedded
PostgreSQL and an in-process broker, replays the shipped Liverpool buses and stores them all."""

from __future__ import annotations

import asyncio
import csv
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gps_monitor import embedded
from gps_monitor.config import Settings
from gps_monitor.demo import DEMO_DATABASE, demo_file, fresh_demo_database, with_database
from gps_monitor.errors import ConfigurationError


def test_shipped_demo_data_carries_its_attribution() -> None:
    attribution = (demo_file().parent / "ATTRIBUTION.txt").read_text(encoding="utf-8")
    assert "Open Government Licence v3.0" in attribution
    assert "UK Bus Open Data Service" in attribution


@pytest.mark.slow
def test_demo_exit_after_replay_stores_every_distinct_fix_with_embedded_services(
    tmp_path: Path,
) -> None:
    with demo_file().open(newline="") as f:
        rows = list(csv.DictReader(f))
    distinct = len({(r["vehicle_id"], r["timestamp"]) for r in rows})
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPS_MONITOR_")}
    env["XDG_DATA_HOME"] = str(tmp_path)  # the embedded database's folder, not the user's
    done = subprocess.run(
        [sys.executable, "-m", "gps_monitor.cli", "demo", "--speedup", "0",
         "--exit-after-replay"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "started embedded PostgreSQL" in done.stdout
    assert "started embedded MQTT broker" in done.stdout
    assert (
        f"published {len(rows)} positions ({distinct} distinct fixes); stored {distinct} new, "
        "0 already present"
    ) in done.stdout
    assert (tmp_path / "gps-monitor" / "postgres" / "PG_VERSION").exists()
    # one line per bus
    assert sum(1 for line in done.stdout.splitlines() if line.strip().startswith("BODS-")) == 8


def _run_demo(data_home: Path, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPS_MONITOR_")}
    env["XDG_DATA_HOME"] = str(data_home)
    env.update(extra_env)
    return subprocess.run(
        [sys.executable, "-m", "gps_monitor.cli", "demo", "--speedup", "0",
         "--exit-after-replay"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )  # fmt: skip


def _in_embedded_database(data_home: Path, sql: str) -> list[Any]:
    """Run ``sql`` in the stopped demo's embedded database (started and stopped again)."""

    async def go() -> list[Any]:
        pg = await embedded.start_postgres(data_home / "gps-monitor" / "postgres")
        try:
            conn = await asyncpg.connect(pg.url)
            try:
                return list(await conn.fetch(sql))
            finally:
                await conn.close()
        finally:
            await asyncio.to_thread(pg.stop)

    return asyncio.run(go())


@pytest.mark.slow
def test_demo_rerun_starts_from_a_fresh_database_and_shows_what_the_first_run_showed(
    tmp_path: Path,
) -> None:
    with demo_file().open(newline="") as f:
        distinct = len({(r["vehicle_id"], r["timestamp"]) for r in csv.DictReader(f)})
    # the offline timer runs every 0.2 s, so a stale rule state would fire before fixes arrive
    fast_timer = {"GPS_MONITOR_RULES_OFFLINE_CHECK_INTERVAL_S": "0.2"}
    alarms_sql = "SELECT alarm_type, count(*) AS n FROM alarms GROUP BY alarm_type"
    first = _run_demo(tmp_path, **fast_timer)
    assert first.returncode == 0, (first.stdout + first.stderr)[-4000:]
    stored_line = f"stored {distinct} new, 0 already present"
    assert stored_line in first.stdout
    # --speedup 0: the replay rebased to have ended just now, the demo rules installed
    assert "demo: replaying 8 buses at once" in first.stdout
    first_alarms = {r["alarm_type"]: r["n"] for r in _in_embedded_database(tmp_path, alarms_sql)}
    assert {"overspeed", "route_deviation", "forbidden_area_entry"} <= set(first_alarms)
    # the first run's rule state as it stands an hour later (its last message 1 h ago)
    _in_embedded_database(
        tmp_path,
        "UPDATE rule_state SET state = jsonb_set(state::jsonb, '{rules,offline,last_seen_t}', "
        "to_jsonb((state::jsonb #>> '{rules,offline,last_seen_t}')::float8 - 3600))::text "
        "RETURNING 1",
    )
    second = _run_demo(tmp_path, **fast_timer)
    assert second.returncode == 0, (second.stdout + second.stderr)[-4000:]
    assert stored_line in second.stdout
    assert " 0 already stored" in second.stderr  # ingest met no position of the first run
    second_alarms = {r["alarm_type"]: r["n"] for r in _in_embedded_database(tmp_path, alarms_sql)}
    assert second_alarms == first_alarms
    assert "offline" not in second_alarms


async def test_demo_on_a_configured_server_recreates_its_own_database_and_leaves_the_configured_one(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    assert settings.database.url is not None
    await pool.execute("INSERT INTO companies (name) VALUES ('渝运物流')")
    try:
        url = await fresh_demo_database(settings.database.url)
        assert url == with_database(settings.database.url, DEMO_DATABASE)
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("CREATE TABLE left_by_last_run (x int)")
        finally:
            await conn.close()
        assert await fresh_demo_database(settings.database.url) == url
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT to_regclass('left_by_last_run')") is None
        finally:
            await conn.close()
        with pytest.raises(ConfigurationError, match=f"other than {DEMO_DATABASE}"):
            await fresh_demo_database(url)
    finally:
        await pool.execute(f'DROP DATABASE IF EXISTS "{DEMO_DATABASE}"')
    assert await pool.fetchval("SELECT count(*) FROM companies WHERE name = '渝运物流'") == 1


@pytest.mark.slow
def test_demo_stops_cleanly_when_terminated_during_the_real_time_replay(tmp_path: Path) -> None:
    """The replay runs in real time for hours: SIGTERM (or Ctrl-C) during it stops the services
    and the embedded PostgreSQL (it used to leave the database server running)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPS_MONITOR_")}
    env["XDG_DATA_HOME"] = str(tmp_path)
    with socket.socket() as probe:  # a free port for the demo's web server
        probe.bind(("127.0.0.1", 0))
        env["GPS_MONITOR_WEB_PORT"] = str(probe.getsockname()[1])
    with subprocess.Popen(
        [sys.executable, "-m", "gps_monitor.cli", "demo", "--embedded"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    ) as demo:  # fmt: skip
        assert demo.stdout is not None
        lines = []
        for line in demo.stdout:
            lines.append(line)
            if line.startswith("demo: replaying 8 buses in real time"):
                demo.send_signal(signal.SIGTERM)
                break
        rest, _ = demo.communicate(timeout=60)
    output = "".join(lines) + rest
    assert demo.returncode == 0, output[-3000:]
    assert "demo: stopped during the replay" in rest, output[-3000:]
    assert not (tmp_path / "gps-monitor" / "postgres" / "postmaster.pid").exists()
