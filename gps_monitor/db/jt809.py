"""The JT/T 809 tables (migrations 0100, 0101): the outbox of what the superior platform is
owed, the main-link sessions (平台连通率), the 查岗 questions (平台查岗响应率), the texts relayed
to terminals (0x9503), and the link status shown on the bureau page.

An outbox row is one position or one alarm (its ``to_dict()`` as ``payload``) that could not go
out live; :func:`oldest` reads them oldest fix first and :func:`delete` removes them once they
are written to the main link.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg

OutboxKind = Literal[
    "position", "alarm", "query_answer", "supervision_answer", "alarm_result", "text_answer",
    "registration",
]  # fmt: skip
OutboxReason = Literal["link_down", "late", "cut", "answer", "registration"]
#: Outbox kinds sent before buffered positions and alarms (answers first, then registrations).
PRIORITY_KINDS = ("query_answer", "supervision_answer", "alarm_result", "text_answer",
                  "registration")  # fmt: skip


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One buffered item: ``kind`` position or alarm, its vehicle, fix time (UTC) and payload
    (``Position.to_dict()`` / ``Alarm.to_dict()``); ``id`` is None until stored."""

    kind: OutboxKind
    vehicle_id: int | None
    fix_time: datetime
    payload: dict[str, Any]
    reason: OutboxReason
    id: int | None = None


async def enqueue(pool: asyncpg.Pool, entries: list[OutboxEntry]) -> None:
    """Store ``entries`` in one statement (committed when this returns)."""
    if not entries:
        return
    await pool.execute(
        """INSERT INTO jt809_outbox (kind, vehicle_id, fix_time, payload, reason)
           SELECT k, v, f, p::jsonb, r
           FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::text[], $5::text[])
                AS u(k, v, f, p, r)""",
        [e.kind for e in entries],
        [e.vehicle_id for e in entries],
        [e.fix_time for e in entries],
        [json.dumps(e.payload) for e in entries],
        [e.reason for e in entries],
    )


async def oldest(pool: asyncpg.Pool, limit: int) -> list[OutboxEntry]:
    """Up to ``limit`` entries in sending order: answers first (insertion order), then up to
    half the batch of 0x1201 registrations, then positions and alarms, oldest first by
    150-second windows of fix time and, inside a window, by vehicle and fix time, so that a
    0x1203 carries up to 5 positions of one vehicle (one per 30 s) even when 10,000 vehicles
    interleave (registrations queued at login share the bandwidth with a backlog, not block
    it)."""
    columns = "SELECT id, kind, vehicle_id, fix_time, payload::text AS payload, reason "
    rows = await pool.fetch(
        f"{columns} FROM jt809_outbox WHERE kind NOT IN ('position', 'alarm', 'registration') "
        "ORDER BY id LIMIT $1",
        limit,
    )
    if len(rows) < limit:
        rows += await pool.fetch(
            f"{columns} FROM jt809_outbox WHERE kind = 'registration' ORDER BY id LIMIT $1",
            max(1, (limit - len(rows)) // 2),
        )
    if len(rows) < limit:
        rows += await pool.fetch(
            f"{columns} FROM jt809_outbox WHERE kind IN ('position', 'alarm') "
            "ORDER BY date_bin('150 seconds', fix_time, timestamptz '2000-01-01'), vehicle_id, "
            "fix_time, id LIMIT $1",
            limit - len(rows),
        )
    return [
        OutboxEntry(
            r["kind"],
            r["vehicle_id"],
            r["fix_time"],
            json.loads(r["payload"]),
            r["reason"],
            r["id"],
        )
        for r in rows
    ]


async def delete(pool: asyncpg.Pool, ids: list[int]) -> None:
    await pool.execute("DELETE FROM jt809_outbox WHERE id = ANY($1::bigint[])", ids)


async def drop_older_than(pool: asyncpg.Pool, cutoff: datetime) -> int:
    """Delete entries queued before ``cutoff``; returns how many."""
    result = await pool.execute("DELETE FROM jt809_outbox WHERE queued_at < $1", cutoff)
    return int(result.split()[-1])


async def size(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM jt809_outbox"))


async def vehicle_plates(
    pool: asyncpg.Pool, vehicle_ids: list[int] | None
) -> dict[int, tuple[str, int]]:
    """vehicle id -> (plate_number, plate_color) for the ids that exist (None: every vehicle)."""
    rows = await pool.fetch(
        "SELECT id, plate_number, plate_color FROM vehicles "
        "WHERE $1::bigint[] IS NULL OR id = ANY($1::bigint[])",
        vehicle_ids,
    )
    return {r["id"]: (r["plate_number"], r["plate_color"]) for r in rows}


async def link_up(pool: asyncpg.Pool, at: datetime) -> int:
    """Record a main-link session start; returns its id."""
    return int(
        await pool.fetchval("INSERT INTO jt809_link_sessions (up_at) VALUES ($1) RETURNING id", at)
    )


async def link_down(pool: asyncpg.Pool, session_id: int, at: datetime, reason: str) -> None:
    await pool.execute(
        "UPDATE jt809_link_sessions SET down_at = $2, down_reason = $3 WHERE id = $1",
        session_id,
        at,
        reason,
    )


async def enqueue_one(
    conn: asyncpg.Connection | asyncpg.Pool,
    kind: OutboxKind,
    vehicle_id: int | None,
    payload: dict[str, Any],
    reason: OutboxReason = "answer",
) -> None:
    """One outbox row in the caller's transaction (answers written with the change they
    report: the 查岗 answer, the handled alarm, the answered 督办)."""
    await conn.execute(
        "INSERT INTO jt809_outbox (kind, vehicle_id, fix_time, payload, reason) "
        "VALUES ($1, $2, now(), $3, $4)",
        kind,
        vehicle_id,
        payload,
        reason,
    )


async def enqueue_registrations(
    pool: asyncpg.Pool | asyncpg.Connection, vehicle_ids: list[int] | None = None
) -> int:
    """A 0x1201 registration for each vehicle (all when ``vehicle_ids`` is None), unless one is
    already waiting; returns how many were queued."""
    result = await pool.execute(
        "INSERT INTO jt809_outbox (kind, vehicle_id, fix_time, payload, reason) "
        "SELECT 'registration', v.id, now(), '{}'::jsonb, 'registration' FROM vehicles v "
        "WHERE ($1::bigint[] IS NULL OR v.id = ANY($1::bigint[])) AND NOT EXISTS ("
        "SELECT 1 FROM jt809_outbox o WHERE o.kind = 'registration' AND o.vehicle_id = v.id)",
        vehicle_ids,
    )
    return int(result.split()[-1])


async def registration_info(pool: asyncpg.Pool, vehicle_id: int) -> dict[str, Any] | None:
    """Plate, colour, terminal id and (when the JT/T 808 gateway registered it) maker and model."""
    row = await pool.fetchrow(
        "SELECT v.plate_number, v.plate_color, v.terminal_id, t.maker_id, t.model, "
        "t.device_id, t.imei FROM vehicles v "
        "LEFT JOIN jt808_terminals t ON t.terminal_id = v.terminal_id WHERE v.id = $1",
        vehicle_id,
    )
    return None if row is None else dict(row)


# ------------------------------------------------------------------------------ 查岗 (0x9301)

QUERY_STATES = ("open", "overdue", "answered", "answered_late")
_QUERY_STATE = (
    "CASE WHEN q.answered_at IS NULL AND q.deadline > now() THEN 'open' "
    "WHEN q.answered_at IS NULL THEN 'overdue' "
    "WHEN q.answered_at <= q.deadline THEN 'answered' ELSE 'answered_late' END"
)
_QUERY_SELECT = (
    "SELECT q.id, q.info_id, q.msg_sn, q.object_type, q.object_id, q.company_id, "
    "c.name AS company_name, q.question, q.received_at, q.deadline, q.answer, q.answered_at, "
    f"u.username AS answered_by, {_QUERY_STATE} AS state, "
    "greatest(0, extract(epoch FROM q.deadline - now()))::float AS seconds_left "
    "FROM jt809_platform_queries q LEFT JOIN companies c ON c.id = q.company_id "
    "LEFT JOIN users u ON u.id = q.answered_by"
)


async def company_for_object(pool: asyncpg.Pool, object_id: str) -> int | None:
    """The company a 查岗 names: its id or its exact name (this platform keeps no 经营许可证号;
    README, JT/T 809)."""
    value = await pool.fetchval(
        "SELECT id FROM companies WHERE id::text = $1 OR name = $1 ORDER BY id LIMIT 1",
        object_id.strip(),
    )
    return None if value is None else int(value)


async def insert_query(
    pool: asyncpg.Pool,
    *,
    info_id: int,
    msg_sn: int,
    object_type: int,
    object_id: str,
    company_id: int | None,
    question: str,
    received_at: datetime,
    deadline: datetime,
) -> int:
    return int(
        await pool.fetchval(
            "INSERT INTO jt809_platform_queries (info_id, msg_sn, object_type, object_id, "
            "company_id, question, received_at, deadline) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
            "RETURNING id",
            info_id,
            msg_sn,
            object_type,
            object_id,
            company_id,
            question,
            received_at,
            deadline,
        )
    )


async def list_queries(
    conn: asyncpg.Connection | asyncpg.Pool, company_id: int | None, limit: int
) -> list[dict[str, Any]]:
    """查岗 questions, unanswered first (nearest deadline first), then newest. ``company_id``:
    an operator's company (only questions naming it); None: all (the bureau)."""
    rows = await conn.fetch(
        f"{_QUERY_SELECT} WHERE ($1::bigint IS NULL OR q.company_id = $1) "
        "ORDER BY (q.answered_at IS NOT NULL), q.deadline, q.id DESC LIMIT $2",
        company_id,
        limit,
    )
    return [dict(r) for r in rows]


async def get_query(
    conn: asyncpg.Connection | asyncpg.Pool,
    query_id: int,
    company_id: int | None,
    *,
    lock: bool = False,
) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"{_QUERY_SELECT} WHERE q.id = $1 AND ($2::bigint IS NULL OR q.company_id = $2)"
        + (" FOR UPDATE OF q" if lock else ""),
        query_id,
        company_id,
    )
    return None if row is None else dict(row)


async def answer_query(
    conn: asyncpg.Connection, query: dict[str, Any], answer: str, user_id: int
) -> None:
    """Record the answer and queue its 0x1301 (same transaction)."""
    await conn.execute(
        "UPDATE jt809_platform_queries SET answer = $2, answered_at = now(), answered_by = $3 "
        "WHERE id = $1",
        query["id"],
        answer,
        user_id,
    )
    payload = {key: query[key] for key in ("id", "info_id", "msg_sn", "object_type", "object_id")}
    await enqueue_one(conn, "query_answer", None, {**payload, "answer": answer})


async def query_counts_by_day(
    conn: asyncpg.Connection | asyncpg.Pool,
    start: datetime,
    end: datetime,
    tz_name: str,
    *,
    decided_only: bool = False,
) -> list[asyncpg.Record]:
    """Per local day of receipt and named company (None: platform-level): 查岗 received,
    answered by the deadline, unanswered.

    ``decided_only`` (the KPI): only those answered or past their deadline; one still inside
    its deadline without an answer may yet be answered in time, so it is not counted.
    """
    return await conn.fetch(
        "SELECT (received_at AT TIME ZONE $3)::date AS day, company_id, count(*) AS received, "
        "count(*) FILTER (WHERE answered_at IS NOT NULL AND answered_at <= deadline) AS in_time, "
        "count(*) FILTER (WHERE answered_at IS NULL) AS unanswered "
        "FROM jt809_platform_queries WHERE received_at >= $1 AND received_at < $2 "
        "AND (NOT $4 OR answered_at IS NOT NULL OR deadline <= now()) "
        "GROUP BY 1, 2",
        start,
        end,
        tz_name,
        decided_only,
    )


async def first_link_up(conn: asyncpg.Connection | asyncpg.Pool) -> datetime | None:
    value = await conn.fetchval("SELECT min(up_at) FROM jt809_link_sessions")
    return None if value is None else value


async def link_up_seconds_by_day(
    conn: asyncpg.Connection | asyncpg.Pool, start: datetime, end: datetime, tz_name: str
) -> dict[Any, float]:
    """Seconds of main-link session (up to now for an open one) inside each local day of
    [start, end); days without any session are absent."""
    rows = await conn.fetch(
        "WITH b AS (SELECT $1::timestamptz AS lo, $2::timestamptz AS hi, $3::text AS tz), "
        "days AS (SELECT d::date AS day, (d AT TIME ZONE b.tz) AS day_start, "
        "((d + interval '1 day') AT TIME ZONE b.tz) AS day_end, b.lo, b.hi FROM b, "
        "generate_series((b.lo AT TIME ZONE b.tz)::date::timestamp, "
        "((b.hi - interval '1 microsecond') AT TIME ZONE b.tz)::date::timestamp, "
        "interval '1 day') d) "
        "SELECT days.day, sum(extract(epoch FROM "
        "least(coalesce(s.down_at, now()), days.day_end, days.hi) "
        "- greatest(s.up_at, days.day_start, days.lo))) AS up_s FROM days "
        "JOIN jt809_link_sessions s ON s.up_at < least(days.day_end, days.hi) "
        "AND coalesce(s.down_at, now()) > greatest(days.day_start, days.lo) GROUP BY days.day",
        start,
        end,
        tz_name,
    )
    return {r["day"]: max(0.0, float(r["up_s"])) for r in rows}


# ------------------------------------------------------------------------------ 0x9503 relay


async def record_relayed_text(
    conn: asyncpg.Connection,
    command_row_id: int,
    msg_sequence: int,
    msg_sn: int,
    plate_number: str,
    plate_color: int,
) -> None:
    await conn.execute(
        "INSERT INTO jt809_relayed_texts (command_row_id, msg_sequence, msg_sn, plate_number, "
        "plate_color) VALUES ($1, $2, $3, $4, $5)",
        command_row_id, msg_sequence, msg_sn, plate_number, plate_color,
    )  # fmt: skip


async def finished_relayed_texts(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    """Relayed texts whose command reached a final state and whose 0x1503 is not yet queued."""
    rows = await pool.fetch(
        "SELECT r.command_row_id, r.msg_sequence, r.msg_sn, r.plate_number, r.plate_color, "
        "c.vehicle_id, c.state FROM jt809_relayed_texts r JOIN commands c ON c.id = "
        "r.command_row_id WHERE r.answered_up_at IS NULL "
        "AND c.state IN ('acknowledged', 'failed', 'expired')"
    )
    return [dict(r) for r in rows]


async def queue_text_answer(pool: asyncpg.Pool, relayed: dict[str, Any]) -> None:
    """Queue the 0x1503 of a finished relayed text and mark it (one transaction)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "UPDATE jt809_relayed_texts SET answered_up_at = now() WHERE command_row_id = $1",
            relayed["command_row_id"],
        )
        payload = {k: relayed[k] for k in ("msg_sequence", "msg_sn", "plate_number",
                                            "plate_color", "state")}  # fmt: skip
        await enqueue_one(conn, "text_answer", relayed["vehicle_id"], payload)


# ------------------------------------------------------------------------------ link status


async def set_link_status(
    pool: asyncpg.Pool, link: str, status: str, counters: dict[str, Any]
) -> None:
    await pool.execute(
        "INSERT INTO jt809_link_status (link, status, counters, updated_at) "
        "VALUES ($1, $2, $3, now()) ON CONFLICT (link) DO UPDATE SET "
        "status = EXCLUDED.status, counters = EXCLUDED.counters, updated_at = now()",
        link,
        status,
        counters,
    )


async def link_status(conn: asyncpg.Connection | asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT link, status, counters, updated_at FROM jt809_link_status ORDER BY link"
    )
    return [dict(r) for r in rows]


# ------------------------------------------------------------------------------ downward


async def vehicle_by_plate(
    pool: asyncpg.Pool, plate_number: str, plate_color: int
) -> dict[str, Any] | None:
    """The vehicle a request names (plate and colour; the plate alone when the colour differs,
    as superiors sometimes send 0)."""
    row = await pool.fetchrow(
        "SELECT id, company_id, terminal_id, vehicle_class, plate_number, plate_color "
        "FROM vehicles WHERE plate_number = $1 ORDER BY (plate_color = $2) DESC, id LIMIT 1",
        plate_number,
        plate_color,
    )
    return None if row is None else dict(row)


async def insert_superior_alarm(
    pool: asyncpg.Pool,
    vehicle: dict[str, Any],
    alarm_type: str,
    started_at: datetime,
    details: dict[str, Any],
    level: int,
) -> int | None:
    """An alarm raised by the superior (0x9402/0x9403) on ``vehicle``; the same warning twice
    (type, vehicle, time, warn type) is stored once. Returns the id, None for a repeat."""
    key = f"jt809:{alarm_type}:{vehicle['id']}:{details.get('warn_type')}:{started_at.isoformat()}"
    value = await pool.fetchval(
        "INSERT INTO alarms (vehicle_id, company_id, alarm_type, dedup_key, started_at, details, "
        "level) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (dedup_key) DO NOTHING "
        "RETURNING id",
        vehicle["id"], vehicle["company_id"], alarm_type, key, started_at, details, level,
    )  # fmt: skip
    return None if value is None else int(value)


# ---------------------------------------------------------------- alarm reports (0x1412, 2019)


async def record_alarm_report(
    conn: asyncpg.Connection | asyncpg.Pool, alarm_id: int, data_type: int, msg_sn: int
) -> None:
    """Remember the frame that told the superior about alarm ``alarm_id`` (``data_type``
    0x1402 sent by us, or 0x9402 / 0x9403 received; ``msg_sn`` its serial number): the 2019
    0x1412 quotes it (JT/T 809-2019 0x1412 SOURCE_DATA_TYPE, SOURCE_MSG_SN). A later report of
    the same alarm replaces it."""
    await conn.execute(
        "INSERT INTO jt809_alarm_reports (alarm_id, data_type, msg_sn) VALUES ($1, $2, $3) "
        "ON CONFLICT (alarm_id) DO UPDATE SET data_type = EXCLUDED.data_type, "
        "msg_sn = EXCLUDED.msg_sn, reported_at = now()",
        alarm_id,
        data_type,
        msg_sn,
    )


async def alarm_report(pool: asyncpg.Pool, alarm_id: int) -> tuple[int, int] | None:
    """(data type, serial number) of the frame that reported ``alarm_id``, None when none did."""
    row = await pool.fetchrow(
        "SELECT data_type, msg_sn FROM jt809_alarm_reports WHERE alarm_id = $1", alarm_id
    )
    return None if row is None else (int(row["data_type"]), int(row["msg_sn"]))


async def alarm_waiting(pool: asyncpg.Pool, alarm_id: int) -> bool:
    """Whether the 0x1402 of ``alarm_id`` is still in the outbox (not yet sent)."""
    return bool(
        await pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM jt809_outbox WHERE kind = 'alarm' "
            "AND payload->>'id' = $1::text)",
            str(alarm_id),
        )
    )


async def forget_alarm_report(pool: asyncpg.Pool, alarm_id: int) -> None:
    await pool.execute("DELETE FROM jt809_alarm_reports WHERE alarm_id = $1", alarm_id)
