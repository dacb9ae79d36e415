"""Photo evidence in the alarm's handling dialog, in real headless Chromium: the operator opens
an alarm's 处理 dialog, presses 拍照核实; the command goes dispatcher -> gateway (0x8801) ->
the simulated terminal, whose photo comes back as 0x0801 with a packet lost and resent, and the
dialog shows its thumbnail, loaded through the scope-checked download. Screenshot in
test-artifacts/."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
from test_browser_map import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, login
from test_jt808_media import connected, photo_loop
from web_helpers import served_app, store_alarm

from gps_monitor.config import Settings

pytestmark = pytest.mark.browser


@pytest.fixture
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium not installed (bash scripts/install-system.sh)")
    ARTIFACTS.mkdir(exist_ok=True)
    return CHROMIUM


async def test_take_photo_from_the_handle_dialog_shows_its_thumbnail(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path, chromium: str
) -> None:
    from playwright.async_api import async_playwright

    async with photo_loop(settings, pool, tmp_path) as loop:
        alarm_id = await store_alarm(pool, loop.vehicle_a, loop.world.company_a, level=1)
        terminal = await connected(loop)
        terminal.camera.drop_packets = {2}
        reader = asyncio.create_task(terminal.linger(60))
        try:
            async with served_app(loop.settings) as (base, _), async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                try:
                    page = await browser.new_page(viewport={"width": 1400, "height": 900})
                    errors: list[str] = []
                    page.on("pageerror", lambda e: errors.append(str(e)))
                    await login(page, base, "op_a")
                    button = page.locator(f'.btn-handle[data-alarm-id="{alarm_id}"]').first
                    await button.wait_for(timeout=20000)
                    await button.click()
                    dialog = page.locator("#handle-dialog")
                    await dialog.locator(".no-photos").wait_for(timeout=10000)
                    await dialog.locator(".btn-photo").click()
                    thumb = dialog.locator("img.media-thumb")
                    await thumb.wait_for(timeout=30000)
                    await page.wait_for_function(
                        "() => { const i = document.querySelector('img.media-thumb');"
                        " return i && i.complete && i.naturalWidth > 0; }",
                        timeout=15000,
                    )
                    title = await thumb.get_attribute("title")
                    await page.screenshot(path=str(ARTIFACTS / "handle_photo.png"))
                    assert errors == [], errors
                finally:
                    await browser.close()
        finally:
            reader.cancel()
            await terminal.close()
    row = await pool.fetchrow("SELECT sha256, alarm_id, complete FROM media")
    assert row["alarm_id"] == alarm_id and row["complete"]
    assert title == f"SHA-256 {row['sha256']}"
    assert loop.media.stats.resend_requests == 1
