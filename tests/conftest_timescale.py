"""TimescaleDB for tests: a fresh PostgreSQL 17 + TimescaleDB 2.23 (WebAssembly, pinned in
tools/pglite/) served over the wire protocol on a free local port.

Use it from any test module::

    from conftest_timescale import timescale_database_url  # noqa: F401  (pytest fixture)

    async def test_x(timescale_database_url: str) -> None:
        conn = await asyncpg.connect(timescale_database_url)
        try:
            ...
        finally:
            conn.terminate()   # not close(): the server never answers Terminate

Limits of the WebAssembly server that callers must respect:
- ONE connection at a time (pglite-socket queues the others until the first disconnects) and one
  shared session (prepared statements, temp tables and settings outlive a connection), hence a
  fresh server per test;
- no COPY and no big batches: measured, COPY of 100 rows and ``executemany`` of 2,000 rows drop
  the connection (10 and 200 worked): plain INSERTs, a few hundred rows per call at most;
- no background workers: policies are registered but never run by themselves.

The fixture skips the test with the reason when Node.js or ``tools/pglite/node_modules`` (``npm
ci`` there, which ``scripts/install-system.sh`` does) are absent; under CI (``CI`` set) with npm
present it fails instead, so TimescaleDB mode cannot go untested unnoticed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PGLITE_DIR = REPO / "tools" / "pglite"
PGLITE_SERVER = PGLITE_DIR / "server.mjs"
READY_MARK = "PGLITE READY "
START_TIMEOUT_S = float(os.environ.get("GPS_MONITOR_TEST_PGLITE_START_TIMEOUT_S", "120"))


def pglite_missing() -> str | None:
    """Why the pglite server cannot run here, or None when it can."""
    if shutil.which("node") is None:
        return "Node.js (node) is not installed: the TimescaleDB smoke test needs it"
    if not (PGLITE_DIR / "node_modules" / "@unni-craftsman" / "pglite").is_dir():
        return (
            f"{PGLITE_DIR / 'node_modules'} is absent: run `npm ci` in tools/pglite "
            "(scripts/install-system.sh does it when npm is present)"
        )
    return None


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def pglite_server() -> Iterator[str]:
    """Start ``node tools/pglite/server.mjs PORT``; yields its postgresql:// URL (ssl off).

    The server is killed on exit. Raises RuntimeError (with the server's output) when it exits
    or does not print its ready line within START_TIMEOUT_S.
    """
    port = free_port()
    proc = subprocess.Popen(
        ["node", str(PGLITE_SERVER), str(port), "--exit-on-stdin-close"],
        cwd=PGLITE_DIR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    ready = threading.Event()
    url: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip())
            if line.startswith(READY_MARK) and not ready.is_set():
                url.append(line[len(READY_MARK) :].split()[0])
                ready.set()
        ready.set()  # EOF: the server exited

    reader = threading.Thread(target=read, name=f"pglite-{port}", daemon=True)
    reader.start()
    try:
        if not ready.wait(START_TIMEOUT_S) or not url:
            raise RuntimeError(
                f"pglite server on port {port} did not print {READY_MARK!r} within "
                f"{START_TIMEOUT_S:.0f} s (exit code {proc.poll()}); its output:\n"
                + "\n".join(lines[-40:])
            )
        yield url[0]
    finally:
        proc.kill()
        proc.wait(timeout=10)
        if proc.stdin is not None:
            proc.stdin.close()
        reader.join(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture
def timescale_database_url() -> Iterator[str]:
    """URL of a fresh, empty TimescaleDB (extension available, not yet created), one per test.

    Skips the test, saying why, when Node.js or the npm packages are absent.
    """
    reason = pglite_missing()
    if reason is not None:
        if os.environ.get("CI") and shutil.which("npm") is not None:
            # CI has npm, so scripts/install-system.sh should have installed the server:
            # a skip there would hide that TimescaleDB mode went untested
            pytest.fail(f"CI with npm present, but {reason}")
        pytest.skip(reason)
    with pglite_server() as url:
        yield url
