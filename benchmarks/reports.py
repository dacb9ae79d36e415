"""Benchmark: evidence PDF for an episode of N positions; KPI report for V vehicles over D days.

    .venv/bin/python benchmarks/reports.py [--positions 2000] [--vehicles 1000] [--days 30]
        [--fixes-per-day 144] [--admin-url postgresql://postgres@127.0.0.1:5432/postgres]

Creates a scratch database (dropped at the end), migrates it (plain mode), loads synthetic data
with COPY, then times: building the evidence report (queries + digest), rendering the PDF (map,
speed chart, positions table), and computing the KPI report (county + companies + daily trend)
plus its Excel rendering. Targets (issue 5): PDF under 2 s, KPI under 5 s on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import time
from datetime import UTC, date, datetime, timedelta

import asyncpg

from gps_monitor.config import DatabaseSettings, ReportsSettings
from gps_monitor.db import migrate
from gps_monitor.db.pool import init_connection

COLUMNS = (
    "vehicle_id", "fix_time", "received_at", "latitude", "longitude", "speed_kmh", "heading_deg",
    "satellites", "fix_valid", "quality", "late", "distance_m", "interval_s", "raw_message_id",
)  # fmt: skip


def _url(admin: str, name: str) -> str:
    return admin.rpartition("/")[0] + "/" + name


async def _evidence(
    conn: asyncpg.Connection, n: int, settings: ReportsSettings
) -> dict[str, float]:
    from web.reports import evidence, pdf

    company = await conn.fetchval("INSERT INTO companies (name) VALUES ('基准运输') RETURNING id")
    vehicle = await conn.fetchval(
        "INSERT INTO vehicles (company_id, plate_number, vehicle_class, terminal_id, "
        "speed_limit_kmh) VALUES ($1, '川A88888', 'hazmat', 'bench-ev', 60) RETURNING id",
        company,
    )
    start = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
    context = 300  # 5 min either side at 1 Hz
    raw, rows = [], []
    lat, lon = 30.6, 104.06
    for i in range(n + 2 * context):
        t = start + timedelta(seconds=i)
        speed = 75.0 + 10 * math.sin(i / 60) if context <= i < context + n else 50.0
        lat += speed / 3.6 / 111_320 * 0.8
        lon += speed / 3.6 / 96_000 * 0.6
        payload = json.dumps(
            {"fix_time": t.isoformat(), "latitude": lat, "longitude": lon, "speed_kmh": speed}
        ).encode()
        raw.append((i + 1, t, "gps/v1/bench-ev/position", payload))
        rows.append(
            (vehicle, t, t, lat, lon, speed, 45.0, 12, True, "ok", False, speed / 3.6, 1.0, i + 1)
        )
    await conn.copy_records_to_table(
        "raw_messages", records=raw, columns=("id", "received_at", "topic", "payload")
    )
    await conn.copy_records_to_table("positions", records=rows, columns=COLUMNS)
    first = start + timedelta(seconds=context)
    last = first + timedelta(seconds=n - 1)
    alarm = await conn.fetchval(
        "INSERT INTO alarms (vehicle_id, company_id, alarm_type, dedup_key, started_at, ended_at, "
        "details, first_fix_time, last_fix_time) VALUES ($1, $2, 'overspeed', 'bench', $3, $4, "
        "$5, $3, $4) RETURNING id",
        vehicle, company, first, last,
        {"limit_kmh": 60.0, "limit_source": "class:hazmat", "max_speed_kmh": 85.0},
    )  # fmt: skip
    figures: dict[str, float] = {}
    for run in ("cold", "warm"):
        t0 = time.perf_counter()
        report = await evidence.build_for_alarm(conn, alarm, settings, generated_by="bench")
        t1 = time.perf_counter()
        data = pdf.render_pdf(report, settings)
        t2 = time.perf_counter()
        figures[f"{run}_build_s"] = t1 - t0
        figures[f"{run}_render_s"] = t2 - t1
        figures[f"{run}_total_s"] = t2 - t0
    figures["positions_in_report"] = len(report.positions)
    figures["pdf_bytes"] = len(data)
    return figures


async def _kpi_data(conn: asyncpg.Connection, vehicles: int, days: int, per_day: int) -> int:
    companies = [
        await conn.fetchval("INSERT INTO companies (name) VALUES ($1) RETURNING id", f"企业{i:02d}")
        for i in range(33)
    ]
    ids = []
    for i in range(vehicles):
        ids.append(await conn.fetchval(
            "INSERT INTO vehicles (company_id, plate_number, vehicle_class, terminal_id) "
            "VALUES ($1, $2, 'freight', $3) RETURNING id",
            companies[i % len(companies)], f"川K{i:05d}", f"bench-{i}",
        ))  # fmt: skip
    rng = random.Random(7)
    first = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    step = 86_400 / per_day
    total = 0
    for vid in ids[: int(vehicles * 0.98)]:  # 2 % never connected
        rows = []
        for d in range(days):
            if rng.random() < 0.03:  # offline that day
                continue
            base = first + timedelta(days=d)
            for k in range(per_day):
                t = base + timedelta(seconds=k * step)
                quality = "drift" if rng.random() < 0.001 else "ok"
                gap = rng.random() < 0.005
                rows.append(
                    (
                        vid,
                        t,
                        t,
                        30.0,
                        104.0,
                        40.0,
                        0.0,
                        10,
                        True,
                        quality,
                        False,
                        None if quality != "ok" else (3000.0 if gap else 600.0),
                        None if quality != "ok" else (900.0 if gap else step),
                        None,
                    )
                )
        await conn.copy_records_to_table("positions", records=rows, columns=COLUMNS)
        total += len(rows)
    alarm_rows = []
    for vid in ids:
        for j in range(3):
            t = first + timedelta(days=rng.randrange(days), hours=rng.randrange(24))
            kind = ("overspeed", "fatigue_driving", "night_ban")[j]
            alarm_rows.append(
                (
                    vid,
                    companies[(vid - ids[0]) % len(companies)],
                    kind,
                    f"b{vid}-{j}",
                    t,
                    t + timedelta(minutes=30),
                    "handled" if rng.random() < 0.6 else "open",
                )
            )
    await conn.copy_records_to_table(
        "alarms", records=alarm_rows,
        columns=("vehicle_id", "company_id", "alarm_type", "dedup_key", "started_at", "ended_at",
                 "status"),
    )  # fmt: skip
    await conn.execute("ANALYZE")
    return total


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=2000)
    parser.add_argument("--vehicles", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--fixes-per-day", type=int, default=144)
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "GPS_MONITOR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args()
    name = f"gpsm_bench_reports_{os.getpid()}"
    admin = await asyncpg.connect(args.admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        conn = await asyncpg.connect(_url(args.admin_url, name))
        await init_connection(conn)
        try:
            await migrate.upgrade(
                conn, DatabaseSettings(url=_url(args.admin_url, name), timescale="off")
            )
            settings = ReportsSettings()
            ev = await _evidence(conn, args.positions, settings)
            print(
                f"evidence PDF, episode of {args.positions} positions "
                f"({ev['positions_in_report']:.0f} with context, {ev['pdf_bytes'] / 1e6:.2f} MB):"
            )
            for run in ("cold", "warm"):
                print(
                    f"  {run}: build {ev[f'{run}_build_s']:.3f} s, render "
                    f"{ev[f'{run}_render_s']:.3f} s, total {ev[f'{run}_total_s']:.3f} s "
                    "(target < 2 s)"
                )
            t0 = time.perf_counter()
            rows = await _kpi_data(conn, args.vehicles, args.days, args.fixes_per_day)
            load_s = time.perf_counter() - t0
            print(
                f"KPI data: {args.vehicles} vehicles x {args.days} days, {rows:,} positions "
                f"loaded in {load_s:.1f} s"
            )
            from web.reports import excel, kpi

            for run in ("cold", "warm"):
                t0 = time.perf_counter()
                report = await kpi.compute_kpis(
                    conn, date(2026, 1, 1), date(2026, 1, args.days), settings
                )
                t1 = time.perf_counter()
                excel.render_kpi_xlsx(report.to_dict())
                t2 = time.perf_counter()
                print(
                    f"  KPI {run}: compute {t1 - t0:.3f} s, + Excel {t2 - t1:.3f} s, "
                    f"total {t2 - t0:.3f} s (target < 5 s)"
                )
            print("  county:", json.dumps(report.county.period.kpis(), ensure_ascii=False))
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
