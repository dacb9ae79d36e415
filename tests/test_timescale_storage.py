"""TimescaleDB mode at province scale (migration 0110, issue 13 section 3), on the pinned
PostgreSQL 17 + TimescaleDB 2.23 WebAssembly server (tests/conftest_timescale.py: one
connection, no COPY, small INSERTs):

- raw_messages is compressed (settings, policy from the settings), and on a compressed chunk the
  lookups the app makes still work: by id (evidence digests, legal holds) and by message_key
  (one row per MQTT message: a redelivery of a compressed message is still recognised);
- the vehicle_day_kpi continuous aggregate gives the same per-vehicle daily figures as raw
  positions, also for late positions stored after their day was materialised (once the refresh
  the policy runs has run) and for a drift suspect cleared to ok.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from conftest_timescale import timescale_database_url  # noqa: F401  (pytest fixture)

from gps_monitor.config import DatabaseSettings, ReportsSettings
from gps_monitor.db import migrate
from gps_monitor.db.pool import init_connection
from web.reports import kpi

pytestmark = pytest.mark.timescale
SETTINGS = DatabaseSettings(timescale="on", compress_after_days=4)
DAY0 = datetime(2026, 3, 1, 16, 0, tzinfo=UTC)  # local midnight of 2 March


@pytest.fixture
async def ts_conn(timescale_database_url: str) -> AsyncIterator[asyncpg.Connection]:  # noqa: F811
    conn = await asyncpg.connect(timescale_database_url)
    await init_connection(conn)
    await migrate.upgrade(conn, SETTINGS)
    yield conn
    conn.terminate()  # the server does not answer Terminate


async def test_raw_messages_compressed_and_still_found_by_id_and_key(
    ts_conn: asyncpg.Connection,
) -> None:
    conn = ts_conn
    settings = await conn.fetch(
        "SELECT attname, segmentby_column_index, orderby_column_index "
        "FROM timescaledb_information.compression_settings WHERE hypertable_name = 'raw_messages'"
    )
    order_by = sorted(
        (r["orderby_column_index"], r["attname"])
        for r in settings
        if r["orderby_column_index"] is not None
    )
    assert [name for _, name in order_by] == ["received_at", "id"]
    assert not [r for r in settings if r["segmentby_column_index"] is not None]
    (job,) = await conn.fetch(
        "SELECT config FROM timescaledb_information.jobs "
        "WHERE proc_name = 'policy_compression' AND hypertable_name = 'raw_messages'"
    )
    assert job["config"]["compress_after"] == "4 days"

    rows = [
        (i, DAY0 + timedelta(minutes=i), f"gps/v1/0199{i % 3:08d}/position",
         f'{{"n":{i}}}'.encode(), 1000 + i)
        for i in range(1, 61)
    ]  # fmt: skip
    await conn.executemany(
        "INSERT INTO raw_messages (id, received_at, topic, payload, message_key) "
        "VALUES ($1, $2, $3, $4, $5)",
        rows,
    )
    chunks = await conn.fetch("SELECT show_chunks('raw_messages')::text AS c")
    for chunk in chunks:
        await conn.execute(f"SELECT compress_chunk('{chunk['c']}')")
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM timescaledb_information.chunks "
            "WHERE hypertable_name = 'raw_messages' AND NOT is_compressed"
        )
        == 0
    )
    stats = await conn.fetchrow(
        "SELECT sum(before_compression_total_bytes) AS before, "
        "sum(after_compression_total_bytes) AS after FROM chunk_compression_stats('raw_messages')"
    )
    assert stats["before"] and stats["after"]
    # by id, as evidence.py and holds.py ask
    digest = await conn.fetch(
        "SELECT id, sha256(payload) AS d FROM raw_messages WHERE id = ANY($1::bigint[]) "
        "ORDER BY id",
        [7, 42],
    )
    assert [r["id"] for r in digest] == [7, 42]
    # by key, as the writer's redelivery lookup asks (gps_monitor.db.positions)
    found = await conn.fetchval(
        "SELECT count(*) FROM raw_messages WHERE message_key = $1 AND received_at >= $2 "
        "AND topic = $3 AND payload = $4",
        1042, DAY0, rows[41][2], rows[41][3],
    )  # fmt: skip
    assert found == 1
    # the primary key still holds on the compressed chunk
    with pytest.raises(asyncpg.UniqueViolationError):
        await conn.execute(
            "INSERT INTO raw_messages (id, received_at, topic, payload) VALUES ($1, $2, 'x', '')",
            42, rows[41][1],
        )  # fmt: skip


async def _figures(conn: asyncpg.Connection, *, from_positions: bool) -> list[dict[str, Any]]:
    settings = ReportsSettings()
    tz = kpi.ZoneInfo(settings.display_timezone)
    start, _ = kpi.local_day_bounds(date(2026, 3, 1), tz)
    _, end = kpi.local_day_bounds(date(2026, 3, 5), tz)
    ids = [r["id"] for r in await conn.fetch("SELECT id FROM vehicles")]
    rows = await kpi.vehicle_days(conn, settings, start, end, ids, from_positions=from_positions)
    return sorted((dict(r) for r in rows), key=lambda r: (r["vehicle_id"], r["day"]))


async def _assert_same(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    daily = await _figures(conn, from_positions=False)
    raw = await _figures(conn, from_positions=True)
    assert [(r["vehicle_id"], r["day"], r["n"], r["n_ok"], r["n_drift"]) for r in daily] == [
        (r["vehicle_id"], r["day"], r["n"], r["n_ok"], r["n_drift"]) for r in raw
    ]
    for d, r in zip(daily, raw, strict=True):
        assert d["dist"] == pytest.approx(r["dist"], rel=1e-12, abs=1e-6)
        assert d["dist_gap"] == pytest.approx(r["dist_gap"], rel=1e-12, abs=1e-6)
    return daily


async def _insert(conn: asyncpg.Connection, rows: list[tuple[Any, ...]]) -> None:
    for start in range(0, len(rows), 100):
        await conn.executemany(
            "INSERT INTO positions (vehicle_id, fix_time, received_at, latitude, longitude, "
            "speed_kmh, fix_valid, quality, distance_m, interval_s) "
            "VALUES ($1, $2, $2, 30.0, 104.0, 40, true, $3, $4, $5)",
            rows[start : start + 100],
        )


async def test_daily_kpi_aggregate_equals_raw_positions_with_late_data(
    ts_conn: asyncpg.Connection,
) -> None:
    conn = ts_conn
    cagg = await conn.fetchrow(
        "SELECT materialized_only FROM timescaledb_information.continuous_aggregates "
        "WHERE view_name = 'vehicle_day_kpi'"
    )
    assert cagg is not None and cagg["materialized_only"] is False
    company = await conn.fetchval("INSERT INTO companies (name) VALUES ('甲') RETURNING id")
    vehicles = [
        await conn.fetchval(
            "INSERT INTO vehicles (company_id, plate_number, vehicle_class, terminal_id) "
            "VALUES ($1, $2, 'freight', $3) RETURNING id",
            company, f"川A{n:05d}", f"0199{n:08d}",
        )
        for n in range(4)
    ]  # fmt: skip
    rng = random.Random(5)
    rows: list[tuple[Any, ...]] = []
    for vid in vehicles:
        t = DAY0 - timedelta(hours=2)  # from 22:00 local on 1 March, across local midnights
        for _ in range(150):
            t += timedelta(seconds=rng.choice([60, 120, 600, 1800, 3600]))
            quality = rng.choices(["ok", "drift", "invalid"], [0.85, 0.1, 0.05])[0]
            dist = rng.choice([100.0, 900.0, 2500.0]) if quality == "ok" else None
            interval = rng.choice([60.0, 400.0]) if quality == "ok" else None
            rows.append((vid, t, quality, dist, interval))
    late = rows[1::4]
    await _insert(conn, [r for r in rows if r not in late])
    await conn.execute(
        "CALL refresh_continuous_aggregate('vehicle_day_kpi', $1::timestamptz, $2::timestamptz)",
        DAY0 - timedelta(days=2), DAY0 + timedelta(days=5),
    )  # fmt: skip
    before = await _assert_same(conn)
    assert len({r["day"] for r in before}) >= 3

    # late positions below the watermark, then a drift suspect cleared to ok; the refresh the
    # policy runs every 30 minutes (no background workers here) brings the aggregate level
    await _insert(conn, late)
    await conn.execute(
        "UPDATE positions SET quality = 'ok', distance_m = 50, interval_s = 30 "
        "WHERE (vehicle_id, fix_time) IN (SELECT vehicle_id, fix_time FROM positions "
        "WHERE quality = 'drift' ORDER BY fix_time LIMIT 2)"
    )
    await conn.execute(
        "CALL refresh_continuous_aggregate('vehicle_day_kpi', $1::timestamptz, $2::timestamptz)",
        DAY0 - timedelta(days=2), DAY0 + timedelta(days=5),
    )  # fmt: skip
    after = await _assert_same(conn)
    assert sum(r["n"] for r in after) == len(rows)
    assert sum(r["n_drift"] for r in after) == sum(1 for r in rows if r[2] == "drift") - 2
    # the whole report (company and county sums, per day) is the same either way
    settings = ReportsSettings()
    reports = [
        (
            await kpi.compute_kpis(
                conn, date(2026, 3, 1), date(2026, 3, 5), settings, from_positions=raw
            )
        ).to_dict()
        for raw in (False, True)
    ]
    for report in reports:
        report.pop("generated_at")
    assert reports[0]["county"]["counts"]["records"] == len(rows)
    assert _rounded(reports[0]) == _rounded(reports[1])


def _rounded(value: Any) -> Any:
    """Metre sums to the micrometre (float64 sums in another order differ in the last bits)."""
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value
