"""WGS-84 <-> GCJ-02 ("Mars coordinates", used by AMap/Gaode and Tencent tiles).

gps-monitor stores and evaluates WGS-84 only (DOMAIN.md, Coordinates). The map page converts
positions to GCJ-02 *for display* when ``web.tile_crs = gcj02`` (JavaScript twin in
``web/static/coords.js``); geofences and routes drawn on such tiles come back in GCJ-02 and are
converted here to WGS-84 before they are validated and saved.

The forward transform is the publicly documented GCJ-02 obfuscation (Krasovsky 1940 ellipsoid
constants); outside China it is the identity. The inverse has no closed form: it is solved by
fixed-point iteration until the forward image matches to 1e-9 degree (about 0.1 mm).
Checked against the published pairs of the eviltransform test suite (tests/test_web_coords.py).
"""

from __future__ import annotations

import math
from typing import Any

from gps_monitor.geofences import is_number

_A = 6378245.0  # Krasovsky 1940 semi-major axis, m
_EE = 0.00669342162296594323  # its first eccentricity squared


def out_of_china(lat: float, lon: float) -> bool:
    """True outside the rough China bounding box where GCJ-02 equals WGS-84."""
    return not (72.004 <= lon <= 137.8347 and 0.8293 <= lat <= 55.8271)


def _t_lat(x: float, y: float) -> float:
    r = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
    r += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    r += (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2.0 / 3.0
    r += (160.0 * math.sin(y / 12.0 * math.pi) + 320.0 * math.sin(y * math.pi / 30.0)) * 2.0 / 3.0
    return r


def _t_lon(x: float, y: float) -> float:
    r = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
    r += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    r += (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2.0 / 3.0
    r += (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi)) * 2.0 / 3.0
    return r


def wgs84_to_gcj02(lat: float, lon: float) -> tuple[float, float]:
    """WGS-84 degrees -> GCJ-02 degrees (lat, lon); identity outside China."""
    if out_of_china(lat, lon):
        return lat, lon
    d_lat = _t_lat(lon - 105.0, lat - 35.0)
    d_lon = _t_lon(lon - 105.0, lat - 35.0)
    rad_lat = lat / 180.0 * math.pi
    magic = 1 - _EE * math.sin(rad_lat) ** 2
    sqrt_magic = math.sqrt(magic)
    d_lat = (d_lat * 180.0) / ((_A * (1 - _EE)) / (magic * sqrt_magic) * math.pi)
    d_lon = (d_lon * 180.0) / (_A / sqrt_magic * math.cos(rad_lat) * math.pi)
    return lat + d_lat, lon + d_lon


def gcj02_to_wgs84(lat: float, lon: float, tolerance_deg: float = 1e-9) -> tuple[float, float]:
    """GCJ-02 degrees -> WGS-84 degrees (lat, lon), exact to ``tolerance_deg`` (iterative)."""
    if out_of_china(lat, lon):
        return lat, lon
    w_lat, w_lon = lat, lon
    for _ in range(30):
        g_lat, g_lon = wgs84_to_gcj02(w_lat, w_lon)
        e_lat, e_lon = g_lat - lat, g_lon - lon
        if abs(e_lat) < tolerance_deg and abs(e_lon) < tolerance_deg:
            break
        w_lat -= e_lat
        w_lon -= e_lon
    return w_lat, w_lon


def geojson_gcj02_to_wgs84(geometry: dict[str, Any]) -> dict[str, Any]:
    """A GeoJSON geometry (coordinates ``[lon, lat]`` in GCJ-02) with every position converted to
    WGS-84; other members, and coordinates that are not nested arrays of positions, are kept
    as they came (the geometry check refuses them)."""

    def convert(coords: Any) -> Any:
        if not isinstance(coords, list):
            return coords  # not GeoJSON coordinates: left for the geometry check to refuse
        if len(coords) >= 2 and all(is_number(c) for c in coords[:2]):
            lat, lon = gcj02_to_wgs84(float(coords[1]), float(coords[0]))
            return [lon, lat, *coords[2:]]
        return [convert(c) for c in coords]

    out = dict(geometry)
    if "coordinates" in out:
        out["coordinates"] = convert(out["coordinates"])
    return out
