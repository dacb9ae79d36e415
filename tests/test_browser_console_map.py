"""The map page's vehicle tree, phone layout and basemaps (issue 11, items 1, 2, 8) in real
headless Chromium, at 1366x768 and 390x844, in Chinese and English.

The world: company 甲 with one vehicle of each status (never connected, offline, online,
alarming) and company 乙 with one online vehicle far away; operator op_a belongs to 甲.
Screenshots go to /tmp/console-map-*.png.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
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
from gps_monitor.db import users
from gps_monitor.db.registry import ensure_company, ensure_vehicle
from gps_monitor.models import VehicleClass

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update"]  # fmt: skip
DESKTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}
SHOTS = Path("/tmp")


@dataclass
class Fleet:
    never: int
    offline: int
    online: int
    alarming: int
    other: int


@pytest.fixture
def chromium() -> str:
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.skip("Debian chromium not installed (bash scripts/install-system.sh)")
    return CHROMIUM


async def make_fleet(pool: asyncpg.Pool) -> Fleet:
    """甲: never connected (coach), offline (hazmat), online (hazmat), alarming (coach);
    乙: one online vehicle in Chengdu; users op_a (甲) and chief (bureau)."""
    a = await ensure_company(pool, "重庆渝运危险货物运输有限公司")
    b = await ensure_company(pool, "成都蓉城客运集团")
    ids = []
    for i, (plate, cls) in enumerate(
        (
            ("渝A00001", VehicleClass.COACH),
            ("渝A00002", VehicleClass.HAZMAT),
            ("渝A00003", VehicleClass.HAZMAT),
            ("渝A00004", VehicleClass.COACH),
        )
    ):
        vehicle = await ensure_vehicle(
            pool,
            company_id=a.id,
            plate_number=plate,
            terminal_id=f"0139000000{i}",
            vehicle_class=cls,
        )
        ids.append(vehicle.id)
    other = await ensure_vehicle(
        pool, company_id=b.id, plate_number="川A99999", terminal_id="013900000099"
    )
    now = datetime.now(UTC)
    await store_position(pool, ids[1], now - timedelta(hours=2), 29.50, 106.50)
    await pool.execute(
        "UPDATE latest_positions SET last_message_at = now() - interval '2 hours' "
        "WHERE vehicle_id = $1",
        ids[1],
    )
    await store_position(pool, ids[2], now, 29.60, 106.60, speed_kmh=40)
    await store_position(pool, ids[3], now - timedelta(minutes=2), 29.55, 106.70, speed_kmh=90)
    await store_alarm(pool, ids[3], a.id, started_at=now - timedelta(minutes=1))
    await store_position(pool, other.id, now, 30.67, 104.06)
    await users.create_user(pool, "op_a", PASSWORD, "operator", a.id)
    await users.create_user(pool, "chief", PASSWORD, "bureau")
    return Fleet(*ids, other.id)


async def open_page(browser: Any, base: str, who: str, viewport: dict[str, int], lang: str) -> Any:
    context = await browser.new_context(viewport=viewport)
    await context.add_init_script(f"localStorage.setItem('gpsm_lang', '{lang}')")
    page = await context.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    await page.goto(f"http://{base}/map")
    await page.fill("#login-username", who)
    await page.fill("#login-password", PASSWORD)
    await page.click("#login-submit")
    await page.wait_for_selector("#login", state="hidden")
    await wait_for_js(page, "window.gpsm && window.gpsm.received.snapshot >= 1")
    return page


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


# the located vehicles of make_fleet: 甲's offline, online, alarming, then 乙's
LOCATED = [(29.50, 106.50), (29.60, 106.60), (29.55, 106.70), (30.67, 104.06)]


async def in_view(page: Any, points: list[tuple[float, float]]) -> list[bool]:
    """Whether each (lat, lon) is inside the map's view, once the page framed its vehicles."""
    await wait_for_js(page, "window.gpsm.fitted === true")
    await page.wait_for_timeout(400)  # the fitBounds animation
    return await page.evaluate(
        f"{[list(p) for p in points]}.map((p) => window.gpsm.map.getBounds().contains(p))"
    )


async def counts(page: Any, selector: str) -> dict[str, int]:
    return await page.evaluate(
        f"""(() => {{ const out = {{}};
        document.querySelectorAll('{selector} [data-filter]').forEach((el) => {{
            out[el.dataset.filter] = Number(el.querySelector('b').textContent); }});
        return out; }})()"""
    )


@pytest.mark.parametrize(
    ("viewport", "lang", "no_match"),
    [
        (DESKTOP, "zh-CN", "无匹配车辆"),
        (DESKTOP, "en", "No vehicle matches"),
        (PHONE, "zh-CN", "无匹配车辆"),
        (PHONE, "en", "No vehicle matches"),
    ],
    ids=["desktop-zh", "desktop-en", "phone-zh", "phone-en"],
)
async def test_operator_tree_counts_only_his_company_and_the_map_fits_his_vehicles(
    settings: Settings,
    pool: asyncpg.Pool,
    browser: Any,
    viewport: dict[str, int],
    lang: str,
    no_match: str,
) -> None:
    fleet = await make_fleet(pool)
    tag = f"{'desktop' if viewport is DESKTOP else 'phone'}-{lang[:2]}"
    async with served_app(settings) as (base, _):
        page = await open_page(browser, base, "op_a", viewport, lang)
        await wait_for_js(
            page, "document.querySelectorAll('#vehicle-list li.veh-row').length === 4"
        )
        if viewport is PHONE:
            await page.click("#drawer-vehicles")
            await wait_for_js(
                page, "document.getElementById('side').getBoundingClientRect().left >= 0"
            )
        total = await counts(page, "#fleet-counts")
        assert total == {"online": 2, "in_alarm": 1, "offline": 1, "never": 1}
        company = await counts(page, "#vehicle-list li.company")
        assert company == total
        assert await page.locator("#vehicle-list li.company").count() == 1
        assert "川A99999" not in await page.inner_text("#vehicle-list")
        statuses = await page.evaluate(
            "Object.fromEntries(Array.from(document.querySelectorAll('#vehicle-list li.veh-row'))"
            ".map((li) => [li.dataset.vehicleId, li.dataset.status]))"
        )
        assert statuses == {
            str(fleet.never): "never",
            str(fleet.offline): "offline",
            str(fleet.online): "moving",
            str(fleet.alarming): "in_alarm",
        }
        never_row = page.locator(f'#vehicle-list li[data-vehicle-id="{fleet.never}"]')
        assert ("未入网" if lang == "zh-CN" else "never connected") in await never_row.inner_text()
        await page.screenshot(path=str(SHOTS / f"console-map-tree-{tag}.png"))
        # the map framed his located vehicles on login (and not 乙's)
        inside = await in_view(page, LOCATED)
        assert inside == [True, True, True, False]
        # filters: status and class
        await page.select_option("#tree-status", "never")
        assert await page.locator("#vehicle-list li.veh-row").count() == 1
        await page.select_option("#tree-status", "")
        await page.select_option("#tree-class", "hazmat")
        rows = page.locator("#vehicle-list li.veh-row")
        assert await rows.count() == 2
        await page.select_option("#tree-class", "")
        # a search that matches nothing says so
        await page.fill("#plate-search", "京Z")
        await page.wait_for_selector("#vehicle-list li.tree-empty")
        assert await page.inner_text("#vehicle-list li.tree-empty") == no_match
        await page.screenshot(path=str(SHOTS / f"console-map-nomatch-{tag}.png"))
        await page.fill("#plate-search", "00003")
        assert await page.locator("#vehicle-list li.veh-row").count() == 1
        assert page.errors == []


async def test_bureau_tree_lists_every_company_with_counts(
    settings: Settings, pool: asyncpg.Pool, browser: Any
) -> None:
    fleet = await make_fleet(pool)
    async with served_app(settings) as (base, _):
        page = await open_page(browser, base, "chief", DESKTOP, "zh-CN")
        await wait_for_js(
            page, "document.querySelectorAll('#vehicle-list li.veh-row').length === 5"
        )
        total = await counts(page, "#fleet-counts")
        assert total == {"online": 3, "in_alarm": 1, "offline": 1, "never": 1}
        assert await page.locator("#vehicle-list li.company").count() == 2
        assert await page.inner_text("#vehicle-count") == "(5)"
        # the map frames every located vehicle of both companies
        inside = await in_view(page, LOCATED)
        assert inside == [True, True, True, True]
        # the never-connected vehicle reports for the first time: the counts follow the feed
        company_a = await pool.fetchval(
            "SELECT company_id FROM vehicles WHERE id = $1", fleet.never
        )
        first = position_dict(
            fleet.never, company_a, "01390000000", datetime.now(UTC), 29.58, 106.58
        )
        await publish_positions(settings, [[first]])
        await wait_for_js(
            page,
            f"document.querySelector('#vehicle-list li[data-vehicle-id=\"{fleet.never}\"]')"
            ".dataset.status === 'moving'",
        )
        await page.wait_for_timeout(1200)  # the tree redraws at most once a second
        total = await counts(page, "#fleet-counts")
        assert total == {"online": 4, "in_alarm": 1, "offline": 1, "never": 0}
        # folding a company hides its vehicles, the counts stay
        await page.click("#vehicle-list li.company:has-text('成都')")
        assert await page.locator(f'#vehicle-list li[data-vehicle-id="{fleet.other}"]').count() == 0
        await page.screenshot(path="/tmp/console-map-tree-bureau-zh.png")
        # the language switch rewrites the tree, its filters, the switcher and the note
        await page.locator("#basemap-note").wait_for(state="visible", timeout=15000)
        await page.select_option("#lang", "en")
        assert await page.inner_text("#tree-status option >> nth=0") == "all statuses"
        assert "online" in await page.inner_text("#fleet-counts")
        assert await switcher_labels(page) == ["OpenStreetMap", "Tianditu", "AMap"]
        assert "cannot load" in await page.inner_text("#basemap-note")
        await page.screenshot(path="/tmp/console-map-tree-bureau-en.png")
        assert page.errors == []


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
async def test_phone_map_fills_the_screen_and_the_lists_are_drawers(
    settings: Settings, pool: asyncpg.Pool, browser: Any, lang: str
) -> None:
    fleet = await make_fleet(pool)
    async with served_app(settings) as (base, _):
        page = await open_page(browser, base, "op_a", PHONE, lang)
        map_box = await page.locator("#map").bounding_box()
        assert map_box is not None and map_box["width"] > 300 and map_box["height"] > 600
        bar = await page.locator("#top").bounding_box()
        assert bar is not None and map_box["y"] >= bar["y"] + bar["height"] - 1  # not under it
        assert map_box["y"] + map_box["height"] <= 844 + 1
        assert not await page.locator("#side").is_visible()
        assert not await page.locator("#alarm-panel").is_visible()
        await page.screenshot(path=f"/tmp/console-map-phone-{lang}.png")
        # the alarm drawer: the list is usable, choosing an alarm closes it onto the map
        await page.click("#drawer-alarms")
        await page.wait_for_selector(".alarm-item")
        await page.wait_for_timeout(300)  # slide-in
        panel = await page.locator("#alarm-panel").bounding_box()
        assert panel is not None and panel["x"] >= 0 and panel["x"] + panel["width"] <= 390
        assert panel["y"] >= bar["y"] + bar["height"] - 1
        await page.screenshot(path=f"/tmp/console-map-phone-alarms-{lang}.png")
        await page.locator(".alarm-item b").first.click()
        await page.wait_for_selector(f'[data-card-vehicle="{fleet.alarming}"]')
        await page.wait_for_timeout(300)
        assert not await page.locator("#alarm-panel").is_visible()
        await page.screenshot(path=f"/tmp/console-map-phone-card-{lang}.png")
        # the vehicle drawer opens and closes with its button
        await page.click("#drawer-vehicles")
        await page.wait_for_timeout(300)
        assert await page.locator("#side").is_visible()
        await page.screenshot(path=f"/tmp/console-map-phone-tree-{lang}.png")
        await page.click("#drawer-vehicles")
        await page.wait_for_timeout(300)
        assert not await page.locator("#side").is_visible()
        assert page.errors == []


async def switcher_labels(page: Any) -> list[str]:
    return await page.evaluate(
        "Array.from(document.querySelectorAll('#basemap-switcher .leaflet-control-layers-base "
        "label')).map((l) => l.textContent.trim())"
    )


async def choose_basemap(page: Any, name: str) -> None:
    await page.hover("#basemap-switcher")
    await page.click(f"#basemap-switcher label:has-text('{name}')")
    await page.mouse.move(10, 400)


@pytest.mark.parametrize(
    ("viewport", "lang", "labels", "offline", "needs_key"),
    [
        (DESKTOP, "zh-CN", ["OpenStreetMap", "天地图", "高德地图"], "无法加载", "需要密钥"),
        (PHONE, "en", ["OpenStreetMap", "Tianditu", "AMap"], "cannot load", "needs a key"),
    ],
    ids=["desktop-zh", "phone-en"],
)
async def test_switcher_offers_three_basemaps_and_offline_tiles_fall_back_with_a_note(
    settings: Settings,
    pool: asyncpg.Pool,
    browser: Any,
    viewport: dict[str, int],
    lang: str,
    labels: list[str],
    offline: str,
    needs_key: str,
) -> None:
    """This machine has no internet: the default OpenStreetMap tiles fail and the page says so
    over a plain background; 天地图 without a key names the setting to set."""
    await make_fleet(pool)
    tag = f"{'desktop' if viewport is DESKTOP else 'phone'}-{lang[:2]}"
    async with served_app(settings) as (base, _):
        page = await open_page(browser, base, "op_a", viewport, lang)
        assert await switcher_labels(page) == labels
        note = page.locator("#basemap-note")
        await note.wait_for(state="visible", timeout=15000)
        assert offline in await note.inner_text()
        assert "OpenStreetMap" in await note.inner_text()
        assert await page.evaluate(
            "document.getElementById('map').classList.contains('tiles-failed')"
        )
        await page.screenshot(path=str(SHOTS / f"console-map-offline-{tag}.png"))
        await choose_basemap(page, labels[1])
        await wait_for_js(page, "window.GpsmBasemaps.active === 'tianditu'")
        text = await note.inner_text()
        assert needs_key in text and "GPS_MONITOR_WEB_TIANDITU_KEY" in text
        await page.screenshot(path=str(SHOTS / f"console-map-tianditu-nokey-{tag}.png"))
        # the choice is kept: a reload shows 天地图 again
        await page.reload()
        await wait_for_js(page, "window.GpsmBasemaps && window.GpsmBasemaps.active === 'tianditu'")
        assert page.errors == []


async def test_reachable_tiles_load_amap_shifts_markers_and_the_card_names_the_place(
    settings: Settings, pool: asyncpg.Pool, browser: Any
) -> None:
    """With the tile templates on a local tile server the tiles load and no note shows; 高德
    (GCJ-02) draws the vehicle at its converted place and OpenStreetMap back at the stored one;
    the vehicle card and the alarm list fill in place names from a fake 天地图 geocoder."""
    from fake_services import geocoder_server, tile_server

    fleet = await make_fleet(pool)
    async with tile_server() as tiles, geocoder_server() as geocoder:
        web = settings.web.model_copy(
            update={
                "osm_url_template": f"{tiles.base}/osm/{{z}}/{{x}}/{{y}}.png",
                "amap_url_template": f"{tiles.base}/amap/{{z}}/{{x}}/{{y}}.png",
                "geocoder_url": f"{geocoder.base}/geocoder",
                "geocoder_key": "k",
            }
        )
        local = settings.model_copy(update={"web": web})
        async with served_app(local) as (base, _):
            page = await open_page(browser, base, "op_a", DESKTOP, "zh-CN")
            await wait_for_js(
                page, "document.querySelectorAll('img.leaflet-tile-loaded').length > 3"
            )
            await page.wait_for_timeout(1000)
            assert not await page.locator("#basemap-note").is_visible()
            assert any(r.path.startswith("/osm/") for r in tiles.requests)
            marker = f"window.gpsm.markers.get({fleet.online}).getLatLng()"
            assert await page.evaluate(f"[{marker}.lat, {marker}.lng]") == [29.60, 106.60]
            await page.screenshot(path=str(SHOTS / "console-map-tiles-osm.png"))
            await choose_basemap(page, "高德地图")
            await wait_for_js(page, "window.gpsm.config.tile_crs === 'gcj02'")
            expected = await page.evaluate("GpsmCoords.wgs84ToGcj02(29.60, 106.60)")
            assert await page.evaluate(f"[{marker}.lat, {marker}.lng]") == expected
            assert expected != [29.60, 106.60]
            await wait_for_js(
                page,
                "document.querySelectorAll('.basemap-amap img.leaflet-tile-loaded').length > 0",
            )
            await choose_basemap(page, "OpenStreetMap")
            await wait_for_js(page, "window.gpsm.config.tile_crs === 'wgs84'")
            assert await page.evaluate(f"[{marker}.lat, {marker}.lng]") == [29.60, 106.60]
            # the card: coordinates at once, the place name when the geocoder answers
            await page.click(f'#vehicle-list li[data-vehicle-id="{fleet.online}"]')
            place = page.locator(".card-place")
            await page.wait_for_selector(".card-place.place-named")
            assert await place.inner_text() == "重庆市渝中区解放碑 106.6,29.6"
            assert await place.get_attribute("title") == "29.60000, 106.60000"
            # the alarm list names the place of its alarm too
            await page.wait_for_selector(".alarm-item .place.place-named")
            assert await page.inner_text(".alarm-item .place") == "重庆市渝中区解放碑 106.7,29.55"
            await page.wait_for_timeout(500)
            await page.screenshot(path=str(SHOTS / "console-map-place.png"))
            # one request per rounded position, whatever the page showed
            assert sorted(r.query["postStr"] for r in geocoder.requests) == [
                "{'lon':106.6,'lat':29.6,'ver':1}",
                "{'lon':106.7,'lat':29.55,'ver':1}",
            ]
            assert page.errors == []
