"""Rules engine benchmarks; prints figures, asserts nothing.

1. ``engine``: the pure engine alone (one process, one core) over ``--vehicles`` vehicles
   (default 10,000) driving around Beijing among ``--geofences`` geofences (default 1,000:
   polygons with holes, circles, corridors; forbidden / keep-in / speed zones / watch) and
   ``--routes`` routes (default 100, each assigned to a tenth of the vehicles): positions per
   second per core.
2. ``live``: a real ``gps-monitor rules`` process on the real broker and a scratch database,
   fed ``--rate`` positions/s (default 5,000) on the accepted-positions topics for
   ``--seconds`` s; every vehicle's SOS bit toggles every ``--sos-every`` fixes, so alarms open
   and close all along; latency = alarm message received - the publish of the message carrying
   the fix that raised it (p50 / p99).

3. ``steps``: the rules worker's own steps per CPU-second without a broker, over the ``engine``
   world, batch by batch (``--batch`` positions, one per vehicle): ``decode`` (the accepted
   payload, :mod:`gps_monitor.accepted`, back to positions), ``evaluate``
   (``Engine.process``), ``state`` (``rules.state``: the JSON text of each changed vehicle
   state) and, unless ``--no-db``, ``save`` (``rules.state.save_states`` into a scratch
   database: this process's CPU and the database backend's, read from /proc); ``encode`` (the
   ingest side: ``accepted.encode`` of the batch) is shown apart. Best of ``--repeat`` runs,
   the garbage collector paced as ``gps-monitor rules`` paces it (``--gc default``: CPython's).

4. ``tick``: the live worker's offline timer (``RulesWorker._tick``, every 5 s; it judges its
   candidates under the lock that the batches take) over ``--vehicles`` registered vehicles
   (default 10,000) of which
   ``--silent`` (default 1 %) went quiet 10 min ago and the rest were heard 2 s ago, in a scratch
   database: wall ms per tick, first (opens the silent ones' offline alarms) and then the median
   of ``--repeat`` ticks (nothing new), with this process's and the database backend's CPU.

    .venv/bin/python benchmarks/rules.py engine --positions 200000
    .venv/bin/python benchmarks/rules.py live --rate 5000 --seconds 10
    .venv/bin/python benchmarks/rules.py steps --vehicles 2000 --positions 40000
    .venv/bin/python benchmarks/rules.py tick --vehicles 10000

``live`` and ``tick`` need PostgreSQL (GPS_MONITOR_TEST_DATABASE_URL, default
postgresql://postgres@127.0.0.1:5432/postgres) and Mosquitto (127.0.0.1:1883).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shapely.geometry import LineString, Point, Polygon

from gps_monitor.config import QualitySettings, RulesSettings
from gps_monitor.geofences import Geofence, GeofenceKind, Route
from gps_monitor.models import Position
from rules.context import GeoContext, LocalClock, RuleContext, VehicleProfile
from rules.engine import Engine, VehicleState

LAT0, LON0 = 39.75, 116.15  # south-west corner of a ~50 km x 50 km box over Beijing
SPAN_DEG = 0.5
M_PER_DEG_LAT = 111_195.0
_PLACEHOLDER_TIME = datetime(2000, 1, 1, tzinfo=UTC)
_PLACEHOLDER_ISO = _PLACEHOLDER_TIME.isoformat()
CLASSES = ("freight", "heavy_truck", "hazmat", "coach", "tour_bus")


def _m_to_deg_lon(m: float, lat: float) -> float:
    return m / (M_PER_DEG_LAT * math.cos(math.radians(lat)))


def make_geofences(n: int, rng: random.Random) -> list[Geofence]:
    kinds = [
        GeofenceKind.FORBIDDEN,
        GeofenceKind.KEEP_IN,
        GeofenceKind.SPEED_ZONE,
        GeofenceKind.WATCH,
    ]
    out: list[Geofence] = []
    for i in range(n):
        lat = LAT0 + rng.random() * SPAN_DEG
        lon = LON0 + rng.random() * SPAN_DEG
        kind = kinds[i % 4] if i % 50 else GeofenceKind.KEEP_IN
        if kind is GeofenceKind.KEEP_IN and i % 50:
            kind = GeofenceKind.WATCH
        shape = i % 3
        size_m = rng.uniform(200, 1500)
        common = {
            "id": f"g{i}",
            "name": f"fence {i}",
            "kind": kind,
            "speed_limit_kmh": 40.0 if kind is GeofenceKind.SPEED_ZONE else None,
        }
        if kind is GeofenceKind.KEEP_IN:  # a few big keep-in areas (every vehicle checks them)
            r = 0.4
            geom = Polygon(
                [
                    (LON0 - 0.1, LAT0 - 0.1),
                    (LON0 + r + 0.2, LAT0 - 0.1),
                    (LON0 + r + 0.2, LAT0 + r + 0.2),
                    (LON0 - 0.1, LAT0 + r + 0.2),
                ]
            )
            # assigned to a twentieth of the vehicles each (keep-in areas are per vehicle)
            assigned = frozenset(range(i // 50, 10_000, 20))
            out.append(
                Geofence(geometry=geom, vehicle_classes=("hazmat",), vehicle_ids=assigned, **common)
            )
            continue
        if shape == 0:
            dlat = size_m / M_PER_DEG_LAT
            dlon = _m_to_deg_lon(size_m, lat)
            outer = [(lon, lat), (lon + dlon, lat), (lon + dlon, lat + dlat), (lon, lat + dlat)]
            hole = [
                (lon + dlon * 0.4, lat + dlat * 0.4),
                (lon + dlon * 0.6, lat + dlat * 0.4),
                (lon + dlon * 0.6, lat + dlat * 0.6),
                (lon + dlon * 0.4, lat + dlat * 0.6),
            ]
            out.append(Geofence(geometry=Polygon(outer, [hole]), **common))
        elif shape == 1:
            out.append(Geofence(geometry=Point(lon, lat), radius_m=size_m / 2, **common))
        else:
            end = (lon + _m_to_deg_lon(size_m * 2, lat), lat + size_m / M_PER_DEG_LAT)
            out.append(Geofence(geometry=LineString([(lon, lat), end]), corridor_m=50, **common))
    return out


def make_routes(n: int, vehicles: int, rng: random.Random) -> list[Route]:
    routes = []
    for i in range(n):
        lat = LAT0 + rng.random() * SPAN_DEG
        lon = LON0 + rng.random() * SPAN_DEG
        points = [(lon, lat)]
        for _ in range(30):
            lon += _m_to_deg_lon(rng.uniform(200, 800), lat)
            lat += rng.uniform(-300, 300) / M_PER_DEG_LAT
            points.append((lon, lat))
        routes.append(
            Route(
                id=f"r{i}",
                name=f"route {i}",
                line=LineString(points),
                corridor_m=100,
                speed_limit_kmh=80,
                vehicle_ids=frozenset(range(i, vehicles, n)),
            )
        )
    return routes


def make_tracks(vehicles: int, per_vehicle: int, rng: random.Random) -> list[list[Position]]:
    start = datetime(2024, 1, 10, 0, 0, tzinfo=UTC)
    tracks = []
    for v in range(vehicles):
        lat = LAT0 + rng.random() * SPAN_DEG
        lon = LON0 + rng.random() * SPAN_DEG
        heading = rng.uniform(0, 2 * math.pi)
        speed = rng.uniform(20, 110)
        t = start + timedelta(seconds=rng.uniform(0, 30))
        track = []
        for _ in range(per_vehicle):
            t += timedelta(seconds=10)
            heading += rng.uniform(-0.3, 0.3)
            speed = min(130.0, max(0.0, speed + rng.uniform(-8, 8)))
            step = speed / 3.6 * 10
            lat += step * math.cos(heading) / M_PER_DEG_LAT
            lon += _m_to_deg_lon(step * math.sin(heading), lat)
            track.append(
                Position(
                    terminal_id=f"T{v}",
                    fix_time=t,
                    latitude=lat,
                    longitude=lon,
                    speed_kmh=speed,
                    vehicle_id=v,
                    company_id=1,
                )
            )
        tracks.append(track)
    return tracks


def make_world(
    args: argparse.Namespace,
) -> tuple[list[Geofence], list[Route], list[list[Position]], list[RuleContext]]:
    """The geofences, routes, tracks and per-vehicle rule contexts of ``args``."""
    rng = random.Random(42)
    per_vehicle = max(1, args.positions // args.vehicles)
    fences = make_geofences(args.geofences, rng)
    routes = make_routes(args.routes, args.vehicles, rng)
    tracks = make_tracks(args.vehicles, per_vehicle, rng)
    geo = GeoContext(fences, routes)
    settings, quality = RulesSettings(), QualitySettings()
    local = LocalClock(settings.timezone)
    route_of: dict[int, tuple[str, ...]] = {}
    for r in routes:
        for v in r.vehicle_ids:
            route_of.setdefault(v, ())
            route_of[v] += (r.id,)
    contexts = [
        RuleContext(
            vehicle=VehicleProfile(
                vehicle_id=v,
                company_id=1,
                terminal_id=f"T{v}",
                vehicle_class=CLASSES[v % len(CLASSES)],
                route_ids=route_of.get(v, ()),
            ),
            settings=settings,
            quality=quality,
            geo=geo,
            local=local,
        )
        for v in range(args.vehicles)
    ]
    return fences, routes, tracks, contexts


def bench_engine(args: argparse.Namespace) -> None:
    per_vehicle = max(1, args.positions // args.vehicles)
    t0 = time.perf_counter()
    fences, routes, tracks, contexts = make_world(args)
    setup_s = time.perf_counter() - t0
    engine = Engine()
    states = [VehicleState() for _ in range(args.vehicles)]
    # interleave vehicles as a live feed would (round-robin by fix index)
    total = 0
    alarms = 0
    # warm-up: each vehicle's first fix (builds the zone indexes, cell caches and per-vehicle
    # caches once); reported apart, the steady state is what a running service sees
    t1 = time.perf_counter()
    for v in range(args.vehicles):
        states[v], _ = engine.process(states[v], tracks[v][0], contexts[v])
    warm_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    cpu2 = time.process_time()
    for i in range(1 if per_vehicle > 1 else 0, per_vehicle):
        for v in range(args.vehicles):
            states[v], out = engine.process(states[v], tracks[v][i], contexts[v])
            alarms += len(out)
            total += 1
    elapsed = time.perf_counter() - t2
    cpu = time.process_time() - cpu2
    print(f"engine: {args.vehicles} vehicles, {len(fences)} geofences, {len(routes)} routes")
    print(
        f"  setup (synthetic data) {setup_s:.1f} s; warm-up (first fix of every vehicle: "
        f"indexes and caches) {warm_s:.2f} s"
    )
    print(f"  {total} positions in {elapsed:.2f} s wall = {total / elapsed:,.0f} positions/s")
    print(
        f"  CPU time {cpu:.2f} s = {total / cpu:,.0f} positions per CPU-second (one core; "
        "the figure that does not depend on other load on a shared machine)"
    )
    print(f"  {alarms} alarm events; rule errors: {engine.errors}")
    state_bytes = sum(len(json.dumps(s.to_json())) for s in states) / len(states)
    print(f"  mean state size {state_bytes:.0f} bytes of JSON per vehicle")


# --- steps ----------------------------------------------------------------------------------


def bench_steps(args: argparse.Namespace) -> None:
    from gps_monitor import accepted
    from gps_monitor.service import pace_gc_for_throughput
    from rules.state import state_text

    if args.gc == "worker":
        pace_gc_for_throughput()

    per_vehicle = max(2, args.positions // args.vehicles)
    args.positions = per_vehicle * args.vehicles
    _, _, tracks, contexts = make_world(args)
    received = datetime(2024, 1, 10, tzinfo=UTC)
    # the accepted positions as ingest stores them (vehicle, company, verdict, arrival)
    tracks = [[p.evolve(received_at=received) for p in track] for track in tracks]
    engine = Engine()
    # round by round over the vehicles, cut into batches of --batch positions
    feed = [tracks[v][i] for i in range(per_vehicle) for v in range(args.vehicles)]
    warm, feed = feed[: args.vehicles], feed[args.vehicles :]
    batches = [feed[i : i + args.batch] for i in range(0, len(feed), args.batch)]
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} at start; gc {args.gc}")
    best: dict[str, float] = {}
    saved: list[list[tuple[int, VehicleState]]] = []
    for _ in range(args.repeat):
        states = [VehicleState() for _ in range(args.vehicles)]
        for p in warm:
            v = p.vehicle_id
            assert v is not None
            states[v], _ = engine.process(states[v], p, contexts[v])
        written: dict[int, str] = {}
        cpu = dict.fromkeys(("encode", "decode", "evaluate", "state"), 0.0)
        saved = []
        gc.collect()
        for batch in batches:
            c0 = time.process_time()
            payload = accepted.encode(batch)
            c1 = time.process_time()
            positions = accepted.parse_positions(payload)
            c2 = time.process_time()
            changed: dict[int, VehicleState] = {}
            for p in positions:
                v = p.vehicle_id
                assert v is not None
                if engine.order(states[v], p) == "new":
                    states[v], _ = engine.process(states[v], p, contexts[v])
                    changed[v] = states[v]
            c3 = time.process_time()
            for v, state in changed.items():
                text = state_text(state)
                if written.get(v) != text:
                    written[v] = text
            c4 = time.process_time()
            cpu["encode"] += c1 - c0
            cpu["decode"] += c2 - c1
            cpu["evaluate"] += c3 - c2
            cpu["state"] += c4 - c3
            saved.append(list(changed.items()))
        for k, v in cpu.items():
            best[k] = min(best.get(k, float("inf")), v)
    n = len(feed)
    print(f"steps: {args.vehicles} vehicles, {n} positions in batches of {args.batch}")
    for k in ("decode", "evaluate", "state"):
        print(f"  {k:<18} {n / best[k]:>10,.0f} positions/CPU-s")
    total = best["decode"] + best["evaluate"] + best["state"]
    print(f"  {'decode+eval+state':<18} {n / total:>10,.0f} positions/CPU-s")
    print(f"  (ingest side) encode {n / best['encode']:>10,.0f} positions/CPU-s")
    if not args.no_db:
        asyncio.run(_bench_save(saved, n))
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} at end")


@contextlib.asynccontextmanager
async def _scratch_database(vehicle_ids: Iterable[int]) -> AsyncIterator[tuple[str, Any]]:
    """A fresh migrated database (plain PostgreSQL mode) on GPS_MONITOR_TEST_DATABASE_URL's
    server with ``vehicle_ids`` registered as freight vehicles of one company (terminal
    ``T{id}``): yields its name and :class:`DatabaseSettings`; dropped afterwards."""
    import asyncpg

    from gps_monitor.config import DatabaseSettings
    from gps_monitor.db import migrate
    from gps_monitor.db.pool import connect

    admin_url = os.environ.get(
        "GPS_MONITOR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    name = f"gpsm_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    try:
        settings = DatabaseSettings(url=admin_url.rpartition("/")[0] + "/" + name, timescale="off")
        conn = await connect(settings)
        try:
            await migrate.upgrade(conn, settings)
            company = await conn.fetchval(
                "INSERT INTO companies (name) VALUES ('bench') RETURNING id"
            )
            await conn.copy_records_to_table(
                "vehicles",
                records=[(v, company, f"B{v:07d}", "freight", f"T{v}") for v in vehicle_ids],
                columns=("id", "company_id", "plate_number", "vehicle_class", "terminal_id"),
            )
        finally:
            await conn.close()
        yield name, settings
    finally:
        admin = await asyncpg.connect(admin_url)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def _bench_save(saved: list[list[tuple[int, VehicleState]]], positions: int) -> None:
    """``save_states`` of every batch's changed states into a scratch database."""
    import psutil

    from gps_monitor.db.pool import connect
    from rules.state import save_states

    async with _scratch_database({v for batch in saved for v, _ in batch}) as (_, settings):
        conn = await connect(settings)
        backend = psutil.Process(await conn.fetchval("SELECT pg_backend_pid()"))
        written: dict[int, str] = {}
        rows = 0
        server0 = sum(backend.cpu_times()[:2])
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for batch in saved:
            async with conn.transaction():
                new = await save_states(conn, dict(batch), written)
            written.update(new)
            rows += len(new)
        cpu = time.process_time() - cpu0
        wall = time.perf_counter() - wall0
        server = sum(backend.cpu_times()[:2]) - server0
        await conn.close()
    print(f"  save_states: {rows} rows written for {positions} positions (one run)")
    print(f"    this process {positions / cpu:>10,.0f} positions/CPU-s (text included)")
    print(f"    db backend   {positions / server:>10,.0f} positions/CPU-s")
    print(f"    wall         {positions / wall:>10,.0f} positions/s")


# --- tick -----------------------------------------------------------------------------------


async def bench_tick(args: argparse.Namespace) -> None:
    """The offline timer of a live worker over a scratch database (module docstring, 4)."""
    import psutil

    from gps_monitor.config import Settings
    from gps_monitor.db.pool import connect
    from rules import offline
    from rules.worker import RulesWorker

    ids = range(1, args.vehicles + 1)
    now = datetime.now(UTC)
    silent = set(random.Random(7).sample(list(ids), round(args.vehicles * args.silent)))
    heard_at = {v: now - timedelta(minutes=10 if v in silent else 0, seconds=2) for v in ids}
    async with _scratch_database(ids) as (name, db):
        conn = await connect(db)
        await conn.copy_records_to_table(
            "latest_positions",
            records=[(v, heard_at[v], heard_at[v], heard_at[v], 39.9, 116.4) for v in ids],
            columns=("vehicle_id", "last_message_at", "fix_time", "received_at", "latitude",
                     "longitude"),
        )  # fmt: skip
        await conn.close()
        worker = RulesWorker(Settings(database=db))
        try:
            await worker.reload()
            for v in ids:  # as a worker that evaluated every vehicle's last fix holds them
                t = heard_at[v].timestamp()
                worker.states[v] = VehicleState(
                    last=(t, 39.9, 116.4, 0.0),
                    rules={offline.NAME: offline.State(t, t, 39.9, 116.4, None)},
                )
            pool = await worker.pool()
            backends = [psutil.Process(r["pid"]) for r in await pool.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1", name
            )]  # fmt: skip

            def server_cpu() -> float:
                return sum(sum(b.cpu_times()[:2]) for b in backends)

            async def one() -> tuple[float, float, float, int]:
                s0, c0, w0 = server_cpu(), time.process_time(), time.perf_counter()
                changed = await worker._tick()
                wall = time.perf_counter() - w0
                return wall, time.process_time() - c0, server_cpu() - s0, len(changed.alarms)

            first = await one()
            rest = [await one() for _ in range(args.repeat)]
        finally:
            await worker.close()
    print(
        f"offline timer: {args.vehicles} vehicles, {len(silent)} silent for 10 min, the rest "
        "heard 2 s ago (the batch lock is held for part of a tick; database CPU in 10 ms "
        "clock ticks)"
    )
    print(
        f"  first tick   {first[0] * 1000:8.1f} ms wall, {first[1] * 1000:7.1f} ms CPU here, "
        f"{first[2] * 1000:6.1f} ms CPU in the database ({first[3]} alarms opened)"
    )
    med = [statistics.median(x[i] for x in rest) * 1000 for i in range(3)]
    print(
        f"  later ticks  {med[0]:8.1f} ms wall, {med[1]:7.1f} ms CPU here, {med[2]:6.1f} ms CPU "
        f"in the database (median of {args.repeat}; {sum(x[3] for x in rest)} alarms)"
    )


# --- live -----------------------------------------------------------------------------------


async def bench_live(args: argparse.Namespace) -> None:
    import asyncpg

    from gps_monitor import mqtt, topics
    from gps_monitor.config import DatabaseSettings, MqttSettings
    from gps_monitor.db import migrate
    from gps_monitor.db.pool import init_connection

    admin_url = os.environ.get(
        "GPS_MONITOR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    name = f"gpsm_bench_{uuid.uuid4().hex[:8]}"
    url = admin_url.rpartition("/")[0] + "/" + name
    tag = uuid.uuid4().hex[:8]
    prefix = f"bench-{tag}/"
    mqtt_settings = MqttSettings(
        host=args.mqtt_host, port=args.mqtt_port, client_id=f"bench-{tag}", topic_prefix=prefix
    )
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    proc: subprocess.Popen[bytes] | None = None
    log_path = Path(f"/tmp/{name}.log")
    try:
        conn = await asyncpg.connect(url)
        await init_connection(conn)
        await migrate.upgrade(conn, DatabaseSettings(url=url, timescale="off"))
        company = await conn.fetchval("INSERT INTO companies (name) VALUES ('bench') RETURNING id")
        await conn.executemany(
            "INSERT INTO vehicles (id, company_id, plate_number, vehicle_class, terminal_id) "
            "VALUES ($1, $2, $3, 'freight', $4)",
            [(v + 1, company, f"B{v:05d}", f"T{v}") for v in range(args.vehicles)],
        )
        await conn.close()
        env = {k: v for k, v in os.environ.items() if not k.startswith("GPS_MONITOR_")}
        env.update(
            GPS_MONITOR_DATABASE_URL=url,
            GPS_MONITOR_MQTT_HOST=args.mqtt_host,
            GPS_MONITOR_MQTT_PORT=str(args.mqtt_port),
            GPS_MONITOR_MQTT_CLIENT_ID=f"bench-{tag}",
            GPS_MONITOR_MQTT_TOPIC_PREFIX=prefix,
        )
        proc = _spawn_worker(env, log_path)
        deadline = time.monotonic() + 30
        while not _log_has(log_path, b"rules worker consuming"):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"rules worker did not start:\n{_log_tail(log_path)}")
            await asyncio.sleep(0.1)

        # the listener runs in its own process, so the publisher's work does not delay it
        mp = multiprocessing.get_context("spawn")
        ready, stop, results = mp.Event(), mp.Event(), mp.Queue()
        listener = mp.Process(
            target=_listen,
            args=(args.mqtt_host, args.mqtt_port, prefix, f"bench-{tag}-l", ready, stop, results),
        )
        listener.start()
        if not await asyncio.to_thread(ready.wait, 30):
            raise SystemExit("alarm listener did not subscribe")
        # messages built before the clock starts: (vehicle id, payload, fix times that toggle SOS)
        rng = random.Random(7)
        start = datetime.now(UTC).replace(microsecond=0)
        per_message = max(1, args.rate // (args.vehicles * args.messages_per_vehicle_per_s))
        msgs_per_s = args.vehicles * args.messages_per_vehicle_per_s
        interval = 1.0 / msgs_per_s
        fix_index = [0] * args.vehicles
        lat = [LAT0 + rng.random() * SPAN_DEG for _ in range(args.vehicles)]
        lon = [LON0 + rng.random() * SPAN_DEG for _ in range(args.vehicles)]
        prepared: list[tuple[int, str, list[str]]] = []
        for n in range(int(msgs_per_s * args.seconds)):
            v = n % args.vehicles
            batch = []
            toggles = []
            for _ in range(per_message):
                i = fix_index[v]
                fix_index[v] += 1
                lon[v] += 0.00005
                fix_time = start + timedelta(milliseconds=200 * i)
                if i % args.sos_every == 0 and i > 0:
                    toggles.append(fix_time.isoformat())
                batch.append(
                    Position(
                        terminal_id=f"T{v}",
                        fix_time=fix_time,
                        latitude=lat[v],
                        longitude=lon[v],
                        speed_kmh=40.0,
                        alarm_flags=1 if (i // args.sos_every) % 2 else 0,
                        vehicle_id=v + 1,
                        company_id=company,
                        received_at=_PLACEHOLDER_TIME,
                    ).to_dict()
                )
            prepared.append((v + 1, json.dumps(batch), toggles))
        sent_at: dict[tuple[int, str], float] = {}
        positions_sent = 0
        async with mqtt.build_client(mqtt_settings, client_id=f"bench-{tag}-p") as pub:
            t_begin = time.perf_counter()
            for n, (vehicle_id, payload, toggles) in enumerate(prepared):
                now = time.time()
                for fix_time_iso in toggles:
                    sent_at[(vehicle_id, fix_time_iso)] = now
                # received_at = now (what ingest stamps), so the worker's lag figure means something
                stamped = payload.replace(_PLACEHOLDER_ISO, datetime.now(UTC).isoformat())
                await pub.publish(topics.accepted_topic(0, prefix), stamped, qos=1)
                positions_sent += per_message
                lag = t_begin + (n + 1) * interval - time.perf_counter()
                if lag > 0:
                    await asyncio.sleep(lag)
            publish_s = time.perf_counter() - t_begin
        expected = len(sent_at)
        await asyncio.sleep(args.drain_s)
        stop.set()
        arrivals: list[tuple[int, str, float]] = await asyncio.to_thread(results.get, True, 60)
        listener.join(10)
        received = len(arrivals)
        latencies = [
            t - sent_at[(vehicle_id, key)]
            for vehicle_id, key, t in arrivals
            if (vehicle_id, key) in sent_at
        ]
        print(
            f"live: {args.vehicles} vehicles, {positions_sent} positions published in "
            f"{publish_s:.1f} s = {positions_sent / publish_s:,.0f} positions/s "
            f"({per_message} per message)"
        )
        print(
            f"  alarm messages received {received}; latencies measured {len(latencies)} of "
            f"{expected}"
        )
        if latencies:
            latencies.sort()
            p50 = statistics.median(latencies) * 1000
            p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
            print(
                f"  publish -> alarm published: p50 {p50:.0f} ms, p99 {p99:.0f} ms, "
                f"max {latencies[-1] * 1000:.0f} ms"
            )
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        from gps_monitor import mqtt as _mqtt

        async with _mqtt.build_client(
            MqttSettings(host=args.mqtt_host, port=args.mqtt_port),
            client_id=f"bench-{tag}-rules",
            persistent=False,
        ):
            pass
        admin = await asyncpg.connect(admin_url)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def _spawn_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """A real ``gps-monitor rules`` process logging to ``log_path``."""
    with log_path.open("wb") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gps_monitor.cli",
                "--log-level",
                "INFO",
                "rules",
                "--no-upgrade",
            ],
            env=env,
            stdout=out,
            stderr=out,
        )


def _log_has(log_path: Path, text: bytes) -> bool:
    return text in log_path.read_bytes()


def _log_tail(log_path: Path) -> str:
    return log_path.read_text()[-2000:]


def _listen(
    host: str, port: int, prefix: str, client_id: str, ready: Any, stop: Any, results: Any
) -> None:
    """Listener process: (vehicle id, opened-at or closed-at time, arrival wall time) of every
    alarm message until ``stop``; the list goes to ``results``."""
    from gps_monitor import mqtt, topics
    from gps_monitor.config import MqttSettings

    async def run() -> list[tuple[int, str, float]]:
        arrivals: list[tuple[int, str, float]] = []
        settings = MqttSettings(host=host, port=port)
        async with mqtt.build_client(settings, client_id=client_id) as client:
            await client.subscribe(topics.alarm_filter(prefix), qos=1)
            ready.set()

            async def consume() -> None:
                async for message in client.messages:
                    now = time.time()
                    alarm = json.loads(message.payload)
                    key = alarm["started_at"] if alarm["event"] == "opened" else alarm["ended_at"]
                    arrivals.append((alarm["vehicle_id"], key, now))

            task = asyncio.create_task(consume())
            await asyncio.to_thread(stop.wait)
            task.cancel()
        return arrivals

    results.put(asyncio.run(run()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="which", required=True)
    e = sub.add_parser("engine")
    e.add_argument("--vehicles", type=int, default=10_000)
    e.add_argument("--geofences", type=int, default=1_000)
    e.add_argument("--routes", type=int, default=100)
    e.add_argument("--positions", type=int, default=200_000)
    st = sub.add_parser("steps")
    st.add_argument("--vehicles", type=int, default=2_000)
    st.add_argument("--geofences", type=int, default=1_000)
    st.add_argument("--routes", type=int, default=100)
    st.add_argument("--positions", type=int, default=40_000)
    st.add_argument("--batch", type=int, default=1_000, help="positions per batch")
    st.add_argument("--repeat", type=int, default=3, help="runs (best)")
    st.add_argument("--no-db", action="store_true", help="skip the save_states part")
    st.add_argument(
        "--gc",
        choices=["worker", "default"],
        default="worker",
        help="garbage collector pace: the rules worker's (default) or CPython's",
    )
    live = sub.add_parser("live")
    live.add_argument("--vehicles", type=int, default=500)
    live.add_argument("--rate", type=int, default=5_000, help="positions per second")
    live.add_argument("--messages-per-vehicle-per-s", type=int, default=1)
    live.add_argument("--seconds", type=float, default=10.0)
    live.add_argument("--sos-every", type=int, default=25, help="toggle SOS every N fixes")
    live.add_argument("--drain-s", type=float, default=5.0, help="wait for the last alarms")
    live.add_argument("--mqtt-host", default="127.0.0.1")
    live.add_argument("--mqtt-port", type=int, default=1883)
    tk = sub.add_parser("tick")
    tk.add_argument("--vehicles", type=int, default=10_000)
    tk.add_argument("--silent", type=float, default=0.01, help="share silent for 10 min")
    tk.add_argument("--repeat", type=int, default=10, help="ticks after the first (median)")
    args = parser.parse_args()
    if args.which == "engine":
        bench_engine(args)
    elif args.which == "steps":
        bench_steps(args)
    elif args.which == "tick":
        asyncio.run(bench_tick(args))
    else:
        asyncio.run(bench_live(args))


if __name__ == "__main__":
    main()
