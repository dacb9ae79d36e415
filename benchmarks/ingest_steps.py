"""Ingest's own steps per CPU-second, without a broker: decode, judge, write.

Prints figures, asserts nothing. The CPU time of this process (``time.process_time``) is the
measure, the best of ``--repeat`` runs of decode and judge (as ``timeit`` does: other load on a
shared machine only ever adds time, through caches and the sibling hyperthread), with the
garbage collector paced as ``gps-monitor ingest`` paces it (``--gc default``: CPython's pace):

1. ``decode``: ``ingest.decode.decode_positions`` over inbound payloads (bytes) of ``--vehicles``
   vehicles, ``--rounds`` fixes each, as the JT/T 808 gateway publishes them (every contract
   field plus a small ``extras``) and as the pipeline benchmark's terminals do (four fields);
2. ``judge``: ``ingest.pipeline.Pipeline.judge`` of the decoded positions (vehicle states
   already loaded, fixes in order: no database query, as in a running worker);
3. ``write``: ``gps_monitor.db.positions.write_batch`` of the judged rows in batches of
   ``--batch`` messages into a scratch database on the real PostgreSQL (emptied between runs):
   this process's CPU per row and the database backend's CPU per row (read from /proc through
   psutil: the server runs on the same machine).

    .venv/bin/python benchmarks/ingest_steps.py --vehicles 2000 --rounds 10

PostgreSQL: GPS_MONITOR_TEST_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import psutil

from gps_monitor.config import DatabaseSettings, IngestSettings, QualitySettings
from gps_monitor.db import migrate
from gps_monitor.db import positions as positions_db
from gps_monitor.db.pool import connect
from gps_monitor.db.positions import RawMessage, WriteBatch
from gps_monitor.models import PlateColor, Position, Vehicle, VehicleClass
from gps_monitor.service import pace_gc_for_throughput
from ingest.decode import decode_positions
from ingest.pipeline import Pipeline, VehicleState


def gateway_payload(i: int, k: int, fix_time: datetime) -> bytes:
    """What the JT/T 808 gateway publishes for one 0x0200 (every field, a few extras)."""
    return json.dumps(
        {
            "fix_time": fix_time.isoformat(),
            "latitude": 30.0 + k * 1e-4,
            "longitude": 104.0 + i * 1e-4,
            "speed_kmh": 40.0 + (i % 7),
            "heading_deg": 90.0,
            "altitude_m": 500.0,
            "satellites": 12,
            "fix_valid": True,
            "acc_on": True,
            "alarm_flags": 0,
            "status_flags": 3,
            "mileage_km": 12345.6 + i * 0.01,
            "extras": {"signal_strength": 28, "gnss_satellites": 12, "io_status": 0},
        }
    ).encode()


def minimal_payload(i: int, k: int, fix_time: datetime) -> bytes:
    """What benchmarks/pipeline.py's terminals publish."""
    return json.dumps(
        {
            "fix_time": fix_time.isoformat(),
            "latitude": 30.0 + k * 1e-4,
            "longitude": 104.0 + i * 1e-5,
            "speed_kmh": 40.0,
            "alarm_flags": i % 2,
        }
    ).encode()


def messages(vehicles: int, rounds: int, kind: str) -> list[tuple[str, bytes, datetime]]:
    """(terminal id, payload, received_at) in arrival order: round by round over the vehicles."""
    build = gateway_payload if kind == "gateway" else minimal_payload
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    out = []
    for i in range(rounds):
        fix_time = base + timedelta(seconds=i)
        for k in range(vehicles):
            out.append((f"1{k:011d}", build(i, k, fix_time), fix_time + timedelta(seconds=1)))
    return out


def fleet(vehicles: int, first_id: int = 1) -> dict[str, Vehicle]:
    return {
        f"1{k:011d}": Vehicle(
            id=first_id + k,
            company_id=1,
            plate_number=f"B{k:07d}",
            plate_color=PlateColor.YELLOW,
            vehicle_class=VehicleClass.FREIGHT,
            terminal_id=f"1{k:011d}",
        )
        for k in range(vehicles)
    }


def rate(count: int, cpu_s: float) -> str:
    return f"{count / cpu_s:>10,.0f}/CPU-s" if cpu_s > 0 else "n/a"


def bench_decode(
    msgs: list[tuple[str, bytes, datetime]], settings: IngestSettings
) -> tuple[list[list[Position]], float]:
    decoded = []
    cpu0 = time.process_time()
    for terminal_id, payload, received_at in msgs:
        decoded.append(decode_positions(payload, "position", terminal_id, received_at, settings))
    return decoded, time.process_time() - cpu0


async def bench_judge(
    msgs: list[tuple[str, bytes, datetime]],
    decoded: list[list[Position]],
    vehicles: dict[str, Vehicle],
    batch_messages: int,
) -> tuple[list[WriteBatch], float]:
    pipeline = Pipeline(QualitySettings())
    for v in vehicles.values():
        pipeline.states[v.id] = VehicleState()  # loaded: no query for in-order fixes
    batches: list[WriteBatch] = []
    cpu = 0.0
    for start in range(0, len(msgs), batch_messages):
        cpu0 = time.process_time()
        write = WriteBatch()
        keys: dict[tuple[int, datetime], int] = {}
        for (terminal_id, payload, received_at), positions in zip(
            msgs[start : start + batch_messages],
            decoded[start : start + batch_messages],
            strict=True,
        ):
            raw_index = len(write.raw)
            write.raw.append(RawMessage(f"gps/v1/{terminal_id}/position", payload, received_at, 1))
            await pipeline.judge(None, vehicles[terminal_id], positions, raw_index, write, keys)  # type: ignore[arg-type]
        cpu += time.process_time() - cpu0
        batches.append(write)
    return batches, cpu


async def bench_write(
    admin_url: str, batches: list[WriteBatch], vehicles: dict[str, Vehicle], repeat: int
) -> dict[str, float]:
    name = f"gpsm_hot_steps_{uuid.uuid4().hex[:8]}"
    url = admin_url.rpartition("/")[0] + "/" + name
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    try:
        settings = DatabaseSettings(url=url, timescale="off")
        conn = await connect(settings)
        await migrate.upgrade(conn, settings)
        company = await conn.fetchval("INSERT INTO companies (name) VALUES ('bench') RETURNING id")
        await conn.copy_records_to_table(
            "vehicles",
            records=[
                (v.id, company, v.plate_number, 2, "freight", v.terminal_id)
                for v in vehicles.values()
            ],
            columns=("id", "company_id", "plate_number", "plate_color", "vehicle_class",
                     "terminal_id"),
        )  # fmt: skip
        backend = psutil.Process(await conn.fetchval("SELECT pg_backend_pid()"))
        best: dict[str, float] = {}
        for _ in range(repeat):
            await conn.execute("TRUNCATE positions, raw_messages, latest_positions")
            # a first batch apart (temporary table created, plans cached)
            await positions_db.write_batch(conn, batches[0])
            rows = 0
            server0 = sum(backend.cpu_times()[:2])
            cpu0, wall0 = time.process_time(), time.perf_counter()
            for write in batches[1:]:
                await positions_db.write_batch(conn, write)
                rows += len(write.positions)
            run = {
                "cpu": time.process_time() - cpu0,
                "wall": time.perf_counter() - wall0,
                "server": sum(backend.cpu_times()[:2]) - server0,
            }
            best = {k: min(best.get(k, float("inf")), v) for k, v in run.items()}
        stored = await conn.fetchval("SELECT count(*) FROM positions")
        await conn.close()
        return {"rows": rows, "stored": stored, **best}
    finally:
        admin = await asyncpg.connect(admin_url)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vehicles", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=10, help="fixes per vehicle")
    p.add_argument("--batch", type=int, default=1000, help="messages per judged/written batch")
    p.add_argument("--repeat", type=int, default=5, help="runs of decode and judge (best)")
    p.add_argument("--no-write", action="store_true", help="skip the database part")
    p.add_argument(
        "--gc",
        choices=["worker", "default"],
        default="worker",
        help="garbage collector pace: the ingest worker's (default) or CPython's",
    )
    p.add_argument(
        "--admin-url",
        default=os.environ.get(
            "GPS_MONITOR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = p.parse_args()
    if args.gc == "worker":
        pace_gc_for_throughput()
    settings = IngestSettings()
    vehicles = fleet(args.vehicles)
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} at start; gc {args.gc}")
    results: dict[str, Any] = {}
    for kind in ("gateway", "minimal"):
        msgs = messages(args.vehicles, args.rounds, kind)
        size = sum(len(m[1]) for m in msgs) / len(msgs)
        decode_cpu = judge_cpu = float("inf")
        for _ in range(args.repeat):
            gc.collect()
            decoded, cpu = bench_decode(msgs, settings)
            decode_cpu = min(decode_cpu, cpu)
            gc.collect()
            batches, cpu = await bench_judge(msgs, decoded, vehicles, args.batch)
            judge_cpu = min(judge_cpu, cpu)
        n = len(msgs)
        print(f"{kind} payloads ({size:.0f} bytes), {n} messages of one position:")
        print(f"  decode        {rate(n, decode_cpu)}")
        print(f"  judge         {rate(n, judge_cpu)}")
        print(f"  decode+judge  {rate(n, decode_cpu + judge_cpu)}")
        results[kind] = batches
    if not args.no_write:
        w = await bench_write(args.admin_url, results["gateway"], vehicles, args.repeat)
        print(
            f"write_batch (gateway payloads, {args.batch} messages per transaction), "
            f"{w['rows']:.0f} rows ({w['stored']} stored):"
        )
        print(f"  this process  {rate(w['rows'], w['cpu'])}")
        print(f"  db backend    {rate(w['rows'], w['server'])}")
        print(f"  both          {rate(w['rows'], w['cpu'] + w['server'])}")
        print(f"  wall          {w['rows'] / w['wall']:>10,.0f}/s")
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} at end")


if __name__ == "__main__":
    asyncio.run(main())
