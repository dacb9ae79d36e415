"""Owner fencing: a process's epoch per partition, checked inside each of its commits.

When a source gains a partition it :meth:`PartitionFence.take`s it (the lease epoch goes up in
``partition_leases``, :mod:`gps_monitor.db.leases`) before the worker loads that partition's
state; every commit calls :meth:`PartitionFence.check` in its own transaction, which raises
:class:`~gps_monitor.bus.base.FencedOut` when another process has taken one of the batch's
partitions since. So a stalled old owner (SIGSTOP, a long pause) that wakes after the takeover
cannot commit: its transaction rolls back and its batch stays unacknowledged.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from gps_monitor.bus.base import FencedOut
from gps_monitor.config import DatabaseSettings
from gps_monitor.db import leases
from gps_monitor.db.pool import connect

log = logging.getLogger(__name__)


class PartitionFence:
    """The leases of one stage held by this process (``owner``: its client name)."""

    def __init__(
        self, database: DatabaseSettings, stage: str, owner: str, stall_s: float = 10.0
    ) -> None:
        self.database = database
        self.stage = stage
        self.owner = owner
        self.stall_s = stall_s
        self.epochs: dict[int, int] = {}
        self._conn: asyncpg.Connection | None = None

    async def take(self, partitions: frozenset[int]) -> dict[int, int]:
        """Bump and hold the epochs of ``partitions``. Waits for an old owner's commit under
        way; an old owner stalled inside its transaction (stopped, hung) for ``stall_s`` has
        its database session ended, which rolls the transaction back (it could otherwise hold
        the rows, and the partition, forever). Raises :class:`asyncpg.PostgresError` /
        ``OSError`` when the database is away."""
        if self._conn is None or self._conn.is_closed():
            self._conn = await connect(self.database)
        conn = self._conn
        task = asyncio.ensure_future(leases.take(conn, self.stage, partitions, self.owner))
        done, _ = await asyncio.wait({task}, timeout=self.stall_s)
        if not done:
            ended = await self._end_sessions_blocking(conn.get_server_pid())
            log.warning(
                "%s: taking partitions %s waited %.0f s for a stalled previous owner; ended "
                "its database session(s) %s (its uncommitted work rolls back)",
                self.stage, sorted(partitions), self.stall_s, ended,
            )  # fmt: skip
        taken = await task
        self.epochs.update(taken)
        return taken

    async def _end_sessions_blocking(self, pid: int) -> list[int]:
        other = await connect(self.database)
        try:
            rows = await other.fetch(
                "SELECT b AS pid, pg_terminate_backend(b) AS ended "
                "FROM unnest(pg_blocking_pids($1)) AS b",
                pid,
            )
        finally:
            await other.close()
        return [r["pid"] for r in rows if r["ended"]]

    def forget(self, partitions: frozenset[int]) -> None:
        """Stop holding ``partitions`` (lost or released): a later commit of them fails."""
        for p in partitions:
            self.epochs.pop(p, None)

    async def check(self, conn: asyncpg.Connection, partitions: frozenset[int]) -> None:
        """Inside the commit's transaction on ``conn``: raises :class:`FencedOut` unless every
        one of ``partitions`` is still held by this process with its epoch."""
        not_held = {p for p in partitions if p not in self.epochs}
        if not_held:
            raise FencedOut(f"{self.stage}: partitions {sorted(not_held)} are no longer ours")
        moved = await leases.changed(conn, self.stage, {p: self.epochs[p] for p in partitions})
        if moved:
            self.forget(moved)
            raise FencedOut(f"{self.stage}: partitions {sorted(moved)} were taken over")

    async def close(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()
        self._conn = None
