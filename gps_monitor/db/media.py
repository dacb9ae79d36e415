"""The ``media`` table (migration 0135): photos, audio and video uploaded by terminals.

Writer: the JT/T 808 gateway (:func:`insert`, once an upload is stored or given up); readers: web
(:func:`listing`, :func:`get`) and the evidence report (:func:`for_alarms`).

Which alarm an item belongs to (decided once, at insert; ``alarm_id`` NULL when none fits):
1. the alarm of the command that asked for it (``take_photo`` about an alarm, 自动拍照);
2. the active-safety alarm carrying its T/JSATL alarm key (``details.alarm_key``; the key the
   issued alarm number was stored with, :mod:`gps_monitor.db.jsatl_alarm_numbers`);
3. otherwise the unhandled (open / acknowledged) alarm of that vehicle that started nearest to
   the item's time (its fix time, else its arrival) within ``link_window_s``.
An item whose alarm was not raised yet when it arrived (rules worker behind) is still found by
the alarm through its alarm key: :func:`for_alarms` also matches on it. Alarms raised before
migration 0136 carry the key as ``details.alarm_number``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import asyncpg

_COLUMNS = (
    "m.id, m.source, m.terminal_id, m.vehicle_id, m.company_id, m.sha256, m.size_bytes, "
    "m.media_type, m.content_type, m.multimedia_id, m.format_code, m.event_code, m.channel, "
    "m.fix_time, m.latitude, m.longitude, m.speed_kmh, m.alarm_flags, m.status_flags, "
    "m.alarm_id, m.command_id, m.alarm_number, m.alarm_key, m.file_name, m.complete, "
    "m.incomplete_reason, m.missing, m.received_at"
)


@dataclass(frozen=True, slots=True)
class MediaRecord:
    """One item to insert (units as the columns: km/h, degrees, UTC).

    ``command_uuid``: the ``commands.command_id`` of the command that asked for it, if known.
    """

    source: str
    terminal_id: str
    sha256: str | None
    size_bytes: int
    media_type: str
    content_type: str
    complete: bool
    incomplete_reason: str | None = None
    missing: list[int] | None = None
    multimedia_id: int | None = None
    format_code: int | None = None
    event_code: int | None = None
    channel: int | None = None
    fix_time: datetime | None = None
    latitude: float | None = None
    longitude: float | None = None
    speed_kmh: float | None = None
    alarm_flags: int | None = None
    status_flags: int | None = None
    command_uuid: str | None = None
    alarm_number: str | None = None
    alarm_key: str | None = None
    file_name: str | None = None


_INSERT = f"""
WITH v AS (SELECT id, company_id FROM vehicles WHERE terminal_id = $1),
     c AS (SELECT id, alarm_id FROM commands
           WHERE $18::text IS NOT NULL AND command_id::text = $18 AND terminal_id = $1)
INSERT INTO media AS m (source, terminal_id, vehicle_id, company_id, sha256, size_bytes,
    media_type, content_type, complete, incomplete_reason, missing, multimedia_id, format_code,
    event_code, channel, fix_time, latitude, longitude, speed_kmh, alarm_flags, status_flags,
    command_id, alarm_number, alarm_key, file_name, alarm_id)
SELECT $2, $1, v.id, v.company_id, $3, $4, $5, $6, $7, $8, $9::int[], $10, $11, $12, $13, $14,
    $15, $16, $17, $20, $21, c.id, $19, $24, $22,
    COALESCE(
        c.alarm_id,
        (SELECT a.id FROM alarms a WHERE $24::text IS NOT NULL AND a.vehicle_id = v.id
         AND COALESCE(a.details->>'alarm_key', a.details->>'alarm_number') = $24
         ORDER BY a.id LIMIT 1),
        (SELECT a.id FROM alarms a WHERE a.vehicle_id = v.id
         AND a.status IN ('open', 'acknowledged')
         AND a.started_at BETWEEN COALESCE($14, now()) - make_interval(secs => $23)
                              AND COALESCE($14, now()) + make_interval(secs => $23)
         ORDER BY abs(extract(epoch FROM a.started_at - COALESCE($14, now()))), a.id LIMIT 1))
FROM (SELECT 1) one LEFT JOIN v ON true LEFT JOIN c ON true
RETURNING {_COLUMNS}
"""


async def insert(
    conn: asyncpg.Connection | asyncpg.Pool, item: MediaRecord, link_window_s: float
) -> dict[str, Any]:
    """Insert one item, linked to its vehicle, command and alarm (module docstring); returns the
    row. A terminal no vehicle carries is kept with ``vehicle_id`` NULL (shown to the bureau).

    A complete active-safety file already stored for the same alarm key with the same SHA-256 (a
    terminal uploading an alarm's files again, e.g. after a lost 0x9212) is not stored twice: the
    existing row is returned. Checked before the insert, not by a unique index: two connections
    uploading the same file for the same alarm at the same moment may still write two rows."""
    if item.alarm_key is not None and item.sha256 is not None and item.complete:
        existing = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM media m WHERE m.alarm_key = $1 AND m.sha256 = $2 "
            "AND m.complete ORDER BY m.id LIMIT 1",
            item.alarm_key,
            item.sha256,
        )
        if existing is not None:
            return dict(existing)
    row = await conn.fetchrow(
        _INSERT,
        item.terminal_id,
        item.source,
        item.sha256,
        item.size_bytes,
        item.media_type,
        item.content_type,
        item.complete,
        item.incomplete_reason,
        item.missing,
        item.multimedia_id,
        item.format_code,
        item.event_code,
        item.channel,
        item.fix_time,
        item.latitude,
        item.longitude,
        item.speed_kmh,
        item.command_uuid,
        item.alarm_number,
        item.alarm_flags,
        item.status_flags,
        item.file_name,
        link_window_s,
        item.alarm_key,
    )
    assert row is not None
    return dict(row)


def as_dict(item: MediaRecord) -> dict[str, Any]:
    return asdict(item)


_OF_ALARM = (
    "(m.alarm_id = a.id OR (m.alarm_key IS NOT NULL AND m.vehicle_id = a.vehicle_id "
    "AND m.alarm_key = COALESCE(a.details->>'alarm_key', a.details->>'alarm_number')))"
)


async def for_alarms(
    conn: asyncpg.Connection | asyncpg.Pool, alarm_ids: list[int], company_id: int | None = None
) -> dict[int, list[dict[str, Any]]]:
    """The media of each alarm (linked, or carrying its alarm key), oldest first, within
    ``company_id`` (None = any)."""
    rows = await conn.fetch(
        f"SELECT a.id AS of_alarm, {_COLUMNS} FROM alarms a JOIN media m ON {_OF_ALARM} "
        "WHERE a.id = ANY($1::bigint[]) AND ($2::bigint IS NULL OR a.company_id = $2) "
        "ORDER BY m.received_at, m.id",
        alarm_ids,
        company_id,
    )
    out: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        item = dict(r)
        out.setdefault(item.pop("of_alarm"), []).append(item)
    return out


async def listing(
    conn: asyncpg.Connection | asyncpg.Pool,
    company_id: int | None,
    *,
    alarm_id: int | None,
    vehicle_id: int | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Media newest first: of one alarm, or of one vehicle, or all; within ``company_id``
    (None = any; items of a terminal no vehicle carries only then)."""
    if alarm_id is not None:
        return (await for_alarms(conn, [alarm_id], company_id)).get(alarm_id, [])[::-1][:limit]
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM media m WHERE ($1::bigint IS NULL OR m.company_id = $1) "
        "AND ($2::bigint IS NULL OR m.vehicle_id = $2) ORDER BY m.received_at DESC, m.id DESC "
        "LIMIT $3",
        company_id,
        vehicle_id,
        limit,
    )
    return [dict(r) for r in rows]


async def get(
    conn: asyncpg.Connection | asyncpg.Pool, media_id: int, company_id: int | None
) -> dict[str, Any] | None:
    """One item by id within ``company_id`` (None = any)."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM media m WHERE m.id = $1 "
        "AND ($2::bigint IS NULL OR m.company_id = $2)",
        media_id,
        company_id,
    )
    return None if row is None else dict(row)


async def alarm_vehicle(
    conn: asyncpg.Connection | asyncpg.Pool, alarm_id: int, company_id: int | None
) -> asyncpg.Record | None:
    """The vehicle of an alarm (id, company_id, terminal_id, plate_number) within
    ``company_id`` (None = any): where a photo about that alarm is taken."""
    return await conn.fetchrow(
        "SELECT v.id, v.company_id, v.terminal_id, v.plate_number FROM alarms a "
        "JOIN vehicles v ON v.id = a.vehicle_id WHERE a.id = $1 "
        "AND ($2::bigint IS NULL OR a.company_id = $2)",
        alarm_id,
        company_id,
    )
