"""Per-driver fatigue through the whole chain (issue 12 item 7): simulated terminals (real TCP)
-> JT/T 808 gateway -> Mosquitto -> ingest -> PostgreSQL -> rules worker -> alarms, with IC cards
reported by 0x0702. Rule time is fix time, so hours of driving are sent in seconds (a fix every
5 min, as the fatigue step tests compress time with their fix times).

Coach 1: driver A drives 3 h 50 min, stops, driver B's card goes in, B drives on for 2 h: no
fatigue alarm (A's warning closes at the change). B had driven coach 2 for 3 h early that
morning, so after 5 h more on coach 1 (with a rest) his daily limit of 8 h is reached on coach 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
from ingest_helpers import drop_session, running_worker, wait_for
from pypdf import PdfReader
from web_helpers import make_world

from gps_monitor.config import Jt808Settings, Settings
from gps_monitor.db import registry
from gps_monitor.models import PlateColor, VehicleClass
from ingest.jt808 import messages as m
from ingest.jt808.auth import TerminalAuthenticator
from ingest.jt808.publisher import MqttPublisher
from ingest.jt808.server import Jt808Gateway
from ingest.jt808.sim import SimTerminal
from rules.worker import RulesWorker, rules_client_id
from web.reports import evidence, export, pdf

A = ("500101198001011234", "张三")
B = ("500101198502022345", "李四")
PHONES = {"13900000011": "渝A80011", "13900000012": "渝A80012"}
DEG_LON_PER_5_MIN = 5.0 / 96.9  # 5 km at 60 km/h, at 29.5 N


@dataclass
class Chain:
    port: int
    vehicles: dict[str, int]


@contextlib.asynccontextmanager
async def chain(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Chain]:
    settings = settings.model_copy(
        update={"jt808": Jt808Settings(client_id=f"{settings.mqtt.client_id}-gw")}
    )
    world = await make_world(pool, settings)
    vehicles = {}
    for phone, plate in PHONES.items():
        vehicle = await registry.ensure_vehicle(
            pool, company_id=world.company_a, plate_number=plate, terminal_id=phone,
            plate_color=PlateColor.YELLOW, vehicle_class=VehicleClass.COACH,
        )  # fmt: skip
        vehicles[phone] = vehicle.id
    authenticator = TerminalAuthenticator(pool, policy="registry", check_plate=True)
    async with running_worker(settings), MqttPublisher(settings, connect_timeout_s=5) as pub:
        gateway = Jt808Gateway(settings, authenticator, pub)
        server = await gateway.start("127.0.0.1", 0)
        worker = RulesWorker(settings)
        task = asyncio.create_task(worker.run())
        try:
            await asyncio.wait_for(worker.ready.wait(), 10)
            yield Chain(server.sockets[0].getsockname()[1], vehicles)
        finally:
            server.close()
            await gateway.close_connections()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await drop_session(settings, rules_client_id(settings))


class Coach:
    """A simulated terminal driving east along 29.5 N, one fix every 5 min (local fix times)."""

    def __init__(self, terminal: SimTerminal, start_local: datetime) -> None:
        self.terminal = terminal
        self.t = start_local
        self.lon = 106.0

    async def fix(self, speed_kmh: float) -> None:
        report = m.LocationReport(
            alarm_flags=0,
            status_flags=m.STATUS_ACC_ON | m.STATUS_POSITIONED,
            latitude_e6=29_500_000,
            longitude_e6=round(self.lon * 1e6),
            altitude_m=300,
            speed_dkmh=round(speed_kmh * 10),
            heading_deg=90,
            bcd_time=self.t.strftime("%y%m%d%H%M%S"),
        )
        assert await self.terminal.send_location(report) == m.RESULT_OK

    async def drive(self, minutes: int) -> None:
        for _ in range(minutes // 5):
            self.t += timedelta(minutes=5)
            self.lon += DEG_LON_PER_5_MIN
            await self.fix(60)

    async def stand(self, minutes: int) -> None:
        for _ in range(minutes // 5):
            self.t += timedelta(minutes=5)
            await self.fix(0)


async def coach(c: Chain, phone: str, start_local: datetime) -> Coach:
    terminal = SimTerminal(phone, reply_timeout_s=10)
    await terminal.connect("127.0.0.1", c.port)
    await terminal.register(PHONES[phone], int(PlateColor.YELLOW))
    assert await terminal.authenticate() == m.RESULT_OK
    return Coach(terminal, start_local)


async def evaluated_until(pool: asyncpg.Pool, vehicle_id: int, local: datetime) -> None:
    utc = local - timedelta(hours=8)

    async def probe() -> object:
        return await pool.fetchval(
            "SELECT last_fix_time FROM rule_state WHERE vehicle_id = $1", vehicle_id
        )

    found = await wait_for(
        probe, lambda t: t is not None and t.replace(tzinfo=None) >= utc, timeout_s=60
    )
    assert found is not None


async def test_relay_driver_gets_a_fresh_count_and_the_daily_limit_spans_both_coaches(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    day = (datetime.now() - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    async with chain(settings, pool) as c:
        one_id, two_id = c.vehicles["13900000011"], c.vehicles["13900000012"]
        # coach 2, early: B drives 05:10-08:10 (1 h of it at night, 2 h allowed), pulls his card
        two = await coach(c, "13900000012", day + timedelta(hours=5, minutes=10))
        assert await two.terminal.insert_card(*B, two.t) == m.RESULT_OK
        await two.fix(0)
        await two.drive(180)
        await two.stand(10)
        assert await two.terminal.remove_card(two.t) == m.RESULT_OK
        await evaluated_until(pool, two_id, two.t)

        # coach 1: A drives 07:00-10:50, stops; B's card goes in at 10:56; B drives 2 h
        one = await coach(c, "13900000011", day + timedelta(hours=7))
        assert await one.terminal.insert_card(*A, one.t) == m.RESULT_OK
        await one.fix(0)
        await one.drive(230)
        await one.stand(5)
        assert await one.terminal.insert_card(*B, one.t + timedelta(minutes=1)) == m.RESULT_OK
        await one.stand(5)
        await one.drive(120)
        await evaluated_until(pool, one_id, one.t)
        alarms = await pool.fetch(
            "SELECT alarm_type, details, ended_at FROM alarms WHERE vehicle_id = $1 "
            "ORDER BY started_at",
            one_id,
        )
        assert [a["alarm_type"] for a in alarms] == ["fatigue_warning"]
        (warning,) = alarms
        assert warning["details"]["driver_certificate_no"] == A[0]
        assert warning["details"]["reason"] == "driver change"
        assert warning["ended_at"] is not None

        # B drives on 1 h, rests 30 min, drives 2 h 10 min: 3 h + 5 h 10 min > 8 h
        await one.drive(60)
        await one.stand(30)
        await one.drive(130)
        await evaluated_until(pool, one_id, one.t)
        daily = await pool.fetchrow(
            "SELECT started_at, details FROM alarms WHERE alarm_type = 'daily_driving_limit'"
        )
        assert daily is not None
        # 8 h reached at 16:30 local: 3 h on coach 2 + 5 h on coach 1 (11:00-14:00, 14:30-16:30)
        started_utc = daily["started_at"].replace(tzinfo=None)
        assert started_utc == day + timedelta(hours=16 - 8, minutes=30)
        assert daily["details"]["driver_certificate_no"] == B[0]
        shares = daily["details"]["driving_s_by_vehicle"]
        assert shares[str(two_id)] == 3 * 3600.0 and shares[str(one_id)] >= 5 * 3600.0
        fatigue = await pool.fetchval(
            "SELECT count(*) FROM alarms WHERE alarm_type = 'fatigue_driving'"
        )
        assert fatigue == 0
        # positions stored with the driver whose card was in
        names = await pool.fetch(
            "SELECT DISTINCT extras->'driver'->>'name' AS name FROM positions "
            "WHERE vehicle_id = $1",
            one_id,
        )
        assert {r["name"] for r in names} == {A[1], B[1]}
        await one.terminal.close()
        await two.terminal.close()

    # the evidence report names the driver of each alarm and his certificate number
    daily_id = await pool.fetchval("SELECT id FROM alarms WHERE alarm_type = 'daily_driving_limit'")
    warning_id = await pool.fetchval("SELECT id FROM alarms WHERE alarm_type = 'fatigue_warning'")
    for alarm_id, (certificate, name) in ((daily_id, B), (warning_id, A)):
        report = await evidence.build_for_alarm(pool, alarm_id, settings.reports, generated_by="t")
        data = pdf.render_pdf(report, settings.reports)
        text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(data)).pages)
        compact = text.replace(" ", "")
        assert f"{name};从业资格证号(certificate){certificate}" in compact
        assert export.report_dict(report)["drivers"][0]["certificate_no"] == certificate
