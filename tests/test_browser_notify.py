"""The notification settings page (/notify) in real headless Chromium: an operator logs in,
adds a 钉钉 robot channel with its secret and a subscription with quiet hours, sees both listed
(the secret only as 已设置), is told what is wrong with a bad URL, and deletes the rule. The
secret never comes back to the page. Screenshot in test-artifacts/."""

from __future__ import annotations

import shutil
from pathlib import Path

import asyncpg
import pytest
from web_helpers import PASSWORD, make_world, served_app, wait_for_js

from gps_monitor.config import Settings

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@pytest.fixture
def chromium() -> str:
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.skip("Debian chromium not installed (bash scripts/install-system.sh)")
    ARTIFACTS.mkdir(exist_ok=True)
    return CHROMIUM


async def test_operator_sets_up_a_channel_and_a_subscription_in_the_page(
    settings: Settings, pool: asyncpg.Pool, chromium: str
) -> None:
    from playwright.async_api import async_playwright

    await make_world(pool, settings)
    async with served_app(settings) as (base, _), async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1300, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            secret_seen: list[str] = []
            page.on(
                "response",
                lambda r: secret_seen.append(r.url) if "SECpage" in (r.url or "") else None,
            )
            await page.goto(f"http://{base}/notify")
            await wait_for_js(page, "!document.getElementById('login').hidden")
            await page.fill("#login-username", "op_a")
            await page.fill("#login-password", PASSWORD)
            await page.click("#login-form button")
            await wait_for_js(page, "document.getElementById('login').hidden")
            # a malformed URL is refused with the API's explanation
            await page.fill("#ch-name", "安全员群")
            await page.select_option("#ch-kind", "dingtalk")
            await page.fill("#ch-target", "htp:/oapi.dingtalk.com")
            await page.fill("#ch-secret", "SECpage123")
            await page.click("#channel-form button")
            await wait_for_js(
                page, "document.getElementById('status').textContent.includes('config.url')"
            )
            await page.fill("#ch-target", "https://oapi.dingtalk.com/robot/send?access_token=T")
            await page.click("#channel-form button")
            await wait_for_js(page, "document.querySelectorAll('#channels tbody tr').length == 1")
            row = await page.inner_text("#channels tbody tr")
            assert "安全员群" in row and "钉钉" in row and "已设置" in row
            await page.fill("#sub-types", "overspeed, fatigue_driving")
            await page.select_option("#sub-level", "2")
            await page.fill("#sub-quiet-start", "22:00")
            await page.fill("#sub-quiet-end", "07:00")
            await page.click("#sub-form button")
            await wait_for_js(
                page, "document.querySelectorAll('#subscriptions tbody tr').length == 1"
            )
            sub = await page.inner_text("#subscriptions tbody tr")
            assert "fatigue_driving, overspeed" in sub and "22:00-07:00" in sub
            await page.screenshot(path=str(ARTIFACTS / "notify_settings.png"), full_page=True)
            assert "SECpage123" not in await page.content()
            await page.click("#subscriptions tbody tr button")
            await wait_for_js(
                page, "document.querySelectorAll('#subscriptions tbody tr').length == 0"
            )
            assert errors == []
        finally:
            await browser.close()
    rows = await pool.fetch("SELECT name, kind, secret, user_id FROM notify_channels")
    assert [(r["name"], r["kind"], r["secret"]) for r in rows] == [
        ("安全员群", "dingtalk", "SECpage123")
    ]
    assert await pool.fetchval("SELECT count(*) FROM notify_subscriptions") == 0
