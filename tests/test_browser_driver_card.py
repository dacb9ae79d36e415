"""The map's vehicle card names the driver whose IC card is in (issue 12 item 7), in the page's
language, in real headless Chromium; ``/api/vehicles/{id}`` carries the driver."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from test_browser_console_map import DESKTOP, browser, chromium, make_fleet, open_page
from web_helpers import served_app

from gps_monitor.config import Settings
from gps_monitor.db import drivers

pytestmark = pytest.mark.browser
__all__ = ["browser", "chromium"]  # fixtures


@pytest.mark.parametrize(
    ("lang", "label", "nobody"), [("zh-CN", "驾驶员", "未插卡"), ("en", "Driver", "no IC card in")]
)
async def test_the_vehicle_card_shows_the_driver_whose_card_is_in(
    settings: Settings, pool: asyncpg.Pool, browser: Any, lang: str, label: str, nobody: str
) -> None:
    fleet = await make_fleet(pool)
    await drivers.card_inserted(
        pool, vehicle_id=fleet.online, terminal_id="01390000002",
        certificate_no="500101198001011234", name="张三", issuing_authority=None,
        valid_until=None, id_card_no=None, card_in_at=datetime.now(UTC), raw_hex="01",
    )  # fmt: skip
    async with served_app(settings) as (base, _):
        page = await open_page(browser, base, "op_a", DESKTOP, lang)
        await page.click(f'#vehicle-list li[data-vehicle-id="{fleet.online}"]')
        row = page.locator(f'[data-card-vehicle="{fleet.online}"] .card-driver')
        await row.wait_for()
        assert await row.inner_text() == f"{label}\t张三 500101198001011234"
        await page.screenshot(path=f"/tmp/driver-card-{lang[:2]}.png")
        await page.click(f'#vehicle-list li[data-vehicle-id="{fleet.offline}"]')
        other = page.locator(f'[data-card-vehicle="{fleet.offline}"] .card-driver')
        await other.wait_for()
        assert await other.inner_text() == f"{label}\t{nobody}"
        assert page.errors == []
