"""Geofences, routes and track playback in the map page, in real headless Chromium, in zh and en,
at 1366×768 (desk) and 390×844 (phone). No browser dialog may open (prompt/confirm/alert): every
question and error is in the page, in its language.

- The bureau draws a route, fills the form (a wrong corridor is refused in the page's language),
  assigns it to a vehicle in the page; the real rules worker then raises route deviation for a
  track that leaves it. A drawn area that crosses itself is refused by the API and the form
  shows why; vertices are dragged and saved; delete asks first (cancel keeps it).
- Playback of a real bus trip (../shared/data, UK BODS, Open Government Licence v3.0) at 16×: the
  chart cursor and the table follow the marker, the overspeed alarms the real engine raises on
  that trip are on the timeline and a click jumps to them, every time is Beijing time.

Screenshots: /tmp/console-fences-*.png.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from pyproj import Geod
from test_browser_map import CHROMIUM_ARGS, chain, chromium, login
from web_helpers import (
    PASSWORD,
    position_dict,
    publish_positions,
    served_app,
    store_alarm,
    store_position,
    wait_for_js,
)

from gps_monitor.config import Settings
from gps_monitor.db import geofences as fence_store
from gps_monitor.db import users
from gps_monitor.db.registry import ensure_company, ensure_vehicle
from gps_monitor.models import VehicleClass
from gps_monitor.tracks import read_track
from rules.evaluate import evaluate_track

pytestmark = pytest.mark.browser
__all__ = ["chromium"]  # the fixture, imported for this module's tests

SHOTS = Path("/tmp")
DESK = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}
GEOD = Geod(ellps="WGS84")
BEIJING = ZoneInfo("Asia/Shanghai")


@contextlib.asynccontextmanager
async def browser_page(
    chromium: str, viewport: dict[str, int], lang: str
) -> AsyncIterator[tuple[Any, list[str]]]:
    """A page in ``lang`` whose page errors and browser dialogs are collected (none expected)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        # the browser's own language as a user of that language has it (date/time inputs)
        locale = "zh-CN" if lang == "zh-CN" else "en-GB"
        browser = await pw.chromium.launch(
            executable_path=chromium, args=[*CHROMIUM_ARGS, f"--lang={locale}"]
        )
        try:
            context = await browser.new_context(viewport=viewport, locale=locale)
            await context.add_init_script(f"localStorage.setItem('gpsm_lang', '{lang}')")
            page = await context.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

            async def on_dialog(dialog: Any) -> None:
                problems.append(f"browser dialog: {dialog.type} {dialog.message}")
                await dialog.dismiss()

            page.on("dialog", on_dialog)
            yield page, problems
        finally:
            await browser.close()


async def click_map(page: Any, points: list[tuple[float, float]]) -> None:
    """Click the map at fractions (x, y) of its box."""
    box = await page.locator("#map").bounding_box()
    for fx, fy in points:
        await page.mouse.click(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)
        await page.wait_for_timeout(150)


async def open_popup_of(page: Any, kind: str) -> None:
    """Open the popup of the (only) drawn geofence/route of ``kind`` through its map layer."""
    await wait_for_js(page, f"document.querySelector('path.fence-{kind}')")
    await page.evaluate(
        "(kind) => { const layers = []; window.gpsm.fences.eachLayer((l) => layers.push(l));"
        " const l = layers.find((x) => (x.getLayers ? x.getLayers()[0] : x).options.className"
        "   .includes('fence-' + kind));"
        " const b = l.getBounds().getCenter(); l.fire('click', { latlng: b }); }",
        kind,
    )
    await page.wait_for_selector(".fence-popup")
    await page.wait_for_timeout(300)  # the popup's fade-in


async def setup_fleet(pool: asyncpg.Pool) -> tuple[int, list[int]]:
    company = await ensure_company(pool, "渝运客运公司")
    ids = []
    for i in range(2):
        v = await ensure_vehicle(
            pool,
            company_id=company.id,
            plate_number=f"渝A6000{i}",
            terminal_id=f"01390000006{i}",
            vehicle_class=VehicleClass.COACH,
        )
        ids.append(v.id)
    await users.create_user(pool, "chief", PASSWORD, "bureau")
    return company.id, ids


def off_route_track(
    line: list[tuple[float, float]], vehicle_id: int, company_id: int, terminal: str
) -> list[dict[str, Any]]:
    """Along the route's first leg for 2 min at 36 km/h, then 4 min at 36 km/h at right angles
    away from it (2.4 km off a 150 m corridor); a fix every 5 s ending now."""
    (lon0, lat0), (lon1, lat1) = line[0], line[1]
    azimuth, _, leg_m = GEOD.inv(lon0, lat0, lon1, lat1)
    fixes: list[tuple[float, float]] = []
    lon, lat = lon0, lat0
    for _ in range(24):  # 10 m/s, 5 s apart: 1.2 km on the route
        fixes.append((lon, lat))
        lon, lat, _ = GEOD.fwd(lon, lat, azimuth, min(50.0, leg_m / 30))
    for _ in range(48):
        fixes.append((lon, lat))
        lon, lat, _ = GEOD.fwd(lon, lat, azimuth + 90, 50.0)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5 * len(fixes))
    return [
        position_dict(
            vehicle_id, company_id, terminal, start + timedelta(seconds=5 * i), la, lo, 36.0
        )
        for i, (lo, la) in enumerate(fixes)
    ]


async def test_bureau_draws_a_route_assigns_it_and_deviation_is_raised(
    settings: Settings, pool: asyncpg.Pool, chromium: str
) -> None:
    company_id, vehicles = await setup_fleet(pool)
    rules = settings.rules.model_copy(update={"offline_after_s": 86400.0})
    settings = settings.model_copy(update={"rules": rules})
    async with (
        served_app(settings) as (base, _),
        browser_page(chromium, DESK, "zh-CN") as (page, problems),
    ):
        await login(page, base, "chief")
        await page.evaluate(
            "() => { window.gpsm.fitted = true; window.gpsm.map.setView([29.56, 106.55], 14); }"
        )
        # a self-intersecting area: the API refuses it, the form says why in Chinese
        await page.click("#draw-polygon")
        assert "至少 3 个" in await page.inner_text("#draw-help")
        await click_map(page, [(0.3, 0.3), (0.6, 0.6), (0.6, 0.3), (0.3, 0.6)])
        await page.click("#draw-finish")
        await page.fill("#fence-form input[name=name]", "交叉区域")
        await page.select_option("#fence-form select[name=kind]", "forbidden")
        await page.click("#fence-form button[type=submit]")
        await page.wait_for_selector("#ff-error-geometry:not(:empty)")
        assert "自相交" in await page.inner_text("#ff-error-geometry")
        await page.screenshot(path=str(SHOTS / "console-fences-selfintersect-zh.png"))
        await page.click("#fence-form .btn-cancel")
        await page.click("#draw-cancel")
        assert await fence_store.load_geofences(pool) == []

        # the route: three clicks, then the form
        await page.click("#draw-route")
        await click_map(page, [(0.2, 0.5), (0.5, 0.45), (0.8, 0.5)])
        await page.click("#draw-finish")
        await page.wait_for_selector("#fence-form")
        assert "新建路线" in await page.inner_text("#fence-form h3")
        await page.fill("#fence-form input[name=name]", "G65 渝湘线")
        await page.fill("#fence-form input[name=corridor_m]", "60000")
        await page.click("#fence-form button[type=submit]")
        assert "不超过 50000" in await page.inner_text("#ff-error-corridor")
        await page.fill("#fence-form input[name=corridor_m]", "150")
        await page.fill("#fence-form input[name=speed_limit_kmh]", "80")
        await page.fill("#fence-form input[name=hours_from]", "00:00")
        await page.fill("#fence-form input[name=hours_to]", "23:59")
        await page.check(f'#fence-form .assign-vehicle[value="{vehicles[0]}"]')
        await page.screenshot(path=str(SHOTS / "console-fences-route-form-zh.png"))
        await page.click("#fence-form button[type=submit]")
        await page.wait_for_selector("#fence-form", state="detached")
        await wait_for_js(page, "document.querySelector('path.fence-route')")
        (route,) = await fence_store.load_routes(pool)
        assert (route.name, route.corridor_m, route.speed_limit_kmh) == ("G65 渝湘线", 150, 80)
        assert route.vehicle_ids == frozenset([vehicles[0]])
        assert len(route.line.coords) == 3
        await open_popup_of(page, "route")
        popup = await page.inner_text(".fence-popup")
        assert "G65 渝湘线" in popup and "已分配 1" in popup
        await page.screenshot(path=str(SHOTS / "console-fences-route-popup-zh.png"))

        # the real rules worker: the assigned vehicle leaves the route -> route deviation
        track = off_route_track(list(route.line.coords), vehicles[0], company_id, "013900000060")
        async with chain(settings):
            await publish_positions(settings, [track[i : i + 12] for i in range(0, 72, 12)])
            for _ in range(200):
                types = [r["alarm_type"] for r in await pool.fetch("SELECT alarm_type FROM alarms")]
                if "route_deviation" in types:
                    break
                await asyncio.sleep(0.1)
            assert "route_deviation" in types
            await wait_for_js(
                page, "document.querySelector('#alarm-list').textContent.includes('偏离路线')"
            )
        details = await pool.fetchval(
            "SELECT details FROM alarms WHERE alarm_type = 'route_deviation'"
        )
        assert details["route_id"] == route.id

        # edit of the vertices: drag the middle one, save
        await open_popup_of(page, "route")
        await page.click(".btn-fence-vertices")
        await page.wait_for_timeout(300)  # the popup's fade-out
        handles = page.locator(".vertex-handle:not(.mid)")
        assert await handles.count() == 3
        box = await handles.nth(1).bounding_box()
        await page.mouse.move(box["x"] + 7, box["y"] + 7)
        await page.mouse.down()
        await page.mouse.move(box["x"] + 7, box["y"] + 80, steps=8)
        await page.mouse.up()
        await page.screenshot(path=str(SHOTS / "console-fences-vertices-zh.png"))
        await page.click("#draw-finish")
        await wait_for_js(page, "!window.gpsm.drawing")
        (moved,) = await fence_store.load_routes(pool)
        assert moved.line.coords[1][1] < route.line.coords[1][1] - 0.001  # dragged south
        assert moved.vehicle_ids == route.vehicle_ids and moved.corridor_m == 150

        # delete asks first: cancel keeps it, confirm deletes it
        await open_popup_of(page, "route")
        await page.click(".btn-fence-delete")
        assert "确定删除「G65 渝湘线」" in await page.inner_text("#confirm-form")
        await page.screenshot(path=str(SHOTS / "console-fences-delete-confirm-zh.png"))
        await page.click("#confirm-form .btn-cancel")
        assert len(await fence_store.load_routes(pool)) == 1
        await open_popup_of(page, "route")
        await page.click(".btn-fence-delete")
        await page.click("#confirm-form button[type=submit]")
        await wait_for_js(page, "!document.querySelector('path.fence-route')")
        assert await fence_store.load_routes(pool) == []
        actions = [
            r["action"] for r in await pool.fetch("SELECT action FROM audit_log ORDER BY id")
        ]
        assert actions == ["route.create", "route.assign", "route.update", "route.delete"]
        assert problems == []


async def test_phone_english_speed_zone_form_and_delete(
    settings: Settings, pool: asyncpg.Pool, chromium: str
) -> None:
    company_id, vehicles = await setup_fleet(pool)
    async with (
        served_app(settings) as (base, _),
        browser_page(chromium, PHONE, "en") as (page, problems),
    ):
        await login(page, base, "chief")
        await page.evaluate(
            "() => { window.gpsm.fitted = true; window.gpsm.map.setView([29.56, 106.55], 14); }"
        )
        map_box = await page.locator("#map").bounding_box()
        assert map_box["width"] > 300, "the map must be usable at 390 px"
        await page.click("#draw-polygon")
        await click_map(page, [(0.3, 0.55), (0.7, 0.55), (0.7, 0.8), (0.3, 0.8)])
        await page.click("#draw-finish")
        await page.fill("#fence-form input[name=name]", "School zone")
        await page.select_option("#fence-form select[name=kind]", "speed_zone")
        await page.click("#fence-form button[type=submit]")
        assert await page.inner_text("#ff-error-speed") == "A speed-limit zone needs its limit"
        await page.fill("#fence-form input[name=speed_limit_kmh]", "30")
        await page.fill("#fence-form input[name=hours_from]", "07:00")
        await page.click("#fence-form button[type=submit]")
        assert "both a start and an end" in await page.inner_text("#ff-error-hours")
        await page.fill("#fence-form input[name=hours_to]", "18:00")
        await page.check(f'#fence-form .assign-company[value="{company_id}"]')
        await page.screenshot(path=str(SHOTS / "console-fences-zone-form-en-phone.png"))
        await page.click("#fence-form button[type=submit]")
        await page.wait_for_selector("#fence-form", state="detached")
        (fence,) = await fence_store.load_geofences(pool)
        assert (str(fence.kind), fence.speed_limit_kmh, str(fence.active_hours)) == (
            "speed_zone",
            30,
            "07:00-18:00",
        )
        assert fence.vehicle_ids == frozenset(vehicles)  # the whole company
        assert fence.corridor_m is None and fence.radius_m is None  # an area, not buffered
        await open_popup_of(page, "speed_zone")
        popup = await page.inner_text(".fence-popup")
        assert "Speed-limit zone" in popup and "corridor" not in popup
        await page.screenshot(path=str(SHOTS / "console-fences-zone-popup-en-phone.png"))
        # edit: the form opens filled in; a new limit is saved, shape and assignment kept
        await page.click(".btn-fence-edit")
        assert await page.input_value("#fence-form input[name=name]") == "School zone"
        assert await page.input_value("#fence-form input[name=hours_to]") == "18:00"
        assert await page.is_checked(f'#fence-form .assign-company[value="{company_id}"]')
        await page.fill("#fence-form input[name=speed_limit_kmh]", "40")
        await page.click("#fence-form button[type=submit]")
        await page.wait_for_selector("#fence-form", state="detached")
        (edited,) = await fence_store.load_geofences(pool)
        assert edited.speed_limit_kmh == 40 and edited.geometry.equals(fence.geometry)
        assert edited.vehicle_ids == fence.vehicle_ids and str(edited.active_hours) == "07:00-18:00"
        await open_popup_of(page, "speed_zone")
        await page.click(".btn-fence-delete")
        assert "Delete “School zone”?" in await page.inner_text("#confirm-form")
        await page.screenshot(path=str(SHOTS / "console-fences-delete-confirm-en-phone.png"))
        await page.click("#confirm-form button[type=submit]")
        await wait_for_js(page, "!document.querySelector('path.fence-speed_zone')")
        assert await fence_store.load_geofences(pool) == []
        assert problems == []


async def _bus_trip(pool: asyncpg.Pool, shared_data: Path) -> tuple[int, list[Any], list[Any]]:
    """Trip 1097 of the Liverpool route 14 buses stored as positions of a coach (limit 30 km/h),
    and the overspeed alarms the real engine raises on it, stored as the worker would."""
    tracks = read_track(shared_data / "bods_liverpool_bus_route14_outbound.csv", "bods")
    trip = [p for ps in tracks.values() for p in ps if p.extras.get("trip_id") == "1097"]
    trip.sort(key=lambda p: p.fix_time)
    company = await ensure_company(pool, "Merseyside Coaches")
    vehicle = await ensure_vehicle(
        pool,
        company_id=company.id,
        plate_number="渝B14097",
        terminal_id="013900001097",
        vehicle_class=VehicleClass.COACH,
        speed_limit_kmh=30,
    )
    for p in trip:
        await store_position(pool, vehicle.id, p.fix_time, p.latitude, p.longitude, p.speed_kmh)
    settings = Settings()
    alarms = evaluate_track(
        {trip[0].terminal_id: trip},
        settings.model_copy(
            update={"rules": settings.rules.model_copy(update={"offline_after_s": 1e9})}
        ),
        fmt="bods",
        vehicle_class="coach",
        speed_limit_kmh=30,
    )
    overspeeds = [a for a in alarms if a.alarm_type == "overspeed"]
    for a in overspeeds:
        await store_alarm(
            pool, vehicle.id, company.id, "overspeed", a.started_at, a.ended_at, details=a.details
        )
    await users.create_user(pool, "chief", PASSWORD, "bureau")
    return vehicle.id, trip, overspeeds


def local_input(when: datetime) -> str:
    return when.astimezone(BEIJING).strftime("%Y-%m-%dT%H:%M")


@pytest.mark.parametrize(
    ("lang", "viewport", "tag"), [("zh-CN", DESK, "zh"), ("en", PHONE, "en-phone")]
)
async def test_playback_of_a_real_bus_trip_at_16x_with_chart_alarms_and_local_time(
    settings: Settings,
    pool: asyncpg.Pool,
    chromium: str,
    shared_data: Path,
    lang: str,
    viewport: dict[str, int],
    tag: str,
) -> None:
    vehicle_id, trip, overspeeds = await _bus_trip(pool, shared_data)
    assert overspeeds, "the trip goes over 30 km/h somewhere"
    first = trip[0].fix_time.astimezone(BEIJING)
    async with (
        served_app(settings) as (base, _),
        browser_page(chromium, viewport, lang) as (page, problems),
    ):
        await login(page, base, "chief")
        await wait_for_js(page, f"window.gpsm.vehicles.has({vehicle_id})")
        # a window that ends before it starts: said in the page, in its language
        await page.evaluate(f"() => GpsmPlayback.open({vehicle_id})")
        await page.fill("#pb-start", local_input(trip[-1].fix_time))
        await page.fill("#pb-end", local_input(trip[0].fix_time))
        await page.click("#pb-load")
        expected = (
            "结束时间应晚于开始时间" if lang == "zh-CN" else "The end must be after the start"
        )
        assert await page.inner_text("#pb-error") == expected
        await page.fill("#pb-start", local_input(trip[0].fix_time - timedelta(minutes=5)))
        await page.fill("#pb-end", local_input(trip[-1].fix_time + timedelta(minutes=5)))
        await page.click("#pb-load")
        await page.wait_for_selector("#pb-chart path.pb-speed")
        assert await page.is_hidden("#pb-error")
        rows = page.locator("#pb-table tbody tr")
        assert await rows.count() == len({p.fix_time for p in trip})
        # local (Beijing) time in the table and the clock, never UTC
        stamp = first.strftime("%H:%M:%S")
        day = first.strftime("%Y/%m/%d") if lang == "zh-CN" else first.strftime("%d/%m/%Y")
        first_row = await rows.nth(0).inner_text()
        assert stamp in first_row and day in first_row, first_row
        assert stamp in await page.inner_text("#pb-now")
        panel = await page.inner_text("#playback")
        assert not re.search(r"\d\d:\d\dZ|UTC|T\d\d:\d\d", panel), panel
        # the alarms of the window on the timeline; a click jumps to the first fix of one
        bars = page.locator("#pb-chart rect.pb-alarm")
        assert await bars.count() == len(overspeeds)
        target = overspeeds[-1]
        await bars.nth(len(overspeeds) - 1).dispatch_event("pointerdown")
        jumped = await page.evaluate("GpsmPlayback.state.data.times[GpsmPlayback.state.i]")
        assert jumped >= target.started_at.timestamp() * 1000
        assert jumped - target.started_at.timestamp() * 1000 < 120_000
        assert "over" in (await page.get_attribute("#pb-table tr.current", "class") or "")
        # a click on the chart moves marker, table and cursor together
        chart = await page.locator("#pb-chart").bounding_box()
        await page.mouse.click(chart["x"] + chart["width"] * 0.5, chart["y"] + 20)
        i_mid = await page.evaluate("GpsmPlayback.state.i")
        assert 0 < i_mid < await rows.count() - 1
        assert await page.get_attribute("#pb-table tr.current", "data-i") == str(i_mid)
        marker = await page.evaluate(
            "(() => { const ll = GpsmPlayback.state.cursor.getLatLng();"
            " return [ll.lat, ll.lng]; })()"
        )
        expected_ll = await page.evaluate(f"GpsmPlayback.state.data.pts[{i_mid}]")
        assert marker == pytest.approx(expected_ll)
        # play at 16×: the cursor moves along the chart
        await page.select_option("#pb-rate", "16")
        x_before = float(await page.get_attribute("#pb-cursor", "x1") or 0)
        i_before = await page.evaluate("GpsmPlayback.state.i")
        await page.click("#pb-play")
        await page.wait_for_timeout(3000)  # 48 s of track: about two fixes (24 s apart)
        await page.click("#pb-play")
        i_after = await page.evaluate("GpsmPlayback.state.i")
        x_after = float(await page.get_attribute("#pb-cursor", "x1") or 0)
        assert i_after > i_before and x_after > x_before
        assert await page.get_attribute("#pb-table tr.current", "data-i") == str(i_after)
        await page.wait_for_timeout(300)
        await page.screenshot(path=str(SHOTS / f"console-fences-playback-{tag}.png"))
        # the language switch relabels the panel, the table and the chart's times
        other, play, status = (
            ("en", "Play", "moving") if lang == "zh-CN" else ("zh-CN", "播放", "行驶")
        )
        await page.select_option("#lang", other)
        assert await page.inner_text("#pb-play") == play
        assert status in await page.inner_text("#pb-table tbody")
        assert await page.get_attribute("#pb-table tr.current", "data-i") == str(i_after)
        assert problems == []


async def test_the_language_switch_relabels_an_open_geofence_form(
    settings: Settings, pool: asyncpg.Pool, chromium: str
) -> None:
    """Found in the console review: switching 中文 → English with the form open (by keyboard: the
    backdrop covers the top bar) left its labels, options and buttons in Chinese beside English
    error messages."""
    await setup_fleet(pool)
    async with (
        served_app(settings) as (base, _),
        browser_page(chromium, DESK, "zh-CN") as (page, problems),
    ):
        await login(page, base, "chief")
        # logged in: the connection badge is shown (hidden before a login)
        await wait_for_js(page, "!document.getElementById('conn').hidden")
        await page.evaluate(
            "() => { window.gpsm.fitted = true; window.gpsm.map.setView([29.56, 106.55], 14); }"
        )
        await page.click("#draw-polygon")
        await click_map(page, [(0.3, 0.55), (0.7, 0.55), (0.7, 0.8)])
        await page.click("#draw-finish")
        await page.select_option("#fence-form select[name=kind]", "speed_zone")
        await page.click("#fence-form button[type=submit]")
        assert await page.inner_text("#ff-error-speed") == "限速区域需要填写限速"
        await page.fill("#fence-form input[name=name]", "学校路段")
        # the modal's backdrop keeps the pointer off the top bar; the keyboard reaches the switch
        await page.focus("#lang")
        await page.select_option("#lang", "en")
        form = await page.inner_text("#fence-form")
        for english in ("New geofence", "Name", "Speed limit (km/h)", "Save", "Cancel"):
            assert english in form, english
        assert not any(zh in form for zh in ("新建电子围栏", "名称", "保存", "取消", "限速区域"))
        assert await page.inner_text("#ff-error-speed") == "A speed-limit zone needs its limit"
        selected = "#fence-form select[name=kind] option:checked"
        assert await page.inner_text(selected) == "Speed-limit zone"
        # what was typed stays
        assert await page.input_value("#fence-form input[name=name]") == "学校路段"
        await page.screenshot(path=str(SHOTS / "console-fences-form-lang-switch.png"))
        assert problems == []
