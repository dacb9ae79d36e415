"""The report log (table ``report_log``, migration 0060): every evidence or KPI report generated,
with its number, author, what it was built from and its integrity digest."""

from __future__ import annotations

from datetime import datetime
from typing import Any

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
        asyncpg.UniqueViolationError: the report number was logged before.
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
    conn: asyncpg.Connection | asyncpg.Pool, *, alarm_id: int | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Newest entries first, optionally of one alarm."""
    rows = await conn.fetch(
        "SELECT * FROM report_log WHERE ($1::bigint IS NULL OR alarm_id = $1) "
        "ORDER BY generated_at DESC, id DESC LIMIT $2",
        alarm_id,
        limit,
    )
    return [dict(r) for r in rows]
