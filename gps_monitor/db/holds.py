"""Legal holds (封存): seal one vehicle's data over a time window so no retention deletes it.

Design (migration 0060): sealing copies, in one transaction, the window's rows of ``positions``
and the ``raw_messages`` rows that carried them into ``held_positions`` / ``held_raw_messages``.
TimescaleDB's retention policy drops whole chunks of the hypertables whatever rows they contain,
so a flag on the rows could not hold them; a copy outside the hypertables does. The plain
PostgreSQL retention job (:mod:`gps_monitor.db.retention`) also skips live rows under an active
hold. Evidence reports read the held copy first (:func:`held_positions`), so a report built after
retention ran is the same report, with the same digest, as before.

DOMAIN.md, Retention and evidence: "After an accident the data of the vehicles involved must be
sealed (legal hold): no retention job may delete it."
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from gps_monitor.errors import NotFoundError, StateError

POSITION_COLUMNS = (
    "vehicle_id, fix_time, received_at, latitude, longitude, speed_kmh, heading_deg, altitude_m, "
    "satellites, fix_valid, acc_on, alarm_flags, status_flags, mileage_km, extras, quality, "
    "quality_reason, late, reupload, distance_m, interval_s, raw_message_id"
)


@dataclass(frozen=True, slots=True)
class LegalHold:
    """One legal hold: a vehicle and a window [window_start, window_end] (UTC), who sealed it and
    why, how many positions and raw messages were copied, and its release if released."""

    id: int
    vehicle_id: int
    window_start: datetime
    window_end: datetime
    reason: str
    case_number: str | None
    sealed_at: datetime
    sealed_by: str
    positions_held: int
    raw_messages_held: int
    released_at: datetime | None
    released_by: str | None
    release_reason: str | None

    @property
    def active(self) -> bool:
        return self.released_at is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (ISO 8601 datetimes)."""
        out: dict[str, Any] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, datetime) else value
        out["active"] = self.active
        return out


_HOLD_COLUMNS = (
    "id, vehicle_id, window_start, window_end, reason, case_number, sealed_at, sealed_by, "
    "positions_held, raw_messages_held, released_at, released_by, release_reason"
)


# A hold seals an accident's or a case's stretch of one vehicle's data, copied when sealed: its
# window ends by now (data not yet stored is not copied, and TimescaleDB's retention would drop it
# with its chunk) and spans at most this long; a longer keep is a retention setting, not a hold.
MAX_WINDOW_DAYS = 366
CLOCK_TOLERANCE = timedelta(minutes=5)  # an end a few minutes ahead: the sealing clock's skew
EARLIEST_START = datetime(2000, 1, 1, tzinfo=UTC)  # before any JT/T 808 terminal reported


def check_window(window_start: datetime, window_end: datetime, now: datetime) -> None:
    """Raise ValueError unless [window_start, window_end] is a window a hold can seal at ``now``
    (timezone-aware): aware datetimes, end after start, start from :data:`EARLIEST_START` on,
    end not after ``now`` (give or take :data:`CLOCK_TOLERANCE`), at most
    :data:`MAX_WINDOW_DAYS` days long."""
    for name, value in (("window_start", window_start), ("window_end", window_end)):
        if value.tzinfo is None:
            raise ValueError(
                f"{name}: expected a time with its UTC offset, got {value.isoformat()} (naive)"
            )
    shown = f"{window_start.isoformat()} .. {window_end.isoformat()}"
    if window_end <= window_start:
        raise ValueError(f"window: expected end after start, got {shown}")
    if window_start < EARLIEST_START:
        raise ValueError(
            f"window_start: expected a time from {EARLIEST_START.date()} on, got "
            f"{window_start.isoformat()}"
        )
    if window_end > now + CLOCK_TOLERANCE:
        raise ValueError(
            f"window_end: expected a time up to now ({now.isoformat(timespec='seconds')}, 5 min "
            f"of clock skew allowed; a hold copies the data stored when it is sealed), got "
            f"{window_end.isoformat()}"
        )
    if window_end - window_start > timedelta(days=MAX_WINDOW_DAYS):
        raise ValueError(
            f"window: expected at most {MAX_WINDOW_DAYS} days (an accident's or a case's "
            f"stretch; keeping more is a retention setting), got {shown}"
        )


def _hold(row: asyncpg.Record) -> LegalHold:
    return LegalHold(**dict(row))


async def seal(
    conn: asyncpg.Connection,
    *,
    vehicle_id: int,
    window_start: datetime,
    window_end: datetime,
    reason: str,
    sealed_by: str,
    case_number: str | None = None,
) -> LegalHold:
    """Seal ``vehicle_id``'s positions with window_start <= fix_time <= window_end (UTC-aware)
    and their raw messages; returns the hold with the counts copied.

    Raises:
        NotFoundError: no such vehicle.
        ValueError: a window :func:`check_window` refuses (naive, end not after start, end
            after now, longer than :data:`MAX_WINDOW_DAYS`), or reason is empty.
    """
    check_window(window_start, window_end, datetime.now(UTC))
    if not reason.strip():
        raise ValueError("reason: expected a non-empty text (e.g. the accident or case)")
    async with conn.transaction():
        exists = await conn.fetchval("SELECT 1 FROM vehicles WHERE id = $1", vehicle_id)
        if exists is None:
            raise NotFoundError(f"vehicle {vehicle_id}: expected a registered vehicle, found none")
        hold_id = await conn.fetchval(
            "INSERT INTO legal_holds (vehicle_id, window_start, window_end, reason, case_number, "
            "sealed_by) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            vehicle_id,
            window_start,
            window_end,
            reason,
            case_number,
            sealed_by,
        )
        status = await conn.execute(
            f"INSERT INTO held_positions (hold_id, {POSITION_COLUMNS}) "
            f"SELECT $1, {POSITION_COLUMNS} FROM positions "
            "WHERE vehicle_id = $2 AND fix_time >= $3 AND fix_time <= $4",
            hold_id,
            vehicle_id,
            window_start,
            window_end,
        )
        positions_held = int(status.split()[-1])
        status = await conn.execute(
            "INSERT INTO held_raw_messages (hold_id, id, received_at, topic, payload) "
            "SELECT $1, r.id, r.received_at, r.topic, r.payload FROM raw_messages r "
            "WHERE r.id IN (SELECT DISTINCT raw_message_id FROM held_positions "
            "               WHERE hold_id = $1 AND raw_message_id IS NOT NULL)",
            hold_id,
        )
        raw_held = int(status.split()[-1])
        row = await conn.fetchrow(
            f"UPDATE legal_holds SET positions_held = $2, raw_messages_held = $3 WHERE id = $1 "
            f"RETURNING {_HOLD_COLUMNS}",
            hold_id,
            positions_held,
            raw_held,
        )
    assert row is not None
    return _hold(row)


async def release(
    conn: asyncpg.Connection | asyncpg.Pool, hold_id: int, *, released_by: str, reason: str
) -> LegalHold:
    """Release an active hold (the held copy stays until retention removes it once the window
    has aged past the retention period).

    Raises:
        NotFoundError: no such hold.
        StateError: the hold is already released.
    """
    row = await conn.fetchrow(
        f"UPDATE legal_holds SET released_at = now(), released_by = $2, release_reason = $3 "
        f"WHERE id = $1 AND released_at IS NULL RETURNING {_HOLD_COLUMNS}",
        hold_id,
        released_by,
        reason,
    )
    if row is None:
        current = await get(conn, hold_id)
        raise StateError(f"legal hold {hold_id}", "active", f"released at {current.released_at}")
    return _hold(row)


async def get(conn: asyncpg.Connection | asyncpg.Pool, hold_id: int) -> LegalHold:
    """One hold.

    Raises:
        NotFoundError: no such hold.
    """
    row = await conn.fetchrow(f"SELECT {_HOLD_COLUMNS} FROM legal_holds WHERE id = $1", hold_id)
    if row is None:
        raise NotFoundError(f"legal hold {hold_id}: expected an existing hold, found none")
    return _hold(row)


async def list_holds(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    vehicle_id: int | None = None,
    active_only: bool = False,
) -> list[LegalHold]:
    """Holds, newest first, optionally of one vehicle and/or only the active ones."""
    rows = await conn.fetch(
        f"SELECT {_HOLD_COLUMNS} FROM legal_holds "
        "WHERE ($1::bigint IS NULL OR vehicle_id = $1) AND (NOT $2 OR released_at IS NULL) "
        "ORDER BY sealed_at DESC, id DESC",
        vehicle_id,
        active_only,
    )
    return [_hold(r) for r in rows]


async def holds_covering(
    conn: asyncpg.Connection | asyncpg.Pool, vehicle_id: int, start: datetime, end: datetime
) -> list[LegalHold]:
    """Active holds of the vehicle whose window overlaps [start, end]."""
    rows = await conn.fetch(
        f"SELECT {_HOLD_COLUMNS} FROM legal_holds WHERE vehicle_id = $1 AND released_at IS NULL "
        "AND window_start <= $3 AND window_end >= $2 ORDER BY id",
        vehicle_id,
        start,
        end,
    )
    return [_hold(r) for r in rows]


async def held_positions(
    conn: asyncpg.Connection | asyncpg.Pool, vehicle_id: int, start: datetime, end: datetime
) -> list[asyncpg.Record]:
    """Held copies of the vehicle's positions with start <= fix_time <= end, one per fix time
    (the oldest hold's copy), from every hold, active or released, still stored."""
    return await conn.fetch(
        f"SELECT DISTINCT ON (fix_time) {POSITION_COLUMNS} FROM held_positions "
        "WHERE vehicle_id = $1 AND fix_time >= $2 AND fix_time <= $3 ORDER BY fix_time, hold_id",
        vehicle_id,
        start,
        end,
    )


async def live_positions(
    conn: asyncpg.Connection | asyncpg.Pool,
    vehicle_id: int,
    start: datetime,
    end: datetime,
    limit: int,
) -> list[asyncpg.Record]:
    """The vehicle's live positions with start <= fix_time <= end, oldest first, at most
    ``limit``, in the same columns as :func:`held_positions` (``POSITION_COLUMNS``)."""
    return await conn.fetch(
        f"SELECT {POSITION_COLUMNS} FROM positions WHERE vehicle_id = $1 AND fix_time >= $2 "
        "AND fix_time <= $3 ORDER BY fix_time LIMIT $4",
        vehicle_id,
        start,
        end,
        limit,
    )


_NTH_FIX = (
    "SELECT fix_time FROM (SELECT fix_time FROM positions WHERE vehicle_id = $1 "
    " AND fix_time {op} $2 ORDER BY fix_time {order} LIMIT $3) a UNION "
    "SELECT fix_time FROM (SELECT fix_time FROM held_positions WHERE vehicle_id = $1 "
    " AND fix_time {op} $2 ORDER BY fix_time {order} LIMIT $3) b "
    "ORDER BY fix_time {order} OFFSET $3 - 1 LIMIT 1"
)


async def nth_fix_time(
    conn: asyncpg.Connection | asyncpg.Pool,
    vehicle_id: int,
    at: datetime,
    n: int,
    *,
    before: bool,
) -> datetime | None:
    """The fix time of the vehicle's ``n``-th position (n >= 1) strictly before ``at``
    (``before``) or strictly after it, live and held positions alike (so the answer is the same
    after retention); None when there are fewer than ``n``."""
    sql = _NTH_FIX.format(op="<", order="DESC") if before else _NTH_FIX.format(op=">", order="ASC")
    fix_time: datetime | None = await conn.fetchval(sql, vehicle_id, at, n)
    return fix_time


async def held_raw_payloads(
    conn: asyncpg.Connection | asyncpg.Pool, raw_ids: list[int]
) -> dict[int, bytes]:
    """Held raw payload bytes by raw message id (for ids whose live row may be gone)."""
    rows = await conn.fetch(
        "SELECT DISTINCT ON (id) id, payload FROM held_raw_messages WHERE id = ANY($1::bigint[]) "
        "ORDER BY id, hold_id",
        raw_ids,
    )
    return {r["id"]: bytes(r["payload"]) for r in rows}
