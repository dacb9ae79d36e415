"""JT/T 809 service figures at province-county scale (issue 10). Prints figures; asserts nothing.

    .venv/bin/python benchmarks/jt809.py [--vehicles 10000] [--live-s 60] [--burst 2000]
                                         [--outage-s 600] [--reupload-rate 2000]

Phase 1, live: ``gps-monitor jt809`` runs as its own process (so its CPU and RSS are its own)
against the superior simulator of this process over loopback TCP. This process publishes
accepted positions (``positions/v2/...``, what ingest publishes after its commit) for
``--vehicles`` vehicles at one position per vehicle per 30 s, plus a burst of ``--burst``
positions at once every 20 s; the simulator stamps each 0x1202 as it decodes it. Latency =
simulator receive time - publish time (same clock), p50/p99/max.

Phase 2, outage: the service is stopped, ``--outage-s`` seconds of positions of every vehicle
(one per 30 s: 10,000 x 20 = 200,000 at the defaults) are written to ``jt809_outbox`` as an
outage leaves them, and the service starts again with ``reupload_rate_per_s`` =
``--reupload-rate``: time until the outbox is empty and 0x1203 messages per second.

Needs PostgreSQL (a scratch database is created and dropped) and Mosquitto, loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

# run as a script, this file's folder comes first on sys.path and its name hides the jt809
# package: the repository root goes first instead
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.modules.pop("jt809", None)

import aiomqtt  # noqa: E402
import asyncpg  # noqa: E402
import psutil  # noqa: E402

from gps_monitor import topics  # noqa: E402
from gps_monitor.config import DatabaseSettings, Jt809Settings  # noqa: E402
from gps_monitor.db import migrate  # noqa: E402
from gps_monitor.models import Position  # noqa: E402
from jt809 import messages as m  # noqa: E402
from jt809.links import build_codec  # noqa: E402
from jt809.sim import SuperiorSimulator  # noqa: E402

USER_ID = 20261001
PASSWORD = "bench809"
PREFIX = "bench809/"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def plate(i: int) -> str:
    return f"渝B{i:05d}"


async def prepare(admin_url: str, name: str, vehicles: int) -> tuple[str, int]:
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    conn = await asyncpg.connect(url)
    try:
        await migrate.upgrade(conn, DatabaseSettings(url=url, timescale="off"))
        company = await conn.fetchval("INSERT INTO companies (name) VALUES ('809') RETURNING id")
        await conn.copy_records_to_table(
            "vehicles",
            columns=["company_id", "plate_number", "plate_color", "vehicle_class", "terminal_id"],
            records=[(company, plate(i), 2, "coach", f"1390{i:07d}") for i in range(vehicles)],
        )
    finally:
        await conn.close()
    return url, int(company)


class TimedSimulator(SuperiorSimulator):
    """The simulator, stamping each received position with the monotonic receive time."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.received_at: dict[tuple[str, datetime], float] = {}
        self.reupload_times: list[float] = []

    def _on_vehicle_dynamic(self, vehicle: m.VehicleMessage) -> None:
        now = time.monotonic()
        before = len(self.record.positions)
        super()._on_vehicle_dynamic(vehicle)
        if vehicle.data_type == m.MSG_REUPLOAD_POSITIONS:
            self.reupload_times.append(now)
        for p in self.record.positions[before:]:
            self.received_at.setdefault((p.plate_number, p.gnss.fix_time), now)
        del self.record.positions[: max(0, len(self.record.positions) - 10)]


def service_env(url: str, superior_port: int, reupload_rate: float) -> dict[str, str]:
    return dict(
        os.environ,
        GPS_MONITOR_DATABASE_URL=url,
        GPS_MONITOR_DATABASE_TIMESCALE="off",
        GPS_MONITOR_MQTT_HOST="127.0.0.1",
        GPS_MONITOR_MQTT_TOPIC_PREFIX=PREFIX,
        GPS_MONITOR_JT809_SUPERIOR_HOST="127.0.0.1",
        GPS_MONITOR_JT809_SUPERIOR_PORT=str(superior_port),
        GPS_MONITOR_JT809_USER_ID=str(USER_ID),
        GPS_MONITOR_JT809_PASSWORD=PASSWORD,
        GPS_MONITOR_JT809_ACCESS_CODE=str(USER_ID),
        GPS_MONITOR_JT809_SLAVE_HOST="127.0.0.1",
        GPS_MONITOR_JT809_SLAVE_PORT=str(free_port()),
        GPS_MONITOR_JT809_CLIENT_ID=f"bench809-{os.getpid()}",
        GPS_MONITOR_JT809_REUPLOAD_RATE_PER_S=str(reupload_rate),
        GPS_MONITOR_JT809_STATS_INTERVAL_S="3600",
    )


def start_service(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "gps_monitor.cli", "jt809", "--no-upgrade"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def wait_login(sim: SuperiorSimulator, logins: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while len(sim.record.login_results) < logins:
        if time.monotonic() > deadline:
            raise TimeoutError("the service did not log in")
        await asyncio.sleep(0.1)


async def wait_subscribed(sim: SuperiorSimulator, vehicles: int, timeout_s: float = 120) -> None:
    """Until the login's 0x1201 registrations went out (the service subscribes meanwhile)."""
    for _ in range(int(timeout_s * 2)):
        if len(sim.record.registrations) >= vehicles:
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(1.0)


def position(vehicle: int, fix_time: datetime) -> dict[str, object]:
    return Position(
        f"1390{vehicle:07d}", fix_time, 29.5 + vehicle * 1e-5, 106.5, 40.0, 90.0,
        vehicle_id=vehicle + 1,
    ).to_dict()  # fmt: skip


async def live_phase(
    args: argparse.Namespace, sim: TimedSimulator, company: int
) -> dict[tuple[str, datetime], float]:
    """Publish the steady load and the bursts; returns publish times by (plate, fix time)."""
    published: dict[tuple[str, datetime], float] = {}
    per_tick = args.vehicles / 30 / 10  # 100 ms ticks
    base = datetime.now(UTC).replace(microsecond=0)
    counter = 0
    async with aiomqtt.Client("127.0.0.1", 1883, max_queued_outgoing_messages=0) as client:
        began = time.monotonic()
        next_burst = began + 20
        carry = 0.0
        while time.monotonic() - began < args.live_s:
            carry += per_tick
            batch = []
            while carry >= 1:
                batch.append(counter)
                counter += 1
                carry -= 1
            if time.monotonic() >= next_burst:
                batch += range(counter, counter + args.burst)
                counter += args.burst
                next_burst += 20
            for n in batch:
                vehicle = n % args.vehicles
                fix = base + timedelta(seconds=n // args.vehicles * 30 + (n % 30))
                payload = json.dumps([position(vehicle, fix)])
                published[(plate(vehicle), fix)] = time.monotonic()
                await client.publish(topics.accepted_topic(0, PREFIX), payload, qos=0)
            await asyncio.sleep(0.1)
    for _ in range(300):  # up to 60 s for the last frames
        if len(sim.received_at) >= len(published):
            break
        await asyncio.sleep(0.2)
    return published


async def fill_outbox(url: str, vehicles: int, outage_s: int) -> int:
    conn = await asyncpg.connect(url)
    try:
        start = datetime.now(UTC) - timedelta(seconds=outage_s)
        rows = []
        for k in range(outage_s // 30):
            for v in range(vehicles):
                fix = start + timedelta(seconds=30 * k + v % 30)
                payload = json.dumps(position(v, fix))
                rows.append(("position", v + 1, fix, payload, "link_down"))
        await conn.execute(
            "CREATE TEMP TABLE staging (k text, v bigint, f timestamptz, p text, r text)"
        )
        await conn.copy_records_to_table("staging", records=rows)
        await conn.execute(
            "INSERT INTO jt809_outbox (kind, vehicle_id, fix_time, payload, reason) "
            "SELECT k, v, f, p::jsonb, r FROM staging"
        )
        return len(rows)
    finally:
        await conn.close()


async def outbox_size(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM jt809_outbox WHERE kind = 'position'"))
    finally:
        await conn.close()


class Sampler:
    """CPU seconds and peak RSS of a process."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak_rss = 0

    def sample(self) -> None:
        self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)

    def cpu_s(self) -> float:
        times = self.process.cpu_times()
        return float(times.user + times.system)


async def main(args: argparse.Namespace) -> None:
    name = f"bench_jt809_{os.getpid()}"
    url, company = await prepare(args.admin_url, name, args.vehicles)
    sim = TimedSimulator(
        build_codec(Jt809Settings(access_code=USER_ID)), user_id=USER_ID, password=PASSWORD
    )
    port = await sim.start()
    env = service_env(url, port, args.reupload_rate)
    service = start_service(env)
    try:
        await wait_login(sim, 1)
        await wait_subscribed(sim, args.vehicles)
        sampler = Sampler(service.pid)
        cpu0, wall0 = sampler.cpu_s(), time.monotonic()
        sampling = asyncio.create_task(_sample_forever(sampler))
        published = await live_phase(args, sim, company)
        wall = time.monotonic() - wall0
        cpu = sampler.cpu_s() - cpu0
        sampling.cancel()
        latencies = sorted(
            sim.received_at[key] - sent for key, sent in published.items() if key in sim.received_at
        )
        missing = len(published) - len(latencies)
        q = statistics.quantiles(latencies, n=100) if len(latencies) > 100 else [0.0] * 99
        print(f"live: {len(published):,} positions in {args.live_s} s ({args.vehicles:,} vehicles "
              f"at 1/30 s + {args.burst:,} every 20 s); not received {missing}")  # fmt: skip
        print(f"  accepted -> 0x1202 on the wire: p50 {q[49] * 1000:.0f} ms, p99 "
              f"{q[98] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms")  # fmt: skip
        print(f"  service CPU {cpu / wall * 100:.0f} % of one core, peak RSS "
              f"{sampler.peak_rss / 2**20:.0f} MiB")  # fmt: skip
    finally:
        service.terminate()
        service.wait(30)
    # ------------------------------------------------------------------ outage replay
    buffered = await fill_outbox(url, args.vehicles, args.outage_s)
    sim.reupload_times.clear()
    service = start_service(env)
    try:
        sampler = Sampler(service.pid)
        sampling = asyncio.create_task(_sample_forever(sampler))
        began = time.monotonic()
        await wait_login(sim, 2)
        while await outbox_size(url) > 0:
            if time.monotonic() - began > args.replay_timeout_s:
                break
            await asyncio.sleep(1.0)
        took = time.monotonic() - began
        left = await outbox_size(url)
        cpu = sampler.cpu_s()
        sampling.cancel()
        messages = len(sim.reupload_times)
        span = (sim.reupload_times[-1] - sim.reupload_times[0]) if messages > 1 else 0.0
        print(f"outage: {buffered:,} positions buffered ({args.outage_s} s of {args.vehicles:,} "
              f"vehicles), reupload_rate_per_s {args.reupload_rate:g}")  # fmt: skip
        print(f"  replayed in {took:.0f} s ({left:,} left), {messages:,} 0x1203 messages, "
              f"{messages / span if span else 0:.0f} 0x1203/s, "
              f"{(buffered - left) / took:.0f} positions/s")  # fmt: skip
        print(f"  service CPU {cpu / took * 100:.0f} % of one core, peak RSS "
              f"{sampler.peak_rss / 2**20:.0f} MiB")  # fmt: skip
    finally:
        service.terminate()
        service.wait(30)
        await sim.stop()
        admin = await asyncpg.connect(args.admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def _sample_forever(sampler: Sampler) -> None:
    while True:
        sampler.sample()
        await asyncio.sleep(0.5)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vehicles", type=int, default=10000)
    parser.add_argument("--live-s", type=int, default=60)
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--outage-s", type=int, default=600)
    parser.add_argument("--reupload-rate", type=float, default=2000.0)
    parser.add_argument("--replay-timeout-s", type=float, default=900.0)
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "GPS_MONITOR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    asyncio.run(main(parser.parse_args()))
