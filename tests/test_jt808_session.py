"""Full session: simulated JT/T 808 terminal -> gateway -> real Mosquitto -> real ingest worker
-> real PostgreSQL, with the real T-Drive taxi track."""

from __future__ import annotations

from pathlib import Path

import asyncpg
from ingest_helpers import count_probe, running_worker, wait_for
from test_jt808_server import running_gateway

from gps_monitor.config import Settings
from gps_monitor.tracks import read_track
from ingest.jt808.sim import assign_phones, register_vehicles, run_terminal, sim_plate


async def test_tdrive_track_through_the_gateway_is_stored_once_per_fix(
    settings: Settings, pool: asyncpg.Pool, shared_data: Path
) -> None:
    tracks = read_track(shared_data / "tdrive_beijing_taxi_1.txt", "tdrive")
    [(track_id, positions)] = tracks.items()
    phone = assign_phones([track_id], protocol="2013")[track_id]
    assert phone == "990072766828"  # 99 + 10 digits from the id's SHA-256: same on every run
    await register_vehicles(settings, [phone])
    live, buffered = positions[:300], positions[300:]
    async with (
        running_worker(settings),
        running_gateway(settings, pool) as (gateway, port),
    ):
        common = {
            "host": "127.0.0.1",
            "port": port,
            "plate_number": sim_plate(phone),
            "plate_color": 2,
        }
        # live 0x0200 reports, then the rest as blind-area re-uploads (0x0704 type 1) of 20
        first = await run_terminal(phone, live, **common)
        second = await run_terminal(phone, buffered, batch_size=20, reupload=True, **common)
        stored = await wait_for(
            count_probe(pool, "SELECT count(*) FROM positions"), lambda n: n >= 564
        )
    assert (first.sent, first.accepted, second.sent, second.accepted) == (300, 300, 288, 288)
    assert gateway.stats.positions_published == 588
    assert stored == 564  # 588 rows, 24 exact duplicates stored once
    assert await pool.fetchval("SELECT count(*) FROM rejected_messages") == 0
    rows = await pool.fetch(
        "SELECT p.fix_time, p.reupload, coalesce(p.extras->>'raw_frame_hex', "
        "p.extras->>'raw_report_hex') AS raw, p.latitude, "
        "p.longitude FROM positions p JOIN vehicles v ON v.id = p.vehicle_id "
        "WHERE v.terminal_id = $1 ORDER BY p.fix_time",
        phone,
    )
    assert len(rows) == 564
    # fix times survive the GMT+8 BCD round trip exactly
    assert [r["fix_time"] for r in rows] == sorted({p.fix_time for p in positions})
    # evidence: every stored live fix carries the JT/T 808 frame it came in, every re-uploaded
    # one its own report's bytes (28 bytes and items), which decode to the stored fix
    assert all(
        r["raw"].startswith("7e") and r["raw"].endswith("7e")
        if not r["reupload"]
        else len(r["raw"]) >= 56 and not r["raw"].startswith("7e")
        for r in rows
    )
    live_times = {p.fix_time for p in live}
    assert all(r["reupload"] == (r["fix_time"] not in live_times) for r in rows)
    by_time = {p.fix_time: p for p in positions}
    assert all(
        abs(r["latitude"] - by_time[r["fix_time"]].latitude) < 1e-6
        and abs(r["longitude"] - by_time[r["fix_time"]].longitude) < 1e-6
        for r in rows
    )


async def test_jt808_sim_command_sends_the_liverpool_buses_over_2019_batches(
    settings: Settings, pool: asyncpg.Pool, shared_data: Path
) -> None:
    import argparse
    import csv

    from ingest.jt808.sim import simulate

    path = shared_data / "bods_liverpool_bus_route14_outbound.csv"
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    expected = len({(r["vehicle_id"], r["timestamp"]) for r in rows})
    async with (
        running_worker(settings),
        running_gateway(settings, pool) as (gateway, port),
    ):
        args = argparse.Namespace(
            file=str(path),
            format="bods",
            host="127.0.0.1",
            port=port,
            protocol="2019",
            batch=5,
            reupload=False,
            speedup=0.0,
            phone_base=990000000000,
            register=True,
            linger_s=0.0,
            text_result=0,
        )
        stats = await simulate(args, settings)
        stored = await wait_for(
            count_probe(pool, "SELECT count(*) FROM positions"), lambda n: n >= expected
        )
    assert (stats.sent, stats.accepted, stats.refused) == (len(rows), len(rows), 0)
    assert stored == expected
    assert gateway.stats.registrations == {0: 8} and gateway.stats.auth_ok == 8
    vehicles = await pool.fetch(
        "SELECT v.terminal_id, v.plate_number FROM vehicles v ORDER BY v.terminal_id"
    )
    phones = assign_phones(list(read_track(path, "bods")), protocol="2019")
    assert [v["terminal_id"] for v in vehicles] == sorted(phones.values())
    assert all(v["plate_number"].startswith("测A") for v in vehicles)
    # each simulated terminal logged out at the end: its code withdrawn, so a rerun registers
    assert await pool.fetchval("SELECT count(*) FROM jt808_terminals") == 0
