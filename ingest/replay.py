"""``gps-monitor replay FILE --format F [--speedup N] [--register]``: publish a real track file
over MQTT as simulated terminals, in fix-time order, on ``gps/v1/{terminal_id}/position`` (QoS 1).

``--speedup N`` compresses time N-fold (60: an hour of track in a minute); ``--speedup 0``
publishes as fast as ``--max-rate`` allows (default 500 positions/s; 0 = unlimited, only for a
broker configured like ``deploy/mosquitto/mosquitto.conf``: a stock Mosquitto keeps at most 1000
queued messages per subscriber and drops the rest while the ingest worker catches up).
``--register`` creates a demo company and one vehicle per simulated terminal (otherwise ingest
rejects them as ``unknown_terminal``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import asyncpg
from tqdm import tqdm

from gps_monitor import mqtt, topics
from gps_monitor.config import Settings
from gps_monitor.db import registry
from gps_monitor.db.pool import connect
from gps_monitor.errors import GpsMonitorError
from gps_monitor.models import PlateColor, Position, Vehicle, VehicleClass
from gps_monitor.payload import position_to_payload
from gps_monitor.tracks import FORMATS, read_track, replay_order

DEMO_COMPANY = "Demo replay company"
# positions/s: well below what one ingest worker commits through a stock Mosquitto (20 messages
# in flight, 1000 queued per subscriber), so a --speedup 0 replay loses nothing there
DEFAULT_MAX_RATE = 500.0
UNLIMITED_WARNING = (
    "replay: --max-rate 0, no rate cap: a stock Mosquitto (max_queued_messages 1000) drops "
    "messages when the ingest worker falls behind; use it only with deploy/mosquitto/mosquitto.conf"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="track file")
    parser.add_argument("--format", required=True, choices=FORMATS, dest="fmt")
    parser.add_argument(
        "--speedup",
        type=float,
        default=60.0,
        help="time compression N (default 60); 0 = as fast as the broker takes it",
    )
    parser.add_argument(
        "--register",
        action="store_true",
        help="create a demo company and the vehicles of the simulated terminals",
    )
    parser.add_argument("--company", default=DEMO_COMPANY, help="company name for --register")
    parser.add_argument(
        "--vehicle-class",
        default=VehicleClass.COACH.value,
        choices=[c.value for c in VehicleClass],
        help="vehicle class for --register (default coach)",
    )
    parser.add_argument(
        "--max-rate",
        type=float,
        default=DEFAULT_MAX_RATE,
        help=f"at most this many positions per second (default {DEFAULT_MAX_RATE:g}); 0 = no "
        "limit, for a broker with large queues (deploy/mosquitto/mosquitto.conf)",
    )
    parser.add_argument("--terminal-id", default=None, help="terminal id (geolife only)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


async def register_terminals(
    conn: asyncpg.Connection | asyncpg.Pool,
    terminal_ids: Sequence[str],
    *,
    company: str = DEMO_COMPANY,
    vehicle_class: VehicleClass = VehicleClass.COACH,
) -> dict[str, Vehicle]:
    """Create (or update) one vehicle per terminal under ``company``; plate = terminal id
    upper-cased, yellow plate. Returns ``{terminal_id: Vehicle}``."""
    owner = await registry.ensure_company(conn, company)
    vehicles: dict[str, Vehicle] = {}
    for terminal_id in terminal_ids:
        vehicles[terminal_id] = await registry.ensure_vehicle(
            conn,
            company_id=owner.id,
            plate_number=terminal_id.upper(),
            terminal_id=terminal_id,
            vehicle_class=vehicle_class,
            plate_color=PlateColor.YELLOW,
        )
    return vehicles


async def publish_positions(
    settings: Settings,
    positions: Sequence[Position],
    *,
    speedup: float,
    progress: bool = True,
    concurrency: int = 64,
    max_rate: float = DEFAULT_MAX_RATE,
    client_id: str | None = None,
    on_published: Callable[[int], None] | None = None,
) -> int:
    """Publish positions (already in fix-time order) at QoS 1; returns how many were published.

    Args:
        speedup: time compression (> 0), or 0 for as fast as the broker acknowledges.
        concurrency: QoS 1 publishes awaiting their PUBACK at once.
        max_rate: at most this many messages per second (0: no limit). A broker with a bounded
            per-client queue (Mosquitto ``max_queued_messages``, default 1000) drops QoS 1
            messages for a subscriber that falls that far behind a burst; the default
            (:data:`DEFAULT_MAX_RATE`) stays below what one ingest worker commits there.
        on_published: called with the running count after each PUBACK.

    Raises:
        GpsMonitorError: negative speedup or max_rate. aiomqtt.MqttError: the broker went away.
    """
    if speedup < 0:
        raise GpsMonitorError(f"--speedup: expected 0 or a positive number, got {speedup}")
    if max_rate < 0:
        raise GpsMonitorError(f"--max-rate: expected 0 or a positive number, got {max_rate}")
    if not positions:
        return 0
    prefix = settings.mqtt.topic_prefix
    client = mqtt.build_client(
        settings.mqtt, client_id=client_id or f"gps-monitor-replay-{uuid.uuid4().hex[:8]}"
    )
    client.pending_calls_threshold = concurrency + 10
    semaphore = asyncio.Semaphore(concurrency)
    done = 0
    bar = tqdm(total=len(positions), unit="fix", disable=not progress, desc="replay")
    t0 = positions[0].fix_time
    start = time.monotonic()

    async def publish(p: Position) -> None:
        nonlocal done
        try:
            await client.publish(
                topics.position_topic(p.terminal_id, prefix),
                json.dumps(position_to_payload(p)),
                qos=1,
            )
        finally:
            semaphore.release()
        done += 1
        bar.update(1)
        if on_published is not None:
            on_published(done)

    try:
        async with client:
            tasks: set[asyncio.Task[None]] = set()
            for i, p in enumerate(positions):
                due = start
                if speedup > 0:
                    due = start + (p.fix_time - t0).total_seconds() / speedup
                if max_rate > 0:
                    due = max(due, start + i / max_rate)
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await semaphore.acquire()
                task = asyncio.create_task(publish(p))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks)
    finally:
        bar.close()
    return done


async def replay_file(
    settings: Settings,
    path: Path,
    fmt: str,
    *,
    speedup: float,
    register: bool = False,
    company: str = DEMO_COMPANY,
    vehicle_class: VehicleClass = VehicleClass.COACH,
    terminal_id: str | None = None,
    progress: bool = True,
    max_rate: float = DEFAULT_MAX_RATE,
) -> tuple[int, dict[str, list[Position]]]:
    """Read ``path`` (format ``fmt``), optionally register its terminals, publish it.

    Returns (positions published, the tracks read).
    """
    tracks = read_track(path, fmt, terminal_id=terminal_id, quality=settings.quality)
    if register:
        conn = await connect(settings.database)
        try:
            await register_terminals(
                conn, sorted(tracks), company=company, vehicle_class=vehicle_class
            )
        finally:
            await conn.close()
    published = await publish_positions(
        settings, replay_order(tracks), speedup=speedup, progress=progress, max_rate=max_rate
    )
    return published, tracks


def run(args: argparse.Namespace, settings: Settings) -> int:
    mqtt.require_host(settings.mqtt)
    if args.max_rate == 0:
        print(UNLIMITED_WARNING, file=sys.stderr)
    published, tracks = asyncio.run(
        replay_file(
            settings,
            args.file,
            args.fmt,
            speedup=args.speedup,
            register=args.register,
            company=args.company,
            vehicle_class=VehicleClass(args.vehicle_class),
            terminal_id=args.terminal_id,
            progress=not args.no_progress,
            max_rate=args.max_rate,
        )
    )
    print(f"published {published} position(s) of {len(tracks)} terminal(s) from {args.file}")
    return 0
