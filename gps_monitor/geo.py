"""Metric geometry on WGS-84 positions.

Distances are geodesic (pyproj.Geod on the WGS-84 ellipsoid), in metres. Shapes are tested in a
local projected CRS (see :func:`local_crs`), never in raw degrees. Terminals report WGS-84 /
CGCS2000, which are treated as one (DOMAIN.md, Coordinates).
"""

from __future__ import annotations

import math
from datetime import datetime
from functools import lru_cache

import numpy as np
import shapely
from pyproj import CRS, Geod, Transformer
from shapely import LineString, Point, STRtree
from shapely.geometry.base import BaseGeometry

from gps_monitor.errors import GeometryError

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
    return speed_over_kmh(distance_m(lat1, lon1, lat2, lon2), t1, t2)


def speed_over_kmh(dist_m: float, t1: datetime, t2: datetime) -> float:
    """:func:`implied_speed_kmh` of a distance already measured (metres) between two times."""
    dt_s = abs((t2 - t1).total_seconds())
    if dt_s == 0:
        return 0.0 if dist_m == 0 else float("inf")
    return dist_m / dt_s * 3.6


# --- local projected CRS --------------------------------------------------------------------
# CGCS2000 3-degree Gauss-Krüger zones (EPSG:4534 = CM 75E ... EPSG:4554 = CM 135E) cover China;
# elsewhere UTM (EPSG:326xx north / 327xx south). CGCS2000 and WGS-84 agree within centimetres
# (DOMAIN.md, Coordinates), so positions go straight from EPSG:4326 into the zone.

ZoneKey = tuple[str, int]
_GK_FIRST_CM, _GK_LAST_CM, _GK_FIRST_EPSG = 75, 135, 4534


def zone_key(lon: float, lat: float) -> ZoneKey:
    """The local zone of a WGS-84 point: ``("gk", central_meridian)`` over China (73.5-136.5 E,
    0-54 N), else ``("utm", ±zone)`` (negative = southern hemisphere)."""
    if 73.5 <= lon < 136.5 and 0.0 <= lat <= 54.0:
        return ("gk", 3 * math.floor(lon / 3.0 + 0.5))
    zone = math.floor((lon + 180.0) / 6.0) % 60 + 1
    return ("utm", zone if lat >= 0 else -zone)


def _zone_epsg(key: ZoneKey) -> int:
    kind, number = key
    if kind == "gk":
        return _GK_FIRST_EPSG + (min(max(number, _GK_FIRST_CM), _GK_LAST_CM) - _GK_FIRST_CM) // 3
    return (32600 + number) if number > 0 else (32700 - number)


def zone_lon_range(key: ZoneKey) -> tuple[float, float]:
    """Longitudes (degrees) a zone serves, with a margin for geometries crossing its edge."""
    kind, number = key
    if kind == "gk":
        return (number - 4.5, number + 4.5)
    west = -180.0 + (abs(number) - 1) * 6.0
    return (west - 3.0, west + 9.0)


class LocalProjection:
    """WGS-84 lon/lat (degrees) <-> metres in one zone's transverse Mercator CRS.

    Build with :func:`projection_for` (cached per zone): the pyproj transformers are created
    once per zone, never per position.
    """

    def __init__(self, key: ZoneKey) -> None:
        self.key = key
        self.crs = CRS.from_epsg(_zone_epsg(key))
        self._forward = Transformer.from_crs(4326, self.crs, always_xy=True)
        self._inverse = Transformer.from_crs(self.crs, 4326, always_xy=True)

    def xy(self, lon: float, lat: float) -> tuple[float, float]:
        """Projected (x east, y north) in metres."""
        x, y = self._forward.transform(lon, lat)
        return float(x), float(y)

    def lonlat(self, x: float, y: float) -> tuple[float, float]:
        """Inverse of :meth:`xy`: WGS-84 (lon, lat) degrees."""
        lon, lat = self._inverse.transform(x, y)
        return float(lon), float(lat)

    def geometry(self, geom: BaseGeometry) -> BaseGeometry:
        """A WGS-84 shapely geometry (x = lon, y = lat) in this zone's metres."""
        return shapely.transform(geom, self._forward.transform, interleaved=False)


@lru_cache(maxsize=64)
def _projection(key: ZoneKey) -> LocalProjection:
    return LocalProjection(key)


def projection_for(lon: float, lat: float) -> LocalProjection:
    """The cached :class:`LocalProjection` of the zone containing (lon, lat)."""
    return _projection(zone_key(lon, lat))


def projection_of_zone(key: ZoneKey) -> LocalProjection:
    """The cached :class:`LocalProjection` of a zone key."""
    return _projection(key)


_EARTH_RADIUS_M = 6_371_008.8


def fast_distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Distance in metres: equirectangular for nearby fixes (< ~10 km, error < 0.1 %), geodesic
    (:func:`distance_m`) beyond. For per-position work where pyproj per call would cost too much.
    """
    dlat = lat2 - lat1
    dlon = lon2 - lon1
    if abs(dlat) < 0.1 and abs(dlon) < 0.1:
        x = math.radians(dlon) * math.cos(math.radians((lat1 + lat2) * 0.5))
        return _EARTH_RADIUS_M * math.hypot(x, math.radians(dlat))
    return distance_m(lat1, lon1, lat2, lon2)


# --- geometry validation ---------------------------------------------------------------------


def check_lonlat(lon: float, lat: float, what: str) -> None:
    """Raise :class:`GeometryError` unless (lon, lat) is a WGS-84 point in degrees.

    A latitude outside [-90, 90] usually means latitude and longitude were swapped; the message
    says so.
    """
    if not (math.isfinite(lon) and math.isfinite(lat)):
        raise GeometryError(f"{what}: expected finite lon/lat degrees, got ({lon}, {lat})")
    if not -90.0 <= lat <= 90.0:
        hint = " (latitude and longitude swapped?)" if -90.0 <= lon <= 90.0 else ""
        raise GeometryError(
            f"{what}: expected latitude in [-90, 90], got {lat} at lon/lat ({lon}, {lat}){hint}"
        )
    if not -180.0 <= lon <= 180.0:
        raise GeometryError(f"{what}: expected longitude in [-180, 180], got {lon}")


def check_geometry(geom: BaseGeometry, what: str) -> None:
    """Validate a WGS-84 geometry (x = lon, y = lat) before it is saved.

    Raises:
        GeometryError: empty, a coordinate out of range (e.g. swapped lat/lon), or invalid per
            OGC (self-intersecting polygon, ring not closed...) with shapely's reason.
    """
    if geom.is_empty:
        raise GeometryError(f"{what}: expected a non-empty geometry, got an empty one")
    for lon, lat in shapely.get_coordinates(geom):
        check_lonlat(float(lon), float(lat), what)
    if not geom.is_valid:
        raise GeometryError(
            f"{what}: expected a valid {geom.geom_type} (no self-intersection), got "
            f"{shapely.is_valid_reason(geom)}"
        )


# --- zoned spatial index ---------------------------------------------------------------------


class ZonedIndex:
    """Shapes given in WGS-84, projected lazily into each zone where positions ask for them,
    with one shapely STRtree per zone for candidate lookup.

    Args:
        shapes: WGS-84 geometries (x = lon, y = lat).
        buffers_m: per shape, a buffer in metres applied after projection (circle radius,
            corridor half-width) or 0 for none.

    ``zone(key)`` returns a :class:`ZoneShapes` (projected geometries, prepared, STRtree);
    shapes whose longitude span lies outside the zone's range are left out of that zone.
    """

    def __init__(self, shapes: list[BaseGeometry], buffers_m: list[float] | None = None) -> None:
        self.shapes = shapes
        self.buffers_m = buffers_m or [0.0] * len(shapes)
        self._zones: dict[ZoneKey, ZoneShapes] = {}

    def zone(self, key: ZoneKey) -> ZoneShapes:
        found = self._zones.get(key)
        if found is None:
            found = self._zones[key] = ZoneShapes(self, key)
        return found


class ZoneShapes:
    """The shapes of a :class:`ZonedIndex` projected into one zone (metres).

    Candidate lookup: the zone's STRtree is queried once per grid cell of ``CELL_M`` metres
    (cached); a point then only costs a dict lookup and an envelope check per shape of its cell,
    instead of building a shapely geometry and querying the tree per position.
    """

    CELL_M = 500.0
    _MAX_CELLS = 200_000

    def __init__(self, index: ZonedIndex, key: ZoneKey) -> None:
        self.projection = projection_of_zone(key)
        west, east = zone_lon_range(key)
        self.geometries: list[BaseGeometry | None] = []
        self.bounds: list[tuple[float, float, float, float]] = []
        members: list[int] = []
        for i, (shape, buffer_m) in enumerate(zip(index.shapes, index.buffers_m, strict=True)):
            minx, _, maxx, _ = shape.bounds
            if maxx < west or minx > east:
                self.geometries.append(None)
                self.bounds.append((math.inf, math.inf, -math.inf, -math.inf))
                continue
            projected = self.projection.geometry(shape)
            if buffer_m > 0:
                projected = projected.buffer(buffer_m, quad_segs=16)
            shapely.prepare(projected)
            self.geometries.append(projected)
            self.bounds.append(tuple(projected.bounds))
            members.append(i)
        self._members = np.asarray(members, dtype=np.int64)
        self._tree = STRtree([self.geometries[i] for i in members]) if members else None
        self._boundaries: dict[int, BaseGeometry] = {}
        self._cells: dict[tuple[int, int], tuple[int, ...]] = {}
        self._inner: dict[tuple[int, float], BaseGeometry] = {}

    def _cell(self, cx: int, cy: int) -> tuple[int, ...]:
        found = self._cells.get((cx, cy))
        if found is None:
            if self._tree is None:
                found = ()
            else:
                size = self.CELL_M
                cell = shapely.box(cx * size, cy * size, (cx + 1) * size, (cy + 1) * size)
                found = tuple(sorted(self._members[self._tree.query(cell)].tolist()))
            if len(self._cells) >= self._MAX_CELLS:
                self._cells.clear()
            self._cells[(cx, cy)] = found
        return found

    def candidates(self, x: float, y: float) -> list[int]:
        """Indices of shapes whose envelope contains the projected point."""
        size = self.CELL_M
        ids = self._cell(int(x // size), int(y // size))
        if not ids:
            return []
        bounds = self.bounds
        out = []
        for i in ids:
            b = bounds[i]
            if b[0] <= x <= b[2] and b[1] <= y <= b[3]:
                out.append(i)
        return out

    def crossed(
        self, x0: float, y0: float, x1: float, y1: float, among: frozenset[int] | None = None
    ) -> list[int]:
        """Indices of shapes (optionally only those in ``among``) that the straight segment
        between two projected points intersects."""
        if self._tree is None:
            return []
        size = self.CELL_M
        minx, maxx = (x0, x1) if x0 <= x1 else (x1, x0)
        miny, maxy = (y0, y1) if y0 <= y1 else (y1, y0)
        cx0, cx1 = int(minx // size), int(maxx // size)
        cy0, cy1 = int(miny // size), int(maxy // size)
        if (cx1 - cx0 + 1) * (cy1 - cy0 + 1) > 64:  # a long jump: ask the tree directly
            segment = LineString([(x0, y0), (x1, y1)])
            ids = self._members[self._tree.query(segment, predicate="intersects")].tolist()
            return sorted(i for i in ids if among is None or i in among)
        found: set[int] = set()
        for cx in range(cx0, cx1 + 1):
            for cy in range(cy0, cy1 + 1):
                found.update(self._cell(cx, cy))
        bounds = self.bounds
        near = [
            i
            for i in found
            if (among is None or i in among)
            and bounds[i][0] <= maxx
            and bounds[i][2] >= minx
            and bounds[i][1] <= maxy
            and bounds[i][3] >= miny
        ]
        if not near:
            return []
        segment = LineString([(x0, y0), (x1, y1)])
        return sorted(i for i in near if self.geometries[i].intersects(segment))  # type: ignore[union-attr]

    def signed_distance_m(self, i: int, x: float, y: float) -> float:
        """Metres from the boundary of shape ``i``: negative inside, positive outside."""
        geom = self.geometries[i]
        if geom is None:
            return math.inf
        if shapely.contains_xy(geom, x, y):
            boundary = self._boundaries.get(i)
            if boundary is None:
                boundary = self._boundaries[i] = geom.boundary
                shapely.prepare(boundary)
            return -float(boundary.distance(Point(x, y)))
        return float(geom.distance(Point(x, y)))

    def inner(self, i: int, depth_m: float) -> BaseGeometry | None:
        """Shape ``i`` shrunk by ``depth_m`` metres (cached; the shape itself when 0)."""
        geom = self.geometries[i]
        if geom is None or depth_m <= 0:
            return geom
        key = (i, depth_m)
        found = self._inner.get(key)
        if found is None:
            found = self._inner[key] = geom.buffer(-depth_m)
            shapely.prepare(found)
        return found

    def contains(self, i: int, x: float, y: float) -> bool:
        geom = self.geometries[i]
        return geom is not None and bool(shapely.contains_xy(geom, x, y))
