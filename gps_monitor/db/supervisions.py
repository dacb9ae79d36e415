"""The ``supervisions`` table (migrations 0081, 0101): 督办 orders from the bureau and the
companies' answers. Written by the web app, each change with its audit entry in the caller's
transaction, and by ``gps-monitor jt809`` for a 督办 of the superior platform (0x9401,
``source`` superior, ``superior_info_id`` its SUPERVISION_ID, no issuing user): answering such
an order also queues its 0x1401 in the same transaction (:func:`answer`).

State of one order, derived (never stored): ``open`` (unanswered, deadline ahead), ``overdue``
(unanswered, deadline passed), ``answered`` (by the deadline), ``answered_late``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

_STATE = (
    "CASE WHEN s.answered_at IS NULL AND s.deadline > now() THEN 'open' "
    "WHEN s.answered_at IS NULL THEN 'overdue' "
    "WHEN s.answered_at <= s.deadline THEN 'answered' ELSE 'answered_late' END"
)
_SELECT = (
    "SELECT s.id, s.company_id, c.name AS company_name, s.alarm_id, a.alarm_type, "
    "coalesce(v.plate_number, sv.plate_number) AS plate_number, s.note, s.deadline, s.issued_at, "
    "iu.username AS issued_by, s.answer, s.source, s.superior_info_id, "
    f"s.answered_at, au.username AS answered_by, {_STATE} AS state "
    "FROM supervisions s JOIN companies c ON c.id = s.company_id "
    "LEFT JOIN users iu ON iu.id = s.issued_by LEFT JOIN users au ON au.id = s.answered_by "
    "LEFT JOIN alarms a ON a.id = s.alarm_id LEFT JOIN vehicles v ON v.id = a.vehicle_id "
    "LEFT JOIN vehicles sv ON sv.id = s.vehicle_id"
)
STATES = ("open", "overdue", "answered", "answered_late")


async def issue(
    conn: asyncpg.Connection,
    *,
    company_id: int,
    alarm_id: int | None,
    note: str,
    deadline: datetime,
    issued_by: int,
) -> dict[str, Any]:
    """A new order; returns it as :func:`get` does."""
    row_id = await conn.fetchval(
        "INSERT INTO supervisions (company_id, alarm_id, note, deadline, issued_by) "
        "VALUES ($1, $2, $3, $4, $5) RETURNING id",
        company_id,
        alarm_id,
        note,
        deadline,
        issued_by,
    )
    row = await get(conn, row_id, None)
    assert row is not None
    return row


async def get(
    conn: asyncpg.Connection | asyncpg.Pool,
    supervision_id: int,
    company_id: int | None,
    *,
    lock: bool = False,
) -> dict[str, Any] | None:
    """One order within ``company_id`` (None = any)."""
    row = await conn.fetchrow(
        f"{_SELECT} WHERE s.id = $1 AND ($2::bigint IS NULL OR s.company_id = $2)"
        + (" FOR UPDATE OF s" if lock else ""),
        supervision_id,
        company_id,
    )
    return None if row is None else dict(row)


async def listing(
    conn: asyncpg.Connection | asyncpg.Pool,
    company_id: int | None,
    state: str | None,
    alarm_id: int | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Orders, unanswered first (overdue before open, nearest deadline first), then newest."""
    rows = await conn.fetch(
        f"SELECT * FROM ({_SELECT} WHERE ($1::bigint IS NULL OR s.company_id = $1) "
        "AND ($3::bigint IS NULL OR s.alarm_id = $3)) x WHERE ($2::text IS NULL OR x.state = $2) "
        "ORDER BY (x.answered_at IS NOT NULL), x.deadline, x.id DESC LIMIT $4",
        company_id,
        state,
        alarm_id,
        limit,
    )
    return [dict(r) for r in rows]


async def issue_from_superior(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    company_id: int,
    vehicle_id: int,
    note: str,
    deadline: datetime,
    superior_info_id: int,
) -> int:
    """A 督办 of the superior platform (0x9401) on ``vehicle_id``'s company; returns its id. A
    deadline already past (a late frame) keeps its time: the order is issued a second before
    it, so it shows as overdue."""
    return int(
        await conn.fetchval(
            "INSERT INTO supervisions (company_id, vehicle_id, note, deadline, issued_at, source, "
            "superior_info_id) VALUES ($1, $2, $3, $4::timestamptz, "
            "least(now(), $4::timestamptz - interval '1 second'), "
            "'superior', $5) RETURNING id",
            company_id,
            vehicle_id,
            note,
            deadline,
            superior_info_id,
        )
    )


async def answer(
    conn: asyncpg.Connection, supervision_id: int, text: str, answered_by: int
) -> None:
    """Record the answer; for a superior's order also queue its 0x1401 (result 1 已处理完毕)
    in ``jt809_outbox``."""
    await conn.execute(
        "UPDATE supervisions SET answer = $2, answered_by = $3, answered_at = now() WHERE id = $1",
        supervision_id,
        text,
        answered_by,
    )
    await conn.execute(
        "INSERT INTO jt809_outbox (kind, vehicle_id, fix_time, payload, reason) "
        "SELECT 'supervision_answer', s.vehicle_id, now(), jsonb_build_object('supervision_id', "
        "s.id, 'superior_info_id', s.superior_info_id, 'answer', s.answer), 'answer' "
        "FROM supervisions s WHERE s.id = $1 AND s.source = 'superior'",
        supervision_id,
    )


async def for_alarms(
    conn: asyncpg.Connection | asyncpg.Pool, alarm_ids: list[int]
) -> dict[int, dict[str, Any]]:
    """The latest order of each alarm (the alarm list flags it)."""
    rows = await conn.fetch(
        f"SELECT DISTINCT ON (s.alarm_id) s.alarm_id, s.id, s.deadline, s.answered_at, {_STATE} "
        "AS state FROM supervisions s WHERE s.alarm_id = ANY($1::bigint[]) "
        "ORDER BY s.alarm_id, s.issued_at DESC, s.id DESC",
        alarm_ids,
    )
    return {r["alarm_id"]: dict(r) for r in rows}


async def counts_by_company(
    conn: asyncpg.Connection | asyncpg.Pool,
    start: datetime,
    end: datetime,
    tz_name: str,
    company_ids: list[int] | None,
) -> list[asyncpg.Record]:
    """Per company and local issue day: orders issued in [start, end) and how many of them were
    answered by their deadline (督办处理率)."""
    return await conn.fetch(
        "SELECT company_id, (issued_at AT TIME ZONE $3)::date AS day, count(*) AS issued, "
        "count(*) FILTER (WHERE answered_at IS NOT NULL AND answered_at <= deadline) AS in_time "
        "FROM supervisions WHERE issued_at >= $1 AND issued_at < $2 "
        "AND ($4::bigint[] IS NULL OR company_id = ANY($4::bigint[])) GROUP BY 1, 2",
        start,
        end,
        tz_name,
        company_ids,
    )
