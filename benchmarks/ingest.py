"""Ingest benchmark: N simulated vehicles publishing at a given rate for T seconds through the
real broker into the real database, with the ceilings measured in the same run.

Prints:
- sustained stored positions/s (stored / time from first publish to last commit) and how many
  published positions were not stored (a broker that drops QoS 1 messages for a lagging
  subscriber, e.g. Mosquitto's max_queued_messages, shows up here);
- p50 / p99 publish-to-commit latency: from the publisher's clock at publish to the moment the
  position comes back on the accepted topic, which the worker publishes right after the commit
  (so it is an upper bound of publish-to-commit);
- the worker's peak RSS (the worker is a real ``gps-monitor ingest`` subprocess);
- ceiling 1: a bare aiomqtt subscriber's receive rate at QoS 1 (auto-ack) on the same broker;
- ceiling 2: raw COPY rows/s into the same ``positions`` table.

Usage (broker and database as for the tests; --own-broker runs a private mosquitto with the
production queue limits, since the stock config drops QoS 1 messages past 1,000 queued):
    .venv/bin/python benchmarks/ingest.py --own-broker --vehicles 5000 --rate 5000 --duration 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from gps_monitor import mqtt, topics
from gps_monitor.config import DatabaseSettings, MqttSettings, Settings
from gps_monitor.db import migrate
from gps_monitor.db.pool import connect

ROOT = Path(__file__).resolve().parents[1]


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--vehicles", type=int, default=1000, help="simulated vehicles (default 1000)")
    p.add_argument("--rate", type=float, default=2000, help="positions/s in total (default 2000)")
    p.add_argument("--duration", type=float, default=10, help="seconds of publishing (default 10)")
    p.add_argument("--publishers", type=int, default=2, help="publisher processes (default 2)")
    p.add_argument(
        "--admin-url",
        default=os.environ.get(
            "GPS_MONITOR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    p.add_argument("--mqtt-host", default=os.environ.get("GPS_MONITOR_TEST_MQTT_HOST", "127.0.0.1"))
    p.add_argument(
        "--mqtt-port", type=int, default=int(os.environ.get("GPS_MONITOR_TEST_MQTT_PORT", "1883"))
    )
    p.add_argument("--ceiling-messages", type=int, default=30000, help="messages for ceiling 1")
    p.add_argument("--copy-rows", type=int, default=200000, help="rows for ceiling 2")
    p.add_argument(
        "--protocol", default="3.1.1", choices=["5", "3.1.1"], help="MQTT version (all clients)"
    )
    p.add_argument(
        "--own-broker",
        action="store_true",
        help="start a private mosquitto on a free port with the production queue limits of "
        "deploy/mosquitto/mosquitto.conf (the stock config drops QoS 1 messages beyond 1,000 "
        "queued per client, which a saturated run exceeds)",
    )
    p.add_argument("--profile-worker", default=None, help="write the worker's cProfile here")
    return p.parse_args()


def _url_for(admin_url: str, database: str) -> str:
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{database}"


# ---------------------------------------------------------------- publisher (own process)


def _publisher_main(
    mqtt_settings: dict[str, Any], terminals: list[str], rate: float, duration: float,
    prefix: str, start_at: float, out: Any, fix_base: float,
) -> None:  # fmt: skip
    asyncio.run(
        _publish(MqttSettings(**mqtt_settings), terminals, rate, duration, prefix, start_at, out,
                 fix_base)
    )  # fmt: skip


async def _publish(
    settings: MqttSettings, terminals: list[str], rate: float, duration: float, prefix: str,
    start_at: float, out: Any, fix_base: float,
) -> None:  # fmt: skip
    """Round-robin over ``terminals`` at ``rate`` msg/s (0 = flat out) for ``duration`` s."""
    client = mqtt.build_client(
        settings, client_id=f"bench-pub-{uuid.uuid4().hex[:8]}", max_inflight_messages=1000
    )
    client.pending_calls_threshold = 10**9
    semaphore = asyncio.Semaphore(500)
    published = 0
    async with client:
        while time.time() < start_at:  # noqa: ASYNC110 (wall-clock start line shared by processes)
            await asyncio.sleep(0.001)
        t0 = time.monotonic()
        tasks: set[asyncio.Task[None]] = set()

        async def one(topic: str, payload: str) -> None:
            nonlocal published
            try:
                await client.publish(topic, payload, qos=1)
                published += 1
            finally:
                semaphore.release()

        i = 0
        n = len(terminals)
        while True:
            elapsed = time.monotonic() - t0
            if elapsed >= duration:
                break
            if rate > 0 and i > elapsed * rate:
                await asyncio.sleep(min(0.002, i / rate - elapsed))
                continue
            terminal = terminals[i % n]
            fix_time = datetime.fromtimestamp(fix_base + i // n, tz=UTC)  # +1 s per round
            payload = json.dumps(
                {"fix_time": fix_time.isoformat(), "latitude": 30.0 + (i % n) * 1e-4,
                 "longitude": 104.0 + (i // n) * 1e-5, "speed_kmh": 40.0,
                 "extras": {"sent_at": time.time()}}
            )  # fmt: skip
            await semaphore.acquire()
            task = asyncio.create_task(one(topics.position_topic(terminal, prefix), payload))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        if tasks:
            await asyncio.gather(*tasks)
    out.put((published, time.monotonic() - t0))


def _run_publishers(
    settings: MqttSettings, terminals: list[str], rate: float, duration: float, prefix: str,
    processes: int,
) -> tuple[int, float, list[Any], Any]:  # fmt: skip
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    start_at = time.time() + 2.0
    fix_base = (datetime.now(UTC) - timedelta(days=2)).timestamp()
    procs = []
    for k in range(processes):
        part = terminals[k::processes]
        proc = ctx.Process(
            target=_publisher_main,
            args=(settings.model_dump(), part, rate / processes, duration, prefix, start_at, out,
                  fix_base),
        )  # fmt: skip
        proc.start()
        procs.append(proc)
    return 0, start_at, procs, out


# ---------------------------------------------------------------- the ingest run


async def _register(conn: asyncpg.Connection, vehicles: int) -> list[str]:
    company = await conn.fetchval("INSERT INTO companies (name) VALUES ('bench') RETURNING id")
    terminals = [f"1{n:011d}" for n in range(vehicles)]
    await conn.copy_records_to_table(
        "vehicles",
        records=[(company, f"B{n:07d}", 2, "freight", t) for n, t in enumerate(terminals)],
        columns=("company_id", "plate_number", "plate_color", "vehicle_class", "terminal_id"),
    )
    return terminals


class _RssWatch(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = 0
        self.running = True

    def run(self) -> None:
        while self.running:
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.1)


async def _listen_accepted(
    settings: Settings, latencies: list[float], ready: asyncio.Event
) -> None:
    async with mqtt.build_client(settings.mqtt, client_id=f"bench-acc-{uuid.uuid4().hex[:8]}") as c:
        await c.subscribe(topics.accepted_filter(settings.mqtt.topic_prefix), qos=1)
        ready.set()
        async for message in c.messages:
            now = time.time()
            for p in json.loads(message.payload):
                sent = p.get("extras", {}).get("sent_at")
                if sent is not None:
                    latencies.append(now - sent)


async def ingest_run(args: argparse.Namespace, settings: Settings, log: Path) -> dict[str, Any]:
    conn = await connect(settings.database)
    terminals = await _register(conn, args.vehicles)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPS_MONITOR_")}
    env.update(
        GPS_MONITOR_DATABASE_URL=settings.database.url or "",
        GPS_MONITOR_MQTT_HOST=settings.mqtt.host or "",
        GPS_MONITOR_MQTT_PORT=str(settings.mqtt.port),
        GPS_MONITOR_MQTT_CLIENT_ID=settings.mqtt.client_id,
        GPS_MONITOR_MQTT_TOPIC_PREFIX=settings.mqtt.topic_prefix,
        GPS_MONITOR_MQTT_PROTOCOL_VERSION=settings.mqtt.protocol_version,
        GPS_MONITOR_LOG_LEVEL="WARNING",
    )
    with log.open("wb") as out:
        worker = subprocess.Popen(  # noqa: ASYNC220
            [sys.executable,
             *(["-m", "cProfile", "-o", args.profile_worker] if args.profile_worker else []),
             "-m", "gps_monitor.cli", "--log-level", "INFO", "ingest", "--no-upgrade"],
            env=env, stdout=out, stderr=out,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while b"ingest consuming" not in log.read_bytes():  # noqa: ASYNC240
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{log.read_text()[-2000:]}")  # noqa: ASYNC240
            await asyncio.sleep(0.05)
        rss = _RssWatch(worker.pid)
        rss.start()
        latencies: list[float] = []
        ready = asyncio.Event()
        listener = asyncio.create_task(_listen_accepted(settings, latencies, ready))
        await ready.wait()
        _, start_at, procs, out_q = _run_publishers(
            settings.mqtt, terminals, args.rate, args.duration, settings.mqtt.topic_prefix,
            args.publishers,
        )  # fmt: skip
        results = [await asyncio.to_thread(out_q.get) for _ in procs]
        for proc in procs:
            proc.join()
        published = sum(r[0] for r in results)
        publish_s = max(r[1] for r in results)
        # drain: wait until stored stops growing
        last, still = -1, 0
        while still < 20:
            stored = await conn.fetchval("SELECT count(*) FROM positions")
            if stored >= published:
                break
            still = still + 1 if stored == last else 0
            last = stored
            await asyncio.sleep(0.25)
        last_commit = await conn.fetchval("SELECT max(received_at) FROM positions")
        stored = await conn.fetchval("SELECT count(*) FROM positions")
        first = datetime.fromtimestamp(start_at, tz=UTC)
        span_s = max((last_commit - first).total_seconds(), publish_s) if last_commit else publish_s
        await asyncio.sleep(0.5)
        listener.cancel()
        rss.running = False
        lat = sorted(latencies)
        return {
            "published": published,
            "publish_rate": published / publish_s,
            "stored": stored,
            "stored_rate": stored / span_s,
            "p50_ms": 1000 * statistics.median(lat) if lat else float("nan"),
            "p99_ms": 1000 * lat[int(0.99 * (len(lat) - 1))] if lat else float("nan"),
            "latency_samples": len(lat),
            "peak_rss_mb": rss.peak / 2**20,
        }
    finally:
        worker.terminate()
        try:
            worker.wait(10)
        except subprocess.TimeoutExpired:
            worker.kill()
        async with mqtt.build_client(settings.mqtt):  # drop the worker's persistent session
            pass
        await conn.close()


# ---------------------------------------------------------------- ceilings


async def bare_subscriber_ceiling(
    args: argparse.Namespace, settings: MqttSettings
) -> dict[str, Any]:
    """A plain aiomqtt subscriber (QoS 1, auto-ack) under publishers running flat out."""
    prefix = f"bench-bare-{uuid.uuid4().hex[:6]}/"
    received = 0
    first = last = 0.0
    ready = asyncio.Event()
    async with mqtt.build_client(settings, client_id=f"bench-bare-{uuid.uuid4().hex[:8]}") as c:
        await c.subscribe(topics.inbound_filter(prefix), qos=1)
        ready.set()
        terminals = [f"1{n:011d}" for n in range(1000)]
        duration = args.ceiling_messages / 20000  # flat out; stop by count or time
        _, _, procs, out_q = _run_publishers(settings, terminals, 0, max(duration, 3.0), prefix,
                                             args.publishers)  # fmt: skip

        async def consume() -> None:
            nonlocal received, first, last
            async for _message in c.messages:
                if received == 0:
                    first = time.monotonic()
                received += 1
                last = time.monotonic()

        consumer = asyncio.create_task(consume())
        results = [await asyncio.to_thread(out_q.get) for _ in procs]
        for proc in procs:
            proc.join()
        await asyncio.sleep(1.0)
        consumer.cancel()
    published = sum(r[0] for r in results)
    return {
        "published": published,
        "publish_rate": published / max(r[1] for r in results),
        "received": received,
        "receive_rate": received / (last - first) if last > first else float("nan"),
    }


async def copy_ceiling(args: argparse.Namespace, conn: asyncpg.Connection) -> dict[str, Any]:
    """Raw COPY into ``positions`` (same indexes), 2,000-row batches."""
    base = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        (10_000_000 + n % 1000, base + timedelta(seconds=n // 1000), base, 30.0, 104.0, 40.0,
         True, "ok")
        for n in range(args.copy_rows)
    ]  # fmt: skip
    columns = ("vehicle_id", "fix_time", "received_at", "latitude", "longitude", "speed_kmh",
               "fix_valid", "quality")  # fmt: skip
    t0 = time.monotonic()
    for i in range(0, len(rows), 2000):
        await conn.copy_records_to_table("positions", records=rows[i : i + 2000], columns=columns)
    elapsed = time.monotonic() - t0
    await conn.execute("DELETE FROM positions WHERE vehicle_id >= 10000000")
    return {"rows": len(rows), "rows_per_s": len(rows) / elapsed}


def _start_own_broker(args: argparse.Namespace, folder: Path) -> subprocess.Popen[bytes]:
    """A private mosquitto with deploy/mosquitto's queue limits; sets args.mqtt_host/port."""
    from gps_monitor.embedded import free_port

    args.mqtt_host, args.mqtt_port = "127.0.0.1", free_port()
    folder.mkdir(exist_ok=True)
    conf = folder / "mosquitto.conf"
    conf.write_text(
        f"listener {args.mqtt_port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 500000\nmax_inflight_messages 1000\nset_tcp_nodelay true\n"
    )
    broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return broker


def _stop_own_broker(broker: subprocess.Popen[bytes], folder: Path) -> None:
    """Stop a private broker and remove its folder (configuration, store, log)."""
    broker.terminate()
    try:
        broker.wait(timeout=10)
    except subprocess.TimeoutExpired:
        broker.kill()
        broker.wait()
    shutil.rmtree(folder, ignore_errors=True)


async def main() -> None:
    args = _parse()
    broker = None
    folder = Path(f"/tmp/gpsm-bench-broker-{os.getpid()}")
    if args.own_broker:
        broker = _start_own_broker(args, folder)
    try:
        await _measure(args)
    finally:  # whatever failed, the private broker goes
        if broker is not None:
            _stop_own_broker(broker, folder)


async def _measure(args: argparse.Namespace) -> None:
    """Scratch database, the ingest run, the ceilings, the printed figures."""
    tag = uuid.uuid4().hex[:8]
    database = f"gpsm_bench_{tag}"
    admin = await asyncpg.connect(args.admin_url)
    await admin.execute(f'CREATE DATABASE "{database}"')
    await admin.close()
    settings = Settings(
        database=DatabaseSettings(url=_url_for(args.admin_url, database), timescale="off"),
        mqtt=MqttSettings(host=args.mqtt_host, port=args.mqtt_port,
                          client_id=f"bench-ingest-{tag}", topic_prefix=f"bench-{tag}/",
                          protocol_version=args.protocol),
    )  # fmt: skip
    try:
        conn = await connect(settings.database)
        await migrate.upgrade(conn, settings.database)
        log = Path(f"/tmp/gpsm-bench-{tag}.log")
        print(f"machine: {os.cpu_count()} cores, shared with other work; "
              f"broker {args.mqtt_host}:{args.mqtt_port} (MQTT {args.protocol}), "
              f"database {database}")  # fmt: skip
        run = await ingest_run(args, settings, log)
        bare = await bare_subscriber_ceiling(args, settings.mqtt)
        copy = await copy_ceiling(args, conn)
        await conn.close()
        print(f"ingest run: {args.vehicles} vehicles, target {args.rate:.0f} positions/s for "
              f"{args.duration:.0f} s ({args.publishers} publisher processes)")  # fmt: skip
        print(f"  published           {run['published']} ({run['publish_rate']:.0f}/s)")
        print(f"  stored              {run['stored']} "
              f"({run['published'] - run['stored']} not stored)")  # fmt: skip
        print(f"  sustained stored    {run['stored_rate']:.0f} positions/s")
        print(f"  publish-to-commit   p50 {run['p50_ms']:.0f} ms, p99 {run['p99_ms']:.0f} ms "
              f"({run['latency_samples']} samples, via the accepted topic)")  # fmt: skip
        print(f"  worker peak RSS     {run['peak_rss_mb']:.0f} MB")
        print(f"ceiling 1, bare aiomqtt subscriber QoS 1: {bare['receive_rate']:.0f} msg/s "
              f"(received {bare['received']} of {bare['published']}; publishers "
              f"{bare['publish_rate']:.0f}/s)")  # fmt: skip
        print(f"ceiling 2, raw COPY into positions: {copy['rows_per_s']:.0f} rows/s "
              f"({copy['rows']} rows, 2000 per COPY)")  # fmt: skip
        if bare["receive_rate"] == bare["receive_rate"]:
            print(f"stored rate / bare subscriber ceiling: "
                  f"{100 * run['stored_rate'] / bare['receive_rate']:.0f} %")  # fmt: skip
    finally:
        admin = await asyncpg.connect(args.admin_url)
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    asyncio.run(main())
