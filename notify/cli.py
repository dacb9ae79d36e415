"""``gps-monitor notify``: push alarms to the subscribed channels until interrupted. See
:mod:`notify.worker`.

Exit 2 with the setting or channel named when the SMTP or SMS gateway settings or an enabled
channel are unusable (unknown kind, malformed URL, missing secret...). ``--check`` validates and
exits 0 without consuming.
"""

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
    parser.add_argument(
        "--check",
        action="store_true",
        help="check the settings and every enabled channel, print a summary and exit",
    )


async def serve(
    settings: Settings, ready: asyncio.Event | None = None, *, upgrade: bool = False
) -> None:
    """Run the notify worker until cancelled; ``ready`` is set once it is subscribed (the
    service entry point ``gps-monitor demo`` starts).

    Raises:
        ConfigurationError: no database URL or (on the MQTT transport) broker host, or an
            unusable setting or channel.
    """
    from notify.worker import NotifyWorker

    if settings.bus.transport == "mqtt":  # on nats it reads JetStream (bus.nats_url)
        require_host(settings.mqtt)
    if upgrade:
        await upgrade_schema(settings.database)
    worker = NotifyWorker(settings)
    async with relay_ready(worker.ready, ready):
        await worker.run()


async def check(settings: Settings, upgrade: bool) -> None:
    """Validate settings and channels (raises ConfigurationError) and print what would run."""
    from notify.worker import NotifyWorker

    if upgrade:
        await upgrade_schema(settings.database)
    worker = NotifyWorker(settings)
    try:
        await worker.start()
        for sender in worker.senders.values():
            print(f"ok: {sender}")
        print(f"{len(worker.senders)} channel(s), {len(worker.subscriptions)} subscription(s)")
    finally:
        await worker.close()


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.check:
        asyncio.run(check(settings, upgrade=not args.no_upgrade))
        return 0
    return run_until_signal(serve(settings, upgrade=not args.no_upgrade))
