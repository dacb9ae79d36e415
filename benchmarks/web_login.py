"""Benchmark: what a login flood does to everyone else's requests.

    .venv/bin/python benchmarks/web_login.py [--flood-threads 8] [--duration-s 10]

Against the real PostgreSQL (GPS_MONITOR_TEST_DATABASE_URL, default 127.0.0.1): a scratch
database with one user, the web app (`create_app`, uvicorn) in a separate process, then
  1. the latency of ``GET /api/auth/session`` (a request every other user makes) while idle;
  2. the same while ``--flood-threads`` threads post logins for a non-existent user as fast as
     they can. They all come from 127.0.0.1, so the per-address throttle answers most of them
     429 after the first ``web.login_address_attempts``; ``--no-throttle`` raises the throttle
     out of reach, so every login costs its argon2 check (the worst case for the event loop).
Prints p50/p99/max latency of both phases, the web process's event-loop lag (how late a 10 ms
timer fires on the server's loop: what every request and websocket there waits behind) in both
phases, and the flood's answers by status. The server runs from this file's repository: a copy
of this file in a checkout of another commit measures that commit's app the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import asyncpg
import httpx

ADMIN_URL = os.environ.get(
    "GPS_MONITOR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


REPO = Path(__file__).resolve().parents[1]


def db_url(name: str) -> str:
    return ADMIN_URL.rpartition("/")[0] + "/" + name


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def measure(base: str, seconds: float) -> list[float]:
    """Latencies (ms) of sequential GET /api/auth/session for ``seconds``."""
    out: list[float] = []
    async with httpx.AsyncClient(base_url=base) as http:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            started = time.perf_counter()
            r = await http.get("/api/auth/session")
            r.raise_for_status()
            out.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.02)
    return out


def flood(base: str, stop: threading.Event, answers: collections.Counter[str]) -> None:
    with httpx.Client(base_url=base, timeout=None) as http:  # queued logins wait their turn
        while not stop.is_set():
            try:
                r = http.post("/api/auth/login", json={"username": "nobody", "password": "guess"})
                answers[str(r.status_code)] += 1
            except httpx.HTTPError as error:
                answers[type(error).__name__] += 1


async def serve(port: int) -> None:
    """The web app on uvicorn with a probe on its loop: every 10 ms timer's lateness (ms) with
    its monotonic start, served as JSON at ``GET /bench/lag``."""
    import uvicorn

    from gps_monitor.config import Settings
    from web.app import create_app

    samples: list[tuple[float, float]] = []

    async def probe() -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(0.01)
            samples.append((started, (time.monotonic() - started - 0.01) * 1000))

    app = create_app(Settings())

    async def lag() -> list[tuple[float, float]]:
        return samples

    app.add_api_route("/bench/lag", lag)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(probe())
    try:
        await server.serve()
    finally:
        task.cancel()


def figures(name: str, latencies: list[float]) -> str:
    q = statistics.quantiles(latencies, n=100)
    return (
        f"{name}: n={len(latencies)} p50={q[49]:.1f} ms p99={q[98]:.1f} ms "
        f"max={max(latencies):.1f} ms"
    )


async def run(args: argparse.Namespace) -> None:
    name = f"gpsm_bench_login_{os.getpid()}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    port = free_port()
    env = os.environ | {
        "GPS_MONITOR_DATABASE_URL": db_url(name),
        "GPS_MONITOR_DATABASE_TIMESCALE": "off",
        "GPS_MONITOR_MQTT_HOST": "",
        "GPS_MONITOR_LOG_LEVEL": "WARNING",
    }
    if args.no_throttle:
        env |= {
            "GPS_MONITOR_WEB_LOGIN_ACCOUNT_ATTEMPTS": "100000000",
            "GPS_MONITOR_WEB_LOGIN_ADDRESS_ATTEMPTS": "100000000",
        }
    server = subprocess.Popen(  # noqa: ASYNC220 - started once, before any measuring
        # as a module from the repository root: run as a script, benchmarks/web.py would
        # shadow the web package
        [
            sys.executable,
            "-m",
            "benchmarks.web_login",
            "--serve",
            str(port),
        ],
        env=env,
        cwd=REPO,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base) as http:
            for _ in range(300):
                try:
                    await http.get("/api/config")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
        await upgrade(db_url(name))
        idle_from = time.monotonic()
        idle = await measure(base, args.duration_s)
        flood_from = time.monotonic()
        stop = threading.Event()
        answers: collections.Counter[str] = collections.Counter()
        threads = [
            threading.Thread(target=flood, args=(base, stop, answers), daemon=True)
            for _ in range(args.flood_threads)
        ]
        for thread in threads:
            thread.start()
        await asyncio.sleep(1.0)
        flooded = await measure(base, args.duration_s)
        stop.set()
        for thread in threads:
            thread.join(30)
        flood_to = time.monotonic()
        async with httpx.AsyncClient(base_url=base) as http:
            lag = (await http.get("/bench/lag")).json()
        print(figures("GET /api/auth/session, idle", idle))
        print(
            figures(f"GET /api/auth/session, login flood ({args.flood_threads} threads)", flooded)
        )
        print(figures("event-loop lag, idle", [ms for t, ms in lag if idle_from <= t < flood_from]))
        print(
            figures(
                "event-loop lag, login flood", [ms for t, ms in lag if flood_from <= t < flood_to]
            )
        )
        print(f"flood answers by status: {dict(answers)}")
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(30)
        admin = await asyncpg.connect(ADMIN_URL)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def upgrade(url: str) -> None:
    from gps_monitor.config import DatabaseSettings
    from gps_monitor.service import upgrade_schema

    await upgrade_schema(DatabaseSettings(url=url, timescale="off"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the server process
    parser.add_argument("--flood-threads", type=int, default=8)
    parser.add_argument("--duration-s", type=float, default=10.0)
    parser.add_argument(
        "--no-throttle", action="store_true", help="raise the login throttle out of reach"
    )
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
    else:
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
