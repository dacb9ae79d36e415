from __future__ import annotations

import asyncio

import asyncpg

from gps_monitor.config import DatabaseSettings
from gps_monitor.db import migrate
from gps_monitor.db.alarms import pending_publications
from rules import offline
from rules.engine import VehicleState
from rules.state import load_states, state_text


async def _coach(conn: asyncpg.Connection, number: str) -> tuple[int, int]:
    """A company and its coach (plate 京A``number``, terminal T``number``): their ids."""
    company = await conn.fetchval("INSERT INTO companies (name) VALUES ('m') RETURNING id")
    vehicle = await conn.fetchval(
        "INSERT INTO vehicles (company_id, plate_number, vehicle_class, terminal_id)"
        " VALUES ($1, $2, 'coach', $3) RETURNING id",
        company,
        f"京A{number}",
        f"T{number}",
    )
    return company, vehicle


async def test_upgrade_is_idempotent_and_records_plain_mode(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        # the fixture database is already migrated: a second upgrade applies nothing
        applied = await migrate.upgrade(conn, DatabaseSettings(url=database_url))
        assert applied == []
        assert await migrate.storage_mode(conn) == "plain"
        keys = [
            r["key"] for r in await conn.fetch("SELECT key FROM schema_migrations ORDER BY key")
        ]
        assert "0001_core" in keys
        assert "0002_positions_storage.plain" in keys
        assert not any(k.endswith(".timescale") for k in keys)
        tables = {
            r["relname"]
            for r in await conn.fetch("SELECT relname FROM pg_class WHERE relkind IN ('r', 'v')")
        }
        for table in (
            "companies",
            "vehicles",
            "positions",
            "latest_positions",
            "rejected_messages",
            "raw_messages",
            "vehicle_daily",
            "alarms",
        ):
            assert table in tables, table
    finally:
        await conn.close()


def test_every_migration_file_is_named_by_the_scheme() -> None:
    migrations = migrate.load_migrations()
    assert [m.version for m in migrations] == sorted(m.version for m in migrations)
    assert {m.mode for m in migrations} >= {None, "plain", "timescale"}
    plain = [m.key for m in migrations if m.mode == "plain"]
    timescale = [m.key for m in migrations if m.mode == "timescale"]
    # each mode-specific migration has its counterpart in the other mode
    assert [k.rsplit(".", 1)[0] for k in plain] == [k.rsplit(".", 1)[0] for k in timescale]


async def test_0151_moves_the_pending_alarms_of_the_flag_into_the_outbox_table(
    database_url: str,
) -> None:
    """An alarm flagged ``publish_pending`` by the schema before 0151 is still published after
    it: the flag becomes a row of ``alarm_outbox`` and the column goes."""
    conn = await asyncpg.connect(database_url)
    try:
        # the database as 0022-0150 left it: the flag and its index, no outbox table
        await conn.execute(
            "DROP TABLE alarm_outbox;"
            "ALTER TABLE alarms ADD COLUMN publish_pending boolean NOT NULL DEFAULT false;"
            "CREATE INDEX alarms_publish_pending_idx ON alarms (id) WHERE publish_pending"
        )
        company, vehicle = await _coach(conn, "0151")
        ids = [
            await conn.fetchval(
                "INSERT INTO alarms (vehicle_id, company_id, alarm_type, dedup_key, started_at,"
                " publish_pending) VALUES ($1, $2, 'sos', $3, now(), $4) RETURNING id",
                vehicle,
                company,
                f"k{pending}",
                pending,
            )
            for pending in (True, False)
        ]
        migration = next(m for m in migrate.load_migrations() if m.version == 151)
        await conn.execute(migration.sql)
        assert [r[0] for r in await conn.fetch("SELECT alarm_id FROM alarm_outbox")] == ids[:1]
        batches = next(m for m in migrate.load_migrations() if m.version == 154)
        await conn.execute(batches.sql)  # and on through 0154: one batch of that alarm
        assert [r[0] for r in await conn.fetch("SELECT alarm_ids FROM alarm_outbox")] == [ids[:1]]
        assert not await conn.fetchval(
            "SELECT count(*) FROM information_schema.columns "
            "WHERE table_name = 'alarms' AND column_name = 'publish_pending'"
        )
        await conn.execute(migration.sql)  # idempotent
    finally:
        await conn.close()


async def test_0154_turns_the_outbox_rows_of_0151_into_one_batch_in_their_order(
    database_url: str,
) -> None:
    """Alarms pending in the outbox of 0151 (a row per alarm, ordered by ``change_id``) are
    still published after 0154 (a row per batch), in the same order."""
    conn = await asyncpg.connect(database_url)
    try:
        company, vehicle = await _coach(conn, "0154")
        ids = [
            await conn.fetchval(
                "INSERT INTO alarms (vehicle_id, company_id, alarm_type, dedup_key, started_at)"
                " VALUES ($1, $2, 'sos', $3, now()) RETURNING id",
                vehicle,
                company,
                f"k{i}",
            )
            for i in range(3)
        ]
        # the outbox as 0151 left it, the second alarm queued first
        await conn.execute(
            "DROP TABLE alarm_outbox;"
            "CREATE TABLE alarm_outbox (alarm_id bigint PRIMARY KEY, change_id bigserial)"
        )
        for alarm_id in (ids[1], ids[0]):
            await conn.execute("INSERT INTO alarm_outbox (alarm_id) VALUES ($1)", alarm_id)
        migration = next(m for m in migrate.load_migrations() if m.version == 154)
        await conn.execute(migration.sql)
        rows = await conn.fetch("SELECT alarm_ids FROM alarm_outbox")
        assert [r["alarm_ids"] for r in rows] == [[ids[1], ids[0]]]
        pending = await pending_publications(conn)  # republished in the order they changed
        assert [a.id for a in pending.alarms] == [ids[1], ids[0]]
        await conn.execute(migration.sql)  # idempotent
        assert await conn.fetchval("SELECT count(*) FROM alarm_outbox") == 1
        await conn.execute("DELETE FROM alarm_outbox")
        await conn.execute(migration.sql)  # an empty outbox of 0151 becomes an empty one
        assert await conn.fetchval("SELECT count(*) FROM alarm_outbox") == 0
    finally:
        await conn.close()


async def test_0154_waits_for_an_outbox_row_an_older_worker_is_committing(
    database_url: str,
) -> None:
    """A rules worker older than 0154, still running during the upgrade, queues an alarm in
    the outbox of 0151 while the migration runs: the migration waits for that commit and
    carries the row over instead of dropping it with the old table."""
    worker = await asyncpg.connect(database_url)
    upgrade = await asyncpg.connect(database_url)
    try:
        await worker.execute(
            "DROP TABLE alarm_outbox;"
            "CREATE TABLE alarm_outbox (alarm_id bigint PRIMARY KEY, change_id bigserial);"
            "INSERT INTO alarm_outbox (alarm_id) VALUES (1)"
        )
        batch = worker.transaction()
        await batch.start()  # the old worker's batch: alarm 2 queued, not committed yet
        await worker.execute("INSERT INTO alarm_outbox (alarm_id) VALUES (2)")
        migration = next(m for m in migrate.load_migrations() if m.version == 154)

        async def migrate_0154() -> None:  # in a transaction, as migrate.upgrade runs it
            async with upgrade.transaction():
                await upgrade.execute(migration.sql)

        running = asyncio.create_task(migrate_0154())
        waited = "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1"
        for _ in range(100):
            if await worker.fetchval(waited, upgrade.get_server_pid()) == "Lock":
                break
            await asyncio.sleep(0.05)
        assert await worker.fetchval(waited, upgrade.get_server_pid()) == "Lock"
        await batch.commit()
        await running
        rows = await worker.fetch("SELECT alarm_ids FROM alarm_outbox")
        assert [r["alarm_ids"] for r in rows] == [[1, 2]]
    finally:
        await worker.close()
        await upgrade.close()


async def test_0152_leaves_room_for_hot_updates_of_the_rows_rewritten_all_the_time(
    database_url: str,
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        options = {
            r["relname"]: r["reloptions"]
            for r in await conn.fetch(
                "SELECT relname, reloptions FROM pg_class WHERE relname = ANY($1::text[])",
                ["rule_state", "alarms", "latest_positions"],
            )
        }
        assert options == {
            "rule_state": ["fillfactor=50"],
            "alarms": ["fillfactor=50"],
            "latest_positions": ["fillfactor=70"],
        }
    finally:
        await conn.close()


async def test_0153_keeps_every_stored_rule_state_as_text_the_worker_loads_back(
    database_url: str,
) -> None:
    """A state stored as jsonb before 0153 loads back as the same vehicle state after it, and
    the column keeps its room for HOT updates (0152)."""
    state = VehicleState(
        last=(1704844800.0, 29.5, 106.5, 40.0),
        rules={offline.NAME: offline.State(1704844800.5, 1704844800.0, 29.5, 106.5, None)},
    )
    conn = await asyncpg.connect(database_url)
    try:
        # the column as 0021-0152 left it, and a state the worker wrote then
        await conn.execute(
            "ALTER TABLE rule_state ALTER COLUMN state TYPE jsonb USING state::jsonb"
        )
        _, vehicle = await _coach(conn, "0153")
        await conn.execute(
            "INSERT INTO rule_state (vehicle_id, state) VALUES ($1, $2::jsonb)",
            vehicle,
            state_text(state),
        )
        migration = next(m for m in migrate.load_migrations() if m.version == 153)
        await conn.execute(migration.sql)
        await conn.execute(migration.sql)  # idempotent
        assert (
            await conn.fetchval(
                "SELECT data_type FROM information_schema.columns "
                "WHERE table_name = 'rule_state' AND column_name = 'state'"
            )
            == "text"
        )
        loaded, text = (await load_states(conn))[vehicle]
        assert loaded == state and text == state_text(state)
        assert await conn.fetchval(
            "SELECT reloptions FROM pg_class WHERE relname = 'rule_state'"
        ) == ["fillfactor=50"]
    finally:
        await conn.close()
