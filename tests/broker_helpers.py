"""A private Mosquitto for tests that stop, kill or restart the broker: Debian's mosquitto on a
free loopback port with its persistence in a temporary folder and, where asked, the persistence
and queue settings of deploy/mosquitto/mosquitto.conf."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

MOSQUITTO_BIN = "/usr/sbin/mosquitto"
DEPLOY_CONF = Path(__file__).resolve().parent.parent / "deploy" / "mosquitto" / "mosquitto.conf"
# the deploy config's keys that decide what survives a broker crash, what is queued and how
# fast a PUBACK goes out
DURABILITY_KEYS = (
    "persistence",
    "autosave_interval",
    "autosave_on_changes",
    "persistent_client_expiration",
    "max_queued_messages",
    "max_queued_bytes",
    "max_inflight_messages",
    "set_tcp_nodelay",
)


def deploy_settings(keys: tuple[str, ...] = DURABILITY_KEYS) -> dict[str, str]:
    """``{key: value}`` of ``keys`` as deploy/mosquitto/mosquitto.conf sets them."""
    found: dict[str, str] = {}
    for raw in DEPLOY_CONF.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            if key in keys:
                found[key] = value.strip()
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateBroker:
    """One mosquitto configuration that can be started, stopped (SIGTERM: saves its
    persistence), killed (SIGKILL: saves nothing) and started again on the same port."""

    def __init__(self, folder: Path, settings: dict[str, str]) -> None:
        if shutil.which(MOSQUITTO_BIN) is None:
            pytest.skip(f"{MOSQUITTO_BIN} not installed (Debian package mosquitto)")
        self.port = free_port()
        data = folder / "broker-data"
        data.mkdir(exist_ok=True)
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            f"persistence_location {data}/",
            f"log_dest file {folder / 'mosquitto.log'}",
            *(f"{k} {v}" for k, v in settings.items()),
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # keep the temporary files readable
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [MOSQUITTO_BIN, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                return
            if self.proc.poll() is not None:
                pytest.fail(f"mosquitto exited {self.proc.returncode}; see {self.conf}")
            time.sleep(0.05)
        pytest.fail(f"mosquitto did not listen on {self.port}")

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=20)
        self.proc = None
