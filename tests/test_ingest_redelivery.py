"""Issue 14 item 14: a message the broker delivers again (committed, but the worker died or the
broker restarted before its PUBACK) adds no second ``raw_messages`` row: one row per message."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Sequence

import asyncpg
import pytest
from ingest_helpers import drop_session, position_json, publish_raw, wait_for

from gps_monitor.bus.base import Delivery
from gps_monitor.bus.mqtt_transport import MqttSource
from gps_monitor.config import Settings
from gps_monitor.db import registry
from ingest.worker import IngestWorker

TERMINAL = "013800000114"
TOPIC = f"gps/v1/{TERMINAL}/position"
N = 15  # below Mosquitto's max_inflight_messages (20): it sends no more while none is acked


async def _no_ack(self: MqttSource, deliveries: Sequence[Delivery]) -> None:
    """A worker that dies before any PUBACK."""


async def _run(
    settings: Settings, before: Callable[[], object], until: Callable[[IngestWorker], bool]
) -> IngestWorker:
    """Run a worker (persistent session), call ``before`` once it is subscribed, stop it once
    ``until(worker)`` holds, as a crash would: its session stays on the broker."""
    worker = IngestWorker(settings)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.ready.wait(), 10)
        await before()  # type: ignore[misc]
        await wait_for(lambda: asyncio.sleep(0, worker), until)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return worker


async def test_a_redelivered_message_adds_no_second_raw_message_row(
    settings: Settings, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    company = await registry.ensure_company(pool, "Redelivery Co")
    await registry.ensure_vehicle(
        pool, company_id=company.id, plate_number="渝A00114", terminal_id=TERMINAL
    )
    fixes = [
        position_json(f"2026-01-26T08:{m:02d}:00+08:00", 29.56 + m / 1e4, 106.55 + m / 1e4)
        for m in range(N)
    ]
    # the first fix again in another message (e.g. a blind-area upload repeating it): a distinct
    # message, kept as evidence although its position is stored already
    repeat = json.dumps([json.loads(fixes[0]) | {"extras": {"resent": True}}])
    try:
        with monkeypatch.context() as patch:
            # the first worker commits every message, and dies before any PUBACK
            patch.setattr(MqttSource, "ack", _no_ack)
            await _run(
                settings,
                lambda: publish_raw(settings, [(TOPIC, f) for f in fixes]),
                lambda w: w.stats["messages"] >= N,
            )
        stored_once = await pool.fetchval("SELECT count(*) FROM raw_messages")
        # the broker delivers all N again to the next worker, then the repeat arrives
        second = await _run(
            settings,
            lambda: publish_raw(settings, [(f"gps/v1/{TERMINAL}/batch", repeat)]),
            lambda w: w.stats["messages"] >= N + 1,
        )
    finally:
        await drop_session(settings)
    assert stored_once == N
    assert second.stats["already_stored"] == N + 1  # the redelivery did happen (and the repeat)
    assert await pool.fetchval("SELECT count(*) FROM positions") == N
    raw = await pool.fetch("SELECT payload FROM raw_messages ORDER BY id")
    assert sorted(bytes(r["payload"]) for r in raw) == sorted(f.encode() for f in [*fixes, repeat])
    orphans = await pool.fetchval(
        "SELECT count(*) FROM raw_messages r WHERE NOT EXISTS "
        "(SELECT 1 FROM positions p WHERE p.raw_message_id = r.id)"
    )
    assert orphans == 1  # the repeat only
