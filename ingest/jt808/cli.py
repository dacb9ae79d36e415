"""``gps-monitor jt808``: run the JT/T 808 TCP gateway (settings ``GPS_MONITOR_JT808_*``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

from gps_monitor.config import Settings
from gps_monitor.db.pool import create_pool
from gps_monitor.mqtt import require_host
from ingest.jt808.auth import TerminalAuthenticator
from ingest.jt808.publisher import MqttPublisher
from ingest.jt808.server import Jt808Gateway, log_stats_forever

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="listen address (default jt808.host)")
    parser.add_argument("--port", type=int, default=None, help="listen port (default 8808)")


async def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Run the gateway until cancelled.

    Raises:
        ConfigurationError: no database URL or broker host configured.
    """
    require_host(settings.mqtt)
    pool = await create_pool(settings.database)
    try:
        authenticator = TerminalAuthenticator(
            pool, policy=settings.jt808.auth_policy, check_plate=settings.jt808.check_plate
        )
        async with MqttPublisher(settings) as publisher:
            gateway = Jt808Gateway(settings, authenticator, publisher)
            server = await gateway.start(host, port)
            addresses = ", ".join(str(s.getsockname()) for s in server.sockets)
            log.info("jt808 gateway listening on %s", addresses)
            stats_task = asyncio.create_task(
                log_stats_forever(gateway, settings.jt808.stats_interval_s)
            )
            try:
                async with server:
                    await server.serve_forever()
            finally:
                stats_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await stats_task
    finally:
        await pool.close()


def run(args: argparse.Namespace, settings: Settings) -> int:
    asyncio.run(serve(settings, args.host, args.port))
    return 0
