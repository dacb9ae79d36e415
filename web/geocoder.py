"""Place names for positions (reverse geocoding) from 天地图's geocoder API, cached.

Request (天地图 逆地理编码, lbs.tianditu.gov.cn/server/geocoding.html)::

    GET {web.geocoder_url}?postStr={'lon':106.55,'lat':29.56,'ver':1}&type=geocode&tk=KEY

Answer: ``{"status": "0", "msg": "ok", "result": {"formatted_address": "...",
"addressComponent": {...}, "location": {...}}}``; status "1" or "404" is an error with ``msg``.
Coordinates are sent as stored (WGS-84; 天地图 uses CGCS2000, the same to a few centimetres).

Positions are rounded to ``web.geocoder_cache_decimals`` (4: about 11 m) before lookup, so a
parked vehicle costs one request; answers are kept in an in-memory LRU of
``web.geocoder_cache_size`` per web process and in the table ``place_names`` (migration 0120,
shared by the web processes and kept across restarts, looked up again after
``web.geocoder_cache_days``), because 天地图's free keys have a daily quota; concurrent requests
for the same rounded position share one lookup. A failed lookup is not cached. Each lookup
gives up after ``web.geocoder_timeout_s``; the page asks asynchronously and shows the
coordinates meanwhile and on failure, so a slow geocoder never blocks it.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg

from gps_monitor.config import WebSettings
from gps_monitor.db import place_names
from gps_monitor.errors import GpsMonitorError


class GeocoderError(GpsMonitorError):
    """The geocoder could not give a place name; ``timeout`` tells a slow or unreachable
    service (retry later) from a wrong answer (key, quota, format)."""

    def __init__(self, message: str, *, timeout: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout


@dataclass(frozen=True, slots=True)
class Place:
    """A place name for the rounded position (``lat``, ``lon`` in degrees); ``name`` None when
    the geocoder knows no address there (open sea, outside China)."""

    lat: float
    lon: float
    name: str | None
    cached: bool = False


def geocoder_key(web: WebSettings) -> str | None:
    """The key lookups use: ``web.geocoder_key``, else ``web.tianditu_key``, else None."""
    return web.geocoder_key or web.tianditu_key


def configured(web: WebSettings) -> bool:
    """True when place names can be looked up (a key is set)."""
    return geocoder_key(web) is not None


def parse_answer(body: bytes) -> str | None:
    """The ``formatted_address`` of a 天地图 geocoder answer (None when empty).

    Raises:
        GeocoderError: not JSON, status other than "0", or no ``result``.
    """
    try:
        answer = json.loads(body)
    except ValueError as error:
        raise GeocoderError(f"geocoder: expected a JSON answer, got {body[:80]!r}") from error
    if not isinstance(answer, dict) or str(answer.get("status")) != "0":
        status = answer.get("status") if isinstance(answer, dict) else None
        msg = answer.get("msg") if isinstance(answer, dict) else None
        raise GeocoderError(f"geocoder: expected status 0, got {status!r} ({msg})")
    result = answer.get("result")
    if not isinstance(result, dict):
        raise GeocoderError(f"geocoder: expected a result object, got {result!r}")
    name = result.get("formatted_address")
    return str(name) if name else None


class Geocoder:
    """Cached reverse geocoding for one web process (see the module docstring)."""

    def __init__(self, web: WebSettings) -> None:
        self.web = web
        self._cache: OrderedDict[tuple[float, float], str | None] = OrderedDict()
        self._pending: dict[tuple[float, float], asyncio.Future[tuple[str | None, bool]]] = {}
        self.lookups = 0  # requests sent to the service (the cache's misses)

    def key_of(self, lat: float, lon: float) -> tuple[float, float]:
        digits = self.web.geocoder_cache_decimals
        return round(lat, digits), round(lon, digits)

    async def place(self, pool: asyncpg.Pool, lat: float, lon: float) -> Place:
        """The place name near (``lat``, ``lon``), WGS-84 degrees: from memory, else the table,
        else the service (then stored in both).

        Raises:
            GeocoderError: no key configured, the service timed out or answered an error.
        """
        key = self.key_of(lat, lon)
        if key in self._cache:
            self._cache.move_to_end(key)
            return Place(*key, self._cache[key], cached=True)
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._find_or_lookup(pool, *key))
            self._pending[key] = pending
            pending.add_done_callback(lambda _: self._pending.pop(key, None))
        name, cached = await asyncio.shield(pending)
        return Place(*key, name, cached=cached)

    async def _find_or_lookup(
        self, pool: asyncpg.Pool, lat: float, lon: float
    ) -> tuple[str | None, bool]:
        stored = await place_names.find(pool, lat, lon, self.web.geocoder_cache_days)
        if stored is not None:
            self._remember((lat, lon), stored.place)
            return stored.place, True
        name = await self._lookup(lat, lon)
        await place_names.store(pool, lat, lon, name)
        self._remember((lat, lon), name)
        return name, False

    async def _lookup(self, lat: float, lon: float) -> str | None:
        tk = geocoder_key(self.web)
        if tk is None:
            raise GeocoderError(
                "place names: expected a 天地图 key (GPS_MONITOR_WEB_GEOCODER_KEY or "
                "GPS_MONITOR_WEB_TIANDITU_KEY), got none"
            )
        params = {"postStr": f"{{'lon':{lon},'lat':{lat},'ver':1}}", "type": "geocode", "tk": tk}
        self.lookups += 1
        try:
            timeout = aiohttp.ClientTimeout(total=self.web.geocoder_timeout_s)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(self.web.geocoder_url, params=params) as response,
            ):
                body = await response.read()
                if response.status != 200:
                    raise GeocoderError(
                        f"geocoder: expected HTTP 200, got {response.status} {body[:80]!r}"
                    )
        except TimeoutError as error:
            raise GeocoderError(
                f"geocoder: no answer within {self.web.geocoder_timeout_s} s", timeout=True
            ) from error
        except aiohttp.ClientError as error:
            raise GeocoderError(f"geocoder: unreachable ({error})", timeout=True) from error
        return parse_answer(body)

    def _remember(self, key: tuple[float, float], name: str | None) -> None:
        if self.web.geocoder_cache_size == 0:
            return
        self._cache[key] = name
        self._cache.move_to_end(key)
        while len(self._cache) > self.web.geocoder_cache_size:
            self._cache.popitem(last=False)


def answer(place: Place) -> dict[str, Any]:
    """The JSON of ``GET /api/geocode``."""
    return {"lat": place.lat, "lon": place.lon, "place": place.name, "cached": place.cached}
