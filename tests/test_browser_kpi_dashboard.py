"""The KPI dashboard in headless Chromium: the language switch turns the page English, the
default period is this month including today, a long company name is shown whole, and an open
fatigue episode counts; at 1366×768 and on a phone (390×844). Screenshots in
/tmp/console-enforce-dashboard-*.png."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from test_reports_support import BEIJING, insert_alarm
from web_helpers import PASSWORD, make_world, served_app, store_position, wait_for_js

from gps_monitor.config import Settings

CHROMIUM = "/usr/bin/chromium"
LONG_NAME = "重庆市渝运危险货物道路运输集团有限责任公司第二分公司"


@pytest.mark.browser
@pytest.mark.parametrize("viewport", [(1366, 768), (390, 844)], ids=["desktop", "phone"])
async def test_dashboard_in_english_month_to_date_full_names_and_open_fatigue(
    settings: Settings, pool: asyncpg.Pool, viewport: tuple[int, int]
) -> None:
    if not await asyncio.to_thread(Path(CHROMIUM).exists):
        pytest.skip(f"{CHROMIUM} not installed (scripts/install-system.sh)")
    from playwright.async_api import async_playwright

    world = await make_world(pool, settings)
    await pool.execute("UPDATE companies SET name = $2 WHERE id = $1", world.company_a, LONG_NAME)
    now = datetime.now(UTC)
    today = now.astimezone(BEIJING).date()
    midnight = datetime.combine(today, datetime.min.time(), BEIJING)
    started = max(now - timedelta(hours=1), midnight)
    for vehicle in world.vehicles_a + world.vehicles_b:
        await store_position(pool, vehicle, started, 29.56, 106.55)
        await store_position(pool, vehicle, now - timedelta(seconds=30), 29.57, 106.55)
    await insert_alarm(
        pool,
        vehicle_id=world.vehicles_a[0],
        company_id=world.company_a,
        alarm_type="fatigue_driving",
        started_at=started,
        ended_at=None,
        status="open",
        last_fix_time=started,
    )
    width, height = viewport
    async with served_app(settings) as (address, _), async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = await browser.new_page(viewport={"width": width, "height": height})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(f"http://{address}/dashboard")
            await page.wait_for_selector("#login-form", state="visible")
            await page.fill("#login-username", "bureau")
            await page.fill("#login-password", PASSWORD)
            await page.click("#login-form button")
            await page.wait_for_selector("#cards .card")
            # month to date, today included
            period = (await page.input_value("#from"), await page.input_value("#to"))
            assert period == (today.replace(day=1).isoformat(), today.isoformat())
            label = '#cards .card[data-kpi="online_rate"] .label'
            assert await page.text_content(label) == "上线率 %"
            await page.select_option("#lang", "en")
            english = f"document.querySelector('{label}').textContent === 'Online rate %'"
            await wait_for_js(page, english)
            assert await page.text_content("h1") == "KPI dashboard"
            assert await page.title() == "gps-monitor · KPI dashboard"
            assert "including today" in (await page.text_content("#period-note") or "")
            assert await page.text_content("#table thead th") == "Unit"
            assert await page.text_content("#table tbody tr td") == "County"
            fatigue = await page.text_content(
                '#cards .card[data-kpi="fatigue_hours_per_vehicle"] .value'
            )
            assert fatigue is not None and float(fatigue) > 0, fatigue
            # the long name whole, inside the page width, nothing cut off
            names = await page.eval_on_selector_all(
                "#ranking .rank-name",
                "els => els.map(e => [e.textContent, e.getBoundingClientRect().right,"
                " e.scrollWidth <= e.clientWidth])",
            )
            (long_row,) = [n for n in names if LONG_NAME in n[0]]
            assert long_row[0].endswith(LONG_NAME) and long_row[1] <= width and long_row[2]
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
            )
            assert overflow, "the page scrolls sideways"
            shot = f"/tmp/console-enforce-dashboard-en-{width}x{height}.png"
            await page.screenshot(path=shot, full_page=True)
            # and back: the language is kept for the next visit
            await page.reload()
            await page.wait_for_selector("#cards .card")
            assert await page.text_content(label) == "Online rate %"
            await page.select_option("#lang", "zh-CN")
            await wait_for_js(page, f"document.querySelector('{label}').textContent === '上线率 %'")
            await page.screenshot(
                path=f"/tmp/console-enforce-dashboard-zh-{width}x{height}.png", full_page=True
            )
            assert errors == []
        finally:
            await browser.close()


@pytest.mark.browser
async def test_an_operator_sees_his_company_total_not_a_county(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """Found in the console review: the operator's dashboard offered 全县 / County and labelled
    his own company's figures as the county's."""
    if not await asyncio.to_thread(Path(CHROMIUM).exists):
        pytest.skip(f"{CHROMIUM} not installed (scripts/install-system.sh)")
    from playwright.async_api import async_playwright

    world = await make_world(pool, settings)
    now = datetime.now(UTC)
    for vehicle in world.vehicles_a + world.vehicles_b:
        await store_position(pool, vehicle, now - timedelta(minutes=5), 29.56, 106.55)
    async with served_app(settings) as (address, _), async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = await browser.new_page(viewport={"width": 1366, "height": 768})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(f"http://{address}/dashboard")
            await page.fill("#login-username", "op_a")
            await page.fill("#login-password", PASSWORD)
            await page.click("#login-form button")
            await page.wait_for_selector("#table tbody tr")
            rows = await page.eval_on_selector_all(
                "#table tbody tr", "rows => rows.map(r => r.cells[0].textContent)"
            )
            assert rows == ["合计", "甲运输公司"]
            options = await page.eval_on_selector_all(
                "#company option", "os => os.map(o => o.textContent)"
            )
            assert options == ["合计", "甲运输公司"]
            await page.select_option("#lang", "en")
            await wait_for_js(
                page, "document.querySelector('#table tbody tr td').textContent === 'Total'"
            )
            assert await page.text_content("#company option") == "Total"
            await page.screenshot(path="/tmp/console-enforce-dashboard-operator.png")
            assert errors == []
        finally:
            await browser.close()
