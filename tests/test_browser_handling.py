"""Reminding the driver from the map page, in real headless Chromium: an SOS fix from the
``jt808-sim`` process goes gateway -> ingest -> rules -> the operator's page, where it pops up;
the operator handles it from the pop-up card with 提醒驾驶员 in the handling dialog; the
command dispatcher and the gateway take the text to jt808-sim, which prints it and answers
0x0001; the alarm shows 已提醒 with the terminal's confirmation time, and the evidence PDF says
so. Screenshots in test-artifacts/."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from ingest_helpers import drop_session, running_worker, worker_env
from test_browser_map import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, login
from web_helpers import PASSWORD, served_app

from gps_monitor.config import CommandsSettings, Jt808Settings, Settings
from gps_monitor.db import users
from gps_monitor.db.registry import ensure_company, ensure_vehicle
from gps_monitor.models import PlateColor, VehicleClass
from ingest.commands import CommandDispatcher, commands_client_id
from ingest.jt808.auth import TerminalAuthenticator
from ingest.jt808.downlink import Downlink
from ingest.jt808.publisher import MqttPublisher
from ingest.jt808.server import Jt808Gateway
from rules.worker import RulesWorker, rules_client_id

pytestmark = pytest.mark.browser

PHONE = "13900000077"
TEXT = "平台已收到您的紧急报警，请保持通讯畅通"


@contextlib.asynccontextmanager
async def whole_chain(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[int]:
    """Gateway with downlink, ingest worker, command dispatcher and rules worker, in process on
    the test's broker and database; yields the gateway's port."""
    authenticator = TerminalAuthenticator(pool, policy="registry", check_plate=True)
    async with running_worker(settings), MqttPublisher(settings, connect_timeout_s=5) as pub:
        downlink = Downlink(settings, pub)
        gateway = Jt808Gateway(settings, authenticator, pub, downlink)
        server = await gateway.start("127.0.0.1", 0)
        dispatcher = CommandDispatcher(settings)
        rules = RulesWorker(settings)
        tasks = [
            asyncio.create_task(downlink.run()),
            asyncio.create_task(dispatcher.run()),
            asyncio.create_task(rules.run()),
        ]
        try:
            for ready in (downlink.ready, dispatcher.ready, rules.ready):
                await asyncio.wait_for(ready.wait(), 10)
            yield server.sockets[0].getsockname()[1]
        finally:
            server.close()
            await gateway.close_connections()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await drop_session(settings, rules_client_id(settings))
            await drop_session(settings, commands_client_id(settings))


@pytest.fixture
def chromium() -> str:
    """Debian's chromium; skips when absent (as in test_browser_map)."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium not installed (bash scripts/install-system.sh)")
    ARTIFACTS.mkdir(exist_ok=True)
    return CHROMIUM


def start_sim(settings: Settings, track: Path, port: int) -> subprocess.Popen[str]:
    """The ``jt808-sim`` process: sends the track, then stays 60 s answering texts."""
    return subprocess.Popen(
        [sys.executable, "-m", "gps_monitor.cli", "jt808-sim", str(track), "--format", "jsonl",
         "--port", str(port), "--linger-s", "60"],
        env=worker_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip


def sos_track(path: Path) -> None:
    """Four fixes 10 s apart ending now; the last two carry the SOS bit (alarm flag bit 0)."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=40)
    lines = []
    for i in range(4):
        fix = {
            "terminal_id": PHONE,
            "fix_time": (start + timedelta(seconds=10 * i)).isoformat(),
            "latitude": 29.5630 + 0.0002 * i,
            "longitude": 106.5515,
            "speed_kmh": 30,
            "alarm_flags": 1 if i >= 2 else 0,
        }
        lines.append(json.dumps(fix))
    path.write_text("\n".join(lines) + "\n")


async def test_operator_reminds_the_driver_of_an_sos_and_sees_the_terminal_confirm(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path, chromium: str
) -> None:
    from playwright.async_api import async_playwright
    from pypdf import PdfReader

    settings = settings.model_copy(
        update={
            "jt808": Jt808Settings(client_id=f"{settings.mqtt.client_id}-gw"),
            "commands": CommandsSettings(scan_interval_s=0.5),
        }
    )
    company = await ensure_company(pool, "渝运物流")
    vehicle = await ensure_vehicle(
        pool,
        company_id=company.id,
        plate_number="渝A77777",
        terminal_id=PHONE,
        vehicle_class=VehicleClass.HAZMAT,
        plate_color=PlateColor.YELLOW,
    )
    operator = await users.create_user(pool, "op_a", PASSWORD, "operator", company.id)
    track = tmp_path / "sos.jsonl"
    sos_track(track)

    async with whole_chain(settings, pool) as port, served_app(settings) as (base, _):
        sim: subprocess.Popen[str] | None = None
        try:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                try:
                    page = await browser.new_page(viewport={"width": 1400, "height": 850})
                    errors: list[str] = []
                    page.on("pageerror", lambda e: errors.append(str(e)))
                    await login(page, base, "op_a")
                    sim = start_sim(settings, track, port)  # the SOS comes while the page is open
                    # the SOS pops up (level 1); the operator handles it from the pop-up card
                    card = page.locator(".alarm-pop", has_text="渝A77777").first
                    await card.wait_for(timeout=30000)
                    alarm_id = int(await card.get_attribute("data-alarm-id") or 0)
                    await card.locator(".pop-handle").click()
                    dialog = page.locator("#handle-dialog")
                    await dialog.wait_for()
                    # the SOS template is offered, and stays editable
                    assert await dialog.locator("textarea[name=remind_text]").input_value() == TEXT
                    await dialog.locator("textarea[name=note]").fill("已提醒驾驶员，电话确认安全")
                    await page.screenshot(path=str(ARTIFACTS / "handle_dialog.png"))
                    await dialog.locator(".btn-submit").click()
                    await card.wait_for(state="detached", timeout=10000)  # handled: card gone
                    reminded = page.locator(
                        f'.alarm-item[data-alarm-id="{alarm_id}"] '
                        '.remind-state[data-state="acknowledged"]'
                    )
                    await reminded.wait_for(timeout=30000)
                    shown = await reminded.inner_text()
                    await page.screenshot(path=str(ARTIFACTS / "handle_reminded.png"))
                    assert errors == [], errors
                finally:
                    await browser.close()
        finally:
            output = ""
            if sim is not None:
                sim.terminate()
                output, _ = sim.communicate(timeout=20)
    assert f"jt808-sim: terminal {PHONE} text [display,tts]: {TEXT}" in output
    row = await pool.fetchrow(
        "SELECT a.status, a.handling_method, c.state, c.answered_at FROM alarms a "
        "JOIN commands c ON c.id = a.remind_command_id WHERE a.id = $1",
        alarm_id,
    )
    assert (row["status"], row["handling_method"], row["state"]) == (
        "handled", "remind_driver", "acknowledged",
    )  # fmt: skip
    confirmed_local = row["answered_at"].astimezone(ZoneInfo("Asia/Shanghai")).strftime("%H:%M:%S")
    assert "已提醒" in shown and confirmed_local in shown

    # the evidence PDF says whether and when the driver was reminded and the terminal confirmed
    from web_helpers import rest_client

    token, _ = await users.issue_token(pool, operator, settings.web.secret_key, 3600)
    async with rest_client(settings) as client:
        pdf = await client.get(
            "/api/reports/evidence",
            params={"alarm_id": alarm_id, "format": "pdf"},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert pdf.status_code == 200
    (ARTIFACTS / "handle_evidence.pdf").write_bytes(pdf.content)
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.content)).pages)
    flat = text.replace("\n", "").replace(" ", "")
    assert "提醒驾驶员" in flat and "终端已确认" in flat and TEXT in flat, text[:2000]
    assert vehicle.id


async def test_supervision_is_flagged_for_the_operator_overdue_stands_out_and_is_answered(
    settings: Settings, pool: asyncpg.Pool, chromium: str
) -> None:
    from playwright.async_api import async_playwright
    from web_helpers import store_alarm

    company = await ensure_company(pool, "渝运物流")
    vehicle = await ensure_vehicle(
        pool, company_id=company.id, plate_number="渝A55555", terminal_id="13900000055",
        vehicle_class=VehicleClass.COACH,
    )  # fmt: skip
    await users.create_user(pool, "op_a", PASSWORD, "operator", company.id)
    chief = await users.create_user(pool, "chief", PASSWORD, "bureau")
    alarm_id = await store_alarm(pool, vehicle.id, company.id)
    async with pool.acquire() as conn:
        from gps_monitor.db import supervisions

        order = await supervisions.issue(
            conn, company_id=company.id, alarm_id=alarm_id, note="限期整改超速问题",
            deadline=datetime.now(UTC) + timedelta(hours=1), issued_by=chief.id,
        )  # fmt: skip
        # a company-wide order already past its deadline
        late = await supervisions.issue(
            conn, company_id=company.id, alarm_id=None, note="报送月度安全台账",
            deadline=datetime.now(UTC) + timedelta(hours=1), issued_by=chief.id,
        )  # fmt: skip
        await conn.execute(
            "UPDATE supervisions SET issued_at = issued_at - interval '3 hours', "
            "deadline = deadline - interval '3 hours' WHERE id = $1",
            late["id"],
        )
    async with served_app(settings) as (base, _), async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 850})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            await login(page, base, "op_a")
            flag = page.locator(f'.alarm-item[data-alarm-id="{alarm_id}"] .supervision')
            await flag.wait_for(timeout=10000)
            assert "督办" in await flag.inner_text()
            overdue = page.locator(
                f'#supervision-list .sv-overdue[data-supervision-id="{late["id"]}"]'
            )
            await overdue.wait_for(timeout=10000)
            assert "已逾期" in await overdue.inner_text()
            await page.screenshot(path=str(ARTIFACTS / "supervision_operator.png"))
            await overdue.locator(".btn-sv-answer").click()
            dialog = page.locator("#sv-dialog")
            await dialog.locator("textarea[name=answer]").fill("台账已报送")
            await dialog.locator(".btn-submit").click()
            await overdue.wait_for(state="detached", timeout=10000)
            assert errors == [], errors
        finally:
            await browser.close()
    row = await pool.fetchrow(
        "SELECT answer, answered_at FROM supervisions WHERE id = $1", late["id"]
    )
    assert row["answer"] == "台账已报送"
    assert order["state"] == "open"
