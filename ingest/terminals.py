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
from gps_monitor.errors import NotFoundError
from gps_monitor.models import Vehicle


class TerminalCache:
    """Resolve terminal ids to vehicles, refreshed on miss and on expiry."""

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

    async def vehicle(self, terminal_id: str) -> Vehicle | None:
        """The vehicle carrying ``terminal_id``, or None when none is registered."""
        now = self._clock()
        entry = self._entries.get(terminal_id)
        if entry is not None and entry[1] > now:
            return entry[0]
        try:
            found: Vehicle | None = await registry.vehicle_by_terminal(self._db, terminal_id)
        except NotFoundError:
            found = None
        ttl = (
            self._settings.terminal_cache_ttl_s
            if found is not None
            else self._settings.unknown_terminal_retry_s
        )
        if len(self._entries) > 1_000_000:  # a flood of random ids must not grow without bound
            self._entries.clear()
        self._entries[terminal_id] = (found, now + ttl)
        return found
