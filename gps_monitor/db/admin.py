"""Server-level administration through an admin connection (a connection to another database
of the same server): which database we are on, whether one exists, creating and recreating
one. Used by ``gps-monitor demo`` and its embedded PostgreSQL (:mod:`gps_monitor.embedded`).
"""

from __future__ import annotations

import asyncpg

from gps_monitor.errors import ConfigurationError


async def current_database(conn: asyncpg.Connection) -> str:
    """The name of the database ``conn`` is connected to."""
    return str(await conn.fetchval("SELECT current_database()"))


async def database_exists(admin: asyncpg.Connection, name: str) -> bool:
    """True when the server has a database called ``name``."""
    return bool(await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))


async def create_database(admin: asyncpg.Connection, name: str) -> None:
    """Create an empty database ``name`` (asyncpg errors as raised: it exists, no right)."""
    await admin.execute(f'CREATE DATABASE "{name}"')


async def recreate_database(admin: asyncpg.Connection, name: str) -> None:
    """Drop database ``name`` when it exists and create it empty, through ``admin`` (a
    connection to another database of the same server).

    Raises:
        ConfigurationError: another session is connected to ``name`` (another demo running?),
            or the role may not drop or create it.
    """
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await create_database(admin, name)
    except asyncpg.ObjectInUseError as error:
        raise ConfigurationError(
            f"database {name}: expected no other session on it (the demo recreates it each run), "
            f"got {error} (is another `gps-monitor demo` running?)"
        ) from error
    except asyncpg.InsufficientPrivilegeError as error:
        raise ConfigurationError(
            f"database {name}: expected the right to drop and create it (the demo recreates it "
            f"each run), got {error}"
        ) from error
