"""``gps-monitor jt808``: run the JT/T 808 TCP gateway (settings ``GPS_MONITOR_JT808_*``) until
interrupted (SIGINT/SIGTERM close the listener and the terminal connections)."""

from __future__ import annotations

import argparse
import asyncio
import logging

import asyncpg

from gps_monitor.config import Settings
from gps_monitor.db.pool import create_pool
from gps_monitor.media_store import MediaStore
from gps_monitor.mqtt import require_host
from gps_monitor.service import run_until_signal, upgrade_schema
from ingest.jt808.attachments import AttachmentServer
from ingest.jt808.auth import TerminalAuthenticator
from ingest.jt808.downlink import Downlink
from ingest.jt808.media import MediaUploads
from ingest.jt808.publisher import MqttPublisher
from ingest.jt808.server import Jt808Gateway, log_stats_forever

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="listen address (default jt808.host)")
    parser.add_argument("--port", type=int, default=None, help="listen port (default 8808)")
    parser.add_argument(
        "--forget-terminal",
        metavar="TERMINAL_ID",
        default=None,
        help="withdraw that terminal's auth code (a replaced or reset terminal that lost it "
        "may then register again) and exit; does not start the gateway",
    )
    parser.add_argument(
        "--no-upgrade",
        action="store_true",
        help="do not apply pending database migrations at start",
    )


async def serve(
    settings: Settings,
    ready: asyncio.Event | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    upgrade: bool = False,
) -> None:
    """Run the gateway until cancelled; ``ready`` is set once it listens.

    Raises:
        ConfigurationError: no database URL or broker host configured.
    """
    require_host(settings.mqtt)
    if upgrade:
        await upgrade_schema(settings.database)
    pool = await create_pool(settings.database)
    try:
        authenticator = build_authenticator(pool, settings)
        async with MqttPublisher(settings) as publisher:
            downlink = Downlink(settings, publisher)
            gateway = Jt808Gateway(settings, authenticator, publisher, downlink)
            media = MediaUploads(
                settings, MediaStore(settings.media.directory), pool, gateway, downlink
            )
            media_task = asyncio.create_task(media.run(), name="jt808-media")
            attachments = AttachmentServer(settings, media.store, pool, gateway)
            attachment_server = await attachments.start()
            log.info("jt808 attachment server listening on port %d", attachments.port)
            downlink_task = asyncio.create_task(downlink.run(), name="jt808-downlink")
            server = await gateway.start(host, port)
            addresses = ", ".join(str(s.getsockname()) for s in server.sockets)
            log.info("jt808 gateway listening on %s", addresses)
            stats_task = asyncio.create_task(
                log_stats_forever(gateway, settings.jt808.stats_interval_s)
            )
            if ready is not None:
                ready.set()
            try:
                async with server:
                    await server.serve_forever()
            finally:
                stats_task.cancel()
                downlink_task.cancel()
                media_task.cancel()
                attachment_server.close()
                server.close()
                await gateway.close_connections()
                media.close()
                log.info("jt808 gateway stopped: %s", gateway.stats.snapshot())
    finally:
        await pool.close()


def build_authenticator(pool: asyncpg.Pool, settings: Settings) -> TerminalAuthenticator:
    jt = settings.jt808
    return TerminalAuthenticator(
        pool,
        policy=jt.auth_policy,
        check_plate=jt.check_plate,
        reregistration=jt.reregistration,
    )


async def forget_terminal(settings: Settings, terminal_id: str) -> bool:
    """Withdraw ``terminal_id``'s auth code; whether it had one."""
    pool = await create_pool(settings.database)
    try:
        return await build_authenticator(pool, settings).unregister(terminal_id)
    finally:
        await pool.close()


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.forget_terminal is not None:
        had = asyncio.run(forget_terminal(settings, args.forget_terminal))
        print(
            f"terminal {args.forget_terminal}: "
            + ("auth code withdrawn; it may register again" if had else "held no auth code")
        )
        return 0 if had else 1
    return run_until_signal(
        serve(settings, host=args.host, port=args.port, upgrade=not args.no_upgrade)
    )
