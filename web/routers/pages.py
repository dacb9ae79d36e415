"""The map page (static, bundled Leaflet, no CDN) and the map configuration it reads.

Every page route (here, ``/dashboard``, ``/notify``) is declared with :func:`page`, so it answers
``HEAD`` as ``GET`` (headers, no body): monitoring probes and link checkers send ``HEAD``, and
FastAPI, unlike Starlette's plain routes, does not add it to a ``GET`` route by itself.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from web import basemaps, geocoder
from web.deps import SettingsDep

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
router = APIRouter(tags=["map"])
PAGE_METHODS = ["GET", "HEAD"]


def page(on: APIRouter, path: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: ``path`` on ``on`` as a page, answering GET and HEAD, outside the API schema."""
    return on.api_route(path, methods=PAGE_METHODS, include_in_schema=False)


@page(router, "/")
async def index() -> RedirectResponse:
    return RedirectResponse("/map")


@page(router, "/map")
async def map_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@page(router, "/admin")
async def admin_page() -> FileResponse:
    """The bureau's registry page: companies, vehicles, bulk import, users (static/admin.js).
    The page itself holds no data; every API call it makes is bureau-only."""
    return FileResponse(STATIC_DIR / "admin.html", headers={"Cache-Control": "no-cache"})


@page(router, "/favicon.ico")
async def favicon() -> FileResponse:
    """The icon browsers ask for on their own (pages without a ``<link rel="icon">``, the API
    docs): the same SVG the pages link, so no page logs a 404."""
    return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")


@router.get("/api/config")
async def map_config(settings: SettingsDep) -> dict[str, Any]:
    """Basemap and map settings for the page (no login needed: holds no data).

    ``basemaps``: the layer switcher's entries (:mod:`web.basemaps`), ``basemap_default`` the
    one shown first, ``tile_crs`` its datum (gcj02: the page converts WGS-84 positions to GCJ-02
    for display only); none offered: a plain background with a scale. ``geocoder``: place names
    are available from ``GET /api/geocode``.
    ``alert_min_level``: a new live alarm this urgent or more (level number at most this) sounds,
    pops up, counts in the title badge; ``alert_repeat_s``: a level-1 alarm's sound repeats this
    often until acknowledged.
    """
    web = settings.web
    return {
        "tile_url_template": web.tile_url_template,
        "tile_crs": web.tile_crs,
        **basemaps.page_config(web),  # the layer switcher; tile_crs: the default basemap's
        "geocoder": geocoder.configured(web),
        "tile_attribution": web.tile_attribution,
        "tile_max_zoom": web.tile_max_zoom,
        "center": [web.map_center_lat, web.map_center_lon],
        "zoom": web.map_zoom,
        "coalesce_interval_s": web.coalesce_interval_s,
        "offline_after_s": web.offline_after_s,
        "moving_speed_kmh": web.moving_speed_kmh,
        "alert_min_level": web.alert_min_level,
        "alert_repeat_s": web.alert_repeat_s,
        "alarm_page_size": web.alarm_page_size,
        # the zone every time in the page is shown in (the rules' local time, rules.timezone)
        "timezone": settings.rules.timezone,
    }
