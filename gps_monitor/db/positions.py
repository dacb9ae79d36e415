"""Positions: the batched writer (COPY, exactly-once by the (vehicle_id, fix_time) key) and the
position queries other services use.

One :func:`write_batch` call is one transaction:

1. positions are COPYed into a temporary table, then ``INSERT ... ON CONFLICT (vehicle_id,
   fix_time) DO NOTHING``: a redelivered or duplicate fix is stored once; each references its
   message by ``raw_message_id`` (ids drawn from ``raw_messages_id_seq``). A batch whose keys
   are distinct (the usual one) is inserted unsorted and reads nothing back unless some of
   its fixes were stored before;
2. every accepted MQTT message goes to ``raw_messages`` exactly as received, **once**: a message
   that stored no new position and is identical (same topic, payload bytes and MQTT packet
   identifier) to one stored within ``redelivery_window_s`` or earlier in the batch is a
   redelivery and adds no row (its positions already reference the first copy). A broker
   resends an unacknowledged message with its packet identifier; a terminal sending the same
   bytes twice sends two messages with different ones, and both are kept. Identity is looked up
   by ``message_key`` (a 64-bit BLAKE2b of topic, packet identifier and payload, migration
   0023) and confirmed on the bytes; a unique index cannot do it, since a TimescaleDB
   hypertable's unique indexes must contain the partition column ``received_at``, which
   differs between deliveries. QoS 0 messages (never redelivered) get no key;
3. drift suspects cleared by a later fix are re-flagged ``ok``;
4. ``latest_positions`` is upserted: the live marker only moves forward in fix time (late data
   never moves it back), ``last_message_at`` always advances, also for contact without a
   position (``WriteBatch.contacts``: heartbeats, issue 12), which creates a row with no fix
   for a vehicle that has sent none yet;
5. rejected messages go to ``rejected_messages`` (raw bytes, topic, reason, detail).

The caller acknowledges the source MQTT messages only after this returns.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg

from gps_monitor.models import Position, Quality


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One accepted MQTT message as received.

    packet_id: its MQTT packet identifier when it came at QoS 1/2 (a broker resends an
    unacknowledged message with the same one), None at QoS 0 (never redelivered).
    """

    topic: str
    payload: bytes
    received_at: datetime
    packet_id: int | None = None


@dataclass(frozen=True, slots=True)
class RejectedMessage:
    """One message that could not become positions; ``reason`` is a PayloadError reason code."""

    topic: str
    payload: bytes
    received_at: datetime
    reason: str
    detail: str
    terminal_id: str | None = None


@dataclass(frozen=True, slots=True)
class PositionRow:
    """A judged position ready to store.

    raw_index: index of its message in :attr:`WriteBatch.raw`.
    distance_m, interval_s: from the previous ok fix (ok fixes only), metres and seconds.
    """

    position: Position
    raw_index: int
    distance_m: float | None = None
    interval_s: float | None = None


@dataclass(slots=True)
class WriteBatch:
    """What one transaction writes."""

    raw: list[RawMessage] = field(default_factory=list)
    positions: list[PositionRow] = field(default_factory=list)
    rejected: list[RejectedMessage] = field(default_factory=list)
    # drift suspects of earlier batches that a later fix confirmed, as they are now (quality ok)
    cleared: list[Position] = field(default_factory=list)
    # contact without a position: vehicle id -> arrival time of its newest such message
    contacts: dict[int, datetime] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WriteResult:
    """Outcome of :func:`write_batch`.

    inserted: positions stored by this call.
    already_stored: positions of the batch whose (vehicle, fix time) was stored before, as
        stored (their stored quality and late flag), e.g. after a redelivery.
    """

    inserted: list[Position]
    already_stored: list[Position]


POSITION_COLUMNS = (
    "vehicle_id", "fix_time", "received_at", "latitude", "longitude", "speed_kmh", "heading_deg",
    "altitude_m", "satellites", "fix_valid", "acc_on", "alarm_flags", "status_flags",
    "mileage_km", "extras", "quality", "quality_reason", "late", "reupload", "distance_m",
    "interval_s", "raw_message_id",
)  # fmt: skip
_LATEST_VALUE_COLUMNS = (
    "fix_time", "received_at", "latitude", "longitude", "speed_kmh", "heading_deg", "acc_on",
    "alarm_flags", "status_flags", "mileage_km",
)  # fmt: skip

_CREATE_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS positions_staging (
    vehicle_id bigint, fix_time timestamptz, received_at timestamptz, latitude double precision,
    longitude double precision, speed_kmh real, heading_deg real, altitude_m real,
    satellites smallint, fix_valid boolean, acc_on boolean, alarm_flags bigint,
    status_flags bigint, mileage_km double precision, extras text, quality text,
    quality_reason text, late boolean, reupload boolean, distance_m double precision,
    interval_s double precision, raw_message_id bigint, ord integer
) ON COMMIT DELETE ROWS
"""
_INSERT_FROM_STAGING = f"""
INSERT INTO positions ({", ".join(POSITION_COLUMNS)})
SELECT DISTINCT ON (vehicle_id, fix_time) {
    ", ".join("extras::jsonb" if c == "extras" else c for c in POSITION_COLUMNS)
}
FROM positions_staging ORDER BY vehicle_id, fix_time, ord
ON CONFLICT (vehicle_id, fix_time) DO NOTHING
RETURNING vehicle_id, fix_time
"""
# latest_positions from the staged rows of the batch (its newest ok fix per vehicle: the first
# staged of equal fix times) and its contacts ($1 vehicle ids, $2 arrival times); the newest
# arrival of either is the vehicle's last message. Computed by PostgreSQL from the staging table
# the positions were COPYed into: sending the picks as twelve arrays cost the ingest worker 7 %
# of its CPU at 6,000 positions/s (asyncpg checks every array element).
_LATEST_SET = ", ".join(
    f"{c} = CASE WHEN EXCLUDED.fix_time IS NOT NULL AND "
    f"(l.fix_time IS NULL OR EXCLUDED.fix_time > l.fix_time) THEN EXCLUDED.{c} ELSE l.{c} END"
    for c in _LATEST_VALUE_COLUMNS
)
_UPSERT_LATEST = f"""
INSERT INTO latest_positions AS l (vehicle_id, last_message_at, {", ".join(_LATEST_VALUE_COLUMNS)})
SELECT m.vehicle_id, m.last_message_at, {", ".join(f"n.{c}" for c in _LATEST_VALUE_COLUMNS)}
FROM (
    SELECT vehicle_id, max(received_at) AS last_message_at
    FROM (SELECT vehicle_id, received_at FROM positions_staging
          UNION ALL SELECT * FROM unnest($1::bigint[], $2::timestamptz[])
    ) AS a(vehicle_id, received_at)
    GROUP BY vehicle_id
) AS m
LEFT JOIN (
    SELECT DISTINCT ON (vehicle_id) vehicle_id, {", ".join(_LATEST_VALUE_COLUMNS)}
    FROM positions_staging WHERE quality = 'ok' ORDER BY vehicle_id, fix_time DESC, ord
) AS n ON n.vehicle_id = m.vehicle_id
ORDER BY m.vehicle_id
ON CONFLICT (vehicle_id) DO UPDATE SET
    last_message_at = greatest(l.last_message_at, EXCLUDED.last_message_at), {_LATEST_SET}
"""


_INSERT_DISTINCT_FROM_STAGING = f"""
INSERT INTO positions ({", ".join(POSITION_COLUMNS)})
SELECT {", ".join("extras::jsonb" if c == "extras" else c for c in POSITION_COLUMNS)}
FROM positions_staging
ON CONFLICT (vehicle_id, fix_time) DO NOTHING
"""
# the staged rows this transaction stored: their raw message ids were drawn by it
_STORED_FROM_STAGING = """
SELECT s.vehicle_id, s.fix_time FROM positions_staging s JOIN positions p
ON p.vehicle_id = s.vehicle_id AND p.fix_time = s.fix_time AND p.raw_message_id = s.raw_message_id
"""


async def prepare_connection(conn: asyncpg.Connection) -> None:
    """Create the session's staging table once, outside any transaction, on a connection that
    will call :func:`write_batch` many times (the ingest worker's own), which then passes
    ``staging_ready=True`` and saves the ``CREATE ... IF NOT EXISTS`` round trip per batch."""
    await conn.execute(_CREATE_STAGING)


async def _insert_from_staging(
    conn: asyncpg.Connection, rows: Sequence[PositionRow]
) -> set[tuple[int, datetime]]:
    """INSERT the staged rows not stored yet; returns their (vehicle, fix time) keys.

    Keys distinct in the batch (the usual case): no sort for ``DISTINCT ON`` and no row sent
    back when the statement's count says every row went in; only when some were stored already
    (a redelivery) are the stored ones read back, by the raw message ids this batch drew.
    """
    keys = {(row.position.vehicle_id, row.position.fix_time) for row in rows}
    if len(keys) < len(rows):
        return {(r["vehicle_id"], r["fix_time"]) for r in await conn.fetch(_INSERT_FROM_STAGING)}
    status = await conn.execute(_INSERT_DISTINCT_FROM_STAGING)
    if status.rpartition(" ")[2] == str(len(rows)):
        return keys  # type: ignore[return-value]
    return {(r["vehicle_id"], r["fix_time"]) for r in await conn.fetch(_STORED_FROM_STAGING)}


async def write_batch(
    conn: asyncpg.Connection,
    batch: WriteBatch,
    *,
    redelivery_window_s: float = 7 * 24 * 3600.0,
    staging_ready: bool = False,
) -> WriteResult:
    """Store one batch in one transaction (see the module docstring; the caller's when ``conn``
    is in one); returns what was new.

    Positions with the same (vehicle, fix time) inside the batch: the first one is kept.
    ``redelivery_window_s``: how far back (by ``received_at``) an identical stored message makes
    a message a redelivery; the broker can redeliver for as long as it keeps the session, so the
    ingest worker passes ``mqtt.session_expiry_s``. ``staging_ready``: :func:`prepare_connection`
    made the staging table on ``conn`` (else each call creates it if it is not there).

    Raises:
        asyncpg.PostgresError / OSError: the transaction failed and was rolled back; nothing
            of the batch is stored (the caller does not acknowledge, the broker redelivers).
            When :func:`gps_monitor.db.failures.blame` says the data caused it, retrying the
            same batch fails again: the caller isolates the offending message instead.
    """
    # one transaction: the caller's when it has one (the ingest worker's, fenced), not a
    # savepoint inside it (two more round trips per batch that would change nothing: a failure
    # ends the caller's transaction all the same)
    within = contextlib.nullcontext() if conn.is_in_transaction() else conn.transaction()
    async with within:
        raw_ids: list[int] = []
        if batch.raw:
            raw_ids = [
                r[0]
                for r in await conn.fetch(
                    "SELECT nextval('raw_messages_id_seq') FROM generate_series(1, $1)",
                    len(batch.raw),
                )
            ]
        inserted: list[Position] = []
        already: list[Position] = []
        keys: set[tuple[int, datetime]] = set()  # (vehicle, fix time) stored by this call
        if not staging_ready and (batch.positions or batch.contacts):
            await conn.execute(_CREATE_STAGING)  # latest_positions are read from it too
        if batch.positions:
            await conn.copy_records_to_table(
                "positions_staging",
                records=[
                    _staging_record(row, raw_ids[row.raw_index], i)
                    for i, row in enumerate(batch.positions)
                ],
                columns=(*POSITION_COLUMNS, "ord"),
            )
            keys |= await _insert_from_staging(conn, batch.positions)
            seen: set[tuple[int, datetime]] = set()
            missing: list[PositionRow] = []
            for row in batch.positions:
                p = row.position
                key = (p.vehicle_id, p.fix_time)
                if key in seen:
                    continue
                seen.add(key)  # type: ignore[arg-type]
                if key in keys:
                    inserted.append(p)
                else:
                    missing.append(row)
            if missing:
                already = await _stored(conn, [r.position for r in missing])
        if batch.raw:
            new_raw = {row.raw_index for row in batch.positions
                       if (row.position.vehicle_id, row.position.fix_time) in keys}  # fmt: skip
            await _store_raw(conn, batch.raw, raw_ids, new_raw, redelivery_window_s)
        if batch.cleared:
            await conn.execute(
                "UPDATE positions p SET quality = 'ok', quality_reason = NULL "
                "FROM unnest($1::bigint[], $2::timestamptz[]) AS c(vehicle_id, fix_time) "
                "WHERE p.vehicle_id = c.vehicle_id AND p.fix_time = c.fix_time "
                "AND p.quality = 'drift'",
                [p.vehicle_id for p in batch.cleared],
                [p.fix_time for p in batch.cleared],
            )
        await _upsert_latest(conn, batch)
        await save_rejected(conn, batch.rejected)
    return WriteResult(inserted=inserted, already_stored=already)


def message_key(message: RawMessage) -> int | None:
    """The identity key of an MQTT message: a signed 64-bit BLAKE2b of topic, packet
    identifier and payload (``raw_messages.message_key``; equal keys are confirmed on the
    bytes). None for a QoS 0 message (no packet identifier: never redelivered)."""
    if message.packet_id is None:
        return None
    head = f"{message.topic}\x00{message.packet_id}\x00".encode()
    digest = hashlib.blake2b(head + message.payload, digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


_ALREADY_STORED_RAW = """
SELECT k.i
FROM unnest($1::int[], $2::bigint[], $3::text[], $4::bytea[]) AS k(i, key, topic, payload)
WHERE EXISTS (SELECT 1 FROM raw_messages r WHERE r.message_key = k.key AND r.received_at >= $5
              AND r.topic = k.topic AND r.payload = k.payload)
"""


async def _store_raw(
    conn: asyncpg.Connection,
    raw: Sequence[RawMessage],
    raw_ids: Sequence[int],
    new_raw: set[int],
    redelivery_window_s: float,
) -> None:
    """COPY the messages of a batch into ``raw_messages``, except redeliveries: a message that
    stored no new position (its index not in ``new_raw``) and whose identical copy (topic,
    packet identifier, bytes) is stored within the window or comes earlier in the batch."""
    keys = [message_key(m) for m in raw]
    seen: set[tuple[str, int, bytes]] = set()
    candidates: list[int] = []
    skip: set[int] = set()
    for i, m in enumerate(raw):
        if m.packet_id is None:
            continue  # QoS 0: never a redelivery
        identity = (m.topic, m.packet_id, m.payload)
        if i not in new_raw:
            if identity in seen:
                skip.add(i)
            else:
                candidates.append(i)
        seen.add(identity)
    if candidates:
        since = min(m.received_at for m in raw) - timedelta(seconds=redelivery_window_s)
        rows = await conn.fetch(
            _ALREADY_STORED_RAW,
            candidates,
            [keys[i] for i in candidates],
            [raw[i].topic for i in candidates],
            [raw[i].payload for i in candidates],
            since,
        )
        skip |= {r["i"] for r in rows}
    records = [
        (raw_ids[i], m.received_at, m.topic, m.payload, keys[i])
        for i, m in enumerate(raw)
        if i not in skip
    ]
    if records:
        await conn.copy_records_to_table(
            "raw_messages",
            records=records,
            columns=("id", "received_at", "topic", "payload", "message_key"),
        )


def _text(value: str) -> str:
    return value.replace("\x00", "\\u0000")  # PostgreSQL text cannot hold NUL


def _rejected_record(r: RejectedMessage) -> tuple[object, ...]:
    terminal_id = None if r.terminal_id is None else _text(r.terminal_id)
    return (r.received_at, _text(r.topic), r.payload, terminal_id, _text(r.reason), _text(r.detail))


async def save_rejected(conn: asyncpg.Connection, rejected: Sequence[RejectedMessage]) -> None:
    """Store messages set aside with their reason in ``rejected_messages`` (by any consumer:
    the topic says which). Text columns are made storable (a NUL becomes ``\\u0000``) so that
    setting a message aside cannot fail because of that message."""
    if not rejected:
        return
    await conn.copy_records_to_table(
        "rejected_messages",
        records=[_rejected_record(r) for r in rejected],
        columns=("received_at", "topic", "payload", "terminal_id", "reason", "detail"),
    )


def _staging_record(row: PositionRow, raw_id: int, order: int) -> tuple[object, ...]:
    p = row.position
    return (
        p.vehicle_id, p.fix_time, p.received_at, p.latitude, p.longitude, p.speed_kmh,
        p.heading_deg, p.altitude_m, p.satellites, p.fix_valid, p.acc_on, p.alarm_flags,
        p.status_flags, p.mileage_km, json.dumps(p.extras) if p.extras else None,
        str(p.quality), p.quality_reason, p.late, p.reupload, row.distance_m, row.interval_s,
        raw_id, order,
    )  # fmt: skip


async def _upsert_latest(conn: asyncpg.Connection, batch: WriteBatch) -> None:
    """Per vehicle of the batch: its newest ok fix (if any) and its newest arrival time (of a
    position or a contact). The positions are read from ``positions_staging``, where the
    caller has staged ``batch.positions`` (every one, in order) in this transaction (the table
    must exist, empty for a batch of contacts only)."""
    if batch.positions or batch.contacts:
        contacts = sorted(batch.contacts.items())
        await conn.execute(_UPSERT_LATEST, [v for v, _ in contacts], [t for _, t in contacts])


_SELECT_POSITION = (
    "SELECT p.*, v.terminal_id, v.company_id FROM positions p "
    "JOIN vehicles v ON v.id = p.vehicle_id "
)


def position_from_row(row: asyncpg.Record) -> Position:
    """A :class:`Position` from a row of ``positions`` joined with ``vehicles``
    (``terminal_id``, ``company_id``)."""
    extras = row["extras"]
    if isinstance(extras, str):
        extras = json.loads(extras)
    return Position(
        terminal_id=row["terminal_id"],
        fix_time=row["fix_time"],
        latitude=row["latitude"],
        longitude=row["longitude"],
        speed_kmh=float(row["speed_kmh"]),
        heading_deg=row["heading_deg"],
        altitude_m=row["altitude_m"],
        satellites=row["satellites"],
        fix_valid=row["fix_valid"],
        acc_on=row["acc_on"],
        alarm_flags=row["alarm_flags"],
        status_flags=row["status_flags"],
        mileage_km=row["mileage_km"],
        extras=extras or {},
        vehicle_id=row["vehicle_id"],
        company_id=row["company_id"],
        quality=Quality(row["quality"]),
        quality_reason=row["quality_reason"],
        late=row["late"],
        reupload=row["reupload"],
        received_at=row["received_at"],
    )


async def _stored(conn: asyncpg.Connection, positions: Sequence[Position]) -> list[Position]:
    rows = await conn.fetch(
        _SELECT_POSITION + "JOIN unnest($1::bigint[], $2::timestamptz[]) AS k(vehicle_id, fix_time)"
        " ON p.vehicle_id = k.vehicle_id AND p.fix_time = k.fix_time",
        [p.vehicle_id for p in positions],
        [p.fix_time for p in positions],
    )
    return [position_from_row(r) for r in rows]


async def vehicle_positions(
    conn: asyncpg.Connection | asyncpg.Pool,
    vehicle_id: int,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    quality: Quality | None = None,
) -> list[Position]:
    """Stored positions of one vehicle in fix-time order, optionally in ``[start, end)`` and of
    one quality."""
    rows = await conn.fetch(
        _SELECT_POSITION + "WHERE p.vehicle_id = $1 AND ($2::timestamptz IS NULL OR "
        "p.fix_time >= $2) AND ($3::timestamptz IS NULL OR p.fix_time < $3) AND "
        "($4::text IS NULL OR p.quality = $4) ORDER BY p.fix_time",
        vehicle_id,
        start,
        end,
        None if quality is None else str(quality),
    )
    return [position_from_row(r) for r in rows]


async def latest_position(
    conn: asyncpg.Connection | asyncpg.Pool, vehicle_id: int
) -> asyncpg.Record | None:
    """The ``latest_positions`` row of a vehicle (live marker and ``last_message_at``), or None."""
    return await conn.fetchrow("SELECT * FROM latest_positions WHERE vehicle_id = $1", vehicle_id)


async def neighbour_ok_fixes(
    conn: asyncpg.Connection | asyncpg.Pool, vehicle_id: int, fix_time: datetime
) -> tuple[Position | None, Position | None]:
    """The stored ok fixes of a vehicle just before and just after ``fix_time`` (either None)."""
    before = await conn.fetchrow(
        _SELECT_POSITION + "WHERE p.vehicle_id = $1 AND p.fix_time < $2 AND p.quality = 'ok' "
        "ORDER BY p.fix_time DESC LIMIT 1",
        vehicle_id,
        fix_time,
    )
    after = await conn.fetchrow(
        _SELECT_POSITION + "WHERE p.vehicle_id = $1 AND p.fix_time > $2 AND p.quality = 'ok' "
        "ORDER BY p.fix_time LIMIT 1",
        vehicle_id,
        fix_time,
    )
    return (
        position_from_row(before) if before else None,
        position_from_row(after) if after else None,
    )


@dataclass(frozen=True, slots=True)
class VehicleTail:
    """The recent stored history of one vehicle, to resume live quality judgement.

    newest_fix_time: newest fix that is not invalid (None: nothing stored).
    anchor: newest ok fix. suspect: newest drift fix newer than the anchor (may still clear).
    """

    newest_fix_time: datetime | None
    anchor: Position | None
    suspect: Position | None


async def vehicle_tail(conn: asyncpg.Connection | asyncpg.Pool, vehicle_id: int) -> VehicleTail:
    """The :class:`VehicleTail` of a vehicle from the stored positions."""
    newest = await conn.fetchval(
        "SELECT max(fix_time) FROM positions WHERE vehicle_id = $1 AND quality <> 'invalid'",
        vehicle_id,
    )
    anchor_row = await conn.fetchrow(
        _SELECT_POSITION + "WHERE p.vehicle_id = $1 AND p.quality = 'ok' "
        "ORDER BY p.fix_time DESC LIMIT 1",
        vehicle_id,
    )
    anchor = position_from_row(anchor_row) if anchor_row else None
    suspect_row = await conn.fetchrow(
        _SELECT_POSITION + "WHERE p.vehicle_id = $1 AND p.quality = 'drift' "
        "AND ($2::timestamptz IS NULL OR p.fix_time > $2) ORDER BY p.fix_time DESC LIMIT 1",
        vehicle_id,
        anchor.fix_time if anchor else None,
    )
    return VehicleTail(
        newest_fix_time=newest,
        anchor=anchor,
        suspect=position_from_row(suspect_row) if suspect_row else None,
    )


async def vehicle_tails(
    conn: asyncpg.Connection | asyncpg.Pool, vehicle_ids: Sequence[int]
) -> dict[int, VehicleTail]:
    """:class:`VehicleTail` of many vehicles in three index lookups per vehicle, three queries
    in all (vehicles with no stored position get an empty tail)."""
    ids = list(vehicle_ids)
    newest = {
        r["vid"]: r["newest"]
        for r in await conn.fetch(
            "SELECT k.vid, (SELECT p.fix_time FROM positions p WHERE p.vehicle_id = k.vid "
            "AND p.quality <> 'invalid' ORDER BY p.fix_time DESC LIMIT 1) AS newest "
            "FROM unnest($1::bigint[]) AS k(vid)",
            ids,
        )
    }
    latest_of = (
        "SELECT p.*, v.terminal_id, v.company_id FROM unnest($1::bigint[]) AS k(vid) "
        "JOIN LATERAL (SELECT * FROM positions q WHERE q.vehicle_id = k.vid AND q.quality = $2 "
        "ORDER BY q.fix_time DESC LIMIT 1) p ON true JOIN vehicles v ON v.id = p.vehicle_id"
    )
    anchors = {
        r["vehicle_id"]: position_from_row(r) for r in await conn.fetch(latest_of, ids, "ok")
    }
    suspects = {
        r["vehicle_id"]: position_from_row(r) for r in await conn.fetch(latest_of, ids, "drift")
    }
    tails: dict[int, VehicleTail] = {}
    for vid in ids:
        anchor = anchors.get(vid)
        suspect = suspects.get(vid)
        if suspect is not None and anchor is not None and suspect.fix_time < anchor.fix_time:
            suspect = None
        tails[vid] = VehicleTail(newest.get(vid), anchor, suspect)
    return tails


async def raw_digests(
    conn: asyncpg.Connection | asyncpg.Pool, raw_ids: list[int]
) -> dict[int, str]:
    """SHA-256 (hex) of the stored ``raw_messages`` payloads by id; ids no longer stored are
    left out."""
    rows = await conn.fetch(
        "SELECT id, sha256(payload) AS digest FROM raw_messages WHERE id = ANY($1::bigint[])",
        raw_ids,
    )
    return {r["id"]: bytes(r["digest"]).hex() for r in rows}


async def last_messages(
    conn: asyncpg.Connection | asyncpg.Pool,
    vehicle_ids: Sequence[int] | None = None,
    *,
    silent_since_t: float | None = None,
    including: Sequence[int] = (),
) -> list[asyncpg.Record]:
    """Every vehicle that has sent something (``latest_positions``), or only those of
    ``vehicle_ids``: ``vehicle_id``, ``last_message_t`` (arrival of its last message of any
    kind, epoch s), ``fix_t`` (its last ok fix, epoch s, None without one), ``latitude``,
    ``longitude``.

    With ``silent_since_t`` (epoch s), only the vehicles whose last message arrived at or
    before it, and those of ``including`` whatever their last message (the offline timer's
    candidates: the rest were heard from since)."""
    # one statement per case, no "$n IS NULL OR": a generic plan of that form can use no index
    args: list[object] = []
    where: list[str] = []
    if vehicle_ids is not None:
        args.append(list(vehicle_ids))
        where.append(f"vehicle_id = ANY(${len(args)}::bigint[])")
    if silent_since_t is not None:
        args.append(silent_since_t)
        silent = f"last_message_at <= to_timestamp(${len(args)}::float8)"
        if including:
            args.append(list(including))
            silent = f"({silent} OR vehicle_id = ANY(${len(args)}::bigint[]))"
        where.append(silent)
    return await conn.fetch(
        "SELECT vehicle_id, extract(epoch FROM last_message_at)::float8 AS last_message_t, "
        "extract(epoch FROM fix_time)::float8 AS fix_t, latitude, longitude "
        "FROM latest_positions" + (" WHERE " + " AND ".join(where) if where else ""),
        *args,
    )


async def count_positions(conn: asyncpg.Connection | asyncpg.Pool) -> dict[str, int]:
    """Stored positions by quality (``{"ok": n, "invalid": n, "drift": n}``, zeros included)."""
    rows = await conn.fetch("SELECT quality, count(*) AS n FROM positions GROUP BY quality")
    counts = {str(q): 0 for q in Quality}
    counts.update({r["quality"]: r["n"] for r in rows})
    return counts


async def count_rejected(conn: asyncpg.Connection | asyncpg.Pool) -> int:
    """Messages set aside in ``rejected_messages`` (by every consumer)."""
    return int(await conn.fetchval("SELECT count(*) FROM rejected_messages"))


async def company_position_count(conn: asyncpg.Connection | asyncpg.Pool, company_name: str) -> int:
    """Positions stored for the vehicles of the company called ``company_name``."""
    count = await conn.fetchval(
        "SELECT count(*) FROM positions p JOIN vehicles v ON v.id = p.vehicle_id "
        "JOIN companies c ON c.id = v.company_id WHERE c.name = $1",
        company_name,
    )
    return int(count)


async def company_vehicle_counts(
    conn: asyncpg.Connection | asyncpg.Pool, company_name: str
) -> list[asyncpg.Record]:
    """Per vehicle of the company called ``company_name``, by plate: ``plate_number``,
    ``terminal_id``, ``positions``, ``ok``, ``invalid``, ``drift``, ``late`` (counts),
    ``distance_m`` (sum), ``first_fix``, ``last_fix``."""
    return await conn.fetch(
        """
        SELECT v.plate_number, v.terminal_id,
               count(p.*) AS positions,
               count(*) FILTER (WHERE p.quality = 'ok') AS ok,
               count(*) FILTER (WHERE p.quality = 'invalid') AS invalid,
               count(*) FILTER (WHERE p.quality = 'drift') AS drift,
               count(*) FILTER (WHERE p.late) AS late,
               coalesce(sum(p.distance_m), 0) AS distance_m,
               min(p.fix_time) AS first_fix, max(p.fix_time) AS last_fix
        FROM vehicles v JOIN companies c ON c.id = v.company_id
        LEFT JOIN positions p ON p.vehicle_id = v.id
        WHERE c.name = $1 GROUP BY v.id ORDER BY v.plate_number
        """,
        company_name,
    )
