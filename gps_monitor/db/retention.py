"""``gps-monitor retention``: delete monitoring data older than the retention period, never
sealed data.

DOMAIN.md, Retention and evidence: monitoring data is kept at least 6 months
(``database.retention_months``, GPS_MONITOR_DATABASE_RETENTION_MONTHS); data under a legal hold
is never deleted.

- plain PostgreSQL: deletes ``positions`` with fix_time before the cutoff and ``raw_messages``
  received before it, except positions inside an active hold's vehicle and window and raw
  messages an active hold copied. Run it daily (cron / systemd timer).
- TimescaleDB: the retention policy (:func:`gps_monitor.db.migrate.apply_policies`) drops whole
  chunks on its own schedule; this command does the same on demand with ``drop_chunks``. Sealed
  data survives because sealing copied it into ``held_positions`` / ``held_raw_messages``
  (:mod:`gps_monitor.db.holds`), which no policy touches.
- both modes: held copies of *released* holds whose window ended before the cutoff are deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from gps_monitor.config import Settings
from gps_monitor.db import migrate
from gps_monitor.db.pool import connect
from gps_monitor.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class RetentionResult:
    """What one retention run removed (counts; chunks in TimescaleDB mode)."""

    mode: str
    cutoff: datetime
    positions_deleted: int
    raw_messages_deleted: int
    chunks_dropped: int
    held_positions_deleted: int
    held_raw_messages_deleted: int


def months_before(moment: datetime, months: int) -> datetime:
    """``moment`` minus whole calendar months (day clamped to the month's length)."""
    total = moment.year * 12 + (moment.month - 1) - months
    year, month = divmod(total, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def _count(status: str) -> int:
    return int(status.split()[-1])


async def run_retention(
    conn: asyncpg.Connection, *, cutoff: datetime, dry_run: bool = False
) -> RetentionResult:
    """Delete data older than ``cutoff`` (UTC-aware) except sealed data; see the module doc.

    With ``dry_run`` the deletions happen inside a transaction that is rolled back, so the counts
    are exact and nothing changes.

    Raises:
        ValueError: cutoff is naive.
    """
    if cutoff.tzinfo is None:
        raise ValueError("cutoff: expected a timezone-aware datetime, got naive")
    mode = await migrate.storage_mode(conn) or "plain"
    tx = conn.transaction()
    await tx.start()
    try:
        positions = raw = chunks = 0
        if mode == "timescale":
            for table in ("positions", "raw_messages"):
                dropped = await conn.fetch(
                    "SELECT drop_chunks($1::regclass, older_than => $2::timestamptz)", table, cutoff
                )
                chunks += len(dropped)
        else:
            positions = _count(
                await conn.execute(
                    "DELETE FROM positions p WHERE p.fix_time < $1 AND NOT EXISTS ("
                    " SELECT 1 FROM legal_holds h WHERE h.released_at IS NULL"
                    " AND h.vehicle_id = p.vehicle_id"
                    " AND p.fix_time >= h.window_start AND p.fix_time <= h.window_end)",
                    cutoff,
                )
            )
            raw = _count(
                await conn.execute(
                    "DELETE FROM raw_messages r WHERE r.received_at < $1 AND NOT EXISTS ("
                    " SELECT 1 FROM held_raw_messages hr JOIN legal_holds h ON h.id = hr.hold_id"
                    " WHERE hr.id = r.id AND h.released_at IS NULL)",
                    cutoff,
                )
            )
        released = "SELECT id FROM legal_holds WHERE released_at IS NOT NULL AND window_end < $1"
        held_positions = _count(
            await conn.execute(f"DELETE FROM held_positions WHERE hold_id IN ({released})", cutoff)
        )
        held_raw = _count(
            await conn.execute(
                f"DELETE FROM held_raw_messages WHERE hold_id IN ({released})", cutoff
            )
        )
    except BaseException:
        await tx.rollback()
        raise
    if dry_run:
        await tx.rollback()
    else:
        await tx.commit()
    return RetentionResult(mode, cutoff, positions, raw, chunks, held_positions, held_raw)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--before",
        type=datetime.fromisoformat,
        default=None,
        help="cutoff (ISO 8601 with offset); default: now minus database.retention_months",
    )
    parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")
    parser.add_argument(
        "--force",
        action="store_true",
        help="accept a --before later than now minus database.retention_months (deletes data "
        "younger than the retention period)",
    )


def check_cutoff(before: datetime | None, months: int, now: datetime, *, force: bool) -> datetime:
    """The cutoff of a run: ``before``, or ``now`` minus ``months`` when it is ``None``.

    Raises:
        ConfigurationError: ``before`` is naive, or later than ``now`` minus ``months`` (data still
            inside the retention period) and ``force`` is not set.
    """
    earliest_kept = months_before(now, months)
    if before is None:
        return earliest_kept
    if before.tzinfo is None:
        raise ConfigurationError(
            "--before: expected a time with offset, e.g. 2026-01-01T00:00:00+08:00, "
            f"got {before.isoformat()}"
        )
    if before > earliest_kept and not force:
        raise ConfigurationError(
            f"--before: expected at most {earliest_kept.isoformat(timespec='seconds')} (now minus "
            f"the {months}-month retention period), got {before.isoformat()}; it would delete "
            "data younger than the retention period: give --force if that is intended"
        )
    return before


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    cutoff = check_cutoff(
        args.before, settings.database.retention_months, datetime.now(UTC), force=args.force
    )
    conn = await connect(settings.database)
    try:
        result = await run_retention(conn, cutoff=cutoff, dry_run=args.dry_run)
    finally:
        await conn.close()
    verb = "would delete" if args.dry_run else "deleted"
    print(
        f"retention ({result.mode}, cutoff {result.cutoff.isoformat()}): {verb} "
        f"{result.positions_deleted} position(s), {result.raw_messages_deleted} raw message(s), "
        f"{result.chunks_dropped} chunk(s); released holds: {result.held_positions_deleted} "
        f"held position(s), {result.held_raw_messages_deleted} held raw message(s)"
    )
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_run(args, settings))
