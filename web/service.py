"""The web server as an in-process service (``serve(settings, ready)``), as ``gps-monitor demo``
runs its services, plus the demo's users.

:func:`serve` runs uvicorn inside the caller's event loop without taking over its signal
handlers (the demo handles Ctrl-C itself). :mod:`web.demo` is the demo's entry: it creates one
user per role and prints their credentials and the map address before serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
from collections.abc import Generator

import uvicorn

from gps_monitor.config import Settings
from gps_monitor.db import users
from gps_monitor.db.pool import connect
from gps_monitor.db.registry import ensure_company
from web.app import create_app

log = logging.getLogger(__name__)

DEMO_USERS = (
    ("demo-bureau", "bureau"),
    ("demo-operator", "operator"),
    ("demo-enforcement", "enforcement"),
)


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling (the host process owns SIGINT/SIGTERM)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _port_free(host: str, port: int) -> bool:
    """Whether a server could listen on ``host:port`` now. Bound as uvicorn binds, with
    SO_REUSEADDR: the connections a stopped server (uvicorn, which sets it too) left in
    TIME_WAIT do not take the port (without it a demo restarted within a minute moved to a
    random port)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


async def serve(
    settings: Settings,
    ready: asyncio.Event | None = None,
    *,
    port: int | None = None,
    bound: dict[str, str] | None = None,
) -> None:
    """Serve the app until cancelled; ``ready`` is set once it accepts connections. Uses
    ``web.port`` (or ``port``), or a free port when that one is taken; the address it listens
    on (``http://host:port``) is logged and put in ``bound["address"]``."""
    host = settings.web.host
    chosen = port if port is not None else settings.web.port
    if not _port_free(host, chosen):
        log.warning("port %s on %s is taken: using a free port", chosen, host)
        chosen = 0
    server = _EmbeddedServer(
        uvicorn.Config(
            create_app(settings),
            host=host,
            port=chosen,
            log_level="warning",
            ws="websockets-sansio",
            lifespan="on",
            forwarded_allow_ips=settings.web.forwarded_allow_ips,
        )
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("web server stopped during start-up")
            await asyncio.sleep(0.05)
        sock_host, sock_port = server.servers[0].sockets[0].getsockname()[:2]
        address = f"http://{sock_host}:{sock_port}"
        if bound is not None:
            bound["address"] = address
        log.info("web: map at %s/map", address)
        if ready is not None:
            ready.set()
        await asyncio.shield(task)  # a cancel stops the server gracefully (below)
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(asyncio.shield(task), 10)


async def ensure_demo_users(settings: Settings, company: str) -> list[tuple[str, str, str]]:
    """One user per role (the operator belongs to ``company``, created if missing), each with a
    fresh random password; returns (username, role, password)."""
    conn = await connect(settings.database)
    out = []
    try:
        company_id = (await ensure_company(conn, company)).id
        for username, role in DEMO_USERS:
            password = secrets.token_urlsafe(9)
            try:
                await users.user_by_name(conn, username)
                await users.set_password(conn, username, password)
            except users.NotFoundError:
                await users.create_user(
                    conn, username, password, role, company_id if role == "operator" else None
                )
            out.append((username, role, password))
    finally:
        await conn.close()
    return out
