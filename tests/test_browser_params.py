"""Terminal parameters in the map page, in real headless Chromium: the operator opens his
vehicle's card, 终端参数, queries the parameters (0x8104 -> dispatcher -> gateway -> simulated
terminal -> 0x0104 -> cmd_result with the list), is refused an out-of-range overspeed limit with
the server's reason, sets 80 km/h (0x8103 -> 0x0001), and the terminal's answer and the new value
read back appear in the dialog; then 临时跟踪 from the alarm's handling dialog (0x8202, 5 s for
10 min) is confirmed by the terminal. Screenshot in test-artifacts/."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from test_browser_map import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, login
from test_commands import command_loop
from test_jt808_params_loop import lingering
from web_helpers import served_app, store_alarm, store_position, wait_for_js

from gps_monitor.config import Settings
from ingest.jt808.sim_commands import param_value

pytestmark = pytest.mark.browser

VALUE_CELL = "document.querySelector('#params-dialog tr[data-param-id=\"0x0055\"] .param-value')"


@pytest.fixture
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium not installed (bash scripts/install-system.sh)")
    ARTIFACTS.mkdir(exist_ok=True)
    return CHROMIUM


async def test_operator_queries_parameters_and_sets_the_overspeed_limit(
    settings: Settings, pool: asyncpg.Pool, chromium: str
) -> None:
    from playwright.async_api import async_playwright

    async with command_loop(settings, pool) as loop, lingering(loop) as terminal:
        await store_position(pool, loop.vehicle_a, datetime.now(UTC), 29.563, 106.551)
        alarm_id = await store_alarm(pool, loop.vehicle_a, loop.world.company_a, level=1)
        async with served_app(loop.settings) as (base, _), async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1400, "height": 900})
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                await login(page, base, "op_a")
                await page.click(f'#vehicle-list li[data-vehicle-id="{loop.vehicle_a}"]')
                await page.locator(".btn-params").click()
                dialog = page.locator("#params-dialog")
                await dialog.wait_for()
                assert "尚未查询" in await dialog.locator(".params-answered").inner_text()

                await dialog.locator(".btn-query").click()
                limit = dialog.locator('tr[data-param-id="0x0055"] .param-value')
                await wait_for_js(page, f"{VALUE_CELL} && {VALUE_CELL}.textContent === '100'")
                assert "最高速度" in await dialog.locator('tr[data-param-id="0x0055"]').inner_text()
                # the vendor parameter the platform does not know is shown raw
                vendor = dialog.locator('tr[data-param-id="0xf000"] .param-value')
                assert await vendor.inner_text() == "0102030405"

                # out of range: the server's reason, nothing sent
                await dialog.locator('input[name="overspeed_limit_kmh"]').fill("500")
                await dialog.locator(".btn-set").click()
                error = dialog.locator(".error")
                await wait_for_js(
                    page,
                    "document.querySelector('#params-dialog .error').textContent"
                    ".includes('expected 1 to 200, got 500')",
                )
                assert "0x0055" in await error.inner_text()

                await dialog.locator('input[name="overspeed_limit_kmh"]').fill("80")
                await dialog.locator(".btn-set").click()
                await wait_for_js(page, f"{VALUE_CELL} && {VALUE_CELL}.textContent === '80'")
                history = await dialog.locator(".params-history").inner_text()
                assert "设置参数 · 终端已确认 · overspeed_limit_kmh=80" in history
                assert await limit.inner_text() == "80"
                await page.screenshot(path=str(ARTIFACTS / "terminal_params.png"))
                await dialog.locator(".btn-close").click()

                # 临时跟踪 from the alarm's handling dialog: every 5 s for 10 min (0x8202)
                await page.locator(f'.btn-handle[data-alarm-id="{alarm_id}"]').first.click()
                await page.locator("#handle-dialog .btn-track-temp").click()
                await wait_for_js(
                    page,
                    "document.querySelector('#handle-dialog .track-state')"
                    ".dataset.state === 'acknowledged'",
                )
                shown = await page.locator("#handle-dialog .track-state").inner_text()
                assert shown == "临时跟踪指令: 终端已确认"
                assert errors == [], errors
            finally:
                await browser.close()
        assert param_value(terminal, "overspeed_limit_kmh") == 80
    rows = await pool.fetch("SELECT name, body, alarm_id FROM commands ORDER BY id")
    assert [r["name"] for r in rows] == ["query_params", "set_params", "query_params", "track"]
    assert (rows[3]["body"], rows[3]["alarm_id"]) == (
        {"interval_s": 5, "duration_s": 600},
        alarm_id,
    )
    answered = await pool.fetchval("SELECT details FROM audit_log WHERE action = 'command.answer'")
    assert answered["request"] == {"params": {"overspeed_limit_kmh": 80}}
