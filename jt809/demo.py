"""The JT/T 809 part of ``gps-monitor demo``: a superior-platform simulator (jt809-sim) on a
free loopback port and the lower-platform service logged in to it, so a new user sees the
platform's positions go up and a 查岗 arrive on the map page (上级平台查岗 panel, bottom left)
and can answer it there. The simulator sends a 查岗 :data:`FIRST_QUERY_S` after the link is up
and then every :data:`QUERY_EVERY_S`; its counters are logged every minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from gps_monitor.config import Jt809Settings, Settings
from jt809.links import build_codec
from jt809.service import serve as serve_service
from jt809.sim import SuperiorSimulator

log = logging.getLogger(__name__)

FIRST_QUERY_S = 10.0
QUERY_EVERY_S = 300.0
DEMO_USER_ID = 20261001
DEMO_PASSWORD = "demo809"
QUESTION = "请报告当前值班人员姓名及在岗情况"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def demo_settings(settings: Settings, superior_port: int) -> Settings:
    """``settings`` with a jt809 block pointing at the local simulator."""
    jt = Jt809Settings(
        superior_host="127.0.0.1",
        superior_port=superior_port,
        user_id=DEMO_USER_ID,
        password=DEMO_PASSWORD,
        access_code=DEMO_USER_ID,
        platform_id="50000000001",
        slave_host="127.0.0.1",
        slave_port=_free_port(),
        client_id=f"{settings.mqtt.client_id}-jt809-demo",
        stats_interval_s=60,
    )
    return settings.model_copy(update={"jt809": jt})


async def serve(settings: Settings, ready: asyncio.Event | None = None) -> None:
    """Run simulator and service until cancelled; ``ready`` once the service subscribed."""
    sim = SuperiorSimulator(
        build_codec(Jt809Settings(access_code=DEMO_USER_ID)),
        user_id=DEMO_USER_ID,
        password=DEMO_PASSWORD,
    )
    port = await sim.start("127.0.0.1", 0)
    service = asyncio.create_task(serve_service(demo_settings(settings, port), ready))

    async def queries() -> None:
        await asyncio.sleep(FIRST_QUERY_S)
        while True:
            with contextlib.suppress(ConnectionError):
                info_id = await sim.send_query(QUESTION, answer_time_min=10)
                log.info("jt809-sim: sent 查岗 0x9301 info id %s (answer it on the map page)",
                         info_id)  # fmt: skip
            await asyncio.sleep(QUERY_EVERY_S)

    async def report() -> None:
        while True:
            await asyncio.sleep(60)
            log.info("jt809-sim: %s", sim.summary())

    helpers = [asyncio.create_task(queries()), asyncio.create_task(report())]
    try:
        await service
    finally:
        for task in [*helpers, service]:
            task.cancel()
        for task in helpers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await sim.stop()
