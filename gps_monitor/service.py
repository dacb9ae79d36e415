"""What every long-running gps-monitor service shares: the schema upgrade at start, the
"ready" hand-off to ``gps-monitor demo``, running until SIGTERM/SIGINT, waiting on an event with
a timeout, and the garbage collector's pace for the per-message workers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from gps_monitor.config import DatabaseSettings
from gps_monitor.db import migrate
from gps_monitor.db.pool import connect


async def wait_until_set(event: asyncio.Event, timeout_s: float) -> bool:
    """Wait until ``event`` is set, at most ``timeout_s`` seconds; returns whether it is set.

    Under ``asyncio.timeout``, not ``asyncio.wait_for``: on Python 3.11 ``wait_for`` drops a
    cancellation that comes as the event is set (CPython gh-86296, fixed in 3.12), and a loop
    waiting that way then never stops at shutdown.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await event.wait()
    return event.is_set()


async def upgrade_schema(settings: DatabaseSettings) -> list[str]:
    """Apply pending migrations (see :mod:`gps_monitor.db.migrate`); returns the keys applied.

    Raises:
        ConfigurationError: no database URL configured.
    """
    conn = await connect(settings)
    try:
        return await migrate.upgrade(conn, settings)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def relay_ready(source: asyncio.Event, target: asyncio.Event | None) -> AsyncIterator[None]:
    """Within the block, set ``target`` as soon as ``source`` is set (no-op when None)."""
    if target is None:
        yield
        return
    waiter = asyncio.create_task(source.wait())
    waiter.add_done_callback(lambda t: None if t.cancelled() else target.set())
    try:
        yield
    finally:
        waiter.cancel()


async def _until_signal(main: Coroutine[Any, Any, None]) -> None:
    task = asyncio.create_task(main)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def run_until_signal(main: Coroutine[Any, Any, None]) -> int:
    """Run ``main`` in a new event loop; SIGTERM or SIGINT cancels it cleanly. Returns 0."""
    asyncio.run(_until_signal(main))
    return 0


# CPython collects its young generation every 700 net container allocations. Ingest and rules
# allocate dozens of short-lived dicts and dataclasses per position and keep a large live set
# (vehicle states), almost none of it in reference cycles: collecting the young generation every
# 50,000 and the older ones after 20 and 100 such collections gave 13-17 % more positions per
# CPU-second (benchmarks/ingest_steps.py decode+judge, benchmarks/rules.py steps
# decode+evaluate+state). Cycles are still collected; garbage in them just lives longer.
THROUGHPUT_GC_THRESHOLDS = (50_000, 20, 100)


def pace_gc_for_throughput() -> None:
    """Set :data:`THROUGHPUT_GC_THRESHOLDS` (process-wide: call it from a per-message worker's
    command, not from code that other services import)."""
    gc.set_threshold(*THROUGHPUT_GC_THRESHOLDS)
