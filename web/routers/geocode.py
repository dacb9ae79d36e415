"""``GET /api/geocode``: the place name of a position (天地图 reverse geocoding, cached in memory
and in the table ``place_names``; :mod:`web.geocoder`). Any logged-in user; a position is no
vehicle's data, so no company scope.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request

from web.deps import CurrentUser, PoolDep, SettingsDep
from web.geocoder import Geocoder, GeocoderError, answer, configured

router = APIRouter(prefix="/api", tags=["geocode"])


def _geocoder(request: Request) -> Geocoder:
    """The process's geocoder (its cache lives as long as the app), made on first use."""
    geocoder = getattr(request.app.state, "geocoder", None)
    if geocoder is None:
        geocoder = request.app.state.geocoder = Geocoder(request.app.state.settings.web)
    return geocoder


@router.get("/geocode")
async def geocode(
    request: Request,
    user: CurrentUser,
    pool: PoolDep,
    settings: SettingsDep,
    lat: Annotated[float, Query(ge=-90, le=90, description="WGS-84 latitude, degrees")],
    lon: Annotated[float, Query(ge=-180, le=180, description="WGS-84 longitude, degrees")],
) -> dict[str, Any]:
    """``{lat, lon, place, cached}`` for the position rounded to ``web.geocoder_cache_decimals``;
    ``place`` null where the geocoder knows no address.

    Raises:
        HTTPException 503: no geocoder key configured (the page then shows coordinates only);
            504: the geocoder did not answer in ``web.geocoder_timeout_s``; 502: it answered an
            error (wrong key, quota) or something unreadable.
    """
    if not configured(settings.web):
        raise HTTPException(
            503,
            "place names: no geocoder configured (set GPS_MONITOR_WEB_GEOCODER_KEY or "
            "GPS_MONITOR_WEB_TIANDITU_KEY); positions are shown as coordinates",
        )
    try:
        return answer(await _geocoder(request).place(pool, lat, lon))
    except GeocoderError as error:
        raise HTTPException(504 if error.timeout else 502, str(error)) from error
