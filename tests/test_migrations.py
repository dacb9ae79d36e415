from __future__ import annotations

import asyncpg

from gps_monitor.config import DatabaseSettings
from gps_monitor.db import migrate


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
