"""The ``commands`` table (migration 0080): downlink commands and their answers.

Writers: the web app creates rows (:func:`create`, state ``queued``, in the caller's transaction
with its audit entry) and wakes the dispatcher with ``NOTIFY gps_commands``; the command
dispatcher (``ingest/commands.py``) moves them on (:func:`mark_sent`, :func:`record_answers`,
:func:`expire_due`). State names: :class:`gps_monitor.commands.CommandState`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

import asyncpg

from gps_monitor.command_kinds import AUDITED_ANSWERS
from gps_monitor.commands import TEXT, Command, CommandState, state_for_result

NOTIFY_CHANNEL = "gps_commands"

_COLUMNS = (
    "c.id, c.command_id::text AS command_id, c.terminal_id, c.vehicle_id, c.company_id, c.name, "
    "c.body, c.state, c.result, c.result_detail, c.alarm_id, c.created_by, c.created_at, "
    "c.expires_at, c.sent_at, c.answered_at, c.updated_at, c.result_body"
)


async def create(
    conn: asyncpg.Connection,
    command: Command,
    *,
    vehicle_id: int,
    company_id: int,
    alarm_id: int | None = None,
    created_by: int | None = None,
) -> dict[str, Any]:
    """Insert a ``queued`` command and notify the dispatcher (delivered on commit); returns the
    row as a dict (:func:`as_dict` shape)."""
    row = await conn.fetchrow(
        "INSERT INTO commands AS c (command_id, terminal_id, vehicle_id, company_id, name, body, "
        "alarm_id, created_by, created_at, expires_at) "
        f"VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {_COLUMNS}",
        command.command_id,
        command.terminal_id,
        vehicle_id,
        company_id,
        command.name,
        command.body,
        alarm_id,
        created_by,
        command.created_at,
        command.expires_at,
    )
    await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, command.terminal_id)
    assert row is not None
    return dict(row)


async def get(
    conn: asyncpg.Connection | asyncpg.Pool, command_row_id: int, company_id: int | None
) -> dict[str, Any] | None:
    """One command by row id, within ``company_id`` (None = any)."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM commands c WHERE c.id = $1 "
        "AND ($2::bigint IS NULL OR c.company_id = $2)",
        command_row_id,
        company_id,
    )
    return None if row is None else dict(row)


async def listing(
    conn: asyncpg.Connection | asyncpg.Pool,
    company_id: int | None,
    vehicle_id: int | None,
    alarm_id: int | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Commands newest first, filtered by company (None = all), vehicle and alarm."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM commands c WHERE ($1::bigint IS NULL OR c.company_id = $1) "
        "AND ($2::bigint IS NULL OR c.vehicle_id = $2) AND ($3::bigint IS NULL OR c.alarm_id = $3) "
        "ORDER BY c.created_at DESC, c.id DESC LIMIT $4",
        company_id,
        vehicle_id,
        alarm_id,
        limit,
    )
    return [dict(r) for r in rows]


async def alarm_of_vehicle(conn: asyncpg.Connection, alarm_id: int, vehicle_id: int) -> bool:
    """Whether alarm ``alarm_id`` exists and is ``vehicle_id``'s."""
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM alarms WHERE id = $1 AND vehicle_id = $2)",
            alarm_id,
            vehicle_id,
        )
    )


async def for_alarms(
    conn: asyncpg.Connection | asyncpg.Pool, alarm_ids: list[int]
) -> dict[int, list[dict[str, Any]]]:
    """The commands sent about each alarm, oldest first."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM commands c WHERE c.alarm_id = ANY($1::bigint[]) "
        "ORDER BY c.created_at, c.id",
        alarm_ids,
    )
    out: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r["alarm_id"], []).append(dict(r))
    return out


async def reminders_for_alarm(
    conn: asyncpg.Connection | asyncpg.Pool, alarm_id: int
) -> list[dict[str, Any]]:
    """The texts sent to the driver about an alarm, oldest first: ``text``, ``state``,
    ``result``, ``created_at``, ``sent_at``, ``answered_at``."""
    rows = await conn.fetch(
        "SELECT body->>'text' AS text, state, result, created_at, sent_at, answered_at "
        "FROM commands WHERE alarm_id = $1 AND name = 'text' ORDER BY created_at, id",
        alarm_id,
    )
    return [dict(r) for r in rows]


async def create_automatic(
    conn: asyncpg.Connection, command: Command, alarm_id: int, min_interval_s: float
) -> dict[str, Any] | None:
    """自动提醒 / 自动拍照: queue ``command`` about ``alarm_id`` unless that alarm already has a
    command of that name or the vehicle got an automatic one of that name within
    ``min_interval_s``; a text is kept as the alarm's reminder when it has none. One transaction
    (the vehicle's row is locked, so two alarms of one vehicle cannot both pass the rate limit).
    Returns the row, or None when skipped or the alarm (or its vehicle's terminal) is unknown."""
    async with conn.transaction():
        vehicle = await conn.fetchrow(
            "SELECT v.id, v.company_id, v.terminal_id FROM alarms a "
            "JOIN vehicles v ON v.id = a.vehicle_id WHERE a.id = $1 FOR UPDATE OF v",
            alarm_id,
        )
        if vehicle is None or vehicle["terminal_id"] != command.terminal_id:
            return None
        busy = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM commands WHERE alarm_id = $1 AND name = $5) OR EXISTS "
            "(SELECT 1 FROM commands WHERE vehicle_id = $2 AND created_by IS NULL AND name = $5 "
            "AND created_at > $3::timestamptz - make_interval(secs => $4))",
            alarm_id,
            vehicle["id"],
            command.created_at,
            min_interval_s,
            command.name,
        )
        if busy:
            return None
        row = await create(
            conn, command, vehicle_id=vehicle["id"], company_id=vehicle["company_id"],
            alarm_id=alarm_id,
        )  # fmt: skip
        if command.name == TEXT:
            await conn.execute(
                "UPDATE alarms SET remind_command_id = $2 "
                "WHERE id = $1 AND remind_command_id IS NULL",
                alarm_id,
                row["id"],
            )
        return row


async def due(
    conn: asyncpg.Connection, now: datetime, terminal_ids: list[str] | None
) -> list[asyncpg.Record]:
    """Queued, unexpired commands, oldest first; only those of ``terminal_ids`` when given."""
    return await conn.fetch(
        "SELECT id, command_id::text AS command_id, terminal_id, name, body, created_at, "
        "expires_at FROM commands WHERE state = 'queued' AND expires_at > $1 "
        "AND ($2::text[] IS NULL OR terminal_id = ANY($2::text[])) "
        "ORDER BY created_at, id LIMIT 10000",
        now,
        terminal_ids,
    )


async def queued_terminals(conn: asyncpg.Connection, now: datetime) -> list[str]:
    """Terminals with at least one queued, unexpired command."""
    rows = await conn.fetch(
        "SELECT DISTINCT terminal_id FROM commands WHERE state = 'queued' AND expires_at > $1",
        now,
    )
    return [r["terminal_id"] for r in rows]


async def mark_sent(conn: asyncpg.Connection, ids: list[int], sent_at: datetime) -> None:
    """queued -> sent (a command answered meanwhile keeps its answer and gets its send time)."""
    await conn.execute(
        "UPDATE commands SET sent_at = coalesce(sent_at, $2), updated_at = now(), "
        "state = CASE WHEN state = 'queued' THEN 'sent' ELSE state END "
        "WHERE id = ANY($1::bigint[])",
        ids,
        sent_at,
    )


class Answer(NamedTuple):
    """One ``cmd_result`` to record: the terminal it came from (its topic), its result code
    (0-3), when the terminal answered, the optional detail and the optional answer body."""

    command_id: str
    terminal_id: str
    result: int
    answered_at: datetime
    detail: str | None
    body: dict[str, Any] | None = None


async def record_answers(
    conn: asyncpg.Connection, answers: Sequence[Answer]
) -> list[dict[str, Any] | None]:
    """The terminals' answers, in one statement: each command -> acknowledged (0) or failed
    (1-3), with the answer's body (``result_body``); the answer to a command that changes the
    terminal (:data:`gps_monitor.command_kinds.AUDITED_ANSWERS`) is added to the audit trail as
    ``command.answer`` in the requesting user's name. Only a command of the answering terminal
    is changed, and only the first answer counts: a redelivered answer, or a second one for the
    same command later in ``answers``, changes nothing. Returns, per answer in order, the
    changed row, or None (unknown command, a command id that is not a UUID, another terminal's
    command, or already answered). Run it in the caller's transaction to commit a batch at
    once."""
    first: dict[tuple[UUID, str], int] = {}
    for i, a in enumerate(answers):
        try:
            key = (UUID(a.command_id), a.terminal_id)
        except ValueError:
            continue  # no command has it: unknown
        first.setdefault(key, i)
    if not first:
        return [None] * len(answers)
    picked = [answers[i] for i in first.values()]
    rows = await conn.fetch(
        "WITH changed AS (UPDATE commands AS c SET state = a.state, result = a.result, "
        "answered_at = a.answered_at, result_detail = a.detail, result_body = a.body::jsonb, "
        "updated_at = now() "
        "FROM unnest($1::uuid[], $2::text[], $3::smallint[], $4::text[], $5::timestamptz[], "
        "$6::text[], $7::text[]) AS a (command_id, terminal_id, result, state, answered_at, "
        "detail, body) "
        "WHERE c.command_id = a.command_id AND c.terminal_id = a.terminal_id "
        "AND c.result IS NULL RETURNING c.*), "
        # a change to a terminal (set_params, terminal_control...) is audited with its answer,
        # in the name of the user who asked for it, in the same statement
        "audited AS (INSERT INTO audit_log (user_id, username, role, action, object_type, "
        "object_id, company_id, details) SELECT u.id, u.username, u.role, 'command.answer', "
        "'command', ch.id, ch.company_id, jsonb_build_object('name', ch.name, 'request', "
        "ch.body, 'result', ch.result, 'state', ch.state, 'answer', ch.result_body) "
        "FROM changed ch JOIN users u ON u.id = ch.created_by WHERE ch.name = ANY($8::text[])) "
        f"SELECT {_COLUMNS} FROM changed c",
        [key[0] for key in first],
        [a.terminal_id for a in picked],
        [a.result for a in picked],
        [str(state_for_result(a.result)) for a in picked],
        [a.answered_at for a in picked],
        [a.detail for a in picked],
        [None if a.body is None else json.dumps(a.body, ensure_ascii=False) for a in picked],
        sorted(AUDITED_ANSWERS),
    )
    changed = {(UUID(r["command_id"]), r["terminal_id"]): dict(r) for r in rows}
    out: list[dict[str, Any] | None] = [None] * len(answers)
    for key, i in first.items():
        out[i] = changed.get(key)
    return out


async def expire_due(conn: asyncpg.Connection, now: datetime) -> int:
    """queued / sent commands past ``expires_at`` -> expired; returns how many."""
    status = await conn.execute(
        "UPDATE commands SET state = 'expired', updated_at = now() "
        "WHERE state IN ('queued', 'sent') AND expires_at <= $1",
        now,
    )
    return int(status.split()[-1])


def as_command(row: asyncpg.Record | dict[str, Any]) -> Command:
    """A row of :func:`due` as the :class:`Command` to publish."""
    return Command(
        command_id=row["command_id"],
        terminal_id=row["terminal_id"],
        name=row["name"],
        body=row["body"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
    )


def is_final(state: str) -> bool:
    return state in (CommandState.ACKNOWLEDGED, CommandState.FAILED, CommandState.EXPIRED)


async def recently_heard(
    conn: asyncpg.Connection, terminal_ids: list[str], since: datetime
) -> set[str]:
    """Those of ``terminal_ids`` whose vehicle's last message (``latest_positions``) arrived
    after ``since``."""
    rows = await conn.fetch(
        "SELECT v.terminal_id FROM latest_positions lp JOIN vehicles v ON v.id = lp.vehicle_id "
        "WHERE v.terminal_id = ANY($1::text[]) AND lp.last_message_at > $2",
        terminal_ids,
        since,
    )
    return {r["terminal_id"] for r in rows}


async def reject(
    conn: asyncpg.Connection,
    topic: str,
    payload: bytes,
    terminal_id: str | None,
    reason: str,
    detail: str,
) -> None:
    """Keep a malformed answer or status message in ``rejected_messages`` with its reason."""
    await conn.execute(
        "INSERT INTO rejected_messages (topic, payload, terminal_id, reason, detail) "
        "VALUES ($1, $2, $3, $4, $5)",
        topic,
        payload,
        terminal_id,
        reason,
        detail,
    )
