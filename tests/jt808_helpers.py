"""Shared helpers of the JT/T 808 gateway tests: a registered vehicle, the real gateway on a
free loopback port (real publisher, real registry), a subscription on the test's topics, an
authenticated simulated terminal, a location report."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiomqtt
import asyncpg

from gps_monitor.config import Jt808Settings, Settings
from gps_monitor.db import registry
from gps_monitor.models import PlateColor
from ingest.jt808 import messages as m
from ingest.jt808.cli import build_authenticator
from ingest.jt808.publisher import MqttPublisher
from ingest.jt808.server import Jt808Gateway
from ingest.jt808.sim import SimTerminal, sim_plate


async def add_vehicle(pool: asyncpg.Pool, terminal_id: str, plate: str, **extra: Any) -> None:
    company = await registry.ensure_company(pool, "jt808 test fleet")
    await registry.ensure_vehicle(
        pool,
        company_id=company.id,
        plate_number=plate,
        terminal_id=terminal_id,
        plate_color=extra.pop("plate_color", PlateColor.YELLOW),
        **extra,
    )


@asynccontextmanager
async def running_gateway(
    settings: Settings, pool: asyncpg.Pool, **jt808: Any
) -> AsyncIterator[tuple[Jt808Gateway, int]]:
    """The gateway on a free loopback port, with the real publisher and authenticator."""
    settings = settings.model_copy(
        update={"jt808": Jt808Settings(client_id=f"{settings.mqtt.client_id}-gw", **jt808)}
    )
    authenticator = build_authenticator(pool, settings)
    async with MqttPublisher(settings, connect_timeout_s=5) as publisher:
        gateway = Jt808Gateway(settings, authenticator, publisher)
        server = await gateway.start("127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            yield gateway, port
        finally:
            server.close()
            await gateway.close_connections()
            await server.wait_closed()


@asynccontextmanager
async def subscription(
    settings: Settings, kinds: tuple[str, ...] = ("position", "batch")
) -> AsyncIterator[asyncio.Queue[aiomqtt.Message]]:
    """Every message on the test's ``{prefix}gps/v1/+/{kind}`` topics (positions by default;
    ``heartbeat`` for contact), in arrival order."""
    queue: asyncio.Queue[aiomqtt.Message] = asyncio.Queue()
    async with aiomqtt.Client(
        settings.mqtt.host or "127.0.0.1",
        settings.mqtt.port,
        identifier=f"{settings.mqtt.client_id}-sub",
    ) as client:
        for kind in kinds:
            await client.subscribe(f"{settings.mqtt.topic_prefix}gps/v1/+/{kind}", qos=1)

        async def pump() -> None:
            async for message in client.messages:
                queue.put_nowait(message)

        task = asyncio.create_task(pump())
        try:
            yield queue
        finally:
            task.cancel()


async def next_message(queue: asyncio.Queue[aiomqtt.Message]) -> tuple[str, Any]:
    message = await asyncio.wait_for(queue.get(), 10)
    assert isinstance(message.payload, bytes)
    return str(message.topic), json.loads(message.payload)


async def authenticated(port: int, phone: str, **kwargs: Any) -> SimTerminal:
    """Connected, registered with the plate ``add_vehicle(pool, id, sim_plate(phone))`` gave
    its vehicle (yellow), and authenticated."""
    terminal = SimTerminal(phone, **kwargs)
    await terminal.connect("127.0.0.1", port)
    await terminal.register(sim_plate(phone), int(PlateColor.YELLOW))
    assert await terminal.authenticate() == m.RESULT_OK
    return terminal


def general_reply_of(frame: Any) -> tuple[int, int, int]:
    assert frame.header.msg_id == m.MSG_PLATFORM_REPLY
    return m.decode_general_reply(frame.body)


def location_report(bcd_time: str = "260101080000") -> m.LocationReport:
    return m.LocationReport(
        alarm_flags=0,
        status_flags=m.STATUS_ACC_ON | m.STATUS_POSITIONED,
        latitude_e6=29_563_000,
        longitude_e6=106_551_000,
        altitude_m=250,
        speed_dkmh=523,
        heading_deg=90,
        bcd_time=bcd_time,
        items={0x01: struct.pack(">I", 123456), 0x31: bytes([9])},
    )
