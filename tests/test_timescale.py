"""TimescaleDB mode for real: the migrations and the app's queries on PostgreSQL 17 + TimescaleDB
2.23 (WebAssembly build pinned in tools/pglite/, served over the wire protocol; see
conftest_timescale for its limits: one connection, no COPY, small INSERTs only).

The same data also goes through plain PostgreSQL (the `database_url` fixture) to show both modes
give the same daily summary.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from conftest_timescale import timescale_database_url  # noqa: F401  (pytest fixture)

from gps_monitor.config import DatabaseSettings
from gps_monitor.db import migrate, positions
from gps_monitor.db.pool import init_connection
from gps_monitor.models import Position, Quality

pytestmark = pytest.mark.timescale

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Non-default policy settings, so the test sees the settings reach the policies.
SETTINGS = DatabaseSettings(timescale="on", compress_after_days=3, retention_months=2)


@pytest.fixture
async def ts_conn(timescale_database_url: str) -> AsyncIterator[asyncpg.Connection]:  # noqa: F811
    """The one connection the WebAssembly server allows, with the app's codecs."""
    conn = await asyncpg.connect(timescale_database_url)
    await init_connection(conn)
    yield conn
    conn.terminate()  # the server does not answer Terminate: close() would wait for nothing


async def _jobs(conn: asyncpg.Connection) -> dict[tuple[str, str], list[asyncpg.Record]]:
    found: dict[tuple[str, str], list[asyncpg.Record]] = defaultdict(list)
    for row in await conn.fetch(
        "SELECT job_id, proc_name, hypertable_name, schedule_interval, config "
        "FROM timescaledb_information.jobs WHERE hypertable_name IS NOT NULL"
    ):
        found[(row["proc_name"], row["hypertable_name"])].append(row)
    return found


async def test_upgrade_builds_hypertables_compression_policies_and_daily_aggregate(
    ts_conn: asyncpg.Connection,
) -> None:
    conn = ts_conn
    assert await migrate.storage_mode(conn) is None
    assert await migrate.timescale_available(conn)
    assert (
        await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'") == 0
    )
    applied = await migrate.upgrade(conn, SETTINGS)
    assert await conn.fetchval(
        "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
    ), "the upgrade did not create the timescaledb extension"
    assert "0001_core" in applied
    assert "0002_positions_storage.timescale" in applied
    assert not any(key.endswith(".plain") for key in applied)
    assert await migrate.storage_mode(conn) == "timescale"

    hypertables = {
        r["hypertable_name"]
        for r in await conn.fetch("SELECT hypertable_name FROM timescaledb_information.hypertables")
    }
    assert {"positions", "raw_messages"} <= hypertables
    dimensions = {
        r["hypertable_name"]: r["column_name"]
        for r in await conn.fetch(
            "SELECT hypertable_name, column_name FROM timescaledb_information.dimensions "
            "WHERE hypertable_name IN ('positions', 'raw_messages')"
        )
    }
    assert dimensions == {"positions": "fix_time", "raw_messages": "received_at"}

    compression = await conn.fetch(
        "SELECT attname, segmentby_column_index, orderby_column_index "
        "FROM timescaledb_information.compression_settings WHERE hypertable_name = 'positions'"
    )
    segment_by = [r["attname"] for r in compression if r["segmentby_column_index"] is not None]
    order_by = [r["attname"] for r in compression if r["orderby_column_index"] is not None]
    assert segment_by == ["vehicle_id"]
    assert order_by == ["fix_time"]

    jobs = await _jobs(conn)
    (compress,) = jobs[("policy_compression", "positions")]
    assert compress["config"]["compress_after"] == "3 days"
    for table in ("positions", "raw_messages"):
        (retention,) = jobs[("policy_retention", table)]
        assert retention["config"]["drop_after"] == "2 mons"
    (refresh,) = jobs[("policy_refresh_continuous_aggregate", "vehicle_daily")]
    assert refresh["schedule_interval"] == timedelta(minutes=30)
    assert refresh["config"]["start_offset"] == "35 days"
    assert refresh["config"]["end_offset"] == "01:00:00"

    cagg = await conn.fetchrow(
        "SELECT materialized_only FROM timescaledb_information.continuous_aggregates "
        "WHERE view_name = 'vehicle_daily'"
    )
    assert cagg is not None, "vehicle_daily is not a continuous aggregate"
    assert cagg["materialized_only"] is False  # real-time: the newest data shows at once

    # idempotent: nothing applied again, the same policies (same jobs) kept
    assert await migrate.upgrade(conn, SETTINGS) == []
    assert await migrate.storage_mode(conn) == "timescale"
    again = await _jobs(conn)
    assert {k: [r["job_id"] for r in v] for k, v in again.items()} == {
        k: [r["job_id"] for r in v] for k, v in jobs.items()
    }

    # a changed setting replaces just that policy, without a migration
    changed = SETTINGS.model_copy(update={"compress_after_days": 5})
    assert await migrate.upgrade(conn, changed) == []
    after = await _jobs(conn)
    (compress_now,) = after[("policy_compression", "positions")]
    assert compress_now["config"]["compress_after"] == "5 days"
    assert [r["job_id"] for r in after[("policy_retention", "positions")]] == [
        r["job_id"] for r in jobs[("policy_retention", "positions")]
    ]


# --- a little data, written and read by the app's own SQL ------------------------------------


@dataclass(frozen=True, slots=True)
class Fix:
    terminal_id: str
    fix_time: datetime
    latitude: float
    longitude: float
    speed_kmh: float
    quality: Quality = Quality.OK
    distance_m: float | None = None
    interval_s: float | None = None


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# Two vehicles in Beijing; T1's fixes straddle local midnight (16:00 UTC) so the daily summary
# must split them into two Asia/Shanghai days; one drift fix counts as a position but not as
# distance or driving time.
T1, T2 = "13800000001", "13800000002"
FIXES = (
    Fix(T1, _t("2024-03-10T15:50:00Z"), 39.9000, 116.4000, 42.0),
    Fix(T1, _t("2024-03-10T15:55:00Z"), 39.9030, 116.4050, 40.0, Quality.OK, 540.0, 300.0),
    Fix(T1, _t("2024-03-10T15:57:00Z"), 41.0000, 118.0000, 0.0, Quality.DRIFT),
    Fix(T1, _t("2024-03-10T16:05:00Z"), 39.9060, 116.4100, 38.0, Quality.OK, 530.0, 600.0),
    Fix(T1, _t("2024-03-10T16:10:00Z"), 39.9060, 116.4100, 0.0, Quality.OK, 0.0, 300.0),
    Fix(T2, _t("2024-03-11T01:00:00Z"), 39.8000, 116.3000, 60.0),
    Fix(T2, _t("2024-03-11T01:01:00Z"), 39.8080, 116.3000, 55.0, Quality.OK, 890.0, 60.0),
)  # fmt: skip


def expected_daily(vehicle_ids: dict[str, int]) -> dict[tuple[int, datetime], dict[str, Any]]:
    """vehicle_daily computed in Python from FIXES (local days in Asia/Shanghai)."""
    out: dict[tuple[int, datetime], dict[str, Any]] = {}
    for fix in FIXES:
        local = fix.fix_time.astimezone(SHANGHAI)
        day = local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)
        row = out.setdefault(
            (vehicle_ids[fix.terminal_id], day),
            {"positions": 0, "ok_positions": 0, "distance_m": 0.0, "driving_s": 0.0, "max": None},
        )
        row["positions"] += 1
        if fix.quality == Quality.OK:
            row["ok_positions"] += 1
            row["distance_m"] += fix.distance_m or 0.0
            if fix.speed_kmh >= 5:
                row["driving_s"] += fix.interval_s or 0.0
            row["max"] = max(row["max"] or 0.0, fix.speed_kmh)
    return out


async def daily_rows(conn: asyncpg.Connection) -> dict[tuple[int, datetime], dict[str, Any]]:
    """The vehicle_daily summary as the app reads it (same SQL in both modes)."""
    rows = await conn.fetch(
        "SELECT vehicle_id, day, positions, ok_positions, distance_m, driving_s, max_speed_kmh "
        "FROM vehicle_daily ORDER BY vehicle_id, day"
    )
    return {
        (r["vehicle_id"], r["day"].astimezone(UTC)): {
            "positions": r["positions"],
            "ok_positions": r["ok_positions"],
            "distance_m": round(float(r["distance_m"]), 3),
            "driving_s": round(float(r["driving_s"]), 3),
            "max": None if r["max_speed_kmh"] is None else round(float(r["max_speed_kmh"]), 3),
        }
        for r in rows
    }


async def register_vehicles(conn: asyncpg.Connection) -> dict[str, int]:
    """One company and the vehicles of FIXES, by plain INSERTs; terminal id -> vehicle id."""
    company_id = await conn.fetchval(
        "INSERT INTO companies (name) VALUES ('北京测试运输有限公司') RETURNING id"
    )
    ids: dict[str, int] = {}
    for n, terminal_id in enumerate(sorted({f.terminal_id for f in FIXES}), start=1):
        ids[terminal_id] = await conn.fetchval(
            "INSERT INTO vehicles (company_id, plate_number, plate_color, vehicle_class, "
            "terminal_id) VALUES ($1, $2, 2, 'heavy_truck', $3) RETURNING id",
            company_id,
            f"京A1234{n}",
            terminal_id,
        )
    return ids


def position_rows(
    vehicle_ids: dict[str, int], fixes: tuple[Fix, ...]
) -> list[positions.PositionRow]:
    received = _t("2024-03-11T02:00:00Z")
    return [
        positions.PositionRow(
            position=Position(
                terminal_id=f.terminal_id,
                fix_time=f.fix_time,
                latitude=f.latitude,
                longitude=f.longitude,
                speed_kmh=f.speed_kmh,
                heading_deg=90.0,
                fix_valid=True,
                acc_on=True,
                status_flags=3,
                vehicle_id=vehicle_ids[f.terminal_id],
                quality=f.quality,
                quality_reason="jump" if f.quality == Quality.DRIFT else None,
                received_at=received,
            ),
            raw_index=0,
            distance_m=f.distance_m,
            interval_s=f.interval_s,
        )
        for f in fixes
    ]


async def store_positions(conn: asyncpg.Connection, rows: list[positions.PositionRow]) -> int:
    """The ingest writer's SQL (staging table, INSERT ... ON CONFLICT DO NOTHING, latest
    positions upsert), with the staging rows INSERTed instead of COPYed (the WebAssembly server
    crashes on COPY). Returns how many positions were new."""
    async with conn.transaction():
        raw_id = await conn.fetchval(
            "INSERT INTO raw_messages (id, received_at, topic, payload) "
            "VALUES (nextval('raw_messages_id_seq'), $1, $2, $3) RETURNING id",
            rows[0].position.received_at,
            f"gps/v1/{rows[0].position.terminal_id}/batch",
            json.dumps([r.position.to_dict() for r in rows]).encode(),
        )
        await conn.execute(positions._CREATE_STAGING)
        columns = (*positions.POSITION_COLUMNS, "ord")
        await conn.executemany(
            f"INSERT INTO positions_staging ({', '.join(columns)}) VALUES "
            f"({', '.join(f'${i}' for i in range(1, len(columns) + 1))})",
            [positions._staging_record(row, raw_id, i) for i, row in enumerate(rows)],
        )
        inserted = await conn.fetch(positions._INSERT_FROM_STAGING)
        await positions._upsert_latest(conn, positions.WriteBatch(positions=rows))
    return len(inserted)


async def test_app_queries_run_on_timescale_before_and_after_compression(
    ts_conn: asyncpg.Connection,
) -> None:
    conn = ts_conn
    await migrate.upgrade(conn, SETTINGS)
    vids = await register_vehicles(conn)
    t1, t2 = vids["13800000001"], vids["13800000002"]
    # T1 arrives newest-first in two messages: the second is a late blind-area upload
    newer = tuple(f for f in FIXES if f.fix_time >= _t("2024-03-10T16:00:00Z"))
    older = tuple(f for f in FIXES if f.fix_time < _t("2024-03-10T16:00:00Z"))
    assert await store_positions(conn, position_rows(vids, newer)) == len(newer)
    assert await store_positions(conn, position_rows(vids, older)) == len(older)

    # latest_positions: newest ok fix per vehicle; the late batch did not move it back
    latest = await positions.latest_position(conn, t1)
    assert latest is not None
    assert latest["fix_time"] == _t("2024-03-10T16:10:00Z")
    latest2 = await positions.latest_position(conn, t2)
    assert latest2 is not None and latest2["fix_time"] == _t("2024-03-11T01:01:00Z")

    # the daily summary from real-time aggregation, then from the refreshed materialisation
    want = expected_daily(vids)
    assert len(want) == 3  # T1 on two local days, T2 on one
    assert await daily_rows(conn) == want
    await conn.execute("CALL refresh_continuous_aggregate('vehicle_daily', NULL, NULL)")
    mat = await conn.fetchval(
        "SELECT format('%I.%I', materialization_hypertable_schema, materialization_hypertable_name)"
        " FROM timescaledb_information.continuous_aggregates WHERE view_name = 'vehicle_daily'"
    )
    assert await conn.fetchval(f"SELECT count(*) FROM {mat}") == len(want)
    assert await daily_rows(conn) == want

    # the track query by vehicle and [start, end) window, in fix-time order
    window = (_t("2024-03-10T15:55:00Z"), _t("2024-03-10T16:10:00Z"))
    track = await positions.vehicle_positions(conn, t1, *window)
    assert [p.fix_time for p in track] == [
        f.fix_time
        for f in FIXES
        if f.terminal_id == "13800000001" and window[0] <= f.fix_time < window[1]
    ]
    assert [p.quality for p in track] == [Quality.OK, Quality.DRIFT, Quality.OK]
    ok_track = await positions.vehicle_positions(conn, t1, *window, quality=Quality.OK)
    assert len(ok_track) == 2

    # compress every chunk (what the 3-day policy does to old data), then the same queries,
    # a redelivered batch (ON CONFLICT against compressed rows) and the drift-clearing UPDATE
    chunks = await conn.fetchval(
        "SELECT count(compress_chunk(c)) FROM show_chunks('positions') AS c"
    )
    assert chunks >= 2  # one-day chunks: the fixes span two UTC days
    compressed = await conn.fetchval(
        "SELECT count(*) FROM timescaledb_information.chunks "
        "WHERE hypertable_name = 'positions' AND is_compressed"
    )
    assert compressed == chunks
    assert [p.fix_time for p in await positions.vehicle_positions(conn, t1, *window)] == [
        p.fix_time for p in track
    ]
    assert await store_positions(conn, position_rows(vids, older)) == 0
    assert await conn.fetchval("SELECT count(*) FROM positions") == len(FIXES)
    drift_time = next(f.fix_time for f in FIXES if f.quality == Quality.DRIFT)
    await conn.execute(
        "UPDATE positions SET quality = 'ok', quality_reason = NULL "
        "WHERE vehicle_id = $1 AND fix_time = $2 AND quality = 'drift'",
        t1,
        drift_time,
    )
    cleared = await positions.vehicle_positions(conn, t1, *window, quality=Quality.OK)
    assert drift_time in [p.fix_time for p in cleared]
    assert (await positions.count_positions(conn))["drift"] == 0


async def test_daily_summary_is_the_same_in_plain_and_timescale_mode(
    ts_conn: asyncpg.Connection, database_url: str
) -> None:
    await migrate.upgrade(ts_conn, SETTINGS)
    ts_ids = await register_vehicles(ts_conn)
    await store_positions(ts_conn, position_rows(ts_ids, FIXES))

    plain = await asyncpg.connect(database_url)  # already migrated in plain mode by the fixture
    try:
        await init_connection(plain)
        assert await migrate.storage_mode(plain) == "plain"
        plain_ids = await register_vehicles(plain)
        await store_positions(plain, position_rows(plain_ids, FIXES))
        plain_rows = await daily_rows(plain)
    finally:
        await plain.close()

    def by_terminal(rows: dict[tuple[int, datetime], Any], ids: dict[str, int]) -> dict[Any, Any]:
        terminal_of = {v: k for k, v in ids.items()}
        return {(terminal_of[v], day): row for (v, day), row in rows.items()}

    ts_rows = await daily_rows(ts_conn)
    assert by_terminal(ts_rows, ts_ids) == by_terminal(plain_rows, plain_ids)
    assert len(ts_rows) == 3
