"""Legal hold in TimescaleDB mode: a retention run drops whole chunks of the hypertables, and
the sealed window survives through its held copy (same evidence digest before and after).

Runs on the pinned PostgreSQL 17 + TimescaleDB WebAssembly server (tests/conftest_timescale.py:
one connection, no COPY, small INSERTs), skipped with the reason where Node.js is absent."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from conftest_timescale import timescale_database_url  # noqa: F401  (pytest fixture)

from gps_monitor.config import DatabaseSettings, ReportsSettings
from gps_monitor.db import holds, migrate, retention
from gps_monitor.db.pool import init_connection
from web.reports import evidence, kpi

pytestmark = pytest.mark.timescale
DAY0 = datetime(2025, 1, 10, 2, 0, tzinfo=UTC)


@pytest.fixture
async def ts_conn(timescale_database_url: str) -> AsyncIterator[asyncpg.Connection]:  # noqa: F811
    conn = await asyncpg.connect(timescale_database_url)
    await init_connection(conn)
    await migrate.upgrade(conn, DatabaseSettings(timescale="on"))
    yield conn
    conn.terminate()


async def test_sealed_window_survives_timescale_chunk_drop(ts_conn: asyncpg.Connection) -> None:
    conn = ts_conn
    assert await migrate.storage_mode(conn) == "timescale"
    company = await conn.fetchval("INSERT INTO companies (name) VALUES ('甲') RETURNING id")
    vehicle = await conn.fetchval(
        "INSERT INTO vehicles (company_id, plate_number, vehicle_class, terminal_id) "
        "VALUES ($1, '川A00001', 'hazmat', 't1') RETURNING id",
        company,
    )
    # three days, 6 fixes a day, each with its raw message; days land in separate chunks
    raw_id = 0
    for day in range(3):
        for k in range(6):
            raw_id += 1
            t = DAY0 + timedelta(days=day, minutes=10 * k)
            payload = json.dumps({"fix_time": t.isoformat(), "n": raw_id}).encode()
            await conn.execute(
                "INSERT INTO raw_messages (id, received_at, topic, payload) "
                "VALUES ($1, $2, 'gps/v1/t1/position', $3)", raw_id, t, payload,
            )  # fmt: skip
            await conn.execute(
                "INSERT INTO positions (vehicle_id, fix_time, received_at, latitude, longitude, "
                "speed_kmh, fix_valid, quality, distance_m, interval_s, raw_message_id) "
                "VALUES ($1, $2, $2, $3, 104.0, 50, true, 'ok', 800, 600, $4)",
                vehicle, t, 30.0 + raw_id * 0.001, raw_id,
            )  # fmt: skip
    settings = ReportsSettings()
    start, end = DAY0 + timedelta(days=1), DAY0 + timedelta(days=1, hours=1)
    before = await evidence.build_for_window(conn, vehicle, start, end, settings, generated_by="t")
    assert len(before.positions) == 6
    hold = await holds.seal(conn, vehicle_id=vehicle, window_start=start, window_end=end,
                            reason="事故", sealed_by="t")  # fmt: skip
    assert (hold.positions_held, hold.raw_messages_held) == (6, 6)

    result = await retention.run_retention(conn, cutoff=DAY0 + timedelta(days=5))
    assert result.mode == "timescale" and result.chunks_dropped >= 3
    assert await conn.fetchval("SELECT count(*) FROM positions") == 0
    assert await conn.fetchval("SELECT count(*) FROM raw_messages") == 0
    after = await evidence.build_for_window(conn, vehicle, start, end, settings, generated_by="t")
    assert after.digest_sha256 == before.digest_sha256
    assert {p.source for p in after.positions} == {"held"}
    first_raw = await conn.fetchval("SELECT payload FROM held_raw_messages ORDER BY id LIMIT 1")
    assert after.positions[0].raw_sha256 == hashlib.sha256(bytes(first_raw)).hexdigest()

    # the KPI query runs in TimescaleDB mode too (on what is left: nothing in the period)
    report = await kpi.compute_kpis(conn, DAY0.date(), DAY0.date(), settings)
    assert report.county.period.kpis()["connection_rate"] == 0.0
