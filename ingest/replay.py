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
import itertools
import json
import logging
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
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
# s: no PUBACK by then and the connection counts as lost (reconnect, publish again)
PUBACK_TIMEOUT_S = 10.0
# paho's own socket errors ("failed to receive on socket ...") would repeat, in a second line,
# what the replay reports in its one line per outage
_PAHO_LOG = logging.getLogger("gps_monitor.replay.paho")
_PAHO_LOG.setLevel(logging.CRITICAL)
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


@dataclass(slots=True)
class _Progress:
    """Where a replay stands across reconnections: the next position never published, the
    published ones still waiting for their PUBACK, and the schedule's shift for outages."""

    next_index: int = 0
    unacked: set[int] = field(default_factory=set)
    acked: int = 0
    shift_s: float = 0.0
    lost_at: float | None = None


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
    puback_timeout_s: float = PUBACK_TIMEOUT_S,
) -> int:
    """Publish positions (already in fix-time order) at QoS 1; returns how many the broker
    acknowledged (each position once).

    A broker that cannot be reached at the start ends the replay (``aiomqtt.MqttError``: a
    wrong host or port). One going away later does not: it prints one warning line per outage (no
    traceback) and connects again with the services' backoff (:class:`gps_monitor.mqtt.Backoff`,
    ``mqtt.reconnect_delay_s`` doubling up to ``reconnect_delay_max_s``, for as long as it
    takes); the positions published but not acknowledged are published again (QoS 1: at least
    once; ingest stores a repeated fix once) and the replay goes on from where it was, its
    schedule shifted by the outage.

    Args:
        speedup: time compression (> 0), or 0 for as fast as the broker acknowledges.
        concurrency: QoS 1 publishes awaiting their PUBACK at once.
        max_rate: at most this many messages per second (0: no limit). A broker with a bounded
            per-client queue (Mosquitto ``max_queued_messages``, default 1000) drops QoS 1
            messages for a subscriber that falls that far behind a burst; the default
            (:data:`DEFAULT_MAX_RATE`) stays below what one ingest worker commits there.
        on_published: called with the running count after each PUBACK.
        puback_timeout_s: a PUBACK not in by then counts as a lost connection.

    Raises:
        GpsMonitorError: negative speedup or max_rate. ConfigurationError: no broker host.
        aiomqtt.MqttError: the broker could not be reached at the first attempt.
    """
    if speedup < 0:
        raise GpsMonitorError(f"--speedup: expected 0 or a positive number, got {speedup}")
    if max_rate < 0:
        raise GpsMonitorError(f"--max-rate: expected 0 or a positive number, got {max_rate}")
    if not positions:
        return 0
    prefix = settings.mqtt.topic_prefix
    identifier = client_id or f"gps-monitor-replay-{uuid.uuid4().hex[:8]}"
    state = _Progress()
    bar = tqdm(total=len(positions), unit="fix", disable=not progress, desc="replay")
    t0 = positions[0].fix_time
    start = time.monotonic()

    def due(i: int) -> float:
        at = start + state.shift_s
        if speedup > 0:
            at += (positions[i].fix_time - t0).total_seconds() / speedup
        if max_rate > 0:
            at = max(at, start + state.shift_s + i / max_rate)
        return at

    async def session(client: aiomqtt.Client) -> None:
        if state.lost_at is not None:  # resume on schedule, shifted by the outage
            state.shift_s += time.monotonic() - state.lost_at
            state.lost_at = None
        tracker = mqtt.PubackTracker(client)
        semaphore = asyncio.Semaphore(concurrency)
        failure: list[aiomqtt.MqttError] = []
        tasks: set[asyncio.Task[None]] = set()

        async def publish(i: int) -> None:
            p = positions[i]
            try:
                await tracker.publish(
                    topics.position_topic(p.terminal_id, prefix),
                    json.dumps(position_to_payload(p)),
                    puback_timeout_s,
                )
            except aiomqtt.MqttError as error:
                if not failure:
                    failure.append(error)
                tracker.fail_all(f"connection lost ({error})")
                return
            finally:
                semaphore.release()
            state.unacked.discard(i)
            state.acked += 1
            bar.update(1)
            if on_published is not None:
                on_published(state.acked)

        again = sorted(state.unacked)  # published on the lost connection, no PUBACK: resend
        for i in itertools.chain(again, range(state.next_index, len(positions))):
            delay = due(i) - time.monotonic()
            if delay > 0 and i >= state.next_index:
                await asyncio.sleep(delay)
            await semaphore.acquire()
            if failure:
                semaphore.release()
                break
            state.unacked.add(i)
            state.next_index = max(state.next_index, i + 1)
            task = asyncio.create_task(publish(i))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
        if failure:
            raise failure[0]

    backoff = mqtt.Backoff(settings.mqtt.reconnect_delay_s, settings.mqtt.reconnect_delay_max_s)
    connected = False
    try:
        while True:
            client = mqtt.build_client(settings.mqtt, client_id=identifier, logger=_PAHO_LOG)
            try:
                async with client:
                    connected = True
                    backoff.reset()
                    await session(client)
                    break
            except aiomqtt.MqttError as error:
                mqtt.settle_disconnect(client)
                if not connected:
                    raise  # never reached: a wrong host or port, not an outage
                if state.lost_at is None:  # one line per outage, however many attempts
                    state.lost_at = time.monotonic()
                    bar.clear()
                    print(
                        f"replay: broker {settings.mqtt.host}:{settings.mqtt.port} lost after "
                        f"{state.acked} of {len(positions)} position(s) acknowledged ({error}); "
                        "reconnecting and resuming",
                        file=sys.stderr,
                    )
                await asyncio.sleep(backoff.next_delay_s())
    finally:
        bar.close()
    return state.acked


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
