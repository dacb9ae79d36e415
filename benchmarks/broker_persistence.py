"""Broker persistence benchmark: what Mosquitto's snapshot settings cost the publishers.

A private mosquitto (free loopback port, persistence in a temporary folder, the deploy config's
queue limits) takes QoS 1 position-sized messages at a fixed rate for T seconds while one
persistent-session subscriber either keeps up (``--subscriber live``) or is offline and lets the
queue grow (``--subscriber lagging``, as when the ingest worker is down or behind). Prints, per
persistence mode: messages offered and acknowledged (PUBACK), the time until the last PUBACK,
PUBACK latency p50 / p99 / max, and the size of the snapshot file at the end.

Modes (``--mode``, repeatable):
- ``deploy``: the persistence settings of deploy/mosquitto/mosquitto.conf (autosave_interval 1);
- ``on-changes``: autosave_on_changes true with autosave_interval 1 (a snapshot after every
  change: every message queued rewrites and fsyncs the whole queue);
- ``every-30s``: autosave_interval 30 (the previous deploy config).

Usage:
    .venv/bin/python benchmarks/broker_persistence.py --rate 500 --duration 30 \
        --subscriber lagging --mode deploy --mode on-changes
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections import defaultdict, deque
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

DEPLOY_CONF = Path(__file__).resolve().parent.parent / "deploy" / "mosquitto" / "mosquitto.conf"
QUEUE_KEYS = ("max_queued_messages", "max_queued_bytes", "max_inflight_messages")
MODES = {
    "on-changes": {"autosave_on_changes": "true", "autosave_interval": "1"},
    "every-30s": {"autosave_on_changes": "false", "autosave_interval": "30"},
}
# a contract position as a terminal or the gateway sends it (about 200 bytes)
PAYLOAD = (
    b'{"fix_time":"2026-01-26T08:00:00+08:00","latitude":29.56301,"longitude":106.551556,'
    b'"speed_kmh":62.5,"heading_deg":271,"altitude_m":310,"satellites":11,"fix_valid":true,'
    b'"acc_on":true,"alarm_flags":0,"status_flags":3,"mileage_km":12345.6}'
)


def deploy_keys(keys: tuple[str, ...]) -> dict[str, str]:
    found: dict[str, str] = {}
    for raw in DEPLOY_CONF.read_text(encoding="utf-8").splitlines():
        key, _, value = raw.strip().partition(" ")
        if key in keys and not raw.lstrip().startswith("#"):
            found[key] = value.strip()
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_broker(folder: Path, persistence: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    settings = {**deploy_keys(QUEUE_KEYS), "persistence": "true", **persistence}
    lines = [
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",
        f"persistence_location {folder}/",
        *(f"{k} {v}" for k, v in settings.items()),
    ]
    if os.geteuid() == 0:
        lines.append("user root")
    conf = folder / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
    broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return broker, port
        except OSError:
            time.sleep(0.05)
    broker.kill()
    raise SystemExit(f"mosquitto did not listen on {port}")


def run(mode: str, rate: float, duration_s: float, lagging: bool) -> None:
    persistence = (
        deploy_keys(("autosave_interval", "autosave_on_changes"))
        if mode == "deploy"
        else MODES[mode]
    )
    folder = Path(tempfile.mkdtemp(prefix="broker-bench-"))
    broker, port = start_broker(folder, persistence)
    try:
        subscriber = paho.Client(
            CallbackAPIVersion.VERSION2, client_id="bench-sub", clean_session=False
        )
        subscriber.connect("127.0.0.1", port)
        subscriber.loop_start()
        subscriber.subscribe("bench/#", qos=1)
        time.sleep(0.3)
        if lagging:
            subscriber.disconnect()
            subscriber.loop_stop()
        # (message id, time) of every send and every PUBACK, paired afterwards per id in order
        # (ids wrap at 65,535; a PUBACK may come before the send is written down)
        sends: list[tuple[int, float]] = []
        acks: list[tuple[int, float]] = []
        publisher = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-pub")
        publisher.max_inflight_messages_set(1000)

        def on_publish(c: paho.Client, u: object, mid: int, rc: object, props: object) -> None:
            acks.append((mid, time.monotonic()))

        publisher.on_publish = on_publish
        publisher.connect("127.0.0.1", port)
        publisher.loop_start()
        start = time.monotonic()
        while time.monotonic() - start < duration_s:
            time.sleep(max(0.0, start + len(sends) / rate - time.monotonic()))
            sent = time.monotonic()
            sends.append((publisher.publish("bench/position", PAYLOAD, qos=1).mid, sent))
        offered = len(sends)
        deadline = time.monotonic() + max(60.0, 4 * duration_s)
        while len(acks) < offered and time.monotonic() < deadline:
            time.sleep(0.1)
        latencies = _pair(sends, list(acks))
        elapsed = time.monotonic() - start
        publisher.loop_stop()
        if not lagging:
            subscriber.loop_stop()
        snapshot = folder / "mosquitto.db"
        size = snapshot.stat().st_size if snapshot.exists() else 0
        ordered = sorted(latencies) or [float("nan")]
        print(
            f"{mode:10} {'lagging' if lagging else 'live':7} {rate:6.0f}/s x {duration_s:.0f} s: "
            f"acknowledged {len(latencies):,} of {offered:,} in {elapsed:.1f} s, PUBACK p50 "
            f"{statistics.median(ordered) * 1000:.0f} ms p99 "
            f"{ordered[int(len(ordered) * 0.99)] * 1000:.0f} ms max {ordered[-1] * 1000:.0f} ms, "
            f"snapshot {size / 1e6:.1f} MB ({persistence})"
        )
    finally:
        broker.kill()
        broker.wait()
        shutil.rmtree(folder, ignore_errors=True)


def _pair(sends: list[tuple[int, float]], acks: list[tuple[int, float]]) -> list[float]:
    """PUBACK latencies (s): the n-th PUBACK of an id answers the n-th send of that id."""
    sent_at: dict[int, deque[float]] = defaultdict(deque)
    for mid, t in sends:
        sent_at[mid].append(t)
    return [t - sent_at[mid].popleft() for mid, t in acks if sent_at[mid]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0, help="messages per second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of publishing")
    parser.add_argument("--subscriber", choices=("live", "lagging"), default="lagging")
    parser.add_argument(
        "--mode", action="append", choices=("deploy", *MODES), help="default: all three"
    )
    args = parser.parse_args()
    if shutil.which("mosquitto") is None:
        raise SystemExit("mosquitto is not installed (Debian package mosquitto)")
    for mode in args.mode or ["deploy", "on-changes", "every-30s"]:
        run(mode, args.rate, args.duration, args.subscriber == "lagging")


if __name__ == "__main__":
    main()
