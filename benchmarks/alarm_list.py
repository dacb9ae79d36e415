"""Benchmark: the alarm worklist (GET /api/alarms, /api/alarms/summary) on a big alarms table.

    .venv/bin/python -m benchmarks.alarm_list [--alarms 100000] [--companies 30]
        [--vehicles-per-company 25] [--repeat 20]

Against the real PostgreSQL (GPS_MONITOR_TEST_DATABASE_URL, default 127.0.0.1): a scratch
database (dropped at the end), migrated (plain mode), with ``--alarms`` alarms spread over 90
days (levels and types as the shipped policy gives them, 80 % handled), one position at each
alarm's start, a bureau user and an operator. The app runs in-process (httpx ASGI transport,
no network). Prints p50 / p99 per request for: the bureau's first page, page 100, a filtered
page (level 1, unhandled), the operator's first page, and the summaries.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from gps_monitor.alarm_levels import level_for
from gps_monitor.config import AlarmsSettings, DatabaseSettings, Settings
from gps_monitor.db import migrate, users
from gps_monitor.db.pool import init_connection
from web.app import create_app

ADMIN_URL = os.environ.get(
    "GPS_MONITOR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
TYPES = ("overspeed", "fatigue_driving", "offline", "geofence_enter", "route_deviation",
         "forbidden_area_entry", "offline_displacement", "fatigue_warning")  # fmt: skip
CLASSES = ("coach", "tour_bus", "hazmat", "heavy_truck", "freight")


def _url(name: str) -> str:
    return ADMIN_URL.rpartition("/")[0] + "/" + name


async def _load(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    """Companies, vehicles, alarms and their start positions; returns the first company id."""
    rng = random.Random(9)
    vehicles: list[tuple[int, int, str]] = []
    first = 0
    for c in range(args.companies):
        company = await conn.fetchval(
            "INSERT INTO companies (name) VALUES ($1) RETURNING id", f"企业{c:03d}"
        )
        first = first or company
        for v in range(args.vehicles_per_company):
            cls = CLASSES[(c + v) % len(CLASSES)]
            vid = await conn.fetchval(
                "INSERT INTO vehicles (company_id, plate_number, vehicle_class, terminal_id) "
                "VALUES ($1, $2, $3, $4) RETURNING id",
                company, f"川A{c:02d}{v:03d}", cls, f"bench-{c}-{v}",
            )  # fmt: skip
            vehicles.append((vid, company, cls))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    alarms, positions = [], []
    levels = AlarmsSettings()
    for i in range(args.alarms):
        vid, company, cls = rng.choice(vehicles)
        kind = rng.choice(TYPES)
        at = start + timedelta(seconds=rng.randrange(90 * 86400))
        status = "handled" if rng.random() < 0.8 else rng.choice(("open", "acknowledged"))
        alarms.append(
            (vid, company, kind, f"b{i}", at, at + timedelta(minutes=3), status,
             level_for(kind, cls, levels))
        )  # fmt: skip
        positions.append((vid, at, at, 30.6, 104.06, 50.0, True, "ok"))
    await conn.copy_records_to_table(
        "alarms",
        records=alarms,
        columns=["vehicle_id", "company_id", "alarm_type", "dedup_key", "started_at", "ended_at",
                 "status", "level"],
    )  # fmt: skip
    await conn.executemany(
        "INSERT INTO positions (vehicle_id, fix_time, received_at, latitude, longitude, "
        "speed_kmh, fix_valid, quality) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
        "ON CONFLICT DO NOTHING",
        positions,
    )
    await conn.execute(
        'UPDATE alarms SET details = \'{"limit_kmh": 60, "max_speed_kmh": 80}\'::jsonb'
    )
    await conn.execute("VACUUM ANALYZE")
    return first


async def _time(client: httpx.AsyncClient, path: str, token: str, repeat: int) -> str:
    took = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = await client.get(path, headers={"Authorization": f"Bearer {token}"})
        took.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
    took.sort()
    p99 = took[min(len(took) - 1, int(len(took) * 0.99))]
    return f"p50 {statistics.median(took):6.1f} ms  p99 {p99:6.1f} ms"


async def main(args: argparse.Namespace) -> None:
    name = f"gpsm_bench_alarms_{os.getpid()}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        db = DatabaseSettings(url=_url(name), timescale="off")
        conn = await asyncpg.connect(db.url)
        await init_connection(conn)
        await migrate.upgrade(conn, db)
        t0 = time.perf_counter()
        company = await _load(conn, args)
        print(f"loaded {args.alarms:,} alarms in {time.perf_counter() - t0:.1f} s")
        settings = Settings(database=db)
        tokens = {}
        for who, role, cid in (("chief", "bureau", None), ("op", "operator", company)):
            user = await users.create_user(conn, who, "bench-password-123", role, cid)
            tokens[who], _ = await users.issue_token(
                conn, user, settings.web.secret_key, settings.web.token_lifetime_s
            )
        await conn.close()
        app = create_app(settings, live_feed=False)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://b") as client:
                cases = [
                    ("bureau, first page of 50", "/api/alarms?limit=50", "chief"),
                    ("bureau, page 100 of 50", "/api/alarms?limit=50&offset=4950", "chief"),
                    ("bureau, level 1 unhandled", "/api/alarms?limit=50&level=1&status=unhandled",
                     "chief"),
                    ("bureau, plate part", "/api/alarms?limit=50&plate=A01", "chief"),
                    ("bureau, summary", "/api/alarms/summary", "chief"),
                    ("operator, first page", "/api/alarms?limit=50", "op"),
                    ("operator, summary", "/api/alarms/summary", "op"),
                ]  # fmt: skip
                for label, path, who in cases:
                    figures = await _time(client, path, tokens[who], args.repeat)
                    print(f"{label:28s} {figures}")
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alarms", type=int, default=100_000)
    parser.add_argument("--companies", type=int, default=30)
    parser.add_argument("--vehicles-per-company", type=int, default=25)
    parser.add_argument("--repeat", type=int, default=20)
    asyncio.run(main(parser.parse_args()))
