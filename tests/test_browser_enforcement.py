"""The enforcement officer's job in the map page, in headless Chromium: record a penalty in the
dialog (a refused entry explained in the page language, then a correction), download the alarm's
PDF, Excel and CSV evidence from the page (one report number in all three, read out of each
file), and find the report in the evidence report list; at 1366×768 in Chinese and 390×844 in
English. Screenshots in /tmp/console-enforce-*.png."""

from __future__ import annotations

import asyncio
import io
import shutil
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from openpyxl import load_workbook
from test_reports_support import insert_alarm
from web_helpers import PASSWORD, make_world, served_app, store_position, wait_for_js

from gps_monitor.config import Settings

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update"]  # fmt: skip


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not shutil.which("chromium") or shutil.which("pdftotext") is None:
        pytest.skip("chromium or pdftotext missing (bash scripts/install-system.sh)")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


def _number_in_pdf(path: Path) -> str:
    text = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout
    line = next(line for line in text.splitlines() if "报告编号" in line)
    return line.split("报告编号", 1)[1].split()[0]


def _number_in_xlsx(path: Path) -> str:
    sheet = load_workbook(io.BytesIO(path.read_bytes()))["报告"]
    return next(r[1] for r in sheet.iter_rows(values_only=True) if r[0] == "报告编号 Report No.")


def _number_in_csv(path: Path) -> str:
    prefix = "# 报告编号 Report No.: "
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    return next(line[len(prefix) :] for line in lines if line.startswith(prefix))


READERS = {"pdf": _number_in_pdf, "xlsx": _number_in_xlsx, "csv": _number_in_csv}
TEXT = {
    "zh-CN": {
        "need_number": "请填写处罚决定书编号",
        "early_date": "决定日期不能早于报警当天",
        "edit": "修改",
        "list": "证据报告列表",
        "saved": "已保存",
        "duplicate": "此处罚决定已录入（同一决定书编号或完全相同的决定）；如需更正请点“修改”",
    },
    "en": {
        "need_number": "Enter the decision number",
        "early_date": "The decision date cannot be before the alarm's day",
        "edit": "Edit",
        "list": "Evidence reports",
        "saved": "Saved",
        "duplicate": "This decision is already recorded (same decision number, or the very same "
        "decision); use Edit to correct it",
    },
}


async def _download(page: Any, selector: str, target: Path) -> Path:
    async with page.expect_download() as info:
        await page.click(selector)
    download = await info.value
    await download.save_as(str(target))
    return target


@pytest.mark.parametrize(
    ("viewport", "lang"),
    [({"width": 1366, "height": 768}, "zh-CN"), ({"width": 390, "height": 844}, "en")],
    ids=["desktop-zh", "phone-en"],
)
async def test_enforcement_records_a_penalty_and_downloads_one_report_number_in_three_formats(
    settings: Settings,
    pool: asyncpg.Pool,
    browser: Any,
    tmp_path: Path,
    viewport: dict[str, int],
    lang: str,
) -> None:
    world = await make_world(pool, settings)
    vehicle = world.vehicles_a[0]
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(minutes=10)
    for i in range(10):  # one fix a minute, 90 km/h from minute 3 to 6
        speed = 90.0 if 3 <= i <= 6 else 50.0
        fix_time = start + timedelta(minutes=i)
        await store_position(pool, vehicle, fix_time, 29.5 + i * 0.01, 106.55, speed)
    alarm = await insert_alarm(
        pool,
        vehicle_id=vehicle,
        company_id=world.company_a,
        alarm_type="overspeed",
        started_at=start + timedelta(minutes=3),
        ended_at=start + timedelta(minutes=6),
        details={"limit_kmh": 60.0, "limit_source": "vehicle", "max_speed_kmh": 90.0},
        status="open",
    )
    text = TEXT[lang]
    size = f"{viewport['width']}x{viewport['height']}"
    async with served_app(settings) as (base, _):
        context = await browser.new_context(viewport=viewport, accept_downloads=True)
        await context.add_init_script(f"localStorage.setItem('gpsm_lang', '{lang}')")
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        dialogs: list[str] = []
        page.on("dialog", lambda d: dialogs.append(d.message))  # a browser prompt: a failure
        await page.goto(f"http://{base}/map")
        await page.fill("#login-username", "enforcement")
        await page.fill("#login-password", PASSWORD)
        await page.click("#login-submit")
        await page.wait_for_selector("#login", state="hidden")
        if viewport["width"] < 600:
            await page.click("#drawer-alarms")
            await page.wait_for_timeout(300)
        row = f'.alarm-item[data-alarm-id="{alarm}"]'
        await page.wait_for_selector(f"{row} .btn-penalty")
        await page.screenshot(path=f"/tmp/console-enforce-alarms-{lang}-{size}.png")
        await page.click(f"{row} .btn-penalty")
        await page.wait_for_selector("#penalty-dialog[open]")
        # refused in the page's language: no decision number
        await page.fill("#penalty-dialog [name=fine_yuan]", "200")
        await page.click("#penalty-dialog .btn-submit")
        assert await page.text_content("#penalty-dialog .error") == text["need_number"]
        await page.fill("#penalty-dialog [name=decision_number]", "渝交执罚〔2026〕第0007号")
        # a decision dated before the alarm's day: refused in the page's language
        await page.fill("#penalty-dialog [name=decided_on]", "1900-01-01")
        await page.click("#penalty-dialog .btn-submit")
        assert await page.text_content("#penalty-dialog .error") == text["early_date"]
        await page.fill("#penalty-dialog [name=decided_on]", "")
        await page.fill("#penalty-dialog [name=note]", "驾驶员当场承认超速")
        await page.screenshot(path=f"/tmp/console-enforce-penalty-form-{lang}-{size}.png")
        # a double click (an impatient officer) records one decision and shows no error
        await page.dblclick("#penalty-dialog .btn-submit")
        await page.wait_for_selector("#penalty-dialog .penalty-list li[data-penalty-id]")
        assert (await page.text_content("#penalty-dialog .saved") or "").startswith(text["saved"])
        await page.wait_for_timeout(500)
        assert await page.text_content("#penalty-dialog .error") == ""
        assert await pool.fetchval("SELECT count(*) FROM alarm_penalties") == 1
        # the same decision number again: refused in the page language, nothing written
        await page.fill("#penalty-dialog [name=decision_number]", "渝交执罚〔2026〕第0007号")
        await page.fill("#penalty-dialog [name=fine_yuan]", "200")
        await page.click("#penalty-dialog .btn-submit")
        await wait_for_js(page, "document.querySelector('#penalty-dialog .error').textContent")
        assert await page.text_content("#penalty-dialog .error") == text["duplicate"]
        assert await pool.fetchval("SELECT count(*) FROM alarm_penalties") == 1
        # a correction of the amount
        await page.click("#penalty-dialog .btn-edit-penalty")
        assert await page.text_content("#penalty-dialog .btn-submit") != ""
        await page.fill("#penalty-dialog [name=fine_yuan]", "150.5")
        await page.click("#penalty-dialog .btn-submit")
        await wait_for_js(
            page,
            "document.querySelector('#penalty-dialog .penalty-list li') && "
            "document.querySelector('#penalty-dialog .penalty-list li').textContent"
            ".includes('150.50')",
        )
        item = await page.text_content("#penalty-dialog .penalty-list li") or ""
        assert "渝交执罚〔2026〕第0007号" in item and text["edit"] in item
        await page.screenshot(path=f"/tmp/console-enforce-penalty-saved-{lang}-{size}.png")
        stored = await pool.fetch("SELECT decision, fine_yuan FROM alarm_penalties")
        assert [(r["decision"], float(r["fine_yuan"])) for r in stored] == [("罚款", 150.5)]
        # the three formats from the dialog: one report number
        numbers = {}
        for fmt, reader in READERS.items():
            path = await _download(
                page, f"#penalty-dialog .downloads a.evidence-{fmt}", tmp_path / f"ev.{fmt}"
            )
            numbers[fmt] = await asyncio.to_thread(reader, path)
        assert len(set(numbers.values())) == 1, numbers
        number = numbers["pdf"]
        assert number.startswith("EV-")
        csv_text = (tmp_path / "ev.csv").read_text(encoding="utf-8-sig")
        assert "罚款 150.50 元" in csv_text  # the penalty is in the report
        await page.click("#penalty-dialog .btn-cancel")
        await page.wait_for_selector("#penalty-dialog", state="detached")
        # the evidence report list: one line for the set, its formats, downloads again
        if viewport["width"] < 600:
            await page.click("#drawer-alarms")  # close the drawer over the top bar
            await page.wait_for_timeout(300)
        assert await page.text_content("#report-list-btn") == text["list"]
        await page.click("#report-list-btn")
        line = f'#report-list-dialog tr[data-report-number="{number}"]'
        await page.wait_for_selector(line)
        assert await page.locator("#report-list-dialog tbody tr").count() == 1
        assert await page.text_content(f"{line} td:nth-child(5)") == "PDF Excel CSV"
        await page.screenshot(path=f"/tmp/console-enforce-report-list-{lang}-{size}.png")
        path = await _download(page, f"{line} a.evidence-xlsx", tmp_path / "again.xlsx")
        assert await asyncio.to_thread(_number_in_xlsx, path) == number
        assert dialogs == [] and errors == []
        await context.close()
