"""``gps-monitor jt809``: run the lower-platform JT/T 809 service (settings
``GPS_MONITOR_JT809_*``) until interrupted; SIGINT/SIGTERM send 0x1003 and close the links."""

from __future__ import annotations

import argparse

from gps_monitor.config import Settings
from gps_monitor.service import run_until_signal, upgrade_schema
from jt809.service import check_settings, serve


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-upgrade", action="store_true", help="do not apply pending database migrations"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    check_settings(settings)

    async def main() -> None:
        if not args.no_upgrade:
            await upgrade_schema(settings.database)
        await serve(settings)

    return run_until_signal(main())
