"""Reports API (roles, formats, holds) and the KPI dashboard page in headless Chromium."""

from __future__ import annotations

import asyncio
import hashlib
import io
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from openpyxl import load_workbook
from test_reports_support import BEIJING, Fix, insert_alarm, store_fixes
from web_helpers import PASSWORD, make_world, rest_client, served_app, store_position

from gps_monitor.config import Settings
from web.reports import export

DAY = date(2026, 3, 2)
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "reports"
CHROMIUM = "/usr/bin/chromium"


def track(day: date, lat0: float, speeds: list[float]) -> list[Fix]:
    """One fix a minute from 10:00 local, heading north ~speed km/h."""
    out, lat = [], lat0
    for i, speed in enumerate(speeds):
        lat += speed / 60 / 111.0
        t = datetime(day.year, day.month, day.day, 10, i, tzinfo=BEIJING)
        out.append(Fix(t, lat, 106.55, speed, 0.0))
    return out


@pytest.fixture
async def world(pool: asyncpg.Pool, settings: Settings):  # type: ignore[no-untyped-def]
    world = await make_world(pool, settings)
    speeds = [40, 50, 70, 75, 72, 50, 40, 30]
    alarms = {}
    for name, company, vehicles in (
        ("A", world.company_a, world.vehicles_a),
        ("B", world.company_b, world.vehicles_b),
    ):
        for d in range(3):
            day = DAY + timedelta(days=d)
            await store_fixes(
                pool, vehicles[0], company, world.terminals[vehicles[0]], track(day, 29.5, speeds)
            )
        alarms[name] = await insert_alarm(
            pool,
            vehicle_id=vehicles[0],
            company_id=company,
            alarm_type="overspeed",
            started_at=datetime(2026, 3, 2, 10, 2, tzinfo=BEIJING),
            ended_at=datetime(2026, 3, 2, 10, 5, tzinfo=BEIJING),
            details={"limit_kmh": 60.0, "limit_source": "vehicle", "max_speed_kmh": 75.0},
            status="open",
        )
    world.alarms = alarms  # type: ignore[attr-defined]
    return world


async def test_evidence_formats_and_operator_scope(settings: Settings, world) -> None:  # type: ignore[no-untyped-def]
    async with rest_client(settings) as client:
        law = world.auth("enforcement")
        alarm_a, alarm_b = world.alarms["A"], world.alarms["B"]
        r = await client.get("/api/reports/evidence", params={"alarm_id": alarm_a}, headers=law)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/pdf"
        assert r.content.startswith(b"%PDF")
        r = await client.get(
            "/api/reports/evidence", params={"alarm_id": alarm_a, "format": "csv"}, headers=law
        )
        rows = export.read_csv_rows(r.content)
        digest = hashlib.sha256("".join(",".join(x[:16]) + "\n" for x in rows).encode()).hexdigest()
        assert digest == r.headers["x-report-digest-sha256"]
        r = await client.get(
            "/api/reports/evidence", params={"alarm_id": alarm_a, "format": "xlsx"}, headers=law
        )
        assert load_workbook(io.BytesIO(r.content))["校验"]["B1"].value == digest
        r = await client.get(
            "/api/reports/evidence", params={"alarm_id": alarm_a, "format": "json"}, headers=law
        )
        assert r.json()["violation"]["max_speed_kmh"] == 75.0
        # operators: their own company's alarm yes, another's looks absent; window reports too
        op_a = world.auth("op_a")
        r = await client.get(
            "/api/reports/evidence", params={"alarm_id": alarm_a, "format": "json"}, headers=op_a
        )
        assert r.status_code == 200
        r = await client.get("/api/reports/evidence", params={"alarm_id": alarm_b}, headers=op_a)
        assert r.status_code == 404
        window = {
            "vehicle_id": world.vehicles_b[0],
            "start": "2026-03-02T09:00:00+08:00",
            "end": "2026-03-02T11:00:00+08:00",
            "format": "json",
        }
        assert (
            await client.get("/api/reports/evidence", params=window, headers=op_a)
        ).status_code == 404
        r = await client.get("/api/reports/evidence", params=window, headers=world.auth("bureau"))
        assert r.status_code == 200 and len(r.json()["positions"]) == 8
        assert (
            await client.get("/api/reports/evidence", params={"alarm_id": alarm_a})
        ).status_code == 401
        # the log holds every report with its number and digest, for bureau and enforcement
        log = (await client.get("/api/reports/log", headers=law)).json()
        assert len(log) == 6 and log[-1]["digest_sha256"] == log[-2]["digest_sha256"]
        assert (await client.get("/api/reports/log", headers=op_a)).status_code == 403


async def test_kpi_api_scope_and_holds_roles(settings: Settings, pool: asyncpg.Pool, world) -> None:  # type: ignore[no-untyped-def]
    period = {"from": "2026-03-02", "to": "2026-03-04"}
    async with rest_client(settings) as client:
        body = (
            await client.get("/api/reports/kpi", params=period, headers=world.auth("bureau"))
        ).json()
        assert {c["id"] for c in body["companies"]} == {world.company_a, world.company_b}
        assert body["county"]["kpis"]["connection_rate"] == 50.0  # 2 of 4 vehicles sent data
        mine = (
            await client.get("/api/reports/kpi", params=period, headers=world.auth("op_a"))
        ).json()
        assert [c["id"] for c in mine["companies"]] == [world.company_a]
        r = await client.get(
            "/api/reports/kpi",
            params={**period, "company_id": world.company_b},
            headers=world.auth("op_a"),
        )
        assert r.status_code == 403
        r = await client.get(
            "/api/reports/kpi",
            params={**period, "format": "xlsx"},
            headers=world.auth("enforcement"),
        )
        assert r.status_code == 200 and "汇总" in load_workbook(io.BytesIO(r.content)).sheetnames
        # found by a walkthrough: days whose bounds do not exist were a 500
        logged = await pool.fetchval("SELECT count(*) FROM report_log")
        for far, message in (
            (("0001-01-01", "0001-01-02"), "period: expected days from 2000-01-01"),
            (("9999-12-30", "9999-12-31"), "period: expected days from 2000-01-01"),
            (("2025-01-01", "2026-01-02"), "period: expected at most 366 days, got 367"),
        ):
            r = await client.get(
                "/api/reports/kpi",
                params={"from": far[0], "to": far[1]},
                headers=world.auth("bureau"),
            )
            assert r.status_code == 422 and message in r.text, r.text
        assert await pool.fetchval("SELECT count(*) FROM report_log") == logged
        seal = {
            "vehicle_id": world.vehicles_a[0],
            "window_start": "2026-03-02T09:00:00+08:00",
            "window_end": "2026-03-02T12:00:00+08:00",
            "reason": "事故",
        }
        assert (
            await client.post("/api/holds", json=seal, headers=world.auth("op_a"))
        ).status_code == 403
        # found by a walkthrough: a hold from year 1000 to 9999 was sealed
        for window, message in (
            (("1000-01-01T00:00:00Z", "9999-12-31T00:00:00Z"), "expected a time from 2000-01-01"),
            (
                ("2026-03-02T09:00:00+08:00", "9999-12-31T00:00:00Z"),
                "window_end: expected a time up",
            ),
            (("2026-03-02T09:00:00+08:00", "2999-01-01T00:00:00Z"), "a hold copies the data"),
            (("2024-03-01T00:00:00Z", "2026-03-02T12:00:00+08:00"), "expected at most 366 days"),
            (("2026-03-02T12:00:00+08:00", "2026-03-02T09:00:00+08:00"), "end after start"),
            (("0001-01-01T00:00:00Z", "0001-01-02T00:00:00Z"), "expected a time from 2000-01-01"),
        ):
            bad = {**seal, "window_start": window[0], "window_end": window[1]}
            r = await client.post("/api/holds", json=bad, headers=world.auth("enforcement"))
            assert r.status_code == 422 and message in r.text, (window, r.text)
        assert await pool.fetchval("SELECT count(*) FROM legal_holds") == 0
        r = await client.post("/api/holds", json=seal, headers=world.auth("enforcement"))
        assert r.status_code == 201 and r.json()["positions_held"] == 8
        hold_id = r.json()["id"]
        release = {"reason": "结案"}
        r = await client.post(
            f"/api/holds/{hold_id}/release", json=release, headers=world.auth("bureau")
        )
        assert r.status_code == 200 and r.json()["active"] is False
        r = await client.post(
            f"/api/holds/{hold_id}/release", json=release, headers=world.auth("bureau")
        )
        assert r.status_code == 409


@pytest.mark.browser
async def test_dashboard_renders_in_headless_chromium(settings: Settings, world) -> None:  # type: ignore[no-untyped-def]
    if not await asyncio.to_thread(Path(CHROMIUM).exists):
        pytest.skip(f"{CHROMIUM} not installed (scripts/install-system.sh)")
    from playwright.async_api import async_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with served_app(settings) as (address, _), async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 1100})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(f"http://{address}/dashboard?from=2026-03-02&to=2026-03-04")
            await page.wait_for_selector("#login-form", state="visible")
            await page.fill("#login-username", "bureau")
            await page.fill("#login-password", PASSWORD)
            await page.click("#login-form button")
            await page.wait_for_selector("#cards .card")
            online = await page.text_content('#cards .card[data-kpi="connection_rate"] .value')
            assert online == "50.00 %"
            assert await page.locator("#trend svg circle").count() == 3  # one point per day
            assert await page.locator("#ranking .rank-row").count() == 2  # two companies
            assert await page.locator("#table tbody tr").count() == 3  # county + 2
            await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            assert errors == []
        finally:
            await browser.close()


@pytest.mark.browser
async def test_dashboard_opens_on_the_month_to_date_including_today(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """On a new system (or `make demo`) every fix is from today: the default period used to end
    yesterday and showed 上线率 0.00 % or dashes; it is this month so far, today included."""
    if not await asyncio.to_thread(Path(CHROMIUM).exists):
        pytest.skip(f"{CHROMIUM} not installed (scripts/install-system.sh)")
    from playwright.async_api import async_playwright

    world = await make_world(pool, settings)
    now = datetime.now(UTC)
    for vehicle in world.vehicles_a + world.vehicles_b:
        await store_position(pool, vehicle, now - timedelta(seconds=30), 29.56, 106.55)
    today = now.astimezone(BEIJING).date()
    async with served_app(settings) as (address, _), async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 1100})
            await page.goto(f"http://{address}/dashboard")
            await page.wait_for_selector("#login-form", state="visible")
            await page.fill("#login-username", "bureau")
            await page.fill("#login-password", PASSWORD)
            await page.click("#login-form button")
            await page.wait_for_selector("#cards .card")
            period = (await page.input_value("#from"), await page.input_value("#to"))
            assert period == (today.replace(day=1).isoformat(), today.isoformat())
            for kpi in ("connection_rate", "online_rate", "data_quality"):
                value = await page.text_content(f'#cards .card[data-kpi="{kpi}"] .value')
                assert value == "100.00 %", (kpi, value)
        finally:
            await browser.close()
