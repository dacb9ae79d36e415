"""Whose fault is a failure: the message being handled, or the database being away.

Every long-running consumer (the ingest worker, the rules worker) handles one MQTT message at a
time in the end, and any exception raised while it does so falls in one of two kinds:

- **outage**: the database or the connection to it failed. The message is fine; it stays
  unacknowledged, the consumer reconnects and the same message is handled again later.
  Outages are: every :class:`asyncpg.PostgresError` whose SQLSTATE class is not 22 or 23
  (e.g. 08 connection exception, 53 insufficient resources, 57 operator intervention such as
  ``admin_shutdown``, 40 serialization failure), every asyncpg client error other than its
  encoding ``DataError`` (``InterfaceError`` such as "another operation is in progress" or
  "connection is closed", ``InternalClientError``), ``OSError`` (connection refused or reset),
  ``TimeoutError``, ``EOFError`` (a stream cut in the middle), and cancellation. An exception
  with any of these in its ``__cause__`` / ``__context__`` chain is an outage too.
- **message**: everything else. A database refusal caused by the data (SQLSTATE class 22 data
  exception: a NUL in text, NaN in jsonb, a number out of range; class 23 integrity constraint
  violation), a value asyncpg cannot encode (its client-side ``DataError``), and any other
  exception raised by our own code while handling that message (a decoder or judgement bug,
  ``RecursionError`` on absurd nesting, ...). The message is set aside with its reason,
  acknowledged, and the consumer goes on.

A message is only ever set aside for a failure it causes *on its own* (consumers redo a failed
batch message by message first), and :func:`blame` asks the database for a trivial answer
before blaming a message for an error that is not a data SQLSTATE or an encoding error: when
that probe fails too, it is an outage after all.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Iterator

import asyncpg

# asyncpg.exceptions.DataError is the server's SQLSTATE 22000; the client-side encoding error
# (an InterfaceError) lives in asyncpg.exceptions._base
_ClientDataError = asyncpg.exceptions._base.DataError
_DATA_SQLSTATE_CLASSES = ("22", "23")  # data exception, integrity constraint violation
_PROBE_TIMEOUT_S = 5.0
_DETAIL_MAX_CHARS = 2000


class Blame(enum.Enum):
    """Who caused a failure."""

    MESSAGE = "message"  # set it aside with its reason, acknowledge, go on
    OUTAGE = "outage"  # retry/reconnect, acknowledge nothing


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _is_outage_alone(error: BaseException) -> bool:
    if isinstance(error, asyncpg.PostgresError):
        sqlstate = getattr(error, "sqlstate", None) or ""
        return sqlstate[:2] not in _DATA_SQLSTATE_CLASSES
    if isinstance(error, _ClientDataError):
        return False  # client side: a value asyncpg cannot encode
    return isinstance(
        error,
        asyncpg.InterfaceError
        | asyncpg.exceptions.InternalClientError
        | OSError
        | TimeoutError
        | EOFError
        | asyncio.CancelledError,
    )


def is_outage(error: BaseException) -> bool:
    """Whether ``error`` (or anything in its cause/context chain) is the database or the
    connection to it failing (module docstring for the list)."""
    return any(_is_outage_alone(e) for e in _chain(error))


def is_data_error(error: BaseException) -> bool:
    """Whether ``error`` is a refusal of the data itself: a database error of SQLSTATE class 22
    or 23, or an encoding error (asyncpg's client-side ``DataError``; the ``ValueError``,
    ``OverflowError`` or ``UnicodeError`` its codecs raise in COPY, e.g. "value out of float32
    range"), with no outage in its chain."""
    if is_outage(error):
        return False
    if isinstance(error, asyncpg.PostgresError):
        return True  # not an outage: class 22 or 23
    return isinstance(error, _ClientDataError | ValueError | OverflowError | UnicodeError)


async def database_answers(conn: asyncpg.Connection | asyncpg.Pool | None) -> bool:
    """Whether the database answers ``SELECT 1`` within a few seconds on ``conn``."""
    if conn is None or (isinstance(conn, asyncpg.Connection) and conn.is_closed()):
        return False
    try:
        async with asyncio.timeout(_PROBE_TIMEOUT_S):
            return await conn.fetchval("SELECT 1") == 1
    except Exception:
        return False


async def blame(error: BaseException, conn: asyncpg.Connection | asyncpg.Pool | None) -> Blame:
    """Who caused ``error``, raised while one message was being handled on ``conn``.

    An outage by type (:func:`is_outage`) is an outage; a data error (:func:`is_data_error`) is
    the message's; anything else is the message's only if the database still answers on
    ``conn`` (a probe query), otherwise an outage.
    """
    if is_outage(error):
        return Blame.OUTAGE
    if is_data_error(error):
        return Blame.MESSAGE
    return Blame.MESSAGE if await database_answers(conn) else Blame.OUTAGE


def set_aside_reason(error: BaseException) -> tuple[str, str]:
    """``(reason, detail)`` for a message set aside because of ``error`` (not an outage):
    ``unstorable`` for a data error (the database's own message, or the encoding error's type
    and text), ``internal_error`` with the exception's type and text otherwise."""
    text = str(error) or repr(error)
    if is_data_error(error):
        if not isinstance(error, asyncpg.PostgresError):
            text = f"{type(error).__name__}: {text}"
        return "unstorable", text[:_DETAIL_MAX_CHARS]
    return "internal_error", f"{type(error).__name__}: {text}"[:_DETAIL_MAX_CHARS]
