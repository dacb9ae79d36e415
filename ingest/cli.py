"""``gps-monitor ingest``: run the MQTT ingest worker and the command dispatcher
(:mod:`ingest.commands`) until interrupted."""

from __future__ import annotations

import argparse
import asyncio

from gps_monitor.config import Settings
from gps_monitor.mqtt import require_host
from gps_monitor.service import (
    pace_gc_for_throughput,
    relay_ready,
    run_until_signal,
    upgrade_schema,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-upgrade",
        action="store_true",
        help="do not apply pending database migrations at start",
    )


async def serve(
    settings: Settings, ready: asyncio.Event | None = None, *, upgrade: bool = False
) -> None:
    """Run the ingest worker and the command dispatcher until cancelled; ``ready`` is set once
    both are subscribed.

    This is the service entry point ``gps-monitor demo`` starts (see ``SERVICES`` there).

    Raises:
        ConfigurationError: no database URL or broker host configured.
    """
    from ingest.commands import CommandDispatcher
    from ingest.worker import IngestWorker

    require_host(settings.mqtt)
    if upgrade:
        await upgrade_schema(settings.database)
    worker = IngestWorker(settings)
    dispatcher = CommandDispatcher(settings)
    both_ready = asyncio.Event()

    async def wait_both() -> None:
        await worker.ready.wait()
        await dispatcher.ready.wait()
        both_ready.set()

    tasks = [
        asyncio.create_task(worker.run()),
        asyncio.create_task(dispatcher.run()),
        asyncio.create_task(wait_both()),
    ]
    async with relay_ready(both_ready, ready):
        try:
            # the first to fail ends both, with its own exception (the CLI maps it)
            done, _ = await asyncio.wait(tasks[:2], return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def run(args: argparse.Namespace, settings: Settings) -> int:
    pace_gc_for_throughput()
    return run_until_signal(serve(settings, upgrade=not args.no_upgrade))
