"""Issue 14 item 13: whose fault is a failure (gps_monitor.db.failures), on errors the real
PostgreSQL and asyncpg raise. Only data errors (SQLSTATE classes 22/23, encoding) and failures of
our own code while the database still answers may set a message aside; everything a database
outage produces must be retried."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import pytest

from gps_monitor.db import failures
from gps_monitor.db.failures import Blame


async def _raised(awaitable: object) -> BaseException:
    try:
        await awaitable  # type: ignore[misc]
    except BaseException as error:
        return error
    pytest.fail("expected the database call to fail")


async def test_another_operation_in_progress_is_an_outage(database_url: str) -> None:
    """The audit's error: a second query on a connection still busy with the first."""
    conn = await asyncpg.connect(database_url)
    try:
        busy = asyncio.create_task(conn.execute("SELECT pg_sleep(0.5)"))
        await asyncio.sleep(0.05)
        error = await _raised(conn.fetchval("SELECT 1"))
        await busy
        assert "another operation is in progress" in str(error)
        assert failures.is_outage(error) and not failures.is_data_error(error)
        assert await failures.blame(error, conn) is Blame.OUTAGE  # even though it answers
    finally:
        await conn.close()


async def test_a_terminated_backend_and_a_refused_connection_are_outages(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute("SELECT pg_terminate_backend($1)", conn.get_server_pid())
        terminated = await _raised(conn.fetchval("SELECT 1"))
    finally:
        await admin.close()
        await conn.close()
    refused = await _raised(asyncpg.connect("postgresql://postgres@127.0.0.1:1/postgres"))
    for error in (terminated, refused):
        assert failures.is_outage(error), repr(error)
        assert await failures.blame(error, None) is Blame.OUTAGE


async def test_any_other_error_is_an_outage_when_the_database_does_not_answer(
    database_url: str,
) -> None:
    """A failure that is neither a known outage nor a data error (the old classifier called
    every such exception bad data) blames the message only while the database answers."""
    conn = await asyncpg.connect(database_url)
    bug = RuntimeError("something in between broke")
    assert not failures.is_outage(bug) and not failures.is_data_error(bug)
    assert await failures.blame(bug, conn) is Blame.MESSAGE
    await conn.close()
    assert await failures.blame(bug, conn) is Blame.OUTAGE
    internal = asyncpg.exceptions.ProtocolError("unexpected message type")
    assert failures.is_outage(internal)
    wrapped = ValueError("decoding the row failed")
    wrapped.__context__ = ConnectionResetError("reset by peer")
    assert failures.is_outage(wrapped)  # an outage anywhere in the chain


async def test_data_errors_from_the_real_database_blame_the_message(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("CREATE TEMP TABLE t (k int PRIMARY KEY, note text, f real, j jsonb)")
        await conn.execute("INSERT INTO t (k) VALUES (1)")
        errors = [
            await _raised(conn.execute("INSERT INTO t (k) VALUES (1)")),  # 23505
            await _raised(conn.execute("INSERT INTO t (k, note) VALUES (2, $1)", "a\x00b")),
            await _raised(conn.execute("INSERT INTO t (k, j) VALUES (3, '{\"x\": NaN}')")),
            await _raised(conn.copy_records_to_table("t", records=[(4, None, 1e300, None)])),
        ]
        for error in errors:
            assert failures.is_data_error(error), repr(error)
            assert await failures.blame(error, conn) is Blame.MESSAGE
            reason, detail = failures.set_aside_reason(error)
            assert reason == "unstorable" and detail
        assert failures.set_aside_reason(errors[0])[1].startswith("duplicate key")
        assert "float32" in failures.set_aside_reason(errors[3])[1]
        bug_reason = failures.set_aside_reason(RecursionError("maximum recursion depth"))
        assert bug_reason == ("internal_error", "RecursionError: maximum recursion depth")
    finally:
        with contextlib.suppress(Exception):
            await conn.close()
