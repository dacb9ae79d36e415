"""JT/T 808 gateway benchmark: N concurrent simulated terminals, each sending a 0x0200 location
report every ``--interval-s`` seconds, through the real gateway (its own process) into the real
Mosquitto. Loopback addresses only.

Prints: terminals connected and held, sustained positions/s seen on the broker, p50/p99/max
frame-to-MQTT latency (the terminal stamps each frame with its send time in a vendor additional
item 0xE0; a subscriber on the broker takes the receive time), p99 frame-to-reply latency (the
terminal's wait for 0x8001, which the gateway sends after PUBACK), gateway RSS and memory per
connection, gateway CPU.

    .venv/bin/python benchmarks/jt808.py --terminals 10000 --interval-s 10 --duration-s 60

Needs PostgreSQL (a scratch database is created and dropped) and Mosquitto. The file-descriptor
limit is raised to the hard limit inside the script (resource.setrlimit); each process needs one
descriptor per connection. The gateway's stderr (GC pauses over 20 ms, warnings) goes to
``--gateway-log``; ``JT808_BENCH_RUNNER=FILE`` runs the gateway with that Python code instead
(e.g. under cProfile).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import resource
import statistics
import struct
import subprocess
import sys
import time
from array import array
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import aiomqtt  # noqa: E402
import asyncpg  # noqa: E402
import psutil  # noqa: E402

from gps_monitor.config import DatabaseSettings  # noqa: E402
from gps_monitor.db import migrate  # noqa: E402
from ingest.jt808 import messages as m  # noqa: E402
from ingest.jt808.codec import encode_frame  # noqa: E402
from ingest.jt808.sim import ITEM_SENT_AT, SimTerminal  # noqa: E402

PHONE_BASE = 13900000000


def bench_plate(index: int) -> str:
    """Plate of the benchmark's ``index``-th vehicle (yellow); its terminal registers with it."""
    return f"测B{index:05d}"


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


# ------------------------------------------------------------------------- client process


async def client_main(args: argparse.Namespace) -> None:
    """Connect ``args.count`` terminals, print READY, report for ``args.run_s``, print stats."""
    raise_fd_limit()
    connected: list[SimTerminal] = []
    failures = 0
    gate = asyncio.Semaphore(args.connect_concurrency)

    async def setup(i: int) -> None:
        nonlocal failures
        phone = str(PHONE_BASE + args.first + i)
        terminal = SimTerminal(phone, reply_timeout_s=60)
        async with gate:
            try:
                await terminal.connect("127.0.0.1", args.port)
                await terminal.register(bench_plate(args.first + i), 2)
                if await terminal.authenticate() != m.RESULT_OK:
                    raise RuntimeError("auth refused")
                connected.append(terminal)
            except Exception as error:  # counted and reported, the run goes on
                failures += 1
                if failures <= 3:
                    print(f"setup {phone}: {error!r}", file=sys.stderr)
                await terminal.close()

    started = time.monotonic()
    await asyncio.gather(*(setup(i) for i in range(args.count)))
    # harness, not system under test: move the 10,000 terminals' long-lived objects out of the
    # cyclic GC, so a collection triggered between stamping a frame and writing it is short
    gc.collect()
    gc.freeze()
    print(
        f"READY {len(connected)} {failures} {time.monotonic() - started:.1f}",
        flush=True,
    )
    reply_latency_s: list[float] = []
    counts = {"sent": 0, "ok": 0, "failed": 0, "errors": 0}
    deadline = time.monotonic() + args.run_s

    async def report_loop(terminal: SimTerminal, index: int) -> None:
        rng = random.Random(index)
        await asyncio.sleep(rng.uniform(0, args.interval_s))  # spread the terminals
        lat, lon = 29.5 + rng.random(), 106.5 + rng.random()
        next_at = time.monotonic()
        while time.monotonic() < deadline:
            sent_ns = time.time_ns()
            report = m.LocationReport(
                alarm_flags=0,
                status_flags=m.STATUS_ACC_ON | m.STATUS_POSITIONED,
                latitude_e6=round(lat * 1e6),
                longitude_e6=round(lon * 1e6),
                altitude_m=300,
                speed_dkmh=rng.randrange(0, 900),
                heading_deg=rng.randrange(0, 360),
                bcd_time=time.strftime("%y%m%d%H%M%S", time.gmtime(time.time() + 8 * 3600)),
                items={0x31: bytes([12]), ITEM_SENT_AT: struct.pack(">Q", sent_ns)},
            )
            t0 = time.perf_counter()
            try:
                result = await terminal.send_location(report)
            except Exception:
                counts["errors"] += 1
                return
            reply_latency_s.append(time.perf_counter() - t0)
            counts["sent"] += 1
            counts["ok" if result == m.RESULT_OK else "failed"] += 1
            next_at += args.interval_s
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    await asyncio.gather(*(report_loop(t, i) for i, t in enumerate(connected)))
    for terminal in connected:
        await terminal.close()
    print(
        "STATS "
        + json.dumps(
            {
                **counts,
                "connected": len(connected),
                "reply_p50_ms": percentile(reply_latency_s, 50) * 1000,
                "reply_p99_ms": percentile(reply_latency_s, 99) * 1000,
                "client_rss_mb": psutil.Process().memory_info().rss / 2**20,
            }
        ),
        flush=True,
    )


# ------------------------------------------------------------------------- orchestrator


async def prepare_database(admin_url: str, name: str, terminals: int) -> str:
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
        company_id = await conn.fetchval(
            "INSERT INTO companies (name) VALUES ('jt808 bench') RETURNING id"
        )
        await conn.copy_records_to_table(
            "vehicles",
            columns=["company_id", "plate_number", "plate_color", "vehicle_class", "terminal_id"],
            records=[
                (company_id, bench_plate(i), 2, "freight", str(PHONE_BASE + i))
                for i in range(terminals)
            ],
        )
    finally:
        await conn.close()
    return url


async def drop_database(admin_url: str, name: str) -> None:
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def wait_port(port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def start_gateway(
    runner: str, env: dict[str, str], log_path: str, tree: Path = REPO
) -> subprocess.Popen[bytes]:
    """The gateway as its own process (so its RSS and CPU are its own), stderr to a log; its
    code comes from ``tree`` (another checkout measures an older gateway)."""
    log = open(log_path, "wb")  # noqa: SIM115 - lives as long as the child
    return subprocess.Popen([sys.executable, "-c", runner], cwd=tree, env=env, stderr=log)


async def attack(args: argparse.Namespace) -> None:
    """Issue 14 item 2: one connection that never authenticates sends sub-packets of messages
    announcing 65,535 packets each (16 message keys, 1000-byte bodies) as fast as the gateway
    answers, for ``--duration-s``; prints the gateway's RSS before, at its peak, and 3 s after
    the connection closed. ``--gateway-tree`` runs another checkout's gateway (before/after)."""
    name = f"gpsm_bench_jt808_attack_{os.getpid()}"
    url = await prepare_database(args.admin_url, name, 0)
    env = {
        **os.environ,
        "GPS_MONITOR_DATABASE_URL": url,
        "GPS_MONITOR_MQTT_HOST": args.mqtt_host,
        "GPS_MONITOR_MQTT_PORT": str(args.mqtt_port),
        "GPS_MONITOR_MQTT_TOPIC_PREFIX": f"bench-jt808-attack-{os.getpid()}/",
        "GPS_MONITOR_JT808_HOST": "127.0.0.1",
        "GPS_MONITOR_JT808_PORT": str(args.port),
        "GPS_MONITOR_JT808_CLIENT_ID": f"bench-jt808-attack-gw-{os.getpid()}",
        "GPS_MONITOR_LOG_LEVEL": "WARNING",
    }
    runner = (
        "import argparse,logging\n"
        "from gps_monitor.config import Settings\n"
        "from ingest.jt808 import cli\n"
        "logging.basicConfig(level='WARNING')\n"
        "cli.run(argparse.Namespace(host=None,port=None,no_upgrade=True,forget_terminal=None),"
        "Settings())\n"
    )
    tree = Path(args.gateway_tree)
    gateway = start_gateway(runner, env, args.gateway_log, tree)
    try:
        await wait_port(args.port)
        gw = psutil.Process(gateway.pid)
        await asyncio.sleep(1)
        rss_base = peak = gw.memory_info().rss
        reader, writer = await asyncio.open_connection("127.0.0.1", args.port)
        answered = 0

        async def drain_replies() -> None:
            nonlocal answered
            while data := await reader.read(65536):
                answered += data.count(b"\x7e") // 2

        pump = asyncio.create_task(drain_replies())
        body = bytes(range(256)) * 3 + bytes(232)
        phone, sent, index = "13900000077", 0, 1
        deadline = time.monotonic() + args.duration_s
        next_sample = time.monotonic()
        while time.monotonic() < deadline and index <= 65535:
            frames = [
                encode_frame(
                    m.MSG_BATCH, phone, 1000 * k + index - 1, body, subpackage=(65535, index)
                )
                for k in range(16)
            ]
            writer.write(b"".join(frames))
            await writer.drain()
            sent += len(frames)
            index += 1
            if time.monotonic() >= next_sample:
                peak = max(peak, gw.memory_info().rss)
                next_sample += 0.5
        await asyncio.sleep(1)
        peak = max(peak, gw.memory_info().rss)
        writer.close()
        pump.cancel()
        await asyncio.sleep(3)
        rss_after = gw.memory_info().rss
    finally:
        gateway.terminate()
        gateway.wait(10)
        await drop_database(args.admin_url, name)
    mib = 2**20
    print(
        f"attack on the gateway of {tree}: {sent} sub-packets ({sent * len(body) / mib:.0f} MiB "
        f"of bodies) in {args.duration_s:g} s, {answered} replies; gateway RSS "
        f"{rss_base / mib:.0f} MB before, {peak / mib:.0f} MB peak, {rss_after / mib:.0f} MB "
        "3 s after the connection closed"
    )


async def orchestrate(args: argparse.Namespace) -> None:
    fd_limit = raise_fd_limit()
    per_proc = -(-args.terminals // args.client_procs)
    if per_proc + 100 > fd_limit or args.terminals + 100 > fd_limit:
        print(
            f"file-descriptor limit {fd_limit} is below what {args.terminals} connections need",
            file=sys.stderr,
        )
    name = f"gpsm_bench_jt808_{os.getpid()}"
    print(
        f"machine: {psutil.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} "
        f"(shared with other engineers' work), fd limit {fd_limit}"
    )
    url = await prepare_database(args.admin_url, name, args.terminals)
    prefix = f"bench-jt808-{os.getpid()}/"
    env = {
        **os.environ,
        "GPS_MONITOR_DATABASE_URL": url,
        "GPS_MONITOR_MQTT_HOST": args.mqtt_host,
        "GPS_MONITOR_MQTT_PORT": str(args.mqtt_port),
        "GPS_MONITOR_MQTT_TOPIC_PREFIX": prefix,
        "GPS_MONITOR_JT808_HOST": "127.0.0.1",
        "GPS_MONITOR_JT808_PORT": str(args.port),
        "GPS_MONITOR_JT808_IDLE_TIMEOUT_S": str(max(180.0, 3 * args.interval_s)),
        "GPS_MONITOR_JT808_CLIENT_ID": f"bench-jt808-gw-{os.getpid()}",
        "GPS_MONITOR_JT808_STATS_INTERVAL_S": "3600",
        "GPS_MONITOR_LOG_LEVEL": "WARNING",
    }
    runner = (
        "import argparse,sys,logging,gc,time\n"
        "from gps_monitor.config import Settings\n"
        "from ingest.jt808 import cli\n"
        "logging.basicConfig(level='WARNING')\n"
        "t0=[0.0]\n"
        "def gc_watch(phase, info):\n"
        "    if phase == 'start': t0[0] = time.perf_counter(); return\n"
        "    ms = (time.perf_counter() - t0[0]) * 1000\n"
        "    if ms > 20: print(f'GC pause gen{info[\"generation\"]} {ms:.0f} ms', "
        "file=sys.stderr, flush=True)\n"
        "gc.callbacks.append(gc_watch)\n"
        "cli.run(argparse.Namespace(host=None,port=None,no_upgrade=True,forget_terminal=None),"
        "Settings())\n"
    )
    if os.environ.get("JT808_BENCH_RUNNER"):
        runner = open(os.environ["JT808_BENCH_RUNNER"]).read()  # noqa: ASYNC230, SIM115
    gateway = start_gateway(runner, env, args.gateway_log)
    clients: list[asyncio.subprocess.Process] = []
    received_at = array("d")  # monotonic receive time (untracked by the GC, unlike tuples)
    received_latency_ns = array("q")
    try:
        await wait_port(args.port)
        gw = psutil.Process(gateway.pid)
        await asyncio.sleep(1)
        rss_base = gw.memory_info().rss
        async with aiomqtt.Client(
            args.mqtt_host, args.mqtt_port, identifier=f"bench-jt808-sub-{os.getpid()}"
        ) as sub:
            await sub.subscribe(f"{prefix}gps/v1/+/position", qos=0)

            async def pump() -> None:
                async for message in sub.messages:
                    now_ns = time.time_ns()
                    payload = json.loads(message.payload)  # type: ignore[arg-type]
                    sent_hex = payload["extras"]["jt808_items"]["0xe0"]
                    received_at.append(time.monotonic())
                    received_latency_ns.append(now_ns - int(sent_hex, 16))

            pump_task = asyncio.create_task(pump())
            gc.collect()
            gc.freeze()
            run_s = args.warmup_s + args.duration_s
            setup_started = time.monotonic()
            for k in range(args.client_procs):
                first = k * per_proc
                count = max(0, min(per_proc, args.terminals - first))
                clients.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable,
                        __file__,
                        "--role",
                        "client",
                        "--port",
                        str(args.port),
                        "--first",
                        str(first),
                        "--count",
                        str(count),
                        "--interval-s",
                        str(args.interval_s),
                        "--run-s",
                        str(run_s),
                        "--connect-concurrency",
                        str(args.connect_concurrency),
                        stdout=asyncio.subprocess.PIPE,
                        cwd=REPO,
                    )
                )
            connected = 0
            for client in clients:
                assert client.stdout is not None
                line = (await client.stdout.readline()).decode().split()
                connected += int(line[1])
            setup_s = time.monotonic() - setup_started
            gw.cpu_percent()
            rss_connected = gw.memory_info().rss
            await asyncio.sleep(args.warmup_s)
            window_start = time.monotonic()
            gw.cpu_percent()
            await asyncio.sleep(args.duration_s)
            window_end = time.monotonic()
            gateway_cpu = gw.cpu_percent()
            rss_peak = gw.memory_info().rss
            stats = []
            for client in clients:
                out, _ = await client.communicate()
                for line in out.decode().splitlines():
                    if line.startswith("STATS "):
                        stats.append(json.loads(line[6:]))
            pump_task.cancel()
    finally:
        for client in clients:
            if client.returncode is None:
                client.kill()
        gateway.terminate()
        gateway.wait(10)
        await drop_database(args.admin_url, name)

    received = list(zip(received_at, received_latency_ns, strict=True))
    in_window = [lat for t, lat in received if window_start <= t < window_end]
    lat_ms = [x / 1e6 for x in in_window]
    sent = sum(s["sent"] for s in stats)
    held = sum(s["connected"] - s["errors"] for s in stats)
    print(
        f"terminals: {args.terminals} requested, {connected} connected and authenticated in "
        f"{setup_s:.1f} s, {held} still reporting at the end "
        f"({sum(s['errors'] for s in stats)} connection errors)"
    )
    print(
        f"offered load: {args.terminals / args.interval_s:.0f} positions/s "
        f"(every {args.interval_s:g} s per terminal)"
    )
    print(
        f"sustained: {len(in_window) / (window_end - window_start):.0f} positions/s on the "
        f"broker over {window_end - window_start:.0f} s "
        f"({sent} sent, {sum(s['ok'] for s in stats)} acknowledged with result 0, "
        f"{sum(s['failed'] for s in stats)} failure replies)"
    )
    print(
        f"frame-to-MQTT latency: p50 {percentile(lat_ms, 50):.1f} ms, p99 "
        f"{percentile(lat_ms, 99):.1f} ms, max {max(lat_ms, default=float('nan')):.1f} ms "
        f"(n={len(lat_ms)})"
    )
    reply_p99 = max((s["reply_p99_ms"] for s in stats), default=float("nan"))
    reply_p50 = statistics.median([s["reply_p50_ms"] for s in stats]) if stats else float("nan")
    print(
        f"frame-to-reply latency (0x8001 after PUBACK): p50 {reply_p50:.1f} ms, "
        f"p99 {reply_p99:.1f} ms"
    )
    per_conn = (rss_connected - rss_base) / max(connected, 1)
    print(
        f"gateway RSS: {rss_base / 2**20:.0f} MB idle, {rss_connected / 2**20:.0f} MB with "
        f"{connected} connections, {rss_peak / 2**20:.0f} MB at the end; "
        f"{per_conn / 1024:.1f} KiB per connection"
    )
    print(f"gateway CPU: {gateway_cpu:.0f} % of one core during the window")
    if args.timeline_s:
        print(f"timeline ({args.timeline_s:g} s buckets): count, p50 ms, p99 ms, max ms")
        buckets: dict[int, list[float]] = {}
        for t, lat in received:
            if window_start <= t < window_end:
                buckets.setdefault(int((t - window_start) // args.timeline_s), []).append(lat / 1e6)
        for key in sorted(buckets):
            values = buckets[key]
            print(
                f"  {key * args.timeline_s:5.0f} s  {len(values):6d}  "
                f"{percentile(values, 50):7.1f}  {percentile(values, 99):7.1f}  "
                f"{max(values):7.1f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--role", choices=("orchestrator", "client", "attack"), default="orchestrator"
    )
    parser.add_argument(
        "--gateway-tree", default=str(REPO), help="checkout whose gateway --role attack runs"
    )
    parser.add_argument("--terminals", type=int, default=10000)
    parser.add_argument("--interval-s", type=float, default=10.0)
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--warmup-s", type=float, default=15.0)
    parser.add_argument("--client-procs", type=int, default=1)
    parser.add_argument("--connect-concurrency", type=int, default=200)
    parser.add_argument("--port", type=int, default=18809)
    parser.add_argument("--mqtt-host", default="127.0.0.1")
    parser.add_argument("--mqtt-port", type=int, default=1883)
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "GPS_MONITOR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--timeline-s", type=float, default=0.0, help="print latency per bucket")
    parser.add_argument("--gateway-log", default="/tmp/jt808-bench-gateway.log")
    # client role
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--run-s", type=float, default=60.0)
    args = parser.parse_args()
    if args.role == "client":
        asyncio.run(client_main(args))
    elif args.role == "attack":
        args.gateway_tree = os.path.abspath(args.gateway_tree)
        asyncio.run(attack(args))
    else:
        asyncio.run(orchestrate(args))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
