"""gps_monitor.db.positions.write_batch on the real PostgreSQL: a batch with nothing stored yet
(inserted without reading anything back), one meeting stored fixes (the stored ones read back by
raw message id) and one repeating a fix (DISTINCT ON) store the same rows (extras as JSON
objects, verdicts, distances, raw message references, the KPI table the trigger keeps)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from gps_monitor.config import Settings
from gps_monitor.db.pool import connect
from gps_monitor.db.positions import (
    PositionRow,
    RawMessage,
    WriteBatch,
    prepare_connection,
    write_batch,
)
from gps_monitor.db.registry import ensure_company, ensure_vehicle
from gps_monitor.models import Position, Quality
from ingest.worker import IngestWorker

START = datetime(2026, 1, 26, 8, 0, tzinfo=UTC)
COLUMNS = (
    "fix_time, received_at, latitude, longitude, speed_kmh, heading_deg, altitude_m, "
    "satellites, fix_valid, acc_on, alarm_flags, status_flags, mileage_km, extras, quality, "
    "quality_reason, late, reupload, distance_m, interval_s"
)


def _batch(vehicle_id: int, company_id: int, fixes: range, tag: str) -> WriteBatch:
    """One message per fix, every kind of value: extras nested and empty, verdicts, flags."""
    batch = WriteBatch()
    for i in fixes:
        at = START + timedelta(seconds=10 * i)
        batch.raw.append(RawMessage(f"gps/v1/{tag}/position", f"{tag}{i}".encode(), at, i + 1))
        p = Position(
            terminal_id=tag, fix_time=at, latitude=29.5 + i * 1e-4, longitude=106.5,
            speed_kmh=40.0 + i, heading_deg=None if i % 3 else 90.0, satellites=i % 12,
            acc_on=None if i % 2 else True, alarm_flags=i, mileage_km=100.0 + i,
            extras={"io": [1, {"a": "渝"}], "n": i} if i % 2 else {},
            vehicle_id=vehicle_id, company_id=company_id,
            quality=Quality.DRIFT if i == 3 else Quality.OK,
            quality_reason="implausible_jump" if i == 3 else None, late=i == 5,
            reupload=i == 5, received_at=at + timedelta(seconds=1),
        )  # fmt: skip
        batch.positions.append(
            PositionRow(p, len(batch.raw) - 1, distance_m=None if i == 3 else 12.5, interval_s=10)
        )
    return batch


async def _rows(pool: asyncpg.Pool, vehicle_id: int) -> list[tuple[object, ...]]:
    rows = await pool.fetch(
        f"SELECT {COLUMNS}, (SELECT payload FROM raw_messages r WHERE r.id = p.raw_message_id) "
        "AS payload FROM positions p WHERE vehicle_id = $1 ORDER BY fix_time",
        vehicle_id,
    )
    return [tuple(r) for r in rows]


async def test_a_new_batch_and_one_meeting_stored_fixes_store_the_same_rows(
    pool: asyncpg.Pool,
) -> None:
    company = await ensure_company(pool, "Write Co")
    a = await ensure_vehicle(pool, company_id=company.id, plate_number="渝A1", terminal_id="A")
    b = await ensure_vehicle(pool, company_id=company.id, plate_number="渝B1", terminal_id="B")
    async with pool.acquire() as conn:
        # vehicle a: nothing stored, keys distinct: every row goes in, nothing read back
        straight = await write_batch(conn, _batch(a.id, company.id, range(8), "A"))
        # vehicle b: fix 0 stored first: the batch meets a stored key, the others read back
        await write_batch(conn, _batch(b.id, company.id, range(1), "B"))
        conflict = await write_batch(conn, _batch(b.id, company.id, range(8), "B"))
    assert straight.inserted == [
        r.position for r in _batch(a.id, company.id, range(8), "A").positions
    ]
    assert [p.fix_time for p in conflict.inserted] == [START + timedelta(seconds=10 * i)
                                                       for i in range(1, 8)]  # fmt: skip
    assert [p.fix_time for p in conflict.already_stored] == [START]
    rows_a, rows_b = await _rows(pool, a.id), await _rows(pool, b.id)
    assert len(rows_a) == 8
    assert [r[:-1] for r in rows_a] == [r[:-1] for r in rows_b]
    assert [r[-1] for r in rows_a] == [f"A{i}".encode() for i in range(8)]
    assert rows_a[1][13] == {"io": [1, {"a": "渝"}], "n": 1} and rows_a[0][13] is None
    kpi = "SELECT positions, ok_positions, drift_positions, distance_m FROM vehicle_day_kpi "
    assert tuple(await pool.fetchrow(kpi + "WHERE vehicle_id = $1", a.id)) == tuple(
        await pool.fetchrow(kpi + "WHERE vehicle_id = $1", b.id)
    )


async def test_a_batch_repeating_a_fix_stores_the_first_and_all_of_it_once(
    pool: asyncpg.Pool,
) -> None:
    company = await ensure_company(pool, "Write Co")
    a = await ensure_vehicle(pool, company_id=company.id, plate_number="渝A2", terminal_id="A2")
    batch = _batch(a.id, company.id, range(4), "A2")
    first = batch.positions[2]
    again = PositionRow(first.position.evolve(speed_kmh=99.0), first.raw_index)
    batch.positions.append(again)
    async with pool.acquire() as conn:
        result = await write_batch(conn, batch)
        redelivered = await write_batch(conn, _batch(a.id, company.id, range(4), "A2"))
    assert len(result.inserted) == 4 and result.inserted[2].speed_kmh == first.position.speed_kmh
    assert redelivered.inserted == [] and len(redelivered.already_stored) == 4
    assert await pool.fetchval("SELECT count(*) FROM positions") == 4
    assert await pool.fetchval("SELECT speed_kmh FROM positions ORDER BY fix_time OFFSET 2") == 42
    assert await pool.fetchval("SELECT count(*) FROM raw_messages") == 4  # redelivery: no row


async def test_the_prepared_staging_table_outlives_a_failed_caller_transaction(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    company = await ensure_company(pool, "Write Co")
    a = await ensure_vehicle(pool, company_id=company.id, plate_number="渝A3", terminal_id="A3")
    async with pool.acquire() as pooled:  # not prepared: write_batch makes the table itself
        await write_batch(pooled, _batch(a.id, company.id, range(1), "P3"))
    conn = await connect(settings.database)  # the ingest worker's kind: its own connection
    try:
        await prepare_connection(conn)
        # a batch in the caller's transaction that fails after the staging COPY: rolled back
        # whole (no savepoint), the staging table created outside it stays
        with pytest.raises(asyncpg.DivisionByZeroError):
            async with conn.transaction():
                await write_batch(
                    conn, _batch(a.id, company.id, range(2), "A3"), staging_ready=True
                )
                await conn.execute("SELECT 1 / 0")
        assert await pool.fetchval("SELECT count(*) FROM positions") == 1
        async with conn.transaction():
            result = await write_batch(
                conn, _batch(a.id, company.id, range(4), "A3"), staging_ready=True
            )
    finally:
        await conn.close()
    assert [p.fix_time for p in result.inserted] == [
        START + timedelta(seconds=10 * i) for i in range(1, 4)
    ]
    assert await pool.fetchval("SELECT count(*) FROM positions") == 4


async def test_the_ingest_worker_keeps_no_connection_it_could_not_prepare(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    # a server that refuses the staging table (here read-only sessions, as a standby reached
    # after a failover would): the worker must not keep that connection without its staging
    # table and terminal cache, it connects again for the next batch
    url = settings.database.url
    url += ("&" if "?" in url else "?") + "default_transaction_read_only=on"
    read_only = settings.model_copy(
        update={"database": settings.database.model_copy(update={"url": url})}
    )
    worker = IngestWorker(read_only)
    for _ in range(2):
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await worker._db()
        assert worker._conn is None and worker._terminals is None
    worker.settings = settings
    conn = await worker._db()
    assert worker._terminals is not None
    assert await conn.fetchval("SELECT to_regclass('pg_temp.positions_staging') IS NOT NULL")
    await worker.close()


_LATEST = (
    "fix_time, received_at, latitude, longitude, speed_kmh, heading_deg, acc_on, alarm_flags, "
    "status_flags, mileage_km"
)


def _expected_latest(
    batches: list[WriteBatch], before: dict[int, tuple[object, ...]]
) -> dict[int, tuple[object, ...]]:
    """latest_positions as the writer kept it before PostgreSQL computed it from the staging
    table (the reference): per vehicle the newest arrival of a position or contact, and the
    newest ok fix (the first of equal fix times) unless the stored one is newer."""
    out = dict(before)
    for batch in batches:
        last: dict[int, datetime] = dict(batch.contacts)
        newest: dict[int, Position] = {}
        for row in batch.positions:
            p = row.position
            assert p.vehicle_id is not None and p.received_at is not None
            if p.vehicle_id not in last or p.received_at > last[p.vehicle_id]:
                last[p.vehicle_id] = p.received_at
            current = newest.get(p.vehicle_id)
            if p.quality == Quality.OK and (current is None or p.fix_time > current.fix_time):
                newest[p.vehicle_id] = p
        for v, at in last.items():
            stored = out.get(v)
            fix: tuple[object, ...] = stored[1:] if stored else (None,) * 10
            p = newest.get(v)
            if p is not None and (fix[0] is None or p.fix_time > fix[0]):  # type: ignore[operator]
                fix = tuple(getattr(p, c.strip()) for c in _LATEST.split(","))
            out[v] = (max(at, stored[0]) if stored else at, *fix)  # type: ignore[type-var]
    return out


async def test_latest_positions_keep_the_newest_ok_fix_and_the_newest_arrival(
    pool: asyncpg.Pool,
) -> None:
    """Mixed batches: a batch of contacts only first (the staging table made for it), verdicts
    ok/drift/invalid, equal fix times, fixes out of order, a contact newer than a vehicle's
    positions, a vehicle heard only by contact, a later batch of older fixes (which must not
    move the newest back) and a batch of contacts only."""
    company = await ensure_company(pool, "Latest Co")
    vids = [
        (await ensure_vehicle(pool, company_id=company.id, plate_number=f"渝L{i}",
                              terminal_id=f"L{i}")).id
        for i in range(4)
    ]  # fmt: skip

    def fix(v: int, s: int, quality: Quality = Quality.OK, speed_kmh: float = 40.0) -> PositionRow:
        at = START + timedelta(seconds=s)
        p = Position(
            terminal_id="L", fix_time=at, latitude=29.5 + s * 1e-4, longitude=106.5,
            speed_kmh=speed_kmh, acc_on=s % 2 == 0, alarm_flags=s, mileage_km=float(s),
            vehicle_id=v, company_id=company.id, quality=quality,
            received_at=START + timedelta(seconds=100 + s),
        )  # fmt: skip
        return PositionRow(p, 0)

    first = WriteBatch(
        raw=[RawMessage("gps/v1/L/batch", b"first", START, 1)],
        positions=[
            fix(vids[0], 20),
            fix(vids[0], 30, Quality.INVALID),
            fix(vids[0], 10),
            fix(vids[1], 5, Quality.DRIFT),
            fix(vids[2], 7),
            fix(vids[2], 7, speed_kmh=99.0),
        ],
        contacts={vids[2]: START + timedelta(seconds=500), vids[3]: START + timedelta(seconds=50)},
    )
    later = WriteBatch(
        raw=[RawMessage("gps/v1/L/batch", b"later", START, 2)],
        positions=[fix(vids[0], 15), fix(vids[1], 6), fix(vids[3], 1, Quality.DRIFT)],
    )
    contacts = WriteBatch(contacts={vids[0]: START + timedelta(seconds=900)})
    heard_first = WriteBatch(contacts={vids[1]: START})  # on a connection with no staging yet

    async def latest() -> dict[int, tuple[object, ...]]:
        rows = await pool.fetch(
            f"SELECT vehicle_id, last_message_at, {_LATEST} FROM latest_positions"
        )
        return {r[0]: tuple(r[1:]) for r in rows}

    expected: dict[int, tuple[object, ...]] = {}
    async with pool.acquire() as conn:
        for batch in (heard_first, first, later, contacts):
            await write_batch(conn, batch)
            expected = _expected_latest([batch], expected)
            assert await latest() == expected
    assert expected[vids[0]][1] == START + timedelta(seconds=20)  # not the invalid 30, not 15
    assert expected[vids[2]][5] == 40.0  # the first of two fixes at the same time
    assert expected[vids[3]][1] is None  # heard, never an ok fix
