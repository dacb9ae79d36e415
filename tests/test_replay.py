"""Replaying real tracks through the real broker into the real database."""

from __future__ import annotations

import asyncio
import csv
import subprocess
from pathlib import Path

import asyncpg
from ingest_helpers import count_probe, running_worker, start_cli, wait_for

from gps_monitor.config import Settings
from gps_monitor.tracks import read_track
from ingest.replay import UNLIMITED_WARNING, replay_file


async def test_tdrive_replay_stores_each_distinct_fix_once(
    settings: Settings, pool: asyncpg.Pool, shared_data: Path
) -> None:
    path = shared_data / "tdrive_beijing_taxi_1.txt"
    async with running_worker(settings):
        published, _ = await replay_file(
            settings, path, "tdrive", speedup=0, register=True, progress=False
        )
        stored = await wait_for(
            count_probe(pool, "SELECT count(*) FROM positions"), lambda n: n >= 564
        )
        messages = await wait_for(
            count_probe(pool, "SELECT count(*) FROM raw_messages"), lambda n: n >= published
        )
    assert published == 588  # the file as it is, duplicates included
    assert stored == 564  # 24 exact duplicate rows stored once
    assert messages == 588  # every accepted message kept as received
    assert await pool.fetchval("SELECT count(*) FROM rejected_messages") == 0
    # every stored position references the raw message that carried it
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM positions p LEFT JOIN raw_messages r ON r.id = p.raw_message_id "
            "WHERE r.id IS NULL"
        )
        == 0
    )


async def test_liverpool_replay_stores_all_distinct_fixes_of_the_8_buses(
    settings: Settings, pool: asyncpg.Pool, shared_data: Path
) -> None:
    path = shared_data / "bods_liverpool_bus_route14_outbound.csv"
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    expected = len({(r["vehicle_id"], r["timestamp"]) for r in rows})
    buses = {r["vehicle_id"] for r in rows}
    async with running_worker(settings):
        # Mosquitto's default per-client queue (max_queued_messages 1000) drops QoS 1 messages
        # beyond it, so the burst is paced below what the worker commits.
        published, tracks = await replay_file(
            settings, path, "bods", speedup=0, register=True, progress=False, max_rate=1000
        )
        stored = await wait_for(
            count_probe(pool, "SELECT count(*) FROM positions"), lambda n: n >= expected
        )
    assert len(buses) == 8 and set(tracks) == {f"bods-{b}" for b in buses}
    assert published == len(rows)
    assert stored == expected
    per_vehicle = {
        r["terminal_id"]: r["n"]
        for r in await pool.fetch(
            "SELECT v.terminal_id, count(*) AS n FROM positions p "
            "JOIN vehicles v ON v.id = p.vehicle_id GROUP BY 1"
        )
    }
    assert per_vehicle == {t: len({p.fix_time for p in ps}) for t, ps in tracks.items()}
    # the live marker of each bus is its last fix in the file
    latest = await pool.fetch(
        "SELECT v.terminal_id, l.fix_time FROM latest_positions l "
        "JOIN vehicles v ON v.id = l.vehicle_id"
    )
    assert {r["terminal_id"]: r["fix_time"] for r in latest} == {
        t: ps[-1].fix_time for t, ps in tracks.items()
    }


async def test_replay_cli_at_speedup_0_loses_nothing_on_a_stock_broker_by_default(
    settings: Settings, pool: asyncpg.Pool, shared_data: Path
) -> None:
    """The README's command: 1533 rows, 8 buses, no --max-rate. The test broker keeps
    Mosquitto's stock limits (20 in flight, 1000 queued per subscriber); unpaced, a third of
    the replay was dropped there."""
    path = shared_data / "bods_liverpool_bus_route14_outbound.csv"
    with path.open(newline="") as f:
        expected = len({(r["vehicle_id"], r["timestamp"]) for r in csv.DictReader(f)})
    args = ["replay", str(path), "--format", "bods", "--register", "--speedup", "0"]
    async with running_worker(settings):
        proc = start_cli([*args, "--no-progress"], settings, stderr=subprocess.PIPE)
        _, stderr = await asyncio.to_thread(proc.communicate, timeout=120)
        stored = await wait_for(
            count_probe(pool, "SELECT count(*) FROM positions"), lambda n: n >= expected
        )
    assert proc.returncode == 0, stderr.decode()
    assert stored == expected
    assert UNLIMITED_WARNING.encode() not in stderr


def test_replay_cli_warns_in_one_line_when_the_rate_is_unlimited(
    settings: Settings, shared_data: Path
) -> None:
    path = shared_data / "tdrive_beijing_taxi_1.txt"
    proc = start_cli(
        ["replay", str(path), "--format", "tdrive", "--speedup", "0", "--max-rate", "0",
         "--no-progress"],
        settings, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr.decode()
    assert stderr.decode().splitlines() == [UNLIMITED_WARNING]
    assert b"published 588 position(s)" in stdout


def test_replay_cli_refuses_a_negative_max_rate(settings: Settings, shared_data: Path) -> None:
    path = shared_data / "tdrive_beijing_taxi_1.txt"
    proc = start_cli(
        ["replay", str(path), "--format", "tdrive", "--max-rate", "-5", "--no-progress"],
        settings, stderr=subprocess.PIPE,
    )  # fmt: skip
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert b"--max-rate: expected 0 or a positive number, got -5" in stderr
    assert b"Traceback" not in stderr


def test_track_reader_derives_speed_for_tdrive(shared_data: Path) -> None:
    track = read_track(shared_data / "tdrive_beijing_taxi_1.txt", "tdrive")["tdrive-1"]
    assert len(track) == 588
    assert track[0].fix_time.isoformat() == "2008-02-02T07:36:08+00:00"  # 15:36:08 Beijing
    assert any(p.speed_kmh > 0 for p in track)


async def test_a_replayed_jump_gives_no_speed_nobody_drove(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Issue 14 item 10: the fix after a one-fix jump was published with the spike's 626 km/h
    and stored as the day's maximum."""
    path = tmp_path / "jump.txt"
    rows = [(0, 39.900), (10, 39.901), (20, 39.956), (30, 39.902), (40, 39.903)]
    path.write_text("".join(f"9,2008-02-02 15:00:{s:02d},116.4,{lat}\n" for s, lat in rows))
    async with running_worker(settings):
        published, _ = await replay_file(
            settings, path, "tdrive", speedup=0, register=True, progress=False
        )
        stored = await wait_for(
            count_probe(pool, "SELECT count(*) FROM positions"), lambda n: n >= 5
        )
    assert (published, stored) == (5, 5)
    verdicts = await pool.fetch(
        "SELECT quality, quality_reason, speed_kmh FROM positions ORDER BY fix_time"
    )
    assert [(r["quality"], r["quality_reason"]) for r in verdicts] == [
        ("ok", None),
        ("ok", None),
        ("drift", "implausible_jump"),
        ("ok", None),
        ("ok", None),
    ]
    assert max(r["speed_kmh"] for r in verdicts) < 50  # ~40 km/h steps, no 2,000 km/h


async def test_a_geolife_file_with_a_long_name_replays_without_terminal_id(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Issue 14 item 16: 'geolife-{stem}' over 32 characters was refused at registration."""
    path = tmp_path / "000_Trajectory_20081023025304.plt"
    path.write_text(
        "Geolife trajectory\nWGS 84\nAltitude is in Feet\nReserved 3\n"
        "0,2,255,My Track,0,0,2,8421376\n0\n"
        "39.984702,116.318417,0,492,39744.1201851852,2008-10-23,02:53:04\n"
        "39.984683,116.31845,0,492,39744.1202546296,2008-10-23,02:53:10\n"
    )
    async with running_worker(settings):
        published, tracks = await replay_file(
            settings, path, "geolife", speedup=0, register=True, progress=False
        )
        stored = await wait_for(
            count_probe(pool, "SELECT count(*) FROM positions"), lambda n: n >= 2
        )
    (terminal_id,) = tracks
    assert (published, stored) == (2, 2)
    assert len(terminal_id) <= 32 and terminal_id.startswith("geolife-000_Trajectory_")
    assert await pool.fetchval("SELECT terminal_id FROM vehicles") == terminal_id
