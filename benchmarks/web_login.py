"""Benchmark: what a login flood does to everyone else's requests.

    .venv/bin/python benchmarks/web_login.py [--flood-threads 8] [--duration-s 10]

Against the real PostgreSQL (GPS_MONITOR_TEST_DATABASE_URL, default 127.0.0.1): a scratch
database with one user, the web app (`create_app`, uvicorn) in a separate process, then
  1. the latency of ``GET /api/auth/session`` (a request every other user makes) while idle;
  2. the same while ``--flood-threads`` threads post logins for a non-existent user as fast as
     they can. They all come from 127.0.0.1, so the per-address throttle answers most of them
     429 after the first ``web.login_address_attempts``; ``--no-throttle`` raises the throttle
     out of reach, so every login costs its argon2 check (the worst case for the event loop).
Prints p50/p99/max latency of both phases and the flood's answers by status.
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

import asyncpg
import httpx

ADMIN_URL = os.environ.get(
    "GPS_MONITOR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


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
        [sys.executable, "-m", "gps_monitor.cli", "web", "--port", str(port)], env=env
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
        idle = await measure(base, args.duration_s)
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
        print(figures("idle", idle))
        print(figures(f"during a login flood ({args.flood_threads} threads)", flooded))
        print(f"flood answers by status: {dict(answers)}")
    finally:
        server.terminate()
        server.wait(30)
        admin = await asyncpg.connect(ADMIN_URL)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flood-threads", type=int, default=8)
    parser.add_argument("--duration-s", type=float, default=10.0)
    parser.add_argument(
        "--no-throttle", action="store_true", help="raise the login throttle out of reach"
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
