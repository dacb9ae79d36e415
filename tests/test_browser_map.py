"""The map page in real headless Chromium (Debian's, through Playwright): an operator logs in,
sees its company's vehicles move while a replay runs through the real chain (replay -> MQTT ->
ingest worker -> PostgreSQL -> web), sees an alarm arrive in the panel and acknowledges it;
another company's operator sees none of it. Screenshots go to test-artifacts/.

The overspeed alarm is raised by the real rules worker (vehicle limit 60 km/h, 30 s at 90 km/h).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from web_helpers import PASSWORD, offline_tile_error, served_app, wait_for_js

from gps_monitor.config import Settings
from gps_monitor.db import users
from gps_monitor.db.registry import ensure_company, ensure_vehicle
from gps_monitor.models import VehicleClass

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def write_track(path: Path, start: datetime) -> None:
    """Two vehicles of company A and one of company B, a fix every 3 s for 72 s; A's first
    vehicle drives 90 km/h (limit 60) from fix 5 to fix 15 (30 s over the limit)."""
    rows = ["terminal_id,fix_time,latitude,longitude,speed_kmh,heading_deg,acc_on,fix_valid"]
    for i in range(25):
        t = (start + timedelta(seconds=3 * i)).isoformat()
        fast = 5 <= i <= 15
        rows.append(
            f"013900000001,{t},{29.5600 + 0.0006 * i:.6f},106.5500,{90 if fast else 40},0,true,true"
        )
        rows.append(f"013900000002,{t},29.5700,{106.5600 + 0.0004 * i:.6f},30,90,true,true")
        rows.append(f"013900000003,{t},{29.5650 - 0.0004 * i:.6f},106.5550,35,180,true,true")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


@contextlib.asynccontextmanager
async def chain(settings: Settings) -> AsyncIterator[None]:
    """The ingest worker and the rules worker, running in-process on the test's settings."""
    from ingest_helpers import drop_session, running_worker

    from rules.worker import RulesWorker, rules_client_id

    async with running_worker(settings):
        rules = RulesWorker(settings)
        task = asyncio.create_task(rules.run())
        try:
            await asyncio.wait_for(rules.ready.wait(), 10)
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await drop_session(settings, rules_client_id(settings))


async def login(page, base: str, username: str) -> None:
    await page.goto(f"http://{base}/map")
    await page.fill("#login-username", username)
    await page.fill("#login-password", PASSWORD)
    await page.click("#login-submit")
    await page.wait_for_selector("#login", state="hidden")
    await wait_for_js(page, "window.gpsm && window.gpsm.received.snapshot >= 1")


@pytest.fixture
def chromium() -> str:
    """Debian's chromium (scripts/install-system.sh); skips when absent. Creates the artifacts
    folder."""
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.skip("Debian chromium not installed (bash scripts/install-system.sh)")
    ARTIFACTS.mkdir(exist_ok=True)
    return CHROMIUM


async def test_operator_watches_its_vehicles_move_and_acknowledges_an_alarm(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path, chromium: str
) -> None:
    from playwright.async_api import async_playwright

    company_a = await ensure_company(pool, "渝运物流")
    company_b = await ensure_company(pool, "川危化运输")
    a1 = await ensure_vehicle(
        pool,
        company_id=company_a.id,
        plate_number="渝A10001",
        terminal_id="013900000001",
        vehicle_class=VehicleClass.HAZMAT,
        speed_limit_kmh=60,
    )
    a2 = await ensure_vehicle(
        pool,
        company_id=company_a.id,
        plate_number="渝A10002",
        terminal_id="013900000002",
        vehicle_class=VehicleClass.HAZMAT,
    )
    b1 = await ensure_vehicle(
        pool,
        company_id=company_b.id,
        plate_number="川B20001",
        terminal_id="013900000003",
        vehicle_class=VehicleClass.HAZMAT,
    )
    await users.create_user(pool, "op_a", PASSWORD, "operator", company_a.id)
    await users.create_user(pool, "op_b", PASSWORD, "operator", company_b.id)
    track = tmp_path / "track.csv"
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    write_track(track, start)

    from ingest.replay import replay_file

    async with chain(settings), served_app(settings) as (base, _), async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page_a = await browser.new_page(viewport={"width": 1400, "height": 850})
            console: list[str] = []
            page_a.on(
                "console",
                lambda m: (
                    console.append(m.text)
                    if m.type == "error" and not offline_tile_error(m)
                    else None
                ),
            )
            page_a.on("pageerror", lambda e: console.append(str(e)))
            await login(page_a, base, "op_a")
            replay = asyncio.create_task(
                replay_file(settings, track, "csv", speedup=6, progress=False)
            )
            # the operator's vehicles appear and move
            await wait_for_js(
                page_a,
                f"window.gpsm.markers.has({a1.id}) && window.gpsm.markers.has({a2.id})",
                timeout_ms=20000,
            )
            first = await page_a.evaluate(f"window.gpsm.vehicles.get({a1.id}).latitude")
            await wait_for_js(
                page_a,
                f"window.gpsm.vehicles.get({a1.id}).latitude > {first} + 0.002",
                timeout_ms=20000,
            )
            await page_a.screenshot(path=str(ARTIFACTS / "map_operator_live.png"))
            published, _ = await replay
            assert published == 75
            # the overspeed alarm raised by the rules worker arrives in the panel, highlighted
            item = page_a.locator(".alarm-item", has_text="渝A10001").first
            await item.wait_for(timeout=30000)
            assert "new" in (await item.get_attribute("class") or "")
            alarm_id = int(await item.get_attribute("data-alarm-id") or 0)
            await page_a.screenshot(path=str(ARTIFACTS / "map_operator_alarm.png"))
            await item.locator(".btn-ack").click()
            await page_a.wait_for_selector(
                f'.alarm-item[data-alarm-id="{alarm_id}"][data-status="acknowledged"]'
            )
            row = await pool.fetchrow(
                "SELECT status, acknowledged_by FROM alarms WHERE id = $1", alarm_id
            )
            assert row["status"] == "acknowledged"
            trail = await pool.fetch(
                "SELECT username, action FROM audit_log WHERE object_id = $1", alarm_id
            )
            assert [(r["username"], r["action"]) for r in trail] == [("op_a", "alarm.acknowledge")]
            # card of the moving vehicle
            await page_a.click(f'#vehicle-list li[data-vehicle-id="{a1.id}"]')
            await page_a.wait_for_selector(f'[data-card-vehicle="{a1.id}"]')
            await page_a.wait_for_timeout(600)  # popup fade-in
            assert "渝A10001" in await page_a.inner_text(f'[data-card-vehicle="{a1.id}"]')
            await page_a.screenshot(path=str(ARTIFACTS / "map_operator_acknowledged.png"))
            seen_a = await page_a.evaluate("Array.from(window.gpsm.vehicles.keys())")
            assert sorted(seen_a) == sorted([a1.id, a2.id])
            assert console == [], console

            # the other company's operator sees none of it
            page_b = await (
                await browser.new_context(viewport={"width": 1400, "height": 850})
            ).new_page()
            await login(page_b, base, "op_b")
            await wait_for_js(page_b, f"window.gpsm.markers.has({b1.id})", timeout_ms=10000)
            seen_b = await page_b.evaluate("Array.from(window.gpsm.vehicles.keys())")
            assert seen_b == [b1.id]
            assert await page_b.locator(".alarm-item").count() == 0
            assert "渝A10001" not in await page_b.inner_text("body")
            await page_b.screenshot(path=str(ARTIFACTS / "map_other_operator.png"))
            # the JS GCJ-02 conversion gives the published pair (eviltransform, Beijing)
            lat, lon = await page_b.evaluate("GpsmCoords.wgs84ToGcj02(39.911954, 116.377817)")
            assert lat == pytest.approx(39.91334545536069, abs=1e-9)
            assert lon == pytest.approx(116.38404722455657, abs=1e-9)
        finally:
            await browser.close()


async def test_bureau_plays_back_a_track_with_overspeed_and_draws_a_geofence(
    settings: Settings, pool: asyncpg.Pool, chromium: str
) -> None:
    from playwright.async_api import async_playwright
    from web_helpers import store_alarm, store_position

    from gps_monitor.db import geofences as fence_store

    company = await ensure_company(pool, "渝运物流")
    vehicle = await ensure_vehicle(
        pool,
        company_id=company.id,
        plate_number="渝A30003",
        terminal_id="013900000030",
        vehicle_class=VehicleClass.COACH,
    )
    await users.create_user(pool, "chief", PASSWORD, "bureau")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)
    for i in range(60):
        await store_position(
            pool,
            vehicle.id,
            t0 + timedelta(seconds=10 * i),
            29.55 + 0.0008 * i,
            106.50 + 0.0003 * i,
            speed_kmh=110 if 20 <= i <= 30 else 60,
        )
    await store_position(
        pool, vehicle.id, t0 + timedelta(seconds=255), 30.5, 107.9, quality="drift"
    )
    await store_alarm(
        pool,
        vehicle.id,
        company.id,
        started_at=t0 + timedelta(seconds=200),
        ended_at=t0 + timedelta(seconds=300),
        details={"limit_kmh": 100, "max_speed_kmh": 110},
    )

    async with served_app(settings) as (base, _), async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 850})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("dialog", lambda d: errors.append(f"browser dialog {d.message}"))
            await login(page, base, "chief")
            await wait_for_js(page, f"window.gpsm.vehicles.has({vehicle.id})")
            # search by plate, open the card, play the track back
            await page.fill("#plate-search", "30003")
            await page.click(f'#vehicle-list li[data-vehicle-id="{vehicle.id}"]')
            await page.click(f'.btn-track[data-vehicle-id="{vehicle.id}"]')
            await page.click("#pb-load")
            await page.wait_for_selector("path.overspeed-stretch")
            assert "60/60" in await page.inner_text("#pb-info")
            await page.click('#pb-table tr[data-i="25"]')  # the point table moves the cursor
            assert "110 km/h" in await page.inner_text("#pb-speed")
            await page.wait_for_timeout(800)  # fitBounds zoom animation
            await page.screenshot(path=str(ARTIFACTS / "map_bureau_playback.png"))
            # draw a forbidden area with four clicks
            await page.click("#pb-close")
            await page.click("#draw-polygon")
            box = await page.locator("#map").bounding_box()
            assert box is not None
            for dx, dy in ((0.3, 0.3), (0.6, 0.3), (0.6, 0.6), (0.3, 0.6)):
                await page.mouse.click(box["x"] + box["width"] * dx, box["y"] + box["height"] * dy)
                await page.wait_for_timeout(300)
            await page.click("#draw-finish")  # the form (fences.js), no browser prompt
            await page.fill("#fence-form input[name=name]", "水源保护区")
            await page.select_option("#fence-form select[name=kind]", "forbidden")
            await page.click("#fence-form button[type=submit]")
            await wait_for_js(page, "window.gpsm.fences.getLayers().length === 1")
            fences = await fence_store.load_geofences(pool)
            assert [(f.name, str(f.kind)) for f in fences] == [("水源保护区", "forbidden")]
            assert len(fences[0].geometry.exterior.coords) == 5  # four clicks, closed ring
            minx, miny, maxx, maxy = fences[0].geometry.bounds
            assert 106.4 < minx < maxx < 106.6 and 29.5 < miny < maxy < 29.65
            audit = [
                r["action"] for r in await pool.fetch("SELECT action FROM audit_log ORDER BY id")
            ]
            assert audit == ["geofence.create"]  # nothing ticked: no assignment written
            # English labels on demand
            await page.select_option("#lang", "en")
            assert await page.inner_text("#alarm-panel h2 [data-i18n=alarms]") == "Alarms"
            await page.screenshot(path=str(ARTIFACTS / "map_bureau_geofence_en.png"))
            assert errors == []
        finally:
            await browser.close()


async def test_gcj02_tiles_show_converted_positions_and_store_wgs84(
    settings: Settings, pool: asyncpg.Pool, chromium: str
) -> None:
    """With web.tile_crs=gcj02 the page draws a WGS-84 fix at its GCJ-02 place (display only),
    and a polygon drawn there is stored back in WGS-84."""
    from playwright.async_api import async_playwright
    from web_helpers import store_position

    from gps_monitor.db import geofences as fence_store
    from web.coords import gcj02_to_wgs84

    settings = settings.model_copy(
        update={"web": settings.web.model_copy(update={"tile_crs": "gcj02"})}
    )
    company = await ensure_company(pool, "京运")
    vehicle = await ensure_vehicle(
        pool,
        company_id=company.id,
        plate_number="京A00001",
        terminal_id="013900000099",
        vehicle_class=VehicleClass.COACH,
    )
    await users.create_user(pool, "chief", PASSWORD, "bureau")
    # eviltransform's published Beijing pair: WGS-84 -> GCJ-02
    await store_position(pool, vehicle.id, datetime.now(UTC), 39.911954, 116.377817)
    async with served_app(settings) as (base, _), async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1200, "height": 800})
            await login(page, base, "chief")
            await wait_for_js(page, f"window.gpsm.markers.has({vehicle.id})")
            lat, lng = await page.evaluate(
                f"(() => {{ const p = window.gpsm.markers.get({vehicle.id}).getLatLng();"
                " return [p.lat, p.lng]; })()"
            )
            assert lat == pytest.approx(39.91334545536069, abs=1e-9)
            assert lng == pytest.approx(116.38404722455657, abs=1e-9)
            # the stored position itself is untouched
            row = await pool.fetchrow("SELECT latitude, longitude FROM latest_positions")
            assert (row["latitude"], row["longitude"]) == (39.911954, 116.377817)
            await page.click("#draw-polygon")
            box = await page.locator("#map").bounding_box()
            assert box is not None
            clicked = []
            for dx, dy in ((0.3, 0.3), (0.7, 0.3), (0.5, 0.7)):
                x, y = round(box["width"] * dx), round(box["height"] * dy)
                clicked.append(
                    await page.evaluate(
                        f"(() => {{ const p = window.gpsm.map.containerPointToLatLng([{x}, {y}]);"
                        " return [p.lat, p.lng]; })()"
                    )
                )
                await page.mouse.click(box["x"] + x, box["y"] + y)
                await page.wait_for_timeout(300)
            await page.click("#draw-finish")
            await page.fill("#fence-form input[name=name]", "drawn on gcj02")
            await page.select_option("#fence-form select[name=kind]", "watch")
            await page.click("#fence-form button[type=submit]")
            await wait_for_js(page, "window.gpsm.fences.getLayers().length === 1")
            (fence,) = await fence_store.load_geofences(pool)
            stored = list(fence.geometry.exterior.coords)[:3]
            for (lon, lat_), (glat, glng) in zip(stored, clicked, strict=True):
                wlat, wlng = gcj02_to_wgs84(glat, glng)
                assert lat_ == pytest.approx(wlat, abs=1e-7) and lon == pytest.approx(
                    wlng, abs=1e-7
                )
                assert abs(lon - glng) > 1e-3  # really converted (~600 m here), not stored as drawn
            await page.screenshot(path=str(ARTIFACTS / "map_gcj02.png"))
        finally:
            await browser.close()
