"""``gps-monitor rules``: run the rules service (accepted positions in, alarms out) until
interrupted. See :mod:`rules.worker`."""

from __future__ import annotations

import argparse

from gps_monitor.config import Settings
from gps_monitor.mqtt import require_host
from gps_monitor.service import pace_gc_for_throughput, run_until_signal, upgrade_schema
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
        await upgrade_schema(settings.database)
    await serve(settings)


def run(args: argparse.Namespace, settings: Settings) -> int:
    pace_gc_for_throughput()
    return run_until_signal(_main(settings, upgrade=not args.no_upgrade))
