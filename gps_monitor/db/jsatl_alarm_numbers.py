"""The ``jsatl_alarm_numbers`` table (migration 0136): T/JSATL alarm numbers issued in 0x9208.

Writer: the JT/T 808 gateway (:func:`issue`, before 0x9208 is sent); reader: the attachment
server (:func:`issued_to`, on each 0x1210). See :mod:`gps_monitor.active_safety` for why the
number is random and stored rather than derived.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True, slots=True)
class IssuedNumber:
    """A stored, unexpired alarm number: its terminal, public alarm key and the 16-byte alarm
    identification it was issued for."""

    alarm_number: str
    terminal_id: str
    alarm_key: str
    identification: bytes


async def issue(
    conn: asyncpg.Connection | asyncpg.Pool,
    number: IssuedNumber,
    ttl_s: float,
) -> None:
    """Store ``number`` valid for ``ttl_s`` seconds from now, and delete numbers expired for
    a day (so the table stays small). Raises :class:`asyncpg.PostgresError` when it cannot be
    stored: then no 0x9208 may name it."""
    await conn.execute(
        "WITH gone AS (DELETE FROM jsatl_alarm_numbers "
        "WHERE expires_at < now() - interval '1 day') "
        "INSERT INTO jsatl_alarm_numbers (alarm_number, terminal_id, alarm_key, identification, "
        "expires_at) VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))",
        number.alarm_number,
        number.terminal_id,
        number.alarm_key,
        number.identification,
        ttl_s,
    )


async def issued_to(
    conn: asyncpg.Connection | asyncpg.Pool, alarm_number: str, terminal_id: str
) -> IssuedNumber | None:
    """The stored number ``alarm_number`` if it was issued to ``terminal_id`` and has not
    expired, else None."""
    row = await conn.fetchrow(
        "SELECT alarm_number, terminal_id, alarm_key, identification FROM jsatl_alarm_numbers "
        "WHERE alarm_number = $1 AND terminal_id = $2 AND expires_at > now()",
        alarm_number,
        terminal_id,
    )
    return None if row is None else IssuedNumber(**dict(row))
