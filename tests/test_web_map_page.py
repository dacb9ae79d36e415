"""The map page and the KPI dashboard in headless Chromium: speeds shown rounded, no failed
request (404, e.g. /favicon.ico) logged in the console."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from web_helpers import (
    PASSWORD,
    make_world,
    offline_tile_error,
    served_app,
    store_position,
    wait_for_js,
)

from gps_monitor.config import Settings

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update"]  # fmt: skip


@pytest.fixture
def chromium() -> str:
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.skip("Debian chromium not installed (bash scripts/install-system.sh)")
    return CHROMIUM


async def test_map_card_shows_a_rounded_speed_and_the_page_loads_without_a_404(
    settings: Settings, pool: asyncpg.Pool, chromium: str
) -> None:
    from playwright.async_api import async_playwright

    world = await make_world(pool, settings)
    vehicle = world.vehicles_a[0]
    # 13.06 km/h comes back from the real column as 13.0600004196167
    await store_position(pool, vehicle, datetime.now(UTC), 29.56, 106.55, speed_kmh=13.06)
    async with served_app(settings) as (base, _), async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1200, "height": 800})
            failed: list[str] = []
            console: list[str] = []
            page.on(
                "response",
                lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None,
            )
            page.on(
                "console",
                lambda m: (
                    console.append(f"{m.text} {m.location['url']}")
                    if m.type == "error" and not offline_tile_error(m)
                    else None
                ),
            )
            await page.goto(f"http://{base}/map")
            await page.fill("#login-username", "op_a")
            await page.fill("#login-password", PASSWORD)
            await page.click("#login-submit")
            await page.wait_for_selector("#login", state="hidden")
            await wait_for_js(page, "window.gpsm && window.gpsm.received.snapshot >= 1")
            await wait_for_js(page, f"window.gpsm.vehicles.has({vehicle})")
            await page.click(f'#vehicle-list li[data-vehicle-id="{vehicle}"]')
            card = f'[data-card-vehicle="{vehicle}"]'
            await page.wait_for_selector(card, timeout=10000)
            text = await page.inner_text(card)
            assert "13.1 km/h" in text, text
            assert "13.06" not in text
            # the KPI dashboard the map links to, and the icon browsers fetch on their own
            await page.goto(f"http://{base}/dashboard")
            await page.wait_for_load_state("networkidle")
            assert [f for f in failed if not f.startswith("401 ")] == [], failed
            assert [c for c in console if "status of 401" not in c] == [], console
        finally:
            await browser.close()
