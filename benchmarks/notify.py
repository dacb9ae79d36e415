"""Notify benchmark; prints figures, asserts nothing.

A real ``gps-monitor notify`` process on the real broker and a scratch database, with three
webhook channels subscribed to every alarm, all on localhost: two live receivers and one dead
(``--dead hang``: accepts the connection and never answers, so every attempt runs into
``send_timeout_s``; ``--dead refused``: nothing listens). A publisher process sends ``--rate``
alarm events/s (default 1,000) on ``alarms/v1/...`` for ``--seconds`` s (default 15), each
carrying its publish time; the receivers record alarm-to-delivery latency = arrival of the
webhook request - publish time. Printed: p50/p99 per live channel, the same run without the
dead channel (baseline) and the change, and the worker's CPU (process time / wall time) and
peak RSS. On a shared machine one pair of runs says little: ``--runs 4`` alternates baseline
and dead-channel runs four times each and prints every run and the medians;
``--dead-channels 0|1`` runs one variant only.

    .venv/bin/python benchmarks/notify.py --rate 1000 --seconds 15 --runs 4

Needs PostgreSQL (GPS_MONITOR_TEST_DATABASE_URL, default
postgresql://postgres@127.0.0.1:5432/postgres) and the ``mosquitto`` binary: the benchmark starts
its own broker with the production queue limits of deploy/mosquitto/mosquitto.conf
(``max_inflight_messages 1000``, ``max_queued_messages 500000``); a stock Mosquitto (20 in
flight, 1,000 queued per client) drops QoS 1 messages for a persistent session that acknowledges
after its commit once it falls 1,000 behind. ``--mqtt-host``/``--mqtt-port`` use another
broker instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gps_monitor import topics  # noqa: E402
from gps_monitor.config import DatabaseSettings, MqttSettings  # noqa: E402
from gps_monitor.db import migrate  # noqa: E402
from gps_monitor.db.pool import connect  # noqa: E402

ADMIN_URL = os.environ.get(
    "GPS_MONITOR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
SECRET = "bench-secret"
VEHICLES = 200


class Receiver:
    """A minimal HTTP/1.1 keep-alive server: reads one request at a time per connection,
    records latency from the body's ``alarm.details.bench_t``, answers 200 (or never)."""

    def __init__(self, name: str, *, hang: bool = False) -> None:
        self.name = name
        self.hang = hang
        self.latencies: list[float] = []
        self.requests = 0
        self.port = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=1024)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                now = time.time()
                self.requests += 1
                if self.hang:
                    try:
                        await asyncio.sleep(3600)
                    except asyncio.CancelledError:  # shut down quietly at the end
                        break
                sent = json.loads(body)["alarm"]["details"]["bench_t"]
                self.latencies.append(now - sent)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b'Content-Length: 11\r\n\r\n{"ok":true}'
                )
                await writer.drain()
        writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


def _publisher(
    mqtt: MqttSettings, company_id: int, vehicle_ids: list[int], rate: int, seconds: float,
    out: Any,
) -> None:  # fmt: skip
    import paho.mqtt.client as paho

    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}")
    client.max_inflight_messages_set(1000)
    client.connect(mqtt.host or "127.0.0.1", mqtt.port)
    client.loop_start()
    started = time.time()
    sent = 0
    total = int(rate * seconds)
    while sent < total:
        due = started + sent / rate
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        vehicle_id = vehicle_ids[sent % len(vehicle_ids)]
        now = datetime.now(UTC).isoformat()
        message = {
            "alarm_type": "overspeed",
            "dedup_key": f"bench:{vehicle_id}:{sent}",
            "vehicle_id": vehicle_id,
            "company_id": company_id,
            "terminal_id": f"bench{vehicle_id}",
            "started_at": now,
            "ended_at": None,
            "late": False,
            "details": {"max_speed_kmh": 91.0, "limit_kmh": 80.0, "bench_t": time.time()},
            "status": "open",
            "level": 2,
            "id": sent,
            "event": "opened",
        }
        topic = topics.alarm_topic(company_id, vehicle_id, "overspeed", mqtt.topic_prefix)
        client.publish(topic, json.dumps(message), qos=1)
        sent += 1
    publish_s = time.time() - started
    time.sleep(1.0)
    client.loop_stop()
    client.disconnect()
    out.put((sent, publish_s))


class _Watch(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak_rss = 0
        self.running = True

    def run(self) -> None:
        while self.running:
            with contextlib.suppress(psutil.Error):
                self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)
            time.sleep(0.2)

    def cpu_s(self) -> float:
        times = self.process.cpu_times()
        return float(times.user + times.system)


async def _database(name: str) -> str:
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base, _, _ = ADMIN_URL.rpartition("/")
    url = f"{base}/{name}"
    conn = await asyncpg.connect(url)
    try:
        from gps_monitor.db.pool import init_connection

        await init_connection(conn)
        await migrate.upgrade(conn, DatabaseSettings(url=url, timescale="off"))
    finally:
        await conn.close()
    return url


async def run(args: argparse.Namespace, with_dead: bool) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    url = await _database(f"gpsm_bench_notify_{tag}")
    mqtt = MqttSettings(host=args.mqtt_host, port=args.mqtt_port, topic_prefix=f"bench-{tag}/")
    live = [Receiver("live-1"), Receiver("live-2")]
    dead = Receiver("dead", hang=True)
    for receiver in (*live, dead):
        await receiver.start()
    conn = await connect(DatabaseSettings(url=url))
    company_id = await conn.fetchval("INSERT INTO companies (name) VALUES ('bench') RETURNING id")
    vehicle_ids = [
        await conn.fetchval(
            "INSERT INTO vehicles (company_id, plate_number, vehicle_class, terminal_id) "
            "VALUES ($1, $2, 'freight', $3) RETURNING id",
            company_id,
            f"渝B{i:05d}",
            f"bench{i}",
        )
        for i in range(VEHICLES)
    ]
    urls = [f"http://127.0.0.1:{r.port}/hook" for r in live]
    if with_dead:
        urls.append(
            f"http://127.0.0.1:{dead.port}/hook" if args.dead == "hang" else "http://127.0.0.1:9/"
        )
    for i, hook in enumerate(urls):
        channel_id = await conn.fetchval(
            "INSERT INTO notify_channels (name, kind, config, secret) "
            "VALUES ($1, 'webhook', $2, $3) RETURNING id",
            f"hook {i}",
            {"url": hook},
            SECRET,
        )
        await conn.execute("INSERT INTO notify_subscriptions (channel_id) VALUES ($1)", channel_id)
    log = Path(f"/tmp/bench-notify-{tag}.log")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPS_MONITOR_")}
    env.update(
        GPS_MONITOR_DATABASE_URL=url,
        GPS_MONITOR_MQTT_HOST=mqtt.host or "",
        GPS_MONITOR_MQTT_PORT=str(mqtt.port),
        GPS_MONITOR_MQTT_CLIENT_ID=f"bench-notify-{tag}",
        GPS_MONITOR_MQTT_TOPIC_PREFIX=mqtt.topic_prefix,
        GPS_MONITOR_NOTIFY_SEND_TIMEOUT_S=str(args.send_timeout_s),
        # the receivers are on localhost, refused by default (server-side request forgery)
        GPS_MONITOR_NOTIFY_ALLOWED_PRIVATE_TARGETS='["127.0.0.0/8"]',
    )
    with log.open("wb") as out:  # noqa: ASYNC230
        worker = subprocess.Popen(  # noqa: ASYNC220
            [sys.executable,
             *(["-m", "cProfile", "-o", args.profile_worker] if args.profile_worker else []),
             "-m", "gps_monitor.cli", "notify", "--no-upgrade"],
            env=env, stdout=out, stderr=out,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while b"notify worker subscribed" not in log.read_bytes():  # noqa: ASYNC240
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{log.read_text()[-2000:]}")  # noqa: ASYNC240
            await asyncio.sleep(0.05)
        watch = _Watch(worker.pid)
        watch.start()
        cpu_before, wall_before = watch.cpu_s(), time.monotonic()
        queue: Any = mp.Queue()
        publisher = mp.Process(
            target=_publisher,
            args=(mqtt, company_id, vehicle_ids, args.rate, args.seconds, queue),
        )
        publisher.start()
        published, publish_s = await asyncio.to_thread(queue.get)
        publisher.join()
        # drain: until both live receivers have everything or nothing moves for 5 s
        last, still_since = -1, time.monotonic()
        while min(len(r.latencies) for r in live) < published:
            got = sum(len(r.latencies) for r in live)
            if got != last:
                last, still_since = got, time.monotonic()
            elif time.monotonic() - still_since > 5:
                break
            await asyncio.sleep(0.1)
        cpu_s, wall_s = watch.cpu_s() - cpu_before, time.monotonic() - wall_before
        watch.running = False
        result: dict[str, Any] = {
            "published": published,
            "publish_rate": published / publish_s,
            "cpu_pct": 100 * cpu_s / wall_s,
            "cpu_s": cpu_s,
            "peak_rss_mb": watch.peak_rss / 2**20,
            "dead_requests": dead.requests,
        }
        for receiver in live:
            lat = sorted(receiver.latencies)
            result[receiver.name] = {
                "delivered": len(lat),
                "p50_ms": 1000 * statistics.median(lat) if lat else float("nan"),
                "p99_ms": 1000 * lat[int(0.99 * (len(lat) - 1))] if lat else float("nan"),
            }
        result["pending"] = await conn.fetchval(
            "SELECT count(*) FROM notify_deliveries WHERE status = 'pending'"
        )
        return result
    finally:
        worker.terminate()
        try:
            worker.wait(10)
        except subprocess.TimeoutExpired:
            worker.kill()
        for receiver in (*live, dead):
            await receiver.stop()
        await conn.close()
        admin = await asyncpg.connect(ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "gpsm_bench_notify_{tag}" WITH (FORCE)')
        finally:
            await admin.close()


def _print(title: str, result: dict[str, Any]) -> None:
    print(f"{title}: published {result['published']} at {result['publish_rate']:.0f}/s")
    for name in ("live-1", "live-2"):
        r = result[name]
        print(
            f"  {name}: delivered {r['delivered']}, alarm-to-delivery p50 {r['p50_ms']:.0f} ms, "
            f"p99 {r['p99_ms']:.0f} ms"
        )
    print(
        f"  worker CPU {result['cpu_pct']:.0f} % of one core ({result['cpu_s']:.1f} s), peak RSS "
        f"{result['peak_rss_mb']:.0f} MB; dead channel requests {result['dead_requests']}, "
        f"deliveries still pending {result['pending']}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=1000, help="alarm events per second")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--dead", choices=("hang", "refused"), default="hang")
    parser.add_argument("--send-timeout-s", type=float, default=10.0)
    parser.add_argument("--mqtt-host", default=None, help="default: a private broker")
    parser.add_argument("--profile-worker", default=None, help="cProfile output file")
    parser.add_argument(
        "--dead-channels",
        type=int,
        choices=(0, 1),
        default=None,
        help="run only without (0) or with (1) the dead channel; default: both, interleaved",
    )
    parser.add_argument(
        "--runs", type=int, default=1, help="runs of each variant (interleaved with the other)"
    )
    parser.add_argument("--mqtt-port", type=int, default=1883)
    args = parser.parse_args()
    broker = None
    if args.mqtt_host is None:
        from gps_monitor.embedded import free_port

        args.mqtt_host, args.mqtt_port = "127.0.0.1", free_port()
        conf = Path(f"/tmp/bench-notify-broker-{os.getpid()}.conf")
        conf.write_text(  # noqa: ASYNC240
            f"listener {args.mqtt_port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 500000\nmax_inflight_messages 1000\nset_tcp_nodelay true\n"
        )
        broker = subprocess.Popen(  # noqa: ASYNC220
            ["mosquitto", "-c", str(conf)], stderr=subprocess.DEVNULL
        )
        await asyncio.sleep(0.5)
    try:
        await _compare(args)
    finally:
        if broker is not None:
            broker.terminate()
            broker.wait(10)


async def _compare(args: argparse.Namespace) -> None:
    """``--dead-channels 0|1``: one variant ``--runs`` times; otherwise both, interleaved (the
    machine is shared: alternating spreads its load over both), then the medians."""
    variants = [args.dead_channels] if args.dead_channels is not None else [0, 1]
    results: dict[int, list[dict[str, Any]]] = {0: [], 1: []}
    for i in range(args.runs):
        for dead_channels in variants:
            result = await run(args, with_dead=dead_channels == 1)
            title = (
                f"run {i + 1}: two live webhooks + one dead ({args.dead})"
                if dead_channels
                else f"run {i + 1}: two live webhooks (baseline)"
            )
            _print(title, result)
            results[dead_channels].append(result)
    print("\n| run | dead | p50 live-1 / live-2 ms | p99 live-1 / live-2 ms | CPU % (s) | RSS MB |")
    print("|---|---|---|---|---|---|")
    for dead_channels in variants:
        for i, r in enumerate(results[dead_channels]):
            print(
                f"| {i + 1} | {dead_channels} | {r['live-1']['p50_ms']:.0f} / "
                f"{r['live-2']['p50_ms']:.0f} | {r['live-1']['p99_ms']:.0f} / "
                f"{r['live-2']['p99_ms']:.0f} | {r['cpu_pct']:.0f} ({r['cpu_s']:.1f}) | "
                f"{r['peak_rss_mb']:.0f} |"
            )
    if len(variants) < 2:
        return
    medians = {d: _medians(results[d]) for d in variants}
    for d in variants:
        m = medians[d]
        print(
            f"median, {d} dead: p50 {m['p50_ms']:.0f} ms, p99 {m['p99_ms']:.0f} ms, "
            f"CPU {m['cpu_pct']:.0f} % ({m['cpu_s']:.1f} s), peak RSS {m['peak_rss_mb']:.0f} MB"
        )
    before, after = medians[0]["p99_ms"], medians[1]["p99_ms"]
    print(f"median p99 with the dead channel: {100 * (after - before) / before:+.1f} %")
    cpu_before, cpu_after = medians[0]["cpu_s"], medians[1]["cpu_s"]
    print(f"median worker CPU time with it: {100 * (cpu_after - cpu_before) / cpu_before:+.1f} %")
    print(f"load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


def _medians(results: list[dict[str, Any]]) -> dict[str, float]:
    """Medians over runs of the live channels' p50/p99 (both channels' values pooled), CPU and
    RSS."""
    return {
        "p50_ms": statistics.median(r[n]["p50_ms"] for r in results for n in ("live-1", "live-2")),
        "p99_ms": statistics.median(r[n]["p99_ms"] for r in results for n in ("live-1", "live-2")),
        "cpu_pct": statistics.median(r["cpu_pct"] for r in results),
        "cpu_s": statistics.median(r["cpu_s"] for r in results),
        "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in results),
    }


if __name__ == "__main__":
    asyncio.run(main())
