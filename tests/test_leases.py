"""partition_leases: a takeover bumps the epoch, an old owner's commit sees it, and a takeover
waits for an old owner's commit that is under way (real PostgreSQL)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from gps_monitor.bus.fencing import PartitionFence
from gps_monitor.config import Settings
from gps_monitor.db import leases


async def test_take_bumps_the_epoch_and_records_the_owner(pool: asyncpg.Pool) -> None:
    assert await leases.take(pool, "rules", [3, 1], "a") == {1: 1, 3: 1}
    assert await leases.take(pool, "rules", [3], "b") == {3: 2}
    assert await leases.take(pool, "ingest", [3], "b") == {3: 1}  # stages are apart
    assert await leases.owners(pool, "rules") == {1: "a", 3: "b"}


async def test_changed_names_the_partitions_taken_since(pool: asyncpg.Pool) -> None:
    mine = await leases.take(pool, "rules", [0, 1, 2], "a")
    await leases.take(pool, "rules", [1], "b")
    async with pool.acquire() as conn, conn.transaction():
        assert await leases.changed(conn, "rules", mine) == frozenset({1})
        assert await leases.changed(conn, "rules", {0: mine[0], 2: mine[2]}) == frozenset()
        assert await leases.changed(conn, "rules", {7: 1}) == frozenset({7})  # never taken


async def test_a_takeover_waits_for_the_old_owners_commit_under_way(pool: asyncpg.Pool) -> None:
    mine = await leases.take(pool, "rules", [5], "old")
    await pool.execute("CREATE TABLE fenced_writes (n integer)")
    async with pool.acquire() as old:
        tx = old.transaction()
        await tx.start()
        assert await leases.changed(old, "rules", mine) == frozenset()
        await old.execute("INSERT INTO fenced_writes VALUES (1)")
        takeover = asyncio.create_task(leases.take(pool, "rules", [5], "new"))
        await asyncio.sleep(0.5)
        assert not takeover.done()  # blocked by the old owner's share lock
        await tx.commit()
        assert await asyncio.wait_for(takeover, 10) == {5: 2}
    # the new owner's state load, after its take, sees the old owner's commit
    assert await pool.fetchval("SELECT count(*) FROM fenced_writes") == 1
    async with pool.acquire() as old, old.transaction():
        assert await leases.changed(old, "rules", mine) == frozenset({5})


async def test_a_takeover_ends_the_session_of_an_owner_stalled_inside_its_commit(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    mine = await leases.take(pool, "rules", [6], "old")
    old = await asyncpg.connect(settings.database.url)
    try:
        tx = old.transaction()
        await tx.start()
        assert await leases.changed(old, "rules", mine) == frozenset()  # rows share-locked
        # ... and the old owner stops here (SIGSTOP) with its transaction open
        fence = PartitionFence(settings.database, "rules", "new", stall_s=0.5)
        try:
            assert await asyncio.wait_for(fence.take(frozenset({6})), 30) == {6: 2}
        finally:
            await fence.close()
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
            await tx.commit()  # its session was ended: nothing of it commits
    finally:
        old.terminate()
