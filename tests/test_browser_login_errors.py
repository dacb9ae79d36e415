"""A locked login said as a lock, in headless Chromium (found in the console review: after the
per-address limit the map page said 用户名或密码错误 to a user typing the right password, who
then tries again and again). The map page in Chinese, the registry page in English, the KPI
dashboard in Chinese; at 1366×768. Before a login the map shows no connection badge."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from web_helpers import PASSWORD, make_world, served_app

from gps_monitor.config import Settings

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update"]  # fmt: skip
PAGES = [  # path, language, wrong password message, locked message (lock of 600 s)
    ("/map", "zh-CN", "用户名或密码错误", "登录尝试过多，已暂时锁定，请 10 分钟后再试"),
    ("/admin", "en", "Wrong username or password",
     "Too many login attempts: locked for now, try again in 10 min"),
    ("/dashboard", "zh-CN", "用户名或密码错误", "登录尝试过多，已暂时锁定，请 10 分钟后再试"),
]  # fmt: skip


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not shutil.which("chromium"):
        pytest.skip("chromium missing (bash scripts/install-system.sh)")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.mark.parametrize(("path", "lang", "wrong", "locked"), PAGES, ids=["map", "admin", "kpi"])
async def test_a_locked_login_says_locked_and_for_how_long_not_wrong_password(
    settings: Settings,
    pool: asyncpg.Pool,
    browser: Any,
    path: str,
    lang: str,
    wrong: str,
    locked: str,
) -> None:
    web = settings.web.model_copy(update={"login_account_attempts": 2, "login_lockout_s": 600.0})
    limited = settings.model_copy(update={"web": web})
    await make_world(pool, limited)
    async with served_app(limited) as (base, _):
        context = await browser.new_context(viewport={"width": 1366, "height": 768})
        await context.add_init_script(f"localStorage.setItem('gpsm_lang', '{lang}')")
        page = await context.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: dialogs.append(d.message))
        await page.goto(f"http://{base}{path}")
        if path == "/map":  # nobody logged in: no red 连接中断 badge behind the login box
            await page.wait_for_selector("#login-form", state="visible")
            await page.wait_for_timeout(1000)
            assert await page.is_hidden("#conn")
        seen = []
        for password in ("wrong-1", "wrong-2", PASSWORD):  # the third, right, is locked out
            await page.fill("#login-username", "bureau")
            await page.fill("#login-password", password)
            await page.evaluate("document.getElementById('login-error').textContent = ''")
            await page.click("#login-form [type=submit]")
            await page.wait_for_function(
                "() => document.getElementById('login-error').textContent !== ''"
            )
            seen.append(await page.text_content("#login-error"))
        await page.screenshot(path=f"/tmp/console-login-locked-{path.strip('/')}-{lang}.png")
        assert seen == [wrong, wrong, locked]
        assert dialogs == []
        await context.close()
