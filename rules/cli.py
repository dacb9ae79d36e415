"""``gps-monitor rules``: run the rules service (accepted positions in, alarms out) until
interrupted. See :mod:`rules.worker`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from gps_monitor.config import Settings
from gps_monitor.db import migrate
from gps_monitor.db.pool import connect
from gps_monitor.mqtt import require_host
from rules.worker import serve


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-upgrade",
        action="store_true",
        help="do not apply pending database migrations at start",
    )


async def _main(settings: Settings, upgrade: bool) -> None:
    require_host(settings.mqtt)
    if upgrade:
        conn = await connect(settings.database)
        try:
            await migrate.upgrade(conn, settings.database)
        finally:
            await conn.close()
    task = asyncio.create_task(serve(settings))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def run(args: argparse.Namespace, settings: Settings) -> int:
    asyncio.run(_main(settings, upgrade=not args.no_upgrade))
    return 0
