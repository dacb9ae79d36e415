"""The JT/T 809 service with ``bus.transport = nats``: accepted positions (from a real ingest
worker on NATS) and alarms (on the alarms stream) come through its durable consumers ``jt809``
and reach the superior simulator; what is published while the service is down comes after its
restart (private nats-server, real PostgreSQL, real TCP links)."""

from __future__ import annotations

import asyncio
import contextlib
import json

import asyncpg
import nats
import pytest
from ingest_helpers import wait_for
from nats.js import JetStreamContext
from nats_helpers import PrivateNats, bus_settings, nats_server  # noqa: F401  (fixture)
from test_jt809_service import (
    START,
    TERMINAL,
    _value,
    fix_times,
    fixes,
    jt809_settings,
    register_vehicle,
    running_service,
    superior,  # noqa: F401  (fixture)
)

from gps_monitor.bus.nats_names import NatsNames
from gps_monitor.config import Settings
from gps_monitor.models import Alarm
from ingest.worker import IngestWorker
from jt809 import messages as m
from jt809.sim import SuperiorSimulator


@pytest.fixture
def settings(settings: Settings, nats_server: PrivateNats) -> Settings:  # noqa: F811
    return bus_settings(settings, nats_server, "jt809-test")


async def _publish(js: JetStreamContext, settings: Settings, items: list[tuple[str, str]]) -> None:
    for topic, payload in items:
        subject = NatsNames.to_subject(settings.mqtt.topic_prefix + topic)
        await js.publish(subject, payload.encode())


async def test_positions_and_alarms_reach_the_superior_also_after_a_restart(
    settings: Settings,
    pool: asyncpg.Pool,
    superior: tuple[SuperiorSimulator, int],  # noqa: F811
) -> None:
    sim, port = superior
    settings = jt809_settings(settings, port, resend_after_cut_s=0)  # nothing twice
    vehicle_id = await register_vehicle(pool)
    company_id = await pool.fetchval("SELECT company_id FROM vehicles WHERE id = $1", vehicle_id)
    alarm = Alarm(
        alarm_type="overspeed",
        dedup_key=f"{vehicle_id}:overspeed",
        vehicle_id=vehicle_id,
        company_id=company_id,
        terminal_id=TERMINAL,
        started_at=START,
        id=77,
    )
    alarm_item = (f"alarms/v1/{company_id}/{vehicle_id}/overspeed", json.dumps(alarm.to_dict()))
    ingest = IngestWorker(settings)
    ingest_task = asyncio.create_task(ingest.run())
    nc = await nats.connect(settings.bus.nats_url)
    js = nc.jetstream()
    try:
        async with running_service(settings, pool) as service:
            status = await wait_for(lambda: _value(service.main.status), lambda s: s == "up", 30)
            assert status == "up"
            await _publish(js, settings, fixes(0, 10))
            await _publish(js, settings, [alarm_item])
            sent = await wait_for(lambda: _value(len(sim.record.positions)), lambda n: n >= 10, 30)
            assert sent == 10
            alarms = await wait_for(lambda: _value(len(sim.record.alarms)), lambda n: n >= 1, 30)
            assert alarms == 1
        # positions accepted while the service is away wait in its durable consumer
        await _publish(js, settings, fixes(10, 5))
        stored = "SELECT count(*) FROM positions"
        assert await wait_for(lambda: pool.fetchval(stored), lambda n: n >= 15, 30) == 15
        assert len(sim.record.positions) == 10  # nothing reached the superior while away
        async with running_service(settings, pool) as service:
            sent = await wait_for(lambda: _value(len(sim.record.positions)), lambda n: n >= 15, 30)
            assert sent == 15
            await asyncio.sleep(0.5)
    finally:
        await nc.close()
        ingest_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ingest_task
    assert {p.gnss.fix_time for p in sim.record.positions} == fix_times(0, 15)
    assert len(sim.record.positions) == 15
    assert [(a.warn_type, a.info_id) for _, a in sim.record.alarms] == [(m.WARN_OVERSPEED, 77)]
