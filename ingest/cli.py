"""``gps-monitor ingest``: run the MQTT ingest worker until interrupted."""

from __future__ import annotations

import argparse
import asyncio

from gps_monitor.config import Settings
from gps_monitor.mqtt import require_host
from gps_monitor.service import relay_ready, run_until_signal, upgrade_schema


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
        await upgrade_schema(settings.database)
    worker = IngestWorker(settings)
    async with relay_ready(worker.ready, ready):
        await worker.run()


def run(args: argparse.Namespace, settings: Settings) -> int:
    return run_until_signal(serve(settings, upgrade=not args.no_upgrade))
