"""The ``gps-monitor`` command.

Each subcommand lives in the module of the concern it belongs to and exposes two functions:
``add_arguments(parser)`` and ``run(args, settings) -> int`` (exit code). The table below is the
whole command list; modules are imported by name so the core does not import the services.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from gps_monitor.config import Settings, get_settings
from gps_monitor.errors import GpsMonitorError

# (command, module, one-line help)
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("db", "gps_monitor.db.cli", "database schema: `db upgrade`, `db status`"),
    ("ingest", "ingest.cli", "run the MQTT ingest worker"),
    ("replay", "ingest.replay", "publish a track file over MQTT as simulated terminals"),
    ("demo", "gps_monitor.demo", "run the whole system on the shipped demo data"),
    ("jt808", "ingest.jt808.cli", "run the JT/T 808 TCP gateway (terminals -> MQTT)"),
    ("jt808-sim", "ingest.jt808.sim", "simulated JT/T 808 terminals sending a track file"),
    ("report", "web.reports.cli", "reports: `report evidence`, `report kpi`"),
    ("hold", "gps_monitor.db.holds_cli", "legal holds: `hold seal`, `hold list`, `hold release`"),
    ("retention", "gps_monitor.db.retention", "delete data past retention, never sealed data"),
    ("web", "web.cli", "serve the live map, REST API and websocket feed"),
    ("user", "web.user_cli", "web users: `user create NAME --role ...`"),
    ("rules", "rules.cli", "run the rules engine service (positions in, alarms out)"),
    ("evaluate", "rules.evaluate", "run the rules engine offline over a track file"),
    ("geofence", "rules.fences_cli", "geofences: `geofence import|export|assign|list|delete`"),
    ("route", "rules.fences_cli", "routes: `route import|export|assign|list|delete`"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gps-monitor",
        description="Real-time vehicle GPS monitoring (MQTT ingest, rules, live map, reports).",
    )
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name, help_text in COMMANDS:
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None, settings: Settings | None = None) -> int:
    """Entry point of the console script; returns the exit code.

    Exit codes: 0 success, 1 a service failed, 2 bad input or configuration (message on stderr).
    """
    args = build_parser().parse_args(argv)
    settings = settings or get_settings()
    logging.basicConfig(
        level=(args.log_level or settings.log_level).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args._run(args, settings) or 0)
    except GpsMonitorError as error:
        print(f"gps-monitor {args.command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
