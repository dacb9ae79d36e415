"""Benchmark: evidence PDF for an episode of N positions; KPI report for V vehicles over D days;
the cost of keeping the daily KPI figures up to date on the ingest write path.

    .venv/bin/python benchmarks/reports.py [--positions 2000] [--vehicles 1000] [--days 30]
        [--fixes-per-day 144] [--writer-positions 100000] [--skip-evidence]
        [--admin-url postgresql://postgres@127.0.0.1:5432/postgres]

Creates a scratch database (dropped at the end), migrates it (plain mode), loads synthetic data
with COPY (the vehicle_day_kpi triggers maintain the daily figures as it loads), then times:
building the evidence report (queries + digest), rendering the PDF (map, speed chart, positions
table), and computing the KPI report (county + companies + daily trend) plus its Excel
rendering, twice: "before" aggregates raw positions (``from_positions=True``, the pre-0110
query), "after" reads ``vehicle_day_kpi``; it checks both give the same report. Then
``--writer-positions`` positions (1,000 a batch, each with its raw message, 5 % of them late
into days already aggregated) go through ingest's ``write_batch`` with the daily-figure
triggers enabled and disabled, and the stored rate of each is printed. Targets (issues 5, 13):
PDF under 2 s, a month's KPI report for 10,000 vehicles under 5 s on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg

from gps_monitor.config import DatabaseSettings, ReportsSettings
from gps_monitor.db import migrate
from gps_monitor.db.pool import init_connection

# the repository before benchmarks/ on the path: benchmarks/web.py would hide the web package
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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


def _comparable(value: object) -> object:
    """A report dict without its generation time, metre sums to the micrometre (the same
    float64 distances summed in another order differ in the last bits)."""
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items() if k != "generated_at"}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


async def _writer_cost(conn: asyncpg.Connection, n: int) -> None:
    """Stored positions/s through ``write_batch`` with the vehicle_day_kpi triggers enabled and
    disabled, three alternating rounds each: 1,000 positions a batch over 500 vehicles (2 each),
    5 % of them late (a day earlier, into days already aggregated)."""
    from gps_monitor.db.positions import PositionRow, RawMessage, WriteBatch, write_batch
    from gps_monitor.models import Position, Quality

    company = await conn.fetchval("INSERT INTO companies (name) VALUES ('写入基准') RETURNING id")
    vehicles = [
        await conn.fetchval(
            "INSERT INTO vehicles (company_id, plate_number, vehicle_class, terminal_id) "
            "VALUES ($1, $2, 'freight', $3) RETURNING id",
            company, f"川W{i:05d}", f"bench-w{i}",
        )
        for i in range(500)
    ]  # fmt: skip
    rng = random.Random(11)

    def batches(start: datetime) -> list[WriteBatch]:
        out = []
        for b in range(n // 1000):
            batch = WriteBatch()
            for k in range(1000):
                vid = vehicles[k % 500]
                t = start + timedelta(seconds=2 * b + k // 500)
                if rng.random() < 0.05:
                    t -= timedelta(days=1)
                batch.raw.append(RawMessage(f"gps/v1/bench-w{vid}/position", b"{}", t, None))
                p = Position(
                    terminal_id=f"bench-w{vid}", fix_time=t, latitude=30.0, longitude=104.0,
                    speed_kmh=40.0, fix_valid=True, vehicle_id=vid, company_id=company,
                    quality=Quality.OK, received_at=t,
                )  # fmt: skip
                batch.positions.append(PositionRow(p, k, 11.0, 1.0))
            out.append(batch)
        return out

    rates: dict[str, list[float]] = {"disabled": [], "enabled": []}
    for rnd in range(6):  # alternated, so load from other processes hits both alike
        label = ("disabled", "enabled")[rnd % 2]
        work = batches(datetime(2026, 1, 5 + 3 * rnd, tzinfo=UTC))
        state = "DISABLE" if label == "disabled" else "ENABLE"
        await conn.execute(f"ALTER TABLE positions {state} TRIGGER USER")
        t0 = time.perf_counter()
        for batch in work:
            await write_batch(conn, batch)
        rates[label].append(len(work) * 1000 / (time.perf_counter() - t0))
    figures = {label: statistics.median(values) for label, values in rates.items()}
    await conn.execute("ALTER TABLE positions ENABLE TRIGGER USER")
    print(
        f"write_batch, 3 x {n:,} positions each way in batches of 1,000 (5 % late), median: "
        f"daily-figure triggers disabled {figures['disabled']:,.0f} positions/s, "
        f"enabled {figures['enabled']:,.0f} positions/s "
        f"({100 * (1 - figures['enabled'] / figures['disabled']):+.0f} % cost)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=2000)
    parser.add_argument("--vehicles", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--fixes-per-day", type=int, default=144)
    parser.add_argument("--writer-positions", type=int, default=100_000)
    parser.add_argument("--skip-evidence", action="store_true")
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
            if not args.skip_evidence:
                ev = await _evidence(conn, args.positions, settings)
                print(
                    f"evidence PDF, episode of {args.positions} positions "
                    f"({ev['positions_in_report']:.0f} with context, "
                    f"{ev['pdf_bytes'] / 1e6:.2f} MB):"
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

            reports: dict[str, object] = {}
            modes = (("before (raw positions)", True), ("after (daily)", False))
            for label, from_positions in modes:
                for run in ("cold", "warm"):
                    t0 = time.perf_counter()
                    report = await kpi.compute_kpis(
                        conn,
                        date(2026, 1, 1),
                        date(2026, 1, args.days),
                        settings,
                        from_positions=from_positions,
                    )
                    t1 = time.perf_counter()
                    excel.render_kpi_xlsx(report.to_dict())
                    t2 = time.perf_counter()
                    print(
                        f"  KPI {label} {run}: compute {t1 - t0:.3f} s, + Excel {t2 - t1:.3f} s, "
                        f"total {t2 - t0:.3f} s (target < 5 s)"
                    )
                reports[label] = _comparable(report.to_dict())
            same = len({json.dumps(r, sort_keys=True) for r in reports.values()}) == 1
            print(f"  before and after give the same report: {same}")
            print("  county:", json.dumps(report.county.period.kpis(), ensure_ascii=False))
            if args.writer_positions:
                await _writer_cost(conn, args.writer_positions)
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
