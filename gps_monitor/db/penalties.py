"""Penalty decisions on alarms (table ``alarm_penalties``, migrations 0051 and 0123).

An enforcement officer records, per alarm, the administrative penalty decided on it: the kind of
decision (one of :data:`DECISIONS`: 罚款 / 警告 / 不予处罚; checked by the API, the column is
text and rows recorded before the check may hold other text), the number of the decision
document (处罚决定书编号), the fine in yuan (罚款金额, 2 decimals, none for a warning), the date of
the decision and a note. A recorded decision can be corrected; ``updated_at`` / ``updated_by``
say who did it last, and the audit trail (written by the caller in the same transaction) keeps
every version.

The KPI report counts an alarm with a penalty decision as handled (处理率, web.reports.kpi); the
evidence report of the alarm shows its decisions.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import asyncpg

_COLUMNS = (
    "p.id, p.alarm_id, p.decision, p.decision_number, p.fine_yuan, p.decided_on, p.note, "
    "p.recorded_at, p.updated_at, ru.username AS recorded_by, uu.username AS updated_by"
)
_FROM = (
    "FROM alarm_penalties p JOIN users ru ON ru.id = p.recorded_by "
    "LEFT JOIN users uu ON uu.id = p.updated_by"
)


DECISIONS: tuple[str, ...] = ("罚款", "警告", "不予处罚")  # fine, warning, no penalty
FINE = "罚款"  # the decision that carries an amount (fine_yuan)


@dataclass(frozen=True, slots=True)
class PenaltyFields:
    """What the officer enters: decision kind, 处罚决定书编号, fine (yuan, >= 0, None = no fine),
    decision date (local calendar date), note."""

    decision: str
    decision_number: str | None = None
    fine_yuan: Decimal | None = None
    decided_on: date | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (fine as a number, date ISO) for the audit trail."""
        return {
            "decision": self.decision,
            "decision_number": self.decision_number,
            "fine_yuan": None if self.fine_yuan is None else float(self.fine_yuan),
            "decided_on": None if self.decided_on is None else self.decided_on.isoformat(),
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class Penalty:
    """One recorded penalty decision (``recorded_by`` / ``updated_by`` are usernames)."""

    id: int
    alarm_id: int
    fields: PenaltyFields
    recorded_at: datetime
    recorded_by: str
    updated_at: datetime | None
    updated_by: str | None

    def to_dict(self) -> dict[str, Any]:
        """The API shape: the fields flat, fine as a float, datetimes as they are."""
        return {
            "id": self.id,
            "alarm_id": self.alarm_id,
            **self.fields.to_dict(),
            "recorded_at": self.recorded_at,
            "recorded_by": self.recorded_by,
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
        }


def _penalty(row: asyncpg.Record) -> Penalty:
    return Penalty(
        id=row["id"],
        alarm_id=row["alarm_id"],
        fields=PenaltyFields(
            decision=row["decision"],
            decision_number=row["decision_number"],
            fine_yuan=row["fine_yuan"],
            decided_on=row["decided_on"],
            note=row["note"],
        ),
        recorded_at=row["recorded_at"],
        recorded_by=row["recorded_by"],
        updated_at=row["updated_at"],
        updated_by=row["updated_by"],
    )


async def for_alarm(conn: asyncpg.Connection | asyncpg.Pool, alarm_id: int) -> list[Penalty]:
    """The decisions recorded on one alarm, oldest first."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} {_FROM} WHERE p.alarm_id = $1 ORDER BY p.recorded_at, p.id", alarm_id
    )
    return [_penalty(r) for r in rows]


async def get(conn: asyncpg.Connection | asyncpg.Pool, penalty_id: int) -> Penalty | None:
    """One decision by id; None when there is none."""
    row = await conn.fetchrow(f"SELECT {_COLUMNS} {_FROM} WHERE p.id = $1", penalty_id)
    return None if row is None else _penalty(row)


def number_key(decision_number: str) -> str:
    """How two 处罚决定书编号 are compared: NFKC (full-width letters and digits as half-width)
    and case-folded, so ``A1``, ``a1`` and ``Ａ1`` are one number (typed on different keyboards,
    they name one decision document)."""
    return unicodedata.normalize("NFKC", decision_number).casefold()


async def find_same(
    conn: asyncpg.Connection, alarm_id: int, fields: PenaltyFields
) -> Penalty | None:
    """A decision already recorded on ``alarm_id`` that ``fields`` would repeat, or None.

    With a decision number (处罚决定书编号): the decision of that number on the alarm, compared
    by :func:`number_key` (one decision document is recorded once; a correction is an update).
    Without one: a decision with the same kind, fine, date and note and no number (a double
    submit). The caller holds the alarm's row lock, so two concurrent requests cannot both find
    none.
    """
    if fields.decision_number is not None:
        wanted = number_key(fields.decision_number)
        rows = await conn.fetch(
            f"SELECT {_COLUMNS} {_FROM} WHERE p.alarm_id = $1 AND p.decision_number IS NOT NULL "
            "ORDER BY p.id",
            alarm_id,
        )
        same = next((r for r in rows if number_key(r["decision_number"]) == wanted), None)
        return None if same is None else _penalty(same)
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} {_FROM} WHERE p.alarm_id = $1 AND p.decision_number IS NULL "
        "AND p.decision = $2 AND p.fine_yuan IS NOT DISTINCT FROM $3 "
        "AND p.decided_on IS NOT DISTINCT FROM $4 AND p.note IS NOT DISTINCT FROM $5 "
        "ORDER BY p.id LIMIT 1",
        alarm_id, fields.decision, fields.fine_yuan, fields.decided_on, fields.note,
    )  # fmt: skip
    return None if row is None else _penalty(row)


async def record(
    conn: asyncpg.Connection, alarm_id: int, fields: PenaltyFields, user_id: int
) -> Penalty:
    """Insert a decision on ``alarm_id`` recorded by ``user_id``; returns it.

    Raises:
        asyncpg.ForeignKeyViolationError: no such alarm or user.
        asyncpg.CheckViolationError: a negative fine.
    """
    penalty_id = await conn.fetchval(
        "INSERT INTO alarm_penalties (alarm_id, decision, decision_number, fine_yuan, "
        "decided_on, note, recorded_by) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        alarm_id, fields.decision, fields.decision_number, fields.fine_yuan, fields.decided_on,
        fields.note, user_id,
    )  # fmt: skip
    penalty = await get(conn, penalty_id)
    assert penalty is not None
    return penalty


async def update(
    conn: asyncpg.Connection, penalty: Penalty, fields: PenaltyFields, user_id: int
) -> Penalty:
    """Replace the fields of ``penalty`` (as read in this transaction, see :func:`get`) with
    ``fields``, recording ``user_id`` and the time as its last update; returns it as stored.

    Raises:
        asyncpg.CheckViolationError: a negative fine.
    """
    await conn.execute(
        "UPDATE alarm_penalties SET decision = $2, decision_number = $3, fine_yuan = $4, "
        "decided_on = $5, note = $6, updated_at = now(), updated_by = $7 WHERE id = $1",
        penalty.id, fields.decision, fields.decision_number, fields.fine_yuan, fields.decided_on,
        fields.note, user_id,
    )  # fmt: skip
    after = await get(conn, penalty.id)
    assert after is not None
    return after
