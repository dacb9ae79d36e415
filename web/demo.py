"""The web service of ``gps-monitor demo``: demo users, their credentials and the map address
printed, then the server (see :mod:`web.service`)."""

from __future__ import annotations

import asyncio

from gps_monitor.config import Settings
from web.service import ensure_demo_users
from web.service import serve as _serve


async def serve(settings: Settings, ready: asyncio.Event | None = None) -> None:
    from gps_monitor.demo import DEMO_COMPANY

    credentials = await ensure_demo_users(settings, DEMO_COMPANY)
    started = asyncio.Event()
    bound: dict[str, str] = {}
    task = asyncio.create_task(_serve(settings, started, bound=bound))
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiter.cancel()
        task.result()
        return
    address = bound["address"]
    print(f"demo: live map at {address}/map  (KPI dashboard {address}/dashboard, API docs "
          f"{address}/docs)")  # fmt: skip
    for username, role, password in credentials:
        print(f"demo:   user {username:<17} password {password:<14} role {role}")
    if ready is not None:
        ready.set()
    await task
