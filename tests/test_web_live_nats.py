"""The live feed with ``bus.transport = nats``: a terminal's position goes through the NATS
inbound stream to a real ingest worker (partitioned, JetStream) and reaches a websocket client of
the web app, whose hub holds core NATS subscriptions; an alarm on the alarms stream and a web
process's alarm-status announcement come the same way (private nats-server, real PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime

import asyncpg
import nats
import pytest
from nats_helpers import PrivateNats, bus_settings, nats_server  # noqa: F401  (fixture)
from test_web_ws import receive_until, ws_connect
from web_helpers import make_world, served_app

from gps_monitor import topics
from gps_monitor.bus.nats_names import NatsNames
from gps_monitor.config import Settings
from gps_monitor.models import Alarm
from ingest.worker import IngestWorker


@pytest.fixture
def settings(settings: Settings, nats_server: PrivateNats) -> Settings:  # noqa: F811
    return bus_settings(settings, nats_server, "web-live-test")


async def test_a_position_accepted_by_ingest_on_nats_and_an_alarm_reach_the_websocket(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    w = await make_world(pool, settings)
    a0 = w.vehicles_a[0]
    prefix = settings.mqtt.topic_prefix
    ingest = IngestWorker(settings)
    ingest_task = asyncio.create_task(ingest.run())
    nc = await nats.connect(settings.bus.nats_url)
    try:
        async with (
            served_app(settings) as (base, app),
            await ws_connect(base, w.tokens["op_a"]) as ws,
        ):
            assert json.loads(await ws.recv())["type"] == "snapshot"
            await asyncio.wait_for(ingest.ready.wait(), 15)
            js = nc.jetstream()
            fix = datetime.now(UTC).replace(microsecond=0)
            payload = {
                "fix_time": fix.isoformat(),
                "latitude": 29.5123,
                "longitude": 106.5123,
                "speed_kmh": 40.0,
                "alarm_flags": 0,
            }
            subject = NatsNames.to_subject(f"{prefix}gps/v1/{w.terminals[a0]}/position")
            await js.publish(subject, json.dumps(payload).encode())
            got = await receive_until(ws, 30, lambda m: any(x["type"] == "positions" for x in m))
            positions = [p for m in got if m["type"] == "positions" for p in m["positions"]]
            assert [(p["vehicle_id"], p["latitude"]) for p in positions] == [(a0, 29.5123)]
            assert positions[0]["fix_time"] == fix.isoformat()

            alarm = Alarm(
                alarm_type="overspeed",
                dedup_key=f"{a0}:overspeed:nats",
                vehicle_id=a0,
                company_id=w.company_a,
                terminal_id=w.terminals[a0],
                started_at=fix,
                level=1,
            )
            alarm_subject = NatsNames.to_subject(
                topics.alarm_topic(w.company_a, a0, "overspeed", prefix)
            )
            await js.publish(alarm_subject, json.dumps(alarm.to_dict()).encode())
            got = await receive_until(ws, 10, lambda m: any(x["type"] == "alarm" for x in m))
            alarms = [m["alarm"] for m in got if m["type"] == "alarm"]
            assert [(a["dedup_key"], a["vehicle_id"]) for a in alarms] == [(alarm.dedup_key, a0)]

            # one web process's announcement reaches the clients through NATS
            await app.state.hub.announce_alarm_change(
                {"id": 7, "vehicle_id": a0, "company_id": w.company_a, "status": "handled"}
            )
            got = await receive_until(ws, 10, lambda m: any(x["type"] == "alarm_status" for x in m))
            assert [m["alarm"]["status"] for m in got if m["type"] == "alarm_status"] == ["handled"]
            assert app.state.hub.received_messages >= 3  # position batch, alarm, status
    finally:
        await nc.close()
        ingest_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ingest_task
