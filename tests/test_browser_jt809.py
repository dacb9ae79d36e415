"""The bureau answers the superior platform's 查岗 from the map page, in real headless Chromium
(zh): jt809-sim sends 0x9301 over the real slave link, the duty panel shows it with a ticking
countdown, the answer typed there reaches the simulator as 0x1301 with the info id. The
enforcement officer, whom the API does not let answer, sees the questions read-only."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from ingest_helpers import wait_for
from test_browser_map import ARTIFACTS, CHROMIUM_ARGS, chromium, login
from test_jt809_duty import superior_and_service
from web_helpers import PASSWORD, served_app, wait_for_js

from gps_monitor.config import Settings
from gps_monitor.db import users

pytestmark = pytest.mark.browser
__all__ = ["chromium"]


@contextlib.asynccontextmanager
async def _duty_page(
    settings: Settings, pool: asyncpg.Pool, chromium: str, role: str
) -> AsyncIterator[tuple[Any, Any, list[str]]]:
    """A superior platform (jt809-sim) linked to the service, and the map page logged in as a
    user of ``role``: (simulator, page, the page's uncaught errors)."""
    from playwright.async_api import async_playwright

    await users.create_user(pool, role, PASSWORD, role, None)
    async with (
        superior_and_service(settings, pool) as (sim, _service, settings),
        served_app(settings) as (base, _),
        async_playwright() as pw,
    ):
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 850})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            await login(page, base, role)
            yield sim, page, errors
        finally:
            await browser.close()


async def _show_query(sim: Any, page: Any, question: str) -> tuple[int, Any]:
    """The simulator sends a 查岗 (10 min to answer); its item on the duty panel, once shown."""
    info_id = await sim.send_query(question, answer_time_min=10)
    await page.evaluate("() => window.GpsmJt809.reload()")
    item = page.locator(f".jt809-query[data-info-id='{info_id}']")
    await item.wait_for(timeout=15000)
    assert question in await item.inner_text()
    countdown = await item.locator(".jt809-countdown").inner_text()
    assert re.fullmatch(r"剩余 (09:[0-5]\d|10:00)", countdown), countdown
    return info_id, item


async def test_bureau_sees_the_query_count_down_and_answers_it_in_chinese(
    settings: Settings, pool: asyncpg.Pool, chromium: str
) -> None:
    async with _duty_page(settings, pool, chromium, "bureau") as (sim, page, errors):
        info_id, item = await _show_query(sim, page, "请报告今日值班人员姓名")
        panel = page.locator("#jt809-panel")
        assert "上级平台查岗" in await panel.inner_text()
        countdown = item.locator(".jt809-countdown")
        first = await countdown.inner_text()
        await asyncio.sleep(2.5)
        assert await countdown.inner_text() != first  # it ticks
        assert "主链路: up" in await panel.locator(".jt809-links").inner_text()
        await page.screenshot(path=str(ARTIFACTS / "jt809_query.png"))
        await item.locator("input[name=answer]").fill("值班员王五在岗")
        await item.locator("button[type=submit]").click()
        done = f".jt809-query[data-info-id='{info_id}'] .jt809-done"
        await wait_for_js(page, f'!!document.querySelector("{done}")')
        assert await item.locator(".jt809-countdown").inner_text() == "已应答"
        await wait_for(lambda: _value(len(sim.record.query_answers)), lambda n: n >= 1, 30)
        assert errors == []
    answer = sim.record.query_answers[0]
    assert (answer.info_id, answer.answer) == (info_id, "值班员王五在岗")


async def test_enforcement_sees_the_query_read_only_with_no_answer_form(
    settings: Settings, pool: asyncpg.Pool, chromium: str
) -> None:
    async with _duty_page(settings, pool, chromium, "enforcement") as (sim, page, errors):
        _, item = await _show_query(sim, page, "请报告今日值班人员姓名")
        # No answer box or 应答 button: POST .../answer is 403 for this role.
        assert await item.locator("form, input, button").count() == 0
        assert "应答" not in await item.inner_text()
        assert errors == []
    assert sim.record.query_answers == []


async def _value(value: object) -> object:
    return value
