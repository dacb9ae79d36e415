"""The ``gps-monitor`` command.

Each subcommand lives in the module of the concern it belongs to and exposes two functions:
``add_arguments(parser)`` and ``run(args, settings) -> int`` (exit code). The table below is the
whole command list; modules are imported by name so the core does not import the services.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from types import TracebackType
from urllib.parse import urlsplit

import aiomqtt
import asyncpg
import pydantic

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
    ("jt809", "jt809.cli", "forward positions and alarms to the superior platform (JT/T 809)"),
    ("jt809-sim", "jt809.sim", "a simulated JT/T 809 superior platform (tests, demo)"),
    ("report", "web.reports.cli", "reports: `report evidence`, `report kpi`"),
    ("hold", "gps_monitor.db.holds_cli", "legal holds: `hold seal`, `hold list`, `hold release`"),
    ("retention", "gps_monitor.db.retention", "delete data past retention, never sealed data"),
    ("web", "web.cli", "serve the live map, REST API and websocket feed"),
    ("user", "web.user_cli", "web users: `user create NAME --role ...`"),
    ("rules", "rules.cli", "run the rules engine service (positions in, alarms out)"),
    ("notify", "notify.cli", "push alarms to 企业微信/钉钉/飞书 robots, webhooks, e-mail, SMS"),
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


# The database cannot be used at all: the server is down, the database or role does not exist,
# the password is wrong, the server refuses connections or the URL is malformed.
DATABASE_UNUSABLE: tuple[type[BaseException], ...] = (
    asyncpg.InvalidCatalogNameError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.PostgresConnectionError,
    asyncpg.ClientConfigurationError,
)


def settings_problem(error: pydantic.ValidationError) -> str:
    """One line per invalid setting, named by its environment variable, e.g.
    ``GPS_MONITOR_MQTT_PORT: expected a valid integer, unable to parse ..., got 'abc'``."""
    lines = []
    for item in error.errors():
        variable = "GPS_MONITOR_" + "_".join(str(part) for part in item["loc"]).upper()
        message = item["msg"]
        if message.startswith("Input should be "):
            message = "expected " + message.removeprefix("Input should be ")
        lines.append(f"{variable}: {message}, got {item.get('input')!r}")
    return "invalid settings: " + "; ".join(lines)


def _redacted(url: str | None) -> str:
    """``url`` without its password (``postgresql://user:***@host:port/db``)."""
    if not url:
        return "(unset)"
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _raised_in(traceback: TracebackType | None, package: str) -> bool:
    """Whether any frame of ``traceback`` runs code of ``package`` (e.g. ``asyncpg``)."""
    while traceback is not None:
        module = traceback.tb_frame.f_globals.get("__name__", "")
        if module == package or module.startswith(package + "."):
            return True
        traceback = traceback.tb_next
    return False


def _describe(error: BaseException) -> str:
    """``error`` as a short phrase; an OS error leads with its plain reason (``Connection
    refused``), which asyncio's messages leave out."""
    if isinstance(error, OSError) and error.errno and error.strerror != str(error):
        return f"{os.strerror(error.errno)} ({error})"
    return str(error)


def environment_problem(error: BaseException, settings: Settings) -> str | None:
    """The user-facing explanation of ``error`` when it comes from the environment (database or
    broker unreachable, a file that cannot be written, settings invalid), else ``None``: a genuine
    bug, whose traceback must be shown."""
    database = f"database {_redacted(settings.database.url)}"
    if isinstance(error, DATABASE_UNUSABLE):
        return f"{database}: expected a reachable, existing database, got {error}"
    if isinstance(error, OSError) and _raised_in(error.__traceback__, "asyncpg"):
        return f"{database}: expected a reachable PostgreSQL server, got {_describe(error)}"
    if isinstance(error, aiomqtt.MqttError):
        broker = f"{settings.mqtt.host}:{settings.mqtt.port}"
        return f"MQTT broker {broker}: expected a reachable broker, got {error}"
    if isinstance(error, OSError):
        return _describe(error)
    if isinstance(error, pydantic.ValidationError) and error.title == "Settings":
        return settings_problem(error)
    return None


def main(argv: Sequence[str] | None = None, settings: Settings | None = None) -> int:
    """Entry point of the console script; returns the exit code.

    Exit codes: 0 success, 1 a service failed, 2 bad input or configuration (message on stderr):
    a :class:`GpsMonitorError`, invalid ``GPS_MONITOR_*`` settings, a database or MQTT broker
    that cannot be reached, a file that cannot be read or written. Any other exception is a bug
    and keeps its traceback.
    """
    args = build_parser().parse_args(argv)
    if settings is None:
        try:
            settings = get_settings()
        except pydantic.ValidationError as error:
            print(f"gps-monitor {args.command}: {settings_problem(error)}", file=sys.stderr)
            return 2
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
    except Exception as error:
        problem = environment_problem(error, settings)
        if problem is None:
            raise
        print(f"gps-monitor {args.command}: {problem}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
