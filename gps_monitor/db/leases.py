"""The ``partition_leases`` table (migration 0150): one epoch per (stage, partition).

Writer and reader: the owner fencing of the partitioned transport (:mod:`gps_monitor.bus.fencing`).
A process that gains a partition takes it with :func:`take` (the epoch goes up by one under the
row lock, in its own short transaction) before it loads that partition's state; each of its
commits calls :func:`changed` inside the commit's transaction, which reads the epochs ``FOR
SHARE``: a changed epoch means another process took the partition since, and the transaction
must roll back. The share lock makes a takeover wait for an old owner's commit that is under
way, so the new owner's state load always sees it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import asyncpg


async def take(
    conn: asyncpg.Connection | asyncpg.Pool, stage: str, partitions: Iterable[int], owner: str
) -> dict[int, int]:
    """Bump the epoch of each of ``partitions`` of ``stage`` (a new row starts at 1) and record
    ``owner``; waits for commits of the previous owner that hold the row. Returns
    ``{partition: new epoch}``. Raises :class:`asyncpg.PostgresError` (nothing taken)."""
    wanted = sorted(set(partitions))  # one lock order for every process: no deadlock
    if not wanted:
        return {}
    rows = await conn.fetch(
        "INSERT INTO partition_leases AS l (stage, partition, epoch, owner) "
        "SELECT $1, p, 1, $3 FROM unnest($2::integer[]) AS p ORDER BY p "
        "ON CONFLICT (stage, partition) DO UPDATE "
        "SET epoch = l.epoch + 1, owner = EXCLUDED.owner, taken_at = now() "
        "RETURNING partition, epoch",
        stage,
        wanted,
        owner,
    )
    return {r["partition"]: r["epoch"] for r in rows}


async def changed(
    conn: asyncpg.Connection, stage: str, epochs: Mapping[int, int]
) -> frozenset[int]:
    """The partitions of ``epochs`` whose stored epoch is not the one given (taken by another
    process since, or never taken). Call it inside the transaction to be fenced: the rows stay
    share-locked until it ends, so no takeover completes before it commits or rolls back."""
    if not epochs:
        return frozenset()
    rows = await conn.fetch(
        "SELECT partition, epoch FROM partition_leases "
        "WHERE stage = $1 AND partition = ANY($2::integer[]) ORDER BY partition FOR SHARE",
        stage,
        sorted(epochs),
    )
    stored = {r["partition"]: r["epoch"] for r in rows}
    return frozenset(p for p, epoch in epochs.items() if stored.get(p) != epoch)


async def owners(conn: asyncpg.Connection | asyncpg.Pool, stage: str) -> dict[int, str]:
    """``{partition: owner name}`` of ``stage`` as last taken (for status and tests)."""
    rows = await conn.fetch("SELECT partition, owner FROM partition_leases WHERE stage = $1", stage)
    return {r["partition"]: r["owner"] for r in rows}
