"""Numbered SQL migrations, applied idempotently by ``gps-monitor db upgrade``.

Files in ``migrations/`` are named ``NNNN_name.sql`` (both modes), ``NNNN_name.timescale.sql``
(only when the timescaledb extension is in use) or ``NNNN_name.plain.sql`` (only without it).
Each applied file is recorded in ``schema_migrations``; an advisory lock lets several services
start at once. The storage mode is chosen once, on the first upgrade, and recorded in
``schema_info``; later upgrades follow it.

After the files, :func:`apply_policies` (TimescaleDB only) sets retention and compression age
from the settings, so those can change without a migration.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources
from typing import Literal

import asyncpg

from gps_monitor.config import DatabaseSettings
from gps_monitor.errors import ConfigurationError

log = logging.getLogger(__name__)

Mode = Literal["timescale", "plain"]
_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(timescale|plain))?\.sql$")
_LOCK_KEY = 0x6770_736D  # "gpsm"


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file: version number, name, mode it is for (None = both), SQL text."""

    version: int
    name: str
    mode: Mode | None
    sql: str

    @property
    def key(self) -> str:
        return f"{self.version:04d}_{self.name}" + (f".{self.mode}" if self.mode else "")


def load_migrations() -> list[Migration]:
    """All migration files in version order (both-mode file before the mode-specific one).

    Raises:
        ConfigurationError: a file in the folder does not follow the naming scheme.
    """
    found: list[Migration] = []
    folder = resources.files("gps_monitor.db") / "migrations"
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_RE.match(entry.name)
        if match is None:
            raise ConfigurationError(
                f"migration file {entry.name!r}: expected NNNN_name[.timescale|.plain].sql"
            )
        version, name, mode = match.groups()
        found.append(Migration(int(version), name, mode, entry.read_text(encoding="utf-8")))  # type: ignore[arg-type]
    return sorted(found, key=lambda m: (m.version, m.mode is not None, m.name))


async def timescale_available(conn: asyncpg.Connection) -> bool:
    """True when the server offers the timescaledb extension."""
    row = await conn.fetchval(
        "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"
    )
    return bool(row)


async def _choose_mode(conn: asyncpg.Connection, settings: DatabaseSettings) -> Mode:
    recorded = await conn.fetchval("SELECT value FROM schema_info WHERE key = 'storage_mode'")
    if recorded is not None:
        return _as_mode(recorded)
    available = await timescale_available(conn)
    if settings.timescale == "on" and not available:
        raise ConfigurationError(
            "database.timescale=on: expected the timescaledb extension on the server, "
            "but pg_available_extensions does not list it"
        )
    mode: Mode = "timescale" if available and settings.timescale != "off" else "plain"
    if mode == "timescale":
        await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    await conn.execute("INSERT INTO schema_info (key, value) VALUES ('storage_mode', $1)", mode)
    return mode


async def table_exists(conn: asyncpg.Connection | asyncpg.Pool, table: str) -> bool:
    """True when ``table`` exists in the search path (its migration has been applied)."""
    return bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table))


async def storage_mode(conn: asyncpg.Connection) -> Mode | None:
    """The recorded storage mode, or None before the first upgrade."""
    if not await table_exists(conn, "schema_info"):
        return None
    recorded = await conn.fetchval("SELECT value FROM schema_info WHERE key = 'storage_mode'")
    return None if recorded is None else _as_mode(recorded)


def _as_mode(recorded: object) -> Mode:
    """The recorded schema_info storage_mode as a Mode.

    Raises:
        ConfigurationError: the recorded value is neither 'timescale' nor 'plain'.
    """
    if recorded == "timescale":
        return "timescale"
    if recorded == "plain":
        return "plain"
    raise ConfigurationError(
        f"schema_info.storage_mode: expected 'timescale' or 'plain', got {recorded!r}"
    )


async def upgrade(conn: asyncpg.Connection, settings: DatabaseSettings) -> list[str]:
    """Apply every migration not yet applied; returns the keys applied now (may be empty).

    Raises:
        ConfigurationError: timescale=on without the extension, or a misnamed file.
        asyncpg.PostgresError: a migration failed (its transaction is rolled back).
    """
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_info (key text PRIMARY KEY, value text NOT NULL);
            CREATE TABLE IF NOT EXISTS schema_migrations (
                key text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
            """
        )
        mode = await _choose_mode(conn, settings)
        log.info("database storage mode: %s", mode)
        done = {r["key"] for r in await conn.fetch("SELECT key FROM schema_migrations")}
        applied: list[str] = []
        for migration in load_migrations():
            if migration.mode not in (None, mode) or migration.key in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute("INSERT INTO schema_migrations (key) VALUES ($1)", migration.key)
            applied.append(migration.key)
            log.info("applied migration %s", migration.key)
        if mode == "timescale":
            await apply_policies(conn, settings)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)


# Continuous-aggregate refresh window and cadence: the policy re-materialises the last 35 local
# days (late blind-area uploads of up to a month land in a refreshed bucket) up to 1 hour ago,
# every 30 minutes; newer data is added at query time (real-time aggregation).
CAGG_REFRESH_START_OFFSET = timedelta(days=35)
CAGG_REFRESH_END_OFFSET = timedelta(hours=1)
CAGG_REFRESH_SCHEDULE = timedelta(minutes=30)


async def _has_job(
    conn: asyncpg.Connection, proc: str, table: str, match_sql: str, *args: object
) -> bool:
    """True when exactly one ``proc`` job exists on ``table`` and its row satisfies
    ``match_sql``: a boolean SQL expression over the ``timescaledb_information.jobs`` columns
    (``config``, ``schedule_interval``) whose parameters start at $3 ($1, $2 = proc, table)."""
    rows = await conn.fetch(
        f"SELECT ({match_sql}) AS same FROM timescaledb_information.jobs "
        "WHERE proc_name = $1 AND hypertable_name = $2",
        proc,
        table,
        *args,
    )
    return len(rows) == 1 and bool(rows[0]["same"])


async def apply_policies(conn: asyncpg.Connection, settings: DatabaseSettings) -> None:
    """TimescaleDB policies from the settings: compression age, retention, aggregate refresh.

    A policy already in place with the wanted configuration is left alone (its schedule and
    statistics survive a re-run); a missing or different one is replaced. One transaction.

    Shapes: ``settings.compress_after_days`` (days) -> ``compress_after`` on ``positions`` and
    ``raw_messages``; ``settings.retention_months`` (months) -> ``drop_after`` on both; the
    ``vehicle_daily`` and ``vehicle_day_kpi`` refreshes use the CAGG_REFRESH_* constants.
    """
    async with conn.transaction():
        for table in ("positions", "raw_messages"):
            if await _has_job(
                conn,
                "policy_compression",
                table,
                "(config->>'compress_after')::interval = make_interval(days => $3)",
                settings.compress_after_days,
            ):
                continue
            await conn.execute(f"SELECT remove_compression_policy('{table}', if_exists => true)")
            await conn.execute(
                f"SELECT add_compression_policy('{table}', make_interval(days => $1))",
                settings.compress_after_days,
            )
        for table in ("positions", "raw_messages"):
            if await _has_job(
                conn,
                "policy_retention",
                table,
                "(config->>'drop_after')::interval = make_interval(months => $3)",
                settings.retention_months,
            ):
                continue
            await conn.execute(f"SELECT remove_retention_policy('{table}', if_exists => true)")
            await conn.execute(
                f"SELECT add_retention_policy('{table}', make_interval(months => $1))",
                settings.retention_months,
            )
        for view in ("vehicle_daily", "vehicle_day_kpi"):
            if await _has_job(
                conn,
                "policy_refresh_continuous_aggregate",
                view,
                "(config->>'start_offset')::interval = $3::interval "
                "AND (config->>'end_offset')::interval = $4::interval "
                "AND schedule_interval = $5::interval",
                CAGG_REFRESH_START_OFFSET,
                CAGG_REFRESH_END_OFFSET,
                CAGG_REFRESH_SCHEDULE,
            ):
                continue
            await conn.execute(
                f"SELECT remove_continuous_aggregate_policy('{view}', if_not_exists => true)"
            )
            await conn.execute(
                f"SELECT add_continuous_aggregate_policy('{view}', "
                "start_offset => $1::interval, end_offset => $2::interval, "
                "schedule_interval => $3::interval)",
                CAGG_REFRESH_START_OFFSET,
                CAGG_REFRESH_END_OFFSET,
                CAGG_REFRESH_SCHEDULE,
            )
