"""The report log (table ``report_log``, migration 0060): every evidence or KPI report generated,
with its number, author, what it was built from and its integrity digest; report numbers
(sequence ``report_number_seq``) and evidence sets (table ``evidence_sets``, migration 0123).

One report number per evidence set: the PDF, Excel, CSV and JSON of the same alarm (or the
same vehicle, window and speed limit) over the same data carry the same number; the log has one
entry per download, all with that number. A set whose data changed (digest differs: an open
alarm that grew, a late fix stored since) is a new set with a new number.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg


async def record(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    report_number: str,
    kind: str,
    format: str,
    generated_by: str,
    generated_at: datetime,
    alarm_id: int | None = None,
    vehicle_id: int | None = None,
    company_id: int | None = None,
    window_start: datetime | None = None,
    window_end: datetime | None = None,
    user_id: int | None = None,
    digest_sha256: str | None = None,
    record_count: int | None = None,
    parameters: dict[str, Any] | None = None,
) -> int:
    """Append one entry; returns its id. ``kind`` evidence/kpi, ``format`` pdf/xlsx/csv/json.

    Raises:
        asyncpg.CheckViolationError: unknown kind or format, or a malformed digest.
    """
    entry = await conn.fetchval(
        "INSERT INTO report_log (report_number, kind, format, alarm_id, vehicle_id, company_id, "
        "window_start, window_end, generated_at, generated_by, user_id, digest_sha256, "
        "record_count, parameters) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, "
        "$13, $14) RETURNING id",
        report_number, kind, format, alarm_id, vehicle_id, company_id, window_start, window_end,
        generated_at, generated_by, user_id, digest_sha256, record_count, parameters or {},
    )  # fmt: skip
    return int(entry)


async def entries(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    alarm_id: int | None = None,
    kind: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Newest entries first, optionally of one alarm or one kind (evidence / kpi); each with
    the vehicle's ``plate_number`` and the alarm's ``alarm_type`` (None where there is none)."""
    rows = await conn.fetch(
        "SELECT l.*, v.plate_number, a.alarm_type FROM report_log l "
        "LEFT JOIN vehicles v ON v.id = l.vehicle_id LEFT JOIN alarms a ON a.id = l.alarm_id "
        "WHERE ($1::bigint IS NULL OR l.alarm_id = $1) AND ($2::text IS NULL OR l.kind = $2) "
        "ORDER BY l.generated_at DESC, l.id DESC LIMIT $3",
        alarm_id,
        kind,
        limit,
    )
    return [dict(r) for r in rows]


async def next_report_number(conn: asyncpg.Connection | asyncpg.Pool, kind: str, tz: str) -> str:
    """A new report number, ``EV-YYYYMMDD-000123`` (evidence) or ``KPI-...``; the date is the
    local date in zone ``tz`` (IANA name), the serial from ``report_number_seq``."""
    serial = await conn.fetchval("SELECT nextval('report_number_seq')")
    day = datetime.now(ZoneInfo(tz)).strftime("%Y%m%d")
    prefix = "EV" if kind == "evidence" else "KPI"
    return f"{prefix}-{day}-{int(serial):06d}"


def evidence_set_key(
    *,
    alarm_id: int | None,
    vehicle_id: int,
    window: tuple[datetime, datetime] | None,
    speed_limit_kmh: float | None,
    digest_sha256: str,
) -> str:
    """SHA-256 hex naming an evidence set: the alarm (or, for a window report, the vehicle, the
    window in UTC and the speed limit asked for) and the digest of its positions."""
    parts = {
        "alarm_id": alarm_id,
        "vehicle_id": vehicle_id,
        "window": None if window is None else [t.isoformat() for t in window],
        "speed_limit_kmh": speed_limit_kmh,
        "digest": digest_sha256,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


async def evidence_set_number(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    set_key: str,
    alarm_id: int | None,
    vehicle_id: int,
    digest_sha256: str,
    tz: str,
) -> str:
    """The report number of evidence set ``set_key`` (:func:`evidence_set_key`): the one it was
    given when first built, else a new one (:func:`next_report_number`, local date in ``tz``).
    Two first builds at once agree (the insert is ``ON CONFLICT DO NOTHING`` on the key, and the
    number is read back)."""
    select = "SELECT report_number FROM evidence_sets WHERE set_key = $1"
    number = await conn.fetchval(select, set_key)
    if number is None:
        await conn.execute(
            "INSERT INTO evidence_sets (report_number, set_key, alarm_id, vehicle_id, "
            "digest_sha256) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (set_key) DO NOTHING",
            await next_report_number(conn, "evidence", tz),
            set_key, alarm_id, vehicle_id, digest_sha256,
        )  # fmt: skip
        number = await conn.fetchval(select, set_key)
    return str(number)


async def evidence_owner(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    alarm_id: int | None = None,
    vehicle_id: int | None = None,
) -> int | None:
    """The company an evidence report's subject belongs to: the alarm's (``alarm_id``) or the
    vehicle's; None when there is no such alarm or vehicle (the caller's scope check)."""
    if alarm_id is not None:
        owner = await conn.fetchval("SELECT company_id FROM alarms WHERE id = $1", alarm_id)
    else:
        owner = await conn.fetchval("SELECT company_id FROM vehicles WHERE id = $1", vehicle_id)
    return None if owner is None else int(owner)
