#!/usr/bin/env python3
"""Container health checks for the gps-monitor services (docker-compose.yml ``healthcheck``).

    gps-monitor-healthcheck http URL          web: the URL answers 2xx
    gps-monitor-healthcheck tcp HOST PORT     jt808: the gateway accepts TCP connections
    gps-monitor-healthcheck worker COMMAND    ingest / rules: PID 1 is ``gps-monitor COMMAND``
                                              and its dependencies answer (the database
                                              ``SELECT 1``, the broker's TCP port and, on the
                                              nats transport, one server of the NATS URL list,
                                              all from the same GPS_MONITOR_* settings the
                                              worker reads)

Exit 0 = healthy, 1 = unhealthy (the reason on stderr). Standard library plus asyncpg, which the
image has; runs in well under the compose check timeout.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import urllib.parse
import urllib.request

TIMEOUT_S = 4.0


def check_http(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            if 200 <= response.status < 300:
                return None
            return f"{url}: expected a 2xx answer, got {response.status}"
    except OSError as error:
        return f"{url}: {error}"


def check_tcp(host: str, port: int) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT_S):
            return None
    except OSError as error:
        return f"tcp {host}:{port}: {error}"


def check_nats() -> str | None:
    """On GPS_MONITOR_BUS_TRANSPORT=nats: one server of GPS_MONITOR_BUS_NATS_URL (a comma-separated
    list, default nats://127.0.0.1:4222) accepts TCP; a cluster serves while one node does."""
    if os.environ.get("GPS_MONITOR_BUS_TRANSPORT", "mqtt") != "nats":
        return None
    problems = []
    for server in os.environ.get("GPS_MONITOR_BUS_NATS_URL", "nats://127.0.0.1:4222").split(","):
        parsed = urllib.parse.urlsplit(server.strip())
        problem = check_tcp(parsed.hostname or "127.0.0.1", parsed.port or 4222)
        if problem is None:
            return None
        problems.append(problem)
    return "no NATS server reachable: " + "; ".join(problems)


def check_worker(command: str) -> str | None:
    try:
        with open("/proc/1/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError as error:
        return f"cannot read PID 1's command line: {error}"
    if not any(a.endswith("gps-monitor") for a in argv) or command not in argv:
        return f"PID 1 is not `gps-monitor {command}`: {argv}"
    host = os.environ.get("GPS_MONITOR_MQTT_HOST")
    if host:
        problem = check_tcp(host, int(os.environ.get("GPS_MONITOR_MQTT_PORT", "1883")))
        if problem:
            return f"broker unreachable: {problem}"
    problem = check_nats()
    if problem:
        return problem
    url = os.environ.get("GPS_MONITOR_DATABASE_URL")
    if url:
        import asyncpg

        async def ping() -> None:
            conn = await asyncpg.connect(url, timeout=TIMEOUT_S)
            try:
                await conn.fetchval("SELECT 1", timeout=TIMEOUT_S)
            finally:
                await conn.close(timeout=TIMEOUT_S)

        try:
            asyncio.run(ping())
        except Exception as error:  # any failure is "unhealthy", reported as such
            return f"database unreachable: {type(error).__name__}: {error}"
    return None


def main(argv: list[str]) -> int:
    usage = "usage: gps-monitor-healthcheck http URL | tcp HOST PORT | worker COMMAND"
    if len(argv) == 2 and argv[0] == "http":
        problem = check_http(argv[1])
    elif len(argv) == 3 and argv[0] == "tcp" and argv[2].isdigit():
        problem = check_tcp(argv[1], int(argv[2]))
    elif len(argv) == 2 and argv[0] == "worker":
        problem = check_worker(argv[1])
    else:
        print(f"{usage}; got {argv}", file=sys.stderr)
        return 2
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
