"""Benchmark of the live map feed: N vehicles reporting every P seconds, C websocket clients.

    .venv/bin/python benchmarks/web.py [--vehicles 10000] [--period-s 10] [--clients 100]
        [--bureau-clients 10] [--companies 20] [--duration-s 60]

What it does, all against the real PostgreSQL and Mosquitto (GPS_MONITOR_TEST_DATABASE_URL /
GPS_MONITOR_TEST_MQTT_HOST, defaults 127.0.0.1):
  1. creates a scratch database, migrates it, registers the vehicles across the companies with a
     latest position each, and one bureau user plus one operator per company;
  2. starts the web app (`create_app`, uvicorn) as a separate process;
  3. measures the websocket snapshot for a bureau user (all vehicles): connect -> snapshot
     parsed at the client, and the server's query time;
  4. connects the clients (``--bureau-clients`` see every vehicle, the others are operators of
     one company each), then a publisher process publishes every vehicle's position every
     ``--period-s`` seconds on ``positions/v2/0`` as ingest does (fix_time =
     publish time), for ``--duration-s``;
  5. prints p50/p99/max publish-to-client latency over every position delivered, positions
     delivered, and the web process RSS (peak sampled every second);
  6. with ``--browser``, times the map page in Debian chromium during the run;
  7. stores ``--track-days`` of one vehicle at one fix per ``--track-interval-s`` and times
     ``GET /api/vehicles/{id}/track`` over the whole window (simplified server-side).

Latency includes the 1 s coalescing window by design (at most one update per vehicle per second).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

import asyncpg
import psutil
from websockets.asyncio.client import connect

from gps_monitor.config import DatabaseSettings
from gps_monitor.db import migrate
from gps_monitor.db.pool import init_connection

ADMIN_URL = os.environ.get(
    "GPS_MONITOR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
MQTT_HOST = os.environ.get("GPS_MONITOR_TEST_MQTT_HOST", "127.0.0.1")
MQTT_PORT = int(os.environ.get("GPS_MONITOR_TEST_MQTT_PORT", "1883"))


def db_url(name: str) -> str:
    return ADMIN_URL.rpartition("/")[0] + "/" + name


async def setup_database(name: str, args: argparse.Namespace, secret: str) -> dict[str, str]:
    """Scratch database with vehicles, latest positions and users; returns tokens by user."""
    from gps_monitor.db import users

    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    conn = await asyncpg.connect(db_url(name))
    await init_connection(conn)
    await migrate.upgrade(conn, DatabaseSettings(url=db_url(name), timescale="off"))
    companies = await conn.fetch(
        "INSERT INTO companies (name) SELECT 'bench-company-' || g FROM generate_series(1, $1) g "
        "RETURNING id",
        args.companies,
    )
    company_ids = [r["id"] for r in companies]
    await conn.execute(
        "INSERT INTO vehicles (company_id, plate_number, vehicle_class, terminal_id) "
        "SELECT ($2::bigint[])[1 + (g % $3)], 'B' || lpad(g::text, 6, '0'), 'freight', "
        "'T' || lpad(g::text, 11, '0') FROM generate_series(1, $1) g",
        args.vehicles,
        company_ids,
        len(company_ids),
    )
    await conn.execute(
        "INSERT INTO latest_positions (vehicle_id, last_message_at, fix_time, received_at, "
        "latitude, longitude, speed_kmh, heading_deg) SELECT id, now(), now(), now(), "
        "29 + random(), 106 + random(), 40, 90 FROM vehicles"
    )
    tokens = {}
    bureau = await users.create_user(conn, "bench-bureau", "bench-password", "bureau")
    tokens["bureau"] = (await users.issue_token(conn, bureau, secret, 86400))[0]
    for cid in company_ids:
        op = await users.create_user(conn, f"bench-op-{cid}", "bench-password", "operator", cid)
        tokens[f"op-{cid}"] = (await users.issue_token(conn, op, secret, 86400))[0]
    await conn.close()
    return tokens


async def drop_database(name: str) -> None:
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


def publisher(
    env: dict[str, str], vehicles: list[tuple[int, int]], period_s: float, duration_s: float
) -> None:
    """Child process: publish every vehicle once per period, evenly spread, QoS 0."""
    os.environ.update(env)

    async def main() -> None:
        from gps_monitor.config import Settings
        from gps_monitor.mqtt import build_client

        settings = Settings()
        prefix = settings.mqtt.topic_prefix
        async with build_client(settings.mqtt, client_id=f"bench-pub-{os.getpid()}") as client:
            start = time.monotonic()
            n = len(vehicles)
            i = 0
            while time.monotonic() - start < duration_s:
                due = start + (i / n) * period_s
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                vid, cid = vehicles[i % n]
                now = datetime.now(UTC)
                payload = [
                    {
                        "terminal_id": f"T{vid}",
                        "fix_time": now.isoformat(),
                        "latitude": 29.0 + (vid * 7919 % 1000) / 1000 + 1e-4 * (i // n),
                        "longitude": 106.0 + (vid * 104729 % 1000) / 1000,
                        "speed_kmh": 40.0,
                        "heading_deg": 90.0,
                        "vehicle_id": vid,
                        "company_id": cid,
                        "quality": "ok",
                        "late": False,
                        "received_at": now.isoformat(),
                    }
                ]
                await client.publish(f"{prefix}positions/v2/0", json.dumps(payload))
                i += 1

    asyncio.run(main())


async def client_loop(
    url: str, token: str, latencies: list[float], stop: asyncio.Event, counts: dict[str, int]
) -> None:
    async with connect(
        url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=2**26
    ) as ws:
        json.loads(await ws.recv())  # snapshot
        counts["connected"] += 1
        while not stop.is_set():
            try:
                text = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            now = time.time()
            message = json.loads(text)
            if message["type"] != "positions":
                continue
            for p in message["positions"]:
                latencies.append(now - datetime.fromisoformat(p["fix_time"]).timestamp())


async def bench_browser(port: int, vehicles: int, seconds: float) -> str:
    """Debian chromium as a bureau user: time from login to every vehicle on the map (clustered
    markers), then frames per second and position batches applied while the feed runs."""
    from playwright.async_api import async_playwright

    args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ]
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 850})
            await page.goto(f"http://127.0.0.1:{port}/map")
            await page.fill("#login-username", "bench-bureau")
            await page.fill("#login-password", "bench-password")
            t0 = time.perf_counter()
            await page.click("#login-submit")
            await page.wait_for_function(
                f"window.gpsm && window.gpsm.markers.size >= {vehicles}", timeout=120000
            )
            load_ms = (time.perf_counter() - t0) * 1000
            stats = await page.evaluate(
                """(seconds) => new Promise((resolve) => {
                    const before = window.gpsm.received.positions || 0;
                    let frames = 0; const start = performance.now();
                    function tick(now) {
                        frames++;
                        if (now - start < seconds * 1000) requestAnimationFrame(tick);
                        else resolve({fps: frames * 1000 / (now - start),
                                      batches: (window.gpsm.received.positions || 0) - before});
                    }
                    requestAnimationFrame(tick);
                })""",
                seconds,
            )
            await page.screenshot(path="test-artifacts/bench_map_10k.png")
        finally:
            await browser.close()
    return (
        f"browser (chromium, bureau, {vehicles} vehicles): login to all markers "
        f"{load_ms:.0f} ms; while the feed runs {stats['fps']:.0f} frames/s, "
        f"{stats['batches']} position batches applied in {seconds:g} s"
    )


async def bench_track(args: argparse.Namespace, name: str, port: int, token: str) -> None:
    """A month (default) of one vehicle, then the track endpoint over the whole window."""
    import httpx

    conn = await asyncpg.connect(db_url(name))
    vehicle_id = await conn.fetchval("SELECT min(id) FROM vehicles")
    n = int(args.track_days * 86400 / args.track_interval_s)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    await conn.execute(
        "INSERT INTO positions (vehicle_id, fix_time, received_at, latitude, longitude, speed_kmh, "
        "heading_deg, fix_valid, quality) "
        "SELECT $1, $2::timestamptz + make_interval(secs => g * $3::float8), now(), "
        "29.5 + 0.05 * sin(g / 500.0), 106.5 + 0.05 * cos(g / 700.0), 40 + 30 * sin(g / 50.0), "
        "90, true, 'ok' FROM generate_series(0, $4 - 1) g",
        vehicle_id,
        start,
        args.track_interval_s,
        n,
    )
    await conn.execute("ANALYZE positions")
    await conn.close()
    end = start.timestamp() + args.track_days * 86400
    params = {"start": start.isoformat(), "end": datetime.fromtimestamp(end, UTC).isoformat()}
    times = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
        for _ in range(5):
            t0 = time.perf_counter()
            r = await http.get(
                f"/api/vehicles/{vehicle_id}/track",
                params=params,
                headers={"Authorization": f"Bearer {token}"},
            )
            r.raise_for_status()
            body = r.json()
            times.append((time.perf_counter() - t0) * 1000)
    props = body["features"][0]["properties"]
    print(
        f"track of {args.track_days:g} days ({n} fixes, 1 per {args.track_interval_s:g} s): "
        f"median {statistics.median(times):.0f} ms (min {min(times):.0f}, max {max(times):.0f}), "
        f"{props['points_returned']} points returned, tolerance {props['tolerance_m']:.0f} m, "
        f"{len(r.content) / 1024:.0f} KiB"
    )


async def run(args: argparse.Namespace) -> None:
    secret = uuid.uuid4().hex * 2
    name = f"gpsm_bench_web_{os.getpid()}"
    prefix = f"bench-{uuid.uuid4().hex[:8]}/"
    env = {
        "GPS_MONITOR_DATABASE_URL": db_url(name),
        "GPS_MONITOR_MQTT_HOST": MQTT_HOST,
        "GPS_MONITOR_MQTT_PORT": str(MQTT_PORT),
        "GPS_MONITOR_MQTT_TOPIC_PREFIX": prefix,
        "GPS_MONITOR_WEB_SECRET_KEY": secret,
        "GPS_MONITOR_LOG_LEVEL": "WARNING",
        "GPS_MONITOR_DATABASE_POOL_MAX_SIZE": "8",
    }
    print(f"setting up {args.vehicles} vehicles in {args.companies} companies ...", flush=True)
    tokens = await setup_database(name, args, secret)
    port = 18000 + os.getpid() % 1000
    server = subprocess.Popen(  # noqa: ASYNC220 - started once, before any measuring
        [
            sys.executable,
            "-c",
            "import uvicorn; from gps_monitor.config import Settings; "
            "from web.app import create_app; "
            f"uvicorn.run(create_app(Settings()), host='127.0.0.1', port={port}, "
            "log_level='warning', ws='websockets-sansio')",
        ],
        env={**os.environ, **env},
    )
    proc = psutil.Process(server.pid)
    peak_rss = 0
    try:
        url = f"ws://127.0.0.1:{port}/ws/live"
        for _ in range(100):
            try:
                async with connect(
                    url,
                    additional_headers={"Authorization": f"Bearer {tokens['bureau']}"},
                    max_size=2**26,
                ) as ws:
                    await ws.recv()
                break
            except OSError:
                await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # hub subscribed
        snapshot_ms, query_ms = [], []
        for _ in range(5):
            t0 = time.perf_counter()
            async with connect(
                url,
                additional_headers={"Authorization": f"Bearer {tokens['bureau']}"},
                max_size=2**26,
            ) as ws:
                snap = json.loads(await ws.recv())
            snapshot_ms.append((time.perf_counter() - t0) * 1000)
            query_ms.append(snap["query_ms"])
            assert len(snap["vehicles"]) == args.vehicles, len(snap["vehicles"])
        print(
            f"snapshot of {args.vehicles} vehicles (bureau): client-side median "
            f"{statistics.median(snapshot_ms):.0f} ms (min {min(snapshot_ms):.0f}, max "
            f"{max(snapshot_ms):.0f}); server query median {statistics.median(query_ms):.0f} ms",
            flush=True,
        )

        latencies: list[float] = []
        stop = asyncio.Event()
        counts = {"connected": 0}
        op_tokens = [v for k, v in tokens.items() if k.startswith("op-")]
        client_tokens = [tokens["bureau"]] * args.bureau_clients + [
            op_tokens[i % len(op_tokens)] for i in range(args.clients - args.bureau_clients)
        ]
        tasks = [
            asyncio.create_task(client_loop(url, tok, latencies, stop, counts))
            for tok in client_tokens
        ]
        while counts["connected"] < len(tasks):  # noqa: ASYNC110 - a plain poll is clearest
            await asyncio.sleep(0.1)
        vehicles_rows = await (await asyncpg.connect(db_url(name))).fetch(
            "SELECT id, company_id FROM vehicles ORDER BY id"
        )
        vehicles = [(r["id"], r["company_id"]) for r in vehicles_rows]
        print(
            f"{len(tasks)} clients connected ({args.bureau_clients} bureau); publishing "
            f"{args.vehicles} vehicles every {args.period_s} s for {args.duration_s} s "
            f"({args.vehicles / args.period_s:.0f} positions/s) ...",
            flush=True,
        )
        pub = multiprocessing.get_context("spawn").Process(
            target=publisher, args=({**env}, vehicles, args.period_s, args.duration_s)
        )
        pub.start()
        browser_task = (
            asyncio.create_task(bench_browser(port, args.vehicles, 10.0)) if args.browser else None
        )
        me = psutil.Process()
        proc.cpu_percent(None)
        me.cpu_percent(None)
        started = time.monotonic()
        warmup_done = False
        while pub.is_alive():
            await asyncio.sleep(1.0)
            peak_rss = max(peak_rss, proc.memory_info().rss)
            if not warmup_done and time.monotonic() - started > min(5.0, args.duration_s / 4):
                latencies.clear()  # drop the connection warm-up
                warmup_done = True
        web_cpu, client_cpu = proc.cpu_percent(None), me.cpu_percent(None)
        browser_line = await browser_task if browser_task is not None else None
        await asyncio.sleep(2.0)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        lat = sorted(latencies)
        if not lat:
            print("no positions delivered")
            return
        q = statistics.quantiles(lat, n=100)
        print(
            f"positions delivered to clients: {len(lat)} "
            f"({len(lat) / max(args.duration_s - 5, 1):.0f}/s after warm-up)"
        )
        print(
            f"publish-to-client latency: p50 {q[49] * 1000:.0f} ms, p99 {q[98] * 1000:.0f} ms, "
            f"max {lat[-1] * 1000:.0f} ms"
        )
        print(
            f"CPU during publishing: web process {web_cpu:.0f} %, benchmark clients "
            f"{client_cpu:.0f} % (100 % = one core)"
        )
        print(
            f"web process RSS: peak {peak_rss / 2**20:.0f} MB, end "
            f"{proc.memory_info().rss / 2**20:.0f} MB"
        )
        if browser_line:
            print(browser_line)
        await bench_track(args, name, port, tokens["bureau"])
        print(f"machine: {psutil.cpu_count()} cores, load average {os.getloadavg()}")
    finally:
        server.terminate()
        server.wait(10)
        await drop_database(name)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vehicles", type=int, default=10000)
    parser.add_argument("--period-s", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--bureau-clients", type=int, default=10)
    parser.add_argument("--companies", type=int, default=20)
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--track-days", type=float, default=31.0)
    parser.add_argument(
        "--browser",
        action="store_true",
        help="also time the map page in Debian chromium (load of every marker, frames/s)",
    )
    parser.add_argument("--track-interval-s", type=float, default=30.0)
    args = parser.parse_args()
    if args.bureau_clients > args.clients:
        parser.error("--bureau-clients: expected at most --clients")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
