"""Downlink text command benchmark: command created (row ``queued`` + NOTIFY, as the web API
does) -> the command dispatcher (a real ``gps-monitor ingest`` process) publishes ``cmd/v1`` ->
the JT/T 808 gateway (a real ``gps-monitor jt808`` process) writes 0x8300 -> the simulated
terminal answers 0x0001 -> ``cmd_result`` -> the row is ``acknowledged``.

N terminals (default 1,000) are connected and authenticated first; then one text per terminal
is created at ``--rate`` commands/s, each in its own transaction. Prints p50/p99/max of
created -> 0x8300 received by the terminal ("wire") and created -> acknowledged in the table
("acknowledged", from the row's ``created_at`` and the ``updated_at`` the answer wrote; both on
this machine's clock), and how many were acknowledged.

    .venv/bin/python benchmarks/commands.py --terminals 1000 --rate 200

Needs PostgreSQL (a scratch database is created and dropped) and Mosquitto, loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import asyncpg  # noqa: E402
from jt808 import (  # noqa: E402
    PHONE_BASE,
    bench_plate,
    drop_database,
    percentile,
    prepare_database,
    raise_fd_limit,
    wait_port,
)

from gps_monitor.commands import TextBody, build_text  # noqa: E402
from gps_monitor.db import commands as commands_db  # noqa: E402
from gps_monitor.db.pool import init_connection  # noqa: E402
from ingest.jt808.sim import SimTerminal  # noqa: E402


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gps_monitor.cli", *args], cwd=REPO, env=env, stderr=out,
            stdout=out,
        )  # fmt: skip


async def wait_dispatcher(conn: asyncpg.Connection, timeout_s: float = 60.0) -> None:
    """Until the dispatcher listens for new commands (it subscribes right after), plus 1 s."""
    deadline = time.monotonic() + timeout_s
    while not await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
        "AND query ILIKE 'LISTEN%')"
    ):
        if time.monotonic() > deadline:
            raise SystemExit(f"the dispatcher did not start within {timeout_s:g} s")
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)


async def main(args: argparse.Namespace) -> None:
    raise_fd_limit()
    name = f"gpsm_bench_cmd_{os.getpid()}"
    url = await prepare_database(args.admin_url, name, args.terminals)
    prefix = f"bench-cmd-{os.getpid()}/"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPS_MONITOR_")}
    env.update(
        GPS_MONITOR_DATABASE_URL=url,
        GPS_MONITOR_DATABASE_TIMESCALE="off",
        GPS_MONITOR_MQTT_HOST=args.mqtt_host,
        GPS_MONITOR_MQTT_PORT=str(args.mqtt_port),
        GPS_MONITOR_MQTT_TOPIC_PREFIX=prefix,
        GPS_MONITOR_MQTT_CLIENT_ID=f"bench-cmd-ingest-{os.getpid()}",
        GPS_MONITOR_JT808_HOST="127.0.0.1",
        GPS_MONITOR_JT808_PORT=str(args.port),
        GPS_MONITOR_JT808_CLIENT_ID=f"bench-cmd-gw-{os.getpid()}",
        GPS_MONITOR_LOG_LEVEL="WARNING",
    )
    log = Path(args.log)
    # the dispatcher first: a terminal's online status published before it subscribed is lost
    # (its session is new), and the terminal would then count as offline
    procs = [start(["ingest", "--no-upgrade"], env, log)]
    terminals: list[SimTerminal] = []
    readers: list[asyncio.Task[None]] = []
    conn = await asyncpg.connect(url)
    await init_connection(conn)
    try:
        await wait_dispatcher(conn)
        procs.append(start(["jt808", "--no-upgrade"], env, log))
        await wait_port(args.port)
        gate = asyncio.Semaphore(100)

        async def setup(i: int) -> None:
            async with gate:
                terminal = SimTerminal(str(PHONE_BASE + i), reply_timeout_s=60)
                await terminal.connect("127.0.0.1", args.port)
                await terminal.register(bench_plate(i), 2)
                await terminal.authenticate()
                terminals.append(terminal)

        await asyncio.gather(*(setup(i) for i in range(args.terminals)))
        print(f"{len(terminals)} terminals connected and authenticated", flush=True)
        await asyncio.sleep(3)  # the dispatcher takes in their online status

        async def read(terminal: SimTerminal) -> None:
            with contextlib.suppress(Exception):
                while True:
                    await terminal.read_frame()  # 0x8300 answered inside

        readers.extend(asyncio.create_task(read(t)) for t in terminals)
        vehicles = {
            r["terminal_id"]: (r["id"], r["company_id"])
            for r in await conn.fetch("SELECT id, company_id, terminal_id FROM vehicles")
        }
        created: dict[str, float] = {}
        started = time.monotonic()
        for i, terminal in enumerate(terminals):
            due = started + i / args.rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            command = build_text(
                terminal.phone, TextBody(text="您已超速行驶，请减速慢行"), text_max_bytes=1000,
                expiry_s=600,
            )  # fmt: skip
            vehicle_id, company_id = vehicles[terminal.phone]
            async with conn.transaction():
                await commands_db.create(
                    conn, command, vehicle_id=vehicle_id, company_id=company_id
                )
            created[terminal.phone] = command.created_at.timestamp()
        deadline = time.monotonic() + args.wait_s
        while time.monotonic() < deadline:
            done = await conn.fetchval("SELECT count(*) FROM commands WHERE state = 'acknowledged'")
            if done >= len(terminals):
                break
            await asyncio.sleep(0.5)
        rows = await conn.fetch("SELECT terminal_id, state, created_at, updated_at FROM commands")
        acked = [
            (r["updated_at"] - r["created_at"]).total_seconds() * 1000
            for r in rows
            if r["state"] == "acknowledged"
        ]
        received = {t.phone: t.texts_received_at[0] for t in terminals if t.texts_received_at}
        wire = [(received[p] - created[p]) * 1000 for p in created if p in received]
        states: dict[str, int] = {}
        for r in rows:
            states[r["state"]] = states.get(r["state"], 0) + 1
        print(
            f"{len(rows)} commands at {args.rate:g}/s to {len(terminals)} terminals; "
            f"states {states}"
        )
        print(
            f"created -> 0x8300 at the terminal: p50 {percentile(wire, 50):.0f} ms, "
            f"p99 {percentile(wire, 99):.0f} ms, max {max(wire, default=float('nan')):.0f} ms"
        )
        print(
            f"created -> acknowledged in the table: p50 {percentile(acked, 50):.0f} ms, "
            f"p99 {percentile(acked, 99):.0f} ms, max {max(acked, default=float('nan')):.0f} ms"
        )
        print(f"finished at {datetime.now(UTC).isoformat()}")
    finally:
        for task in readers:
            task.cancel()
        for terminal in terminals:
            await terminal.close()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        await conn.close()
        await drop_database(args.admin_url, name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--terminals", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=200.0, help="commands created per second")
    parser.add_argument("--port", type=int, default=18809)
    parser.add_argument("--wait-s", type=float, default=60.0)
    parser.add_argument("--mqtt-host", default="127.0.0.1")
    parser.add_argument("--mqtt-port", type=int, default=1883)
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "GPS_MONITOR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--log", default="/tmp/gpsm-bench-commands.log")
    asyncio.run(main(parser.parse_args()))
