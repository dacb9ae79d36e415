"""``gps-monitor db upgrade|status``."""

from __future__ import annotations

import argparse
import asyncio

from gps_monitor.config import Settings
from gps_monitor.db import migrate
from gps_monitor.db.pool import connect


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["upgrade", "status"])


async def _run(action: str, settings: Settings) -> int:
    conn = await connect(settings.database)
    try:
        if action == "upgrade":
            applied = await migrate.upgrade(conn, settings.database)
            mode = await migrate.storage_mode(conn)
            print(f"storage mode: {mode}; applied {len(applied)} migration(s)")
            for key in applied:
                print(f"  {key}")
        else:
            mode = await migrate.storage_mode(conn)
            rows = (
                await conn.fetch("SELECT key, applied_at FROM schema_migrations ORDER BY key")
                if mode
                else []
            )
            print(f"storage mode: {mode or 'not initialised'}")
            for row in rows:
                print(f"  {row['key']}  {row['applied_at']:%Y-%m-%d %H:%M:%S%z}")
        return 0
    finally:
        await conn.close()


def run(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_run(args.action, settings))
