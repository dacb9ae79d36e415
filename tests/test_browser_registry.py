"""The bureau's registry page (/admin) in real headless Chromium (issue 11, item 3): the bureau
registers a company, imports two vehicles from a CSV (preview, then import) and sees the per-row
report and the vehicles listed; a refused input shows next to its field in Chinese and, after the
language switch, in English; an operator is told the page is not his. At 1366x768 and 390x844;
screenshots in /tmp/console-registry-*.png."""

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
SHOTS = Path("/tmp")

CSV = "\r\n".join(
    [
        "车牌号,车牌颜色,车辆类型,终端号,限速,所属企业",
        "渝G70001,黄色,危险货物运输车,013970000001,60,丙危货运输公司",
        "渝G70002,黄,客运班车,013970000002,,丙危货运输公司",
        "渝G70003,紫,客运班车,013970000003,,丙危货运输公司",
    ]
).encode("utf-8-sig")


@pytest.fixture
def chromium() -> str:
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.skip("Debian chromium not installed (bash scripts/install-system.sh)")
    return CHROMIUM


async def log_in(page, base: str, who: str) -> None:  # type: ignore[no-untyped-def]
    await page.goto(f"http://{base}/admin")
    await wait_for_js(page, "!document.getElementById('login').hidden")
    await page.fill("#login-username", who)
    await page.fill("#login-password", PASSWORD)
    await page.click("#login-form button")
    await wait_for_js(page, "document.getElementById('login').hidden")


def text_of(selector: str) -> str:
    return f"((document.querySelector({selector!r}) || {{}}).textContent || '')"


@pytest.mark.parametrize(("width", "height"), [(1366, 768), (390, 844)])
async def test_bureau_registers_a_company_and_imports_vehicles_in_the_page(
    settings: Settings, pool: asyncpg.Pool, chromium: str, width: int, height: int
) -> None:
    from playwright.async_api import async_playwright

    await make_world(pool, settings)
    size = f"{width}x{height}"
    async with served_app(settings) as (base, _), async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": width, "height": height})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on(
                "console",
                lambda m: (
                    errors.append(m.text)
                    if m.type == "error" and "Failed to load resource" not in m.text
                    else None
                ),
            )
            await log_in(page, base, "bureau")
            # a company
            await page.click("#tabs [data-tab=companies]")
            await page.fill("#company-form [name=name]", "丙危货运输公司")
            await page.click("#company-form button[type=submit]")
            await wait_for_js(page, f"{text_of('#companies tbody')}.includes('丙危货运输公司')")
            # a refused vehicle: its messages beside the fields, in Chinese then in English
            await page.click("#tabs [data-tab=vehicles]")
            await page.fill("#vehicle-form [name=plate_number]", "渝")
            await page.fill("#vehicle-form [name=terminal_id]", "0139/bad")
            await page.fill("#vehicle-form [name=speed_limit_kmh]", "0")
            await page.click("#vehicle-form button[type=submit]")
            plate_err = text_of("[data-err=plate_number]")
            await wait_for_js(page, f"{plate_err}.includes('至少 2 个字符')")
            assert "须大于 0" in await page.inner_text("#vehicle-form [data-err=speed_limit_kmh]")
            assert "须为 1-32 位字母、数字" in await page.inner_text(
                "#vehicle-form [data-err=terminal_id]"
            )
            assert "必填" in await page.inner_text("#vehicle-form [data-err=vehicle_class]")
            assert "必填" in await page.inner_text("#vehicle-form [data-err=company_id]")
            await page.screenshot(path=str(SHOTS / f"console-registry-{size}-validation-zh.png"))
            await page.select_option("#lang", "en")
            await wait_for_js(page, f"{plate_err}.includes('at least 2 characters')")
            assert "more than 0" in await page.inner_text(
                "#vehicle-form [data-err=speed_limit_kmh]"
            )
            await page.screenshot(path=str(SHOTS / f"console-registry-{size}-validation-en.png"))
            await page.select_option("#lang", "zh-CN")
            # the import: preview (nothing written), then import the valid rows
            await page.click("#tabs [data-tab=import]")
            await page.set_input_files(
                "#import-file", files=[{"name": "丙公司车辆.csv", "mimeType": "text/csv",
                                        "buffer": CSV}]
            )  # fmt: skip
            await page.click("#import-preview")
            await wait_for_js(
                page, "document.querySelectorAll('#import-report tbody tr').length == 3"
            )
            assert "预览" in await page.inner_text("#import-summary")
            assert await pool.fetchval("SELECT count(*) FROM vehicles") == 4
            rows = await page.eval_on_selector_all(
                "#import-report tbody tr", "rows => rows.map(r => r.innerText)"
            )
            assert "新增" in rows[0] and "新增" in rows[1]
            assert "拒绝" in rows[2] and "车牌颜色: 须为 蓝/黄" in rows[2]
            assert "2" in await page.inner_text("#import-commit")
            if width > 600:  # console review: 结果 was squeezed to 新/增 on two lines, 行 wide
                cells = await page.eval_on_selector_all(
                    "#import-report tbody tr:first-child td",
                    "tds => tds.map(td => { const r = document.createRange();"
                    " r.selectNodeContents(td); return [td.getBoundingClientRect().width,"
                    " r.getClientRects().length]; })",
                )
                assert cells[2][1] == 1, cells  # the outcome on one line
                assert cells[0][0] < 80 and cells[3][0] > width / 2, cells
            await page.screenshot(path=str(SHOTS / f"console-registry-{size}-import-preview.png"),
                                  full_page=True)  # fmt: skip
            await page.click("#import-commit")
            await wait_for_js(page, f"{text_of('#import-summary')}.includes('已导入')")
            await page.screenshot(path=str(SHOTS / f"console-registry-{size}-import-done.png"),
                                  full_page=True)  # fmt: skip
            await page.click("#tabs [data-tab=vehicles]")
            await page.fill("#vehicle-filter", "渝G7")
            await wait_for_js(page, "document.querySelectorAll('#vehicles tbody tr').length == 2")
            listed = await page.inner_text("#vehicles tbody")
            assert "渝G70001" in listed and "渝G70002" in listed and "丙危货运输公司" in listed
            await page.screenshot(path=str(SHOTS / f"console-registry-{size}-vehicles.png"),
                                  full_page=True)  # fmt: skip
            assert errors == [], errors
        finally:
            await browser.close()
    plates = await pool.fetch(
        "SELECT v.plate_number FROM vehicles v JOIN companies c ON c.id = v.company_id "
        "WHERE c.name = '丙危货运输公司' ORDER BY 1"
    )
    assert [r["plate_number"] for r in plates] == ["渝G70001", "渝G70002"]
    actions = [r["action"] for r in await pool.fetch("SELECT action FROM audit_log ORDER BY id")]
    assert actions == ["company.create", "vehicle.create", "vehicle.create", "vehicle.import"]


async def test_an_operator_is_told_the_registry_is_the_bureaus(
    settings: Settings, pool: asyncpg.Pool, chromium: str
) -> None:
    from playwright.async_api import async_playwright

    await make_world(pool, settings)
    async with served_app(settings) as (base, _), async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1366, "height": 768})
            await log_in(page, base, "op_a")
            await wait_for_js(page, f"{text_of('#status')}.includes('仅交通运输局')")
            assert await page.is_hidden("#tabs")
            await page.goto(f"http://{base}/map")
            await wait_for_js(page, "document.getElementById('who').textContent.length > 0")
            assert await page.is_hidden("#admin-link")  # the nav link is the bureau's only
            for width, height in ((1366, 768), (390, 844)):
                bureau = await browser.new_page(viewport={"width": width, "height": height})
                await bureau.goto(f"http://{base}/map")
                await bureau.fill("#login-username", "bureau")
                await bureau.fill("#login-password", PASSWORD)
                await bureau.click("#login-submit")
                await wait_for_js(bureau, "!document.getElementById('admin-link').hidden")
                await bureau.screenshot(
                    path=str(SHOTS / f"console-registry-{width}x{height}-map-nav.png")
                )
                await bureau.click("#admin-link")
                await wait_for_js(bureau, "location.pathname == '/admin'")
                await wait_for_js(bureau, f"{text_of('#vehicles tbody')}.includes('渝A10000')")
        finally:
            await browser.close()


@pytest.mark.parametrize(("width", "height"), [(1366, 768), (390, 844)])
async def test_bureau_adds_a_user_and_deletes_a_vehicle_after_confirming(
    settings: Settings, pool: asyncpg.Pool, chromium: str, width: int, height: int
) -> None:
    from playwright.async_api import async_playwright

    world = await make_world(pool, settings)
    size = f"{width}x{height}"
    async with served_app(settings) as (base, _), async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": width, "height": height})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            await log_in(page, base, "bureau")
            await page.click("#tabs [data-tab=users]")
            await page.fill("#user-form [name=username]", "li_safety")
            await page.fill("#user-form [name=display_name]", "李安全员")
            await page.select_option("#user-form [name=role]", "operator")
            await page.fill("#user-form [name=password]", "short")
            await page.click("#user-form button[type=submit]")
            await wait_for_js(page, f"{text_of('#user-form [data-err=password]')}.includes('8')")
            await page.fill("#user-form [name=password]", "long-enough-1")
            await page.click("#user-form button[type=submit]")
            company_err = text_of("#user-form [data-err=company_id]")
            await wait_for_js(page, f"{company_err}.includes('须选择所属企业')")
            await page.select_option("#user-form [name=company_id]", str(world.company_a))
            await page.click("#user-form button[type=submit]")
            await wait_for_js(page, f"{text_of('#users tbody')}.includes('li_safety')")
            await page.screenshot(path=str(SHOTS / f"console-registry-{size}-users.png"),
                                  full_page=True)  # fmt: skip
            # delete asks first; cancelling keeps the vehicle
            await page.click("#tabs [data-tab=vehicles]")
            row = f"#vehicles tr[data-id='{world.vehicles_b[1]}']"
            await page.click(f"{row} button.danger")
            await wait_for_js(page, "document.getElementById('confirm').open")
            assert "渝B10001" in await page.inner_text("#confirm-text")
            await page.screenshot(path=str(SHOTS / f"console-registry-{size}-confirm.png"))
            await page.click("#confirm button[value=cancel]")
            await wait_for_js(page, "!document.getElementById('confirm').open")
            assert await pool.fetchval("SELECT count(*) FROM vehicles") == 4
            await page.click(f"{row} button.danger")
            await wait_for_js(page, "document.getElementById('confirm').open")
            await page.click("#confirm-ok")
            await wait_for_js(page, f'!document.querySelector("{row}")')
            assert errors == []
        finally:
            await browser.close()
    assert await pool.fetchval("SELECT count(*) FROM vehicles") == 3
    user = await pool.fetchrow("SELECT role, company_id FROM users WHERE username = 'li_safety'")
    assert (user["role"], user["company_id"]) == ("operator", world.company_a)
