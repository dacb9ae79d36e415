"""Replaying real tracks through the real broker into the real database."""

from __future__ import annotations

import csv
from pathlib import Path

import asyncpg
from ingest_helpers import count_probe, running_worker, wait_for

from gps_monitor.config import Settings
from gps_monitor.tracks import read_track
from ingest.replay import replay_file


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


def test_track_reader_derives_speed_for_tdrive(shared_data: Path) -> None:
    track = read_track(shared_data / "tdrive_beijing_taxi_1.txt", "tdrive")["tdrive-1"]
    assert len(track) == 588
    assert track[0].fix_time.isoformat() == "2008-02-02T07:36:08+00:00"  # 15:36:08 Beijing
    assert any(p.speed_kmh > 0 for p in track)
