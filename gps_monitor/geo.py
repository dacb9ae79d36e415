"""Metric geometry on WGS-84 positions.

Distances are geodesic (pyproj.Geod on the WGS-84 ellipsoid), in metres. Shapes are tested in a
local projected CRS (see :func:`local_crs`), never in raw degrees. Terminals report WGS-84 /
CGCS2000, which are treated as one (DOMAIN.md, Coordinates).
"""

from __future__ import annotations

from datetime import datetime

from pyproj import Geod

WGS84 = Geod(ellps="WGS84")


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Geodesic distance in metres between two WGS-84 points given in degrees."""
    _, _, dist = WGS84.inv(lon1, lat1, lon2, lat2)
    return float(dist)


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial geodesic bearing from point 1 to point 2, degrees clockwise from north, [0, 360)."""
    azimuth, _, _ = WGS84.inv(lon1, lat1, lon2, lat2)
    return float(azimuth) % 360.0


def implied_speed_kmh(
    lat1: float, lon1: float, t1: datetime, lat2: float, lon2: float, t2: datetime
) -> float:
    """Speed in km/h needed to cover the geodesic between two fixes in their time difference.

    Returns ``inf`` for two different places at the same instant and 0 for the same place.
    """
    dist = distance_m(lat1, lon1, lat2, lon2)
    dt_s = abs((t2 - t1).total_seconds())
    if dt_s == 0:
        return 0.0 if dist == 0 else float("inf")
    return dist / dt_s * 3.6
