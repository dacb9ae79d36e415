"""Alerting in the map page (issue 9, part 2) in real headless Chromium: a terminal's SOS goes
through the real chain (MQTT -> ingest -> rules -> alarms/v1 -> web -> websocket) and arrives in
two operators' screens as a level-1 alarm: pop-up card, title badge, sound (repeated until
acknowledged), desktop notification; acknowledging from the pop-up on screen A clears the badge
and the card on screen B. The worklist shows it first with its level.

The page's AudioContext and Notification are instrumented (add_init_script) to record that a
sound was started and a notification shown: headless Chromium has no speaker and no desktop.
Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from test_browser_map import ARTIFACTS, CHROMIUM_ARGS, chain, chromium, login
from web_helpers import PASSWORD, offline_tile_error, store_alarm

from gps_monitor import mqtt, topics
from gps_monitor.config import Settings
from gps_monitor.db import users
from gps_monitor.db.registry import ensure_company, ensure_vehicle
from gps_monitor.models import VehicleClass

pytestmark = pytest.mark.browser
__all__ = ["chromium"]  # the fixture, imported for this module's tests

# records every oscillator started and every notification shown, before the page's scripts run
INSTRUMENT = """
window.__oscillators = [];
window.__notifications = [];
(() => {
  const create = AudioContext.prototype.createOscillator;
  AudioContext.prototype.createOscillator = function () {
    const osc = create.call(this);
    const start = osc.start.bind(osc);
    osc.start = (when) => {
      window.__oscillators.push({ frequency: osc.frequency.value, type: osc.type, at: Date.now() });
      return start(when);
    };
    return osc;
  };
  class RecordingNotification {
    constructor(title, options) {
      window.__notifications.push({ title, body: (options || {}).body });
    }
    static get permission() { return "granted"; }
    static requestPermission() { return Promise.resolve("granted"); }
    close() {}
  }
  window.Notification = RecordingNotification;
})();
"""
TITLE = "车辆动态监控"


async def _publish_sos(settings: Settings, terminal_id: str, flags: int) -> None:
    """One position from the terminal with JT/T 808 alarm bit 0 (SOS) set or cleared."""
    body = {
        "fix_time": datetime.now(UTC).isoformat(),
        "latitude": 29.5630,
        "longitude": 106.5510,
        "speed_kmh": 35.0,
        "heading_deg": 90,
        "acc_on": True,
        "alarm_flags": flags,
    }
    async with mqtt.build_client(settings.mqtt, client_id=f"{settings.mqtt.client_id}-t") as c:
        topic = topics.position_topic(terminal_id, settings.mqtt.topic_prefix)
        await c.publish(topic, json.dumps(body), qos=1)


async def test_level_1_alarm_pops_up_sounds_badges_and_acknowledging_clears_other_screens(
    settings: Settings, pool: asyncpg.Pool, chromium: str
) -> None:
    from playwright.async_api import async_playwright

    web = settings.web.model_copy(update={"alert_repeat_s": 5.0})
    settings = settings.model_copy(update={"web": web})
    company = await ensure_company(pool, "渝运物流")
    other = await ensure_company(pool, "川危化运输")
    vehicle = await ensure_vehicle(
        pool,
        company_id=company.id,
        plate_number="渝A10001",
        terminal_id="013900000011",
        vehicle_class=VehicleClass.HAZMAT,
    )
    other_vehicle = await ensure_vehicle(
        pool,
        company_id=other.id,
        plate_number="川B20001",
        terminal_id="013900000012",
        vehicle_class=VehicleClass.HAZMAT,
    )
    # older alarms already in the list: a minor one of ours, a critical one of another company
    now = datetime.now(UTC)
    await store_alarm(pool, vehicle.id, company.id, "geofence_enter", now - timedelta(hours=1))
    await store_alarm(
        pool, other_vehicle.id, other.id, "offline_displacement", now - timedelta(hours=2), level=1
    )
    await users.create_user(pool, "op_a", PASSWORD, "operator", company.id)
    await users.create_user(pool, "op_a2", PASSWORD, "operator", company.id)

    async with chain(settings), async_playwright() as pw:
        from web_helpers import served_app

        async with served_app(settings) as (base, _):
            browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                pages = []
                errors: list[str] = []
                for username in ("op_a", "op_a2"):
                    context = await browser.new_context(viewport={"width": 1400, "height": 850})
                    await context.add_init_script(INSTRUMENT)
                    page = await context.new_page()
                    page.on(
                        "console",
                        lambda m: (
                            errors.append(m.text)
                            if m.type == "error" and not offline_tile_error(m)
                            else None
                        ),
                    )
                    page.on("pageerror", lambda e: errors.append(str(e)))
                    await login(page, base, username)
                    pages.append(page)
                screen_a, screen_b = pages
                # the list: only our company's alarm; no level-1 open: no badge, no sound
                for page in pages:
                    await page.wait_for_selector(".alarm-item")
                    assert await page.title() == TITLE
                    assert await page.locator(".alarm-item").count() == 1
                assert await screen_a.evaluate("window.__oscillators.length") == 0

                await _publish_sos(settings, "013900000011", 1)
                row = None
                deadline = time.monotonic() + 20
                while row is None and time.monotonic() < deadline:
                    row = await pool.fetchrow(
                        "SELECT id, level, status FROM alarms WHERE alarm_type = 'device_alarm'"
                    )
                    await asyncio.sleep(0.05)
                assert row is not None and row["level"] == 1
                alarm_id = row["id"]
                # within 2 s of the alarm being stored: the card on both screens
                card = f'.alarm-pop[data-alarm-id="{alarm_id}"]'
                for page in pages:
                    await page.wait_for_selector(card, timeout=2000)
                text = await screen_a.inner_text(card)
                for expected in (
                    "紧急",
                    "紧急报警(SOS)",
                    "渝A10001",
                    "渝运物流",
                    "确认",
                    "处理",
                    "查看轨迹",
                ):
                    assert expected in text, (expected, text)
                # title badge, sound started (level 1: square-wave siren), notification
                for page in pages:
                    await page.wait_for_function(
                        "(t) => document.title === t", arg=f"(1) {TITLE}", timeout=5000
                    )
                oscillators = await screen_a.evaluate("window.__oscillators")
                assert oscillators and {o["type"] for o in oscillators} == {"square"}
                assert await screen_a.evaluate("GpsmAlerts.state.sounds.map(s => s.level)") == [1]
                notes = await screen_a.evaluate("window.__notifications")
                assert len(notes) == 1 and "渝A10001" in notes[0]["title"]
                assert "紧急" in notes[0]["title"]
                # the worklist: the SOS first, level tag 紧急
                first = screen_a.locator(".alarm-item").first
                await screen_a.wait_for_selector(f'.alarm-item[data-alarm-id="{alarm_id}"]')
                assert await first.get_attribute("data-alarm-id") == str(alarm_id)
                assert await first.get_attribute("data-level") == "1"
                await screen_a.screenshot(path=str(ARTIFACTS / "alerts_popup_screen_a.png"))

                # a level-1 alarm repeats its sound (alert_repeat_s = 5) until acknowledged
                await screen_b.wait_for_function(
                    "() => GpsmAlerts.state.sounds.filter((s) => s.level === 1).length >= 2",
                    timeout=9000,
                )
                # screen B mutes: no sound there, remembered across a reload
                await screen_b.click("#mute")
                assert await screen_b.evaluate("localStorage.getItem('gpsm_mute')") == "1"

                await screen_a.click(f"{card} .pop-ack")
                await screen_a.wait_for_selector(card, state="detached", timeout=5000)
                # screen B: badge cleared and card gone through the websocket, without a reload
                await screen_b.wait_for_function(
                    "(t) => document.title === t", arg=TITLE, timeout=5000
                )
                await screen_b.wait_for_selector(card, state="detached", timeout=5000)
                await screen_b.wait_for_selector(
                    f'.alarm-item[data-alarm-id="{alarm_id}"][data-status="acknowledged"]'
                )
                stored = await pool.fetchrow("SELECT status FROM alarms WHERE id = $1", alarm_id)
                assert stored["status"] == "acknowledged"
                await screen_b.screenshot(path=str(ARTIFACTS / "alerts_cleared_screen_b.png"))
                # no more repeats once acknowledged
                sounds = await screen_a.evaluate("GpsmAlerts.state.sounds.length")
                await screen_a.wait_for_timeout(6000)
                assert await screen_a.evaluate("GpsmAlerts.state.sounds.length") == sounds
                # a reload shows the server's state: no badge; mute remembered
                await screen_b.reload()
                await screen_b.wait_for_selector(f'.alarm-item[data-alarm-id="{alarm_id}"]')
                assert await screen_b.title() == TITLE
                assert "muted" in (await screen_b.get_attribute("#mute", "class") or "")
                # the other company's critical alarm never reached these screens
                assert "川B20001" not in await screen_a.inner_text("body")
                assert errors == [], errors
            finally:
                await browser.close()


async def test_worklist_filters_counts_and_pages_in_the_page(
    settings: Settings, pool: asyncpg.Pool, chromium: str
) -> None:
    """The bureau's panel: counts per status and level in the header, filters by level and
    plate, paging; rows with level, key figure, local start time and coordinates."""
    from playwright.async_api import async_playwright
    from web_helpers import served_app, store_position

    web = settings.web.model_copy(update={"alarm_page_size": 10})
    settings = settings.model_copy(update={"web": web})
    company = await ensure_company(pool, "渝运物流")
    vehicles = []
    for i in range(3):
        vehicles.append(
            await ensure_vehicle(
                pool,
                company_id=company.id,
                plate_number=f"渝A2000{i}",
                terminal_id=f"01390000002{i}",
                vehicle_class=VehicleClass.COACH,
            )
        )
    t0 = datetime(2026, 3, 2, 6, 30, tzinfo=UTC)  # 14:30 in Asia/Shanghai
    await store_position(pool, vehicles[0].id, t0, 29.56123, 106.55123)
    details = {"limit_kmh": 100, "max_speed_kmh": 118.4, "duration_s": 95}
    for i in range(24):
        await store_alarm(
            pool, vehicles[i % 3].id, company.id, "overspeed", t0 + timedelta(minutes=i),
            details=details, level=2,
        )  # fmt: skip
    await store_alarm(
        pool, vehicles[1].id, company.id, "offline", t0, details={"offline_s": 900}, level=4
    )
    await users.create_user(pool, "chief", PASSWORD, "bureau", None)
    async with served_app(settings) as (base, _), async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 850})
            await login(page, base, "chief")
            await page.wait_for_selector(".alarm-item")
            assert await page.locator(".alarm-item").count() == 10
            counts = await page.inner_text("#alarm-counts")
            assert "待处理 25" in counts and "严重 24" in counts and "提示 1" in counts, counts
            assert "1 / 3" in await page.inner_text("#af-page")
            row = page.locator(".alarm-item").last
            text = await row.inner_text()
            assert "严重" in text and "超速" in text and "最高 118.4 / 限 100 km/h" in text, text
            await page.click("#af-next")
            await page.click("#af-next")
            await page.wait_for_function(
                "() => document.querySelector('#af-page').textContent.startsWith('3 / 3')"
            )
            assert await page.locator(".alarm-item").count() == 5
            # the oldest overspeed (vehicle 0) started where its fix was, at 14:30 local;
            # the info-level offline alarm comes last
            oldest = page.locator(".alarm-item").nth(3)
            assert "渝A20000" in await oldest.inner_text()
            assert "29.56123, 106.55123" in await oldest.inner_text()
            assert "2026/03/02 14:30:00" in await oldest.inner_text()
            assert await page.locator(".alarm-item").last.get_attribute("data-level") == "4"
            assert "离线 15分" in await page.inner_text("#alarm-list")
            await page.screenshot(path=str(ARTIFACTS / "alerts_worklist_bureau.png"))
            # filter by level: the info one only; by plate: a third of the overspeeds
            await page.select_option("#af-level", "4")
            await page.wait_for_function(
                "() => document.querySelectorAll('.alarm-item').length === 1"
            )
            assert await page.get_attribute(".alarm-item", "data-level") == "4"
            await page.select_option("#af-level", "")
            await page.fill("#af-plate", "a20002")
            await page.wait_for_function(
                "() => document.querySelector('#alarm-total').textContent === '(8)'"
            )
            assert set(await page.locator(".alarm-item").all_inner_texts()) and all(
                "渝A20002" in t for t in await page.locator(".alarm-item").all_inner_texts()
            )
        finally:
            await browser.close()


async def test_key_figure_shows_seconds_for_an_episode_under_a_minute(
    settings: Settings, pool: asyncpg.Pool, chromium: str
) -> None:
    """An overspeed still open after 45 s reads "45秒" in the worklist, not "0分"/"1分"."""
    from playwright.async_api import async_playwright
    from web_helpers import served_app

    company = await ensure_company(pool, "渝运物流")
    vehicle = await ensure_vehicle(
        pool, company_id=company.id, plate_number="渝A30001", terminal_id="013900000301"
    )
    now = datetime.now(UTC)
    for duration_s in (20, 45):
        await store_alarm(
            pool, vehicle.id, company.id, "overspeed", now - timedelta(seconds=duration_s),
            details={"limit_kmh": 100, "max_speed_kmh": 108.0, "duration_s": duration_s},
            level=2,
        )  # fmt: skip
    await users.create_user(pool, "chief", PASSWORD, "bureau", None)
    async with served_app(settings) as (base, _), async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await login(page, base, "chief")
            await page.wait_for_selector(".alarm-item")
            rows = await page.locator(".alarm-item").all_inner_texts()
            assert len(rows) == 2, rows
            assert any("限 100 km/h · 20秒" in row for row in rows), rows
            assert any("限 100 km/h · 45秒" in row for row in rows), rows
            assert not any("0分" in row for row in rows), rows
            # the same formatting at the edges: rounding to the second, then minutes, hours
            figures = await page.evaluate(
                "[29.4, 59.4, 59.6, 90, 3725].map((s) => GpsmAlerts.keyFigure("
                "{alarm_type: 'offline', details: {offline_s: s}}))"
            )
            assert figures == ["离线 29秒", "离线 59秒", "离线 1分", "离线 2分", "离线 1小时02分"]
        finally:
            await browser.close()


async def test_active_safety_key_figure_speaks_the_page_language(
    settings: Settings, pool: asyncpg.Pool, chromium: str
) -> None:
    """The worklist line of an active-safety alarm: the standard's Chinese words in Chinese, our
    name spelled out and "level 2" in English (not 前向碰撞报警 · 二级 in an English page)."""
    from playwright.async_api import async_playwright
    from web_helpers import served_app

    company = await ensure_company(pool, "渝运物流")
    vehicle = await ensure_vehicle(
        pool, company_id=company.id, plate_number="渝A30002", terminal_id="013900000302"
    )
    details = {"source": "adas", "name": "adas_forward_collision", "type_text": "前向碰撞报警",
               "jsatl_level": 2}  # fmt: skip
    await store_alarm(
        pool, vehicle.id, company.id, "active_safety", datetime.now(UTC), details=details, level=2
    )
    await users.create_user(pool, "chief", PASSWORD, "bureau", None)
    async with served_app(settings) as (base, _), async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await login(page, base, "chief")
            await page.wait_for_selector(".alarm-item")
            [row] = await page.locator(".alarm-item").all_inner_texts()
            assert "前向碰撞报警 · 二级" in row, row
            await page.evaluate("GpsmI18n.setLang('en')")
            figure = await page.evaluate(
                "GpsmAlerts.keyFigure({alarm_type: 'active_safety', details: "
                + json.dumps(details)
                + "})"
            )
            assert figure == "ADAS forward collision · level 2"
            # an alarm from a report without a fix (item 2) says where it is placed
            figure = await page.evaluate(
                "GpsmAlerts.keyFigure({alarm_type: 'device_alarm', details: {bit: 0, "
                "without_fix: {quality: 'invalid', position: {source: 'last_good_fix'}}}})"
            )
            assert figure == "alarm bit 0 · no valid fix (placed at the last good fix)"
        finally:
            await browser.close()
