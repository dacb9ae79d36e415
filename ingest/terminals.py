"""The registered-terminal check: terminal id -> vehicle, with a small in-memory cache.

Hits are trusted for ``terminal_cache_ttl_s``; a miss (unregistered terminal) is remembered for
``unknown_terminal_retry_s`` only, so a vehicle registered while the worker runs is picked up.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import asyncpg

from gps_monitor.config import IngestSettings
from gps_monitor.db import registry
from gps_monitor.models import Vehicle


class TerminalCache:
    """Resolve terminal ids to vehicles (:meth:`vehicles`, one query for a batch's misses),
    refreshed on miss and on expiry."""

    def __init__(
        self,
        db: asyncpg.Pool | asyncpg.Connection,
        settings: IngestSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._settings = settings
        self._clock = clock
        self._entries: dict[str, tuple[Vehicle | None, float]] = {}

    async def vehicles(self, terminal_ids: set[str]) -> dict[str, Vehicle | None]:
        """Resolve many terminal ids at once (one query for all cache misses)."""
        now = self._clock()
        out: dict[str, Vehicle | None] = {}
        missing: list[str] = []
        for terminal_id in terminal_ids:
            entry = self._entries.get(terminal_id)
            if entry is not None and entry[1] > now:
                out[terminal_id] = entry[0]
            else:
                missing.append(terminal_id)
        if missing:
            rows = await self._db.fetch(
                "SELECT * FROM vehicles WHERE terminal_id = ANY($1)",
                missing,
            )
            found = {row["terminal_id"]: registry.vehicle_from_row(row) for row in rows}
            if len(self._entries) > 1_000_000:
                self._entries.clear()
            for terminal_id in missing:
                vehicle = found.get(terminal_id)
                ttl = (
                    self._settings.terminal_cache_ttl_s
                    if vehicle is not None
                    else self._settings.unknown_terminal_retry_s
                )
                self._entries[terminal_id] = (vehicle, now + ttl)
                out[terminal_id] = vehicle
        return out
