"""``gps-monitor ingest``: run the MQTT ingest worker until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from gps_monitor.config import Settings
from gps_monitor.db import migrate
from gps_monitor.db.pool import connect
from gps_monitor.mqtt import require_host


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-upgrade",
        action="store_true",
        help="do not apply pending database migrations at start",
    )


async def serve(
    settings: Settings, ready: asyncio.Event | None = None, *, upgrade: bool = False
) -> None:
    """Run the ingest worker until cancelled; ``ready`` is set once it is subscribed.

    This is the service entry point ``gps-monitor demo`` starts (see ``SERVICES`` there).

    Raises:
        ConfigurationError: no database URL or broker host configured.
    """
    from ingest.worker import IngestWorker

    require_host(settings.mqtt)
    if upgrade:
        conn = await connect(settings.database)
        try:
            await migrate.upgrade(conn, settings.database)
        finally:
            await conn.close()
    worker = IngestWorker(settings)
    waiter: asyncio.Task[bool] | None = None
    if ready is not None:
        waiter = asyncio.create_task(worker.ready.wait())
        waiter.add_done_callback(lambda t: None if t.cancelled() else ready.set())
    try:
        await worker.run()
    finally:
        if waiter is not None:
            waiter.cancel()


async def _main(settings: Settings, upgrade: bool) -> None:
    task = asyncio.create_task(serve(settings, upgrade=upgrade))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def run(args: argparse.Namespace, settings: Settings) -> int:
    asyncio.run(_main(settings, upgrade=not args.no_upgrade))
    return 0
