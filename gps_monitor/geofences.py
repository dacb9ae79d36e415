"""Geofences and routes: value objects, validation at save, GeoJSON in and out.

Geometries are stored in WGS-84 (x = longitude, y = latitude, degrees) and only projected into
a local metric CRS when evaluated (:mod:`gps_monitor.geo`). GeoJSON features (RFC 7946,
coordinates ``[lon, lat]``) carry these properties:

    id               string (or number); generated from the name when absent
    name             display name
    kind             forbidden | keep_in | speed_zone | watch | route
    speed_limit_kmh  speed zone limit (required for speed_zone), route limit (optional)
    road_class       speed zone: expressway | other (hazmat limit 80 / 60 km/h; default other),
                     or unsigned_{urban,rural}_{no_centre_line,one_lane} (30/40/50/70 km/h,
                     used when the zone has no speed_limit_kmh)
    corridor_m       half-width in metres: a LineString geofence (corridor) or a route;
                     finite, > 0 and at most MAX_CORRIDOR_M (50 km)
    radius_m         a Point geofence is a circle of this radius (metres); finite, > 0 and at
                     most MAX_RADIUS_M (500 km)
    vehicle_classes  list of classes it applies to (empty/absent = all)
    active_hours     local time window "HH:MM-HH:MM" (may wrap midnight), absent = always
    vehicle_ids      optional list of vehicle ids it is assigned to (routes: required to apply)

Polygons may have holes. Invalid geometry (self-intersecting polygon, latitude out of range
such as swapped latitude/longitude) raises :class:`~gps_monitor.errors.GeometryError`.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from shapely.geometry import LineString, Point, mapping, shape
from shapely.geometry.base import BaseGeometry

from gps_monitor.errors import GeometryError
from gps_monitor.geo import check_geometry
from gps_monitor.models import VehicleClass
from gps_monitor.payload import shown

# Road classes a speed zone may carry: expressway / other decide the hazardous-goods limit
# (80 / 60 km/h); the unsigned ones carry their statutory limit (DOMAIN.md: 30/40, 50/70 km/h).
ROAD_CLASSES: tuple[str, ...] = (
    "expressway",
    "other",
    "unsigned_urban_no_centre_line",
    "unsigned_rural_no_centre_line",
    "unsigned_urban_one_lane",
    "unsigned_rural_one_lane",
)

# Upper bounds of the metric buffers (the one place they are defined): a larger value is a typo
# or garbage, and an infinite one breaks the projected buffer (GEOS NaN/Inf) for every check.
MAX_RADIUS_M = 500_000.0
MAX_CORRIDOR_M = 50_000.0


def check_buffer_m(value: float | None, name: str, maximum: float, what: str) -> None:
    """A circle radius / corridor half-width in metres: finite, > 0 and at most ``maximum``.

    Raises:
        GeometryError: missing, not finite, not positive or above ``maximum`` (what was expected
            and what came).
    """
    if value is None or not math.isfinite(value) or not 0 < value <= maximum:
        raise GeometryError(
            f"{what}: expected {name} as a finite number of metres > 0 and <= {maximum:g}, "
            f"got {value!r}"
        )


class GeofenceKind(enum.StrEnum):
    """What crossing a geofence means (DOMAIN.md, Geofences)."""

    FORBIDDEN = "forbidden"  # 禁入: alarm forbidden_area_entry while inside
    KEEP_IN = "keep_in"  # 禁出: alarm keep_in_area_exit while outside
    SPEED_ZONE = "speed_zone"  # its speed_limit_kmh is the most specific limit inside
    WATCH = "watch"  # geofence_enter / geofence_exit


_WINDOW_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """A daily local time window ``[start, end)`` in minutes after local midnight; wraps
    midnight when ``end <= start`` (``22:00-06:00``)."""

    start_min: int
    end_min: int

    @classmethod
    def parse(cls, text: str) -> TimeWindow:
        """``"HH:MM-HH:MM"`` -> window.

        Raises:
            GeometryError: not in that form or hours/minutes out of range.
        """
        match = _WINDOW_RE.match(text)
        if not match:
            raise GeometryError(f"active_hours: expected 'HH:MM-HH:MM', got {text!r}")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if h1 > 24 or h2 > 24 or m1 > 59 or m2 > 59:
            raise GeometryError(f"active_hours: expected times within 00:00-24:00, got {text!r}")
        return cls(h1 * 60 + m1, h2 * 60 + m2)

    def contains(self, minute_of_day: int) -> bool:
        if self.start_min < self.end_min:
            return self.start_min <= minute_of_day < self.end_min
        return minute_of_day >= self.start_min or minute_of_day < self.end_min

    def __str__(self) -> str:
        return (
            f"{self.start_min // 60:02d}:{self.start_min % 60:02d}-"
            f"{self.end_min // 60:02d}:{self.end_min % 60:02d}"
        )


@dataclass(frozen=True, slots=True)
class Geofence:
    """One geofence (电子围栏) in WGS-84.

    Attributes:
        id: stable identifier (text).
        name: display name.
        kind: :class:`GeofenceKind`.
        geometry: Polygon/MultiPolygon (holes allowed), Point (circle, with ``radius_m``) or
            LineString (corridor, with ``corridor_m``); x = lon, y = lat.
        radius_m, corridor_m: circle radius / corridor half-width in metres.
        speed_limit_kmh: the limit inside a speed zone.
        road_class: ``expressway`` or ``other`` (hazardous goods 80 / 60 km/h, DOMAIN.md).
        vehicle_classes: classes it applies to; empty = all.
        active_hours: local daily window, None = always.
        vehicle_ids: vehicles it is assigned to; empty = every vehicle (of its classes).

    Raises:
        GeometryError: invalid geometry or properties (see :func:`validate_geofence`).
    """

    id: str
    name: str
    kind: GeofenceKind
    geometry: BaseGeometry
    radius_m: float | None = None
    corridor_m: float | None = None
    speed_limit_kmh: float | None = None
    road_class: str = "other"
    vehicle_classes: tuple[str, ...] = ()
    active_hours: TimeWindow | None = None
    vehicle_ids: frozenset[int] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        validate_geofence(self)

    @property
    def buffer_m(self) -> float:
        """Metres to buffer the projected geometry by (circle radius, corridor half-width)."""
        return float(self.radius_m or self.corridor_m or 0.0)

    def applies_to(self, vehicle_class: str, vehicle_id: int | None) -> bool:
        """True when the geofence concerns this vehicle (class and assignment)."""
        if self.vehicle_classes and vehicle_class not in self.vehicle_classes:
            return False
        return not self.vehicle_ids or vehicle_id in self.vehicle_ids


@dataclass(frozen=True, slots=True)
class Route:
    """An approved route: a polyline with a corridor half-width (DOMAIN.md, Route deviation).

    Attributes:
        id, name: identifier and display name.
        line: LineString in WGS-84 (x = lon, y = lat), in driving order (start -> end).
        corridor_m: corridor half-width in metres.
        speed_limit_kmh: the route's limit (overspeed: more specific than the vehicle's).
        active_hours: local daily validity window, None = always.
        vehicle_ids: vehicles assigned to it; a route only applies to its assigned vehicles.

    Raises:
        GeometryError: not a valid LineString in range, or corridor_m not finite, > 0 and
            <= MAX_CORRIDOR_M.
    """

    id: str
    name: str
    line: BaseGeometry
    corridor_m: float
    speed_limit_kmh: float | None = None
    active_hours: TimeWindow | None = None
    vehicle_ids: frozenset[int] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        what = f"route {self.id!r}"
        if not isinstance(self.line, LineString):
            raise GeometryError(f"{what}: expected a LineString, got {self.line.geom_type}")
        check_geometry(self.line, what)
        if len(self.line.coords) < 2:
            raise GeometryError(f"{what}: expected at least 2 points")
        check_buffer_m(self.corridor_m, "corridor_m", MAX_CORRIDOR_M, what)
        if self.speed_limit_kmh is not None and self.speed_limit_kmh <= 0:
            raise GeometryError(f"{what}: expected speed_limit_kmh > 0, got {self.speed_limit_kmh}")


def validate_geofence(fence: Geofence) -> None:
    """Check a geofence before it is saved or used.

    Raises:
        GeometryError: what was expected and what came: geometry type vs kind, circle without
            radius_m, corridor without corridor_m, speed zone without speed_limit_kmh, invalid
            or out-of-range geometry (e.g. self-intersecting polygon, swapped lat/lon), unknown
            vehicle class.
    """
    what = f"geofence {fence.id!r}"
    geom = fence.geometry
    check_geometry(geom, what)
    if isinstance(geom, Point):
        check_buffer_m(fence.radius_m, "radius_m", MAX_RADIUS_M, f"{what}: a Point is a circle")
    elif isinstance(geom, LineString):
        check_buffer_m(
            fence.corridor_m, "corridor_m", MAX_CORRIDOR_M, f"{what}: a LineString is a corridor"
        )
    elif geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise GeometryError(
            f"{what}: expected Polygon, MultiPolygon, Point (circle) or LineString (corridor), "
            f"got {geom.geom_type}"
        )
    # buffer_m applies either to any geometry that carries it: bound them whatever the type
    if fence.radius_m:  # 0 / absent on a polygon: no buffer
        check_buffer_m(fence.radius_m, "radius_m", MAX_RADIUS_M, what)
    if fence.corridor_m:
        check_buffer_m(fence.corridor_m, "corridor_m", MAX_CORRIDOR_M, what)
    if fence.road_class not in ROAD_CLASSES:
        raise GeometryError(
            f"{what}: road_class: expected one of {', '.join(ROAD_CLASSES)}, got "
            f"{fence.road_class!r}"
        )
    if (
        fence.kind == GeofenceKind.SPEED_ZONE
        and not fence.speed_limit_kmh
        and not fence.road_class.startswith("unsigned_")
    ):
        raise GeometryError(
            f"{what}: a speed_zone: expected speed_limit_kmh > 0 (or an unsigned road_class, "
            f"whose statutory limit applies), got {fence.speed_limit_kmh!r}"
        )
    known = {c.value for c in VehicleClass}
    for vehicle_class in fence.vehicle_classes:
        if vehicle_class not in known:
            raise GeometryError(
                f"{what}: vehicle_classes: expected some of {sorted(known)}, got {vehicle_class!r}"
            )


def _opt_float(props: dict[str, Any], name: str, what: str) -> float | None:
    value = props.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GeometryError(f"{what}: {name}: expected a number, got {value!r}")
    return float(value)


def is_number(value: Any) -> bool:
    """Whether a parsed JSON value is a number (``true`` and ``false`` are not)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


# How deep each geometry type nests its positions in ``coordinates`` (RFC 7946, 3.1).
_POSITION_DEPTH = {
    "Point": 0,
    "MultiPoint": 1,
    "LineString": 1,
    "MultiLineString": 2,
    "Polygon": 2,
    "MultiPolygon": 3,
}


def _check_positions(coords: Any, depth: int, what: str) -> None:
    """``coords`` are positions ``[lon, lat]`` (or ``[lon, lat, alt]``) nested ``depth`` arrays
    deep; else GeometryError."""
    if depth == 0:
        if not (isinstance(coords, list) and 2 <= len(coords) <= 3 and all(map(is_number, coords))):
            raise GeometryError(
                f"{what}: expected a position [lon, lat] (2 or 3 numbers), got {shown(coords)}"
            )
        return
    if not isinstance(coords, list):
        nested = "an array of " + "arrays of " * (depth - 1)
        raise GeometryError(f"{what}: expected {nested}positions [lon, lat], got {shown(coords)}")
    for item in coords:
        _check_positions(item, depth - 1, what)


def _geometry_object(raw: Any, what: str) -> dict[str, Any]:
    """``raw`` when it is a GeoJSON geometry object of a known type whose coordinates (or member
    geometries) have the shape the type needs; else GeometryError saying what came."""
    if not isinstance(raw, dict):
        raise GeometryError(f"{what}: expected a GeoJSON geometry object, got {shown(raw)}")
    kind = raw.get("type")
    if kind == "GeometryCollection":
        members = raw.get("geometries")
        if not isinstance(members, list):
            raise GeometryError(
                f"{what}: GeometryCollection: expected geometries as an array, got {shown(members)}"
            )
        for i, member in enumerate(members):
            _geometry_object(member, f"{what}: geometries[{i}]")
        return raw
    depth = _POSITION_DEPTH.get(kind) if isinstance(kind, str) else None
    if depth is None:
        raise GeometryError(
            f"{what}: geometry type: expected one of {', '.join(_POSITION_DEPTH)} or "
            f"GeometryCollection, got {shown(kind)}"
        )
    _check_positions(raw.get("coordinates"), depth, f"{what}: {kind} coordinates")
    return raw


def _feature_geometry(feature: dict[str, Any], what: str) -> BaseGeometry:
    raw = _geometry_object(feature.get("geometry"), what)
    coords = raw.get("coordinates")
    if raw.get("type") == "LineString" and isinstance(coords, list) and len(coords) < 2:
        raise GeometryError(
            f"{what}: expected a LineString of at least 2 points, got {len(coords)}"
        )
    try:
        with np.errstate(invalid="ignore"):  # a NaN coordinate: check_geometry names it
            geom = shape(raw)
    except (ValueError, TypeError, AttributeError, IndexError, shapely.errors.ShapelyError) as e:
        raise GeometryError(f"{what}: unreadable GeoJSON geometry ({e})") from e
    return geom


def _vehicle_ids(value: Any, what: str) -> frozenset[int]:
    """The ``vehicle_ids`` property: null/absent or an array of ids (integers, or their
    decimal text); else GeometryError."""
    if value is None:
        return frozenset()

    def is_id(v: Any) -> bool:
        return (isinstance(v, int) and not isinstance(v, bool)) or (
            isinstance(v, str) and v.isascii() and v.isdigit()
        )

    if not isinstance(value, list) or not all(map(is_id, value)):
        raise GeometryError(
            f"{what}: vehicle_ids: expected an array of vehicle ids (integers), got {shown(value)}"
        )
    return frozenset(int(v) for v in value)


def from_feature(feature: dict[str, Any], index: int = 0) -> Geofence | Route:
    """One GeoJSON Feature -> :class:`Geofence` or :class:`Route` (``kind: route``).

    Raises:
        GeometryError: properties not an object, missing/unknown kind, bad property types
            (``vehicle_ids`` not an array of integers, ``active_hours`` not text...), a geometry
            of an unknown type or whose coordinates are not positions nested as its type needs,
            invalid geometry; each says what was expected and what came.
    """
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise GeometryError(f"feature #{index}: expected a GeoJSON Feature object")
    props = feature.get("properties")
    if props is None:
        props = {}
    elif not isinstance(props, dict):
        raise GeometryError(
            f"feature #{index}: properties: expected an object (or null), got {shown(props)}"
        )
    raw_id = props.get("id", feature.get("id"))
    name = str(props.get("name") or raw_id or f"feature-{index}")
    fid = str(raw_id) if raw_id is not None else name
    what = f"feature #{index} ({fid!r})"
    kind = props.get("kind")
    geom = _feature_geometry(feature, what)
    hours = props.get("active_hours")
    if hours is not None and not isinstance(hours, str):
        raise GeometryError(
            f"{what}: active_hours: expected text 'HH:MM-HH:MM' (or null), got {shown(hours)}"
        )
    window = TimeWindow.parse(hours) if hours else None
    vehicle_ids = _vehicle_ids(props.get("vehicle_ids"), what)
    if kind == "route":
        corridor = _opt_float(props, "corridor_m", what)
        return Route(
            id=fid,
            name=name,
            line=geom,
            corridor_m=corridor or 0.0,
            speed_limit_kmh=_opt_float(props, "speed_limit_kmh", what),
            active_hours=window,
            vehicle_ids=vehicle_ids,
        )
    try:
        fence_kind = GeofenceKind(str(kind))
    except ValueError:
        raise GeometryError(
            f"{what}: kind: expected one of forbidden, keep_in, speed_zone, watch, route; "
            f"got {kind!r}"
        ) from None
    classes = props.get("vehicle_classes") or ()
    if isinstance(classes, str):
        classes = [c.strip() for c in classes.split(",") if c.strip()]
    if not isinstance(classes, list | tuple) or not all(isinstance(c, str) for c in classes):
        raise GeometryError(
            f"{what}: vehicle_classes: expected an array of vehicle classes (text) or a "
            f"comma-separated text, got {shown(classes)}"
        )
    return Geofence(
        id=fid,
        name=name,
        kind=fence_kind,
        geometry=geom,
        radius_m=_opt_float(props, "radius_m", what),
        corridor_m=_opt_float(props, "corridor_m", what),
        speed_limit_kmh=_opt_float(props, "speed_limit_kmh", what),
        road_class=str(props.get("road_class") or "other"),
        vehicle_classes=tuple(str(c) for c in classes),
        active_hours=window,
        vehicle_ids=vehicle_ids,
    )


def parse_geojson(data: Any) -> tuple[list[Geofence], list[Route]]:
    """A GeoJSON FeatureCollection (or a single Feature) -> (geofences, routes).

    Raises:
        GeometryError: not GeoJSON, duplicate ids, or any feature invalid (nothing is returned
            partially: the caller saves all or none).
    """
    if isinstance(data, dict) and data.get("type") == "Feature":
        features = [data]
    elif isinstance(data, dict) and data.get("type") == "FeatureCollection":
        features = data.get("features") or []
    else:
        raise GeometryError("expected a GeoJSON FeatureCollection or Feature object")
    fences: list[Geofence] = []
    routes: list[Route] = []
    seen: set[str] = set()
    for i, feature in enumerate(features):
        item = from_feature(feature, i)
        if item.id in seen:
            raise GeometryError(f"feature #{i}: duplicate id {item.id!r}")
        seen.add(item.id)
        (routes if isinstance(item, Route) else fences).append(item)  # type: ignore[arg-type]
    return fences, routes


def to_feature(item: Geofence | Route) -> dict[str, Any]:
    """Inverse of :func:`from_feature` (a GeoJSON Feature with the properties above)."""
    props: dict[str, Any] = {"id": item.id, "name": item.name}
    if isinstance(item, Route):
        props.update(kind="route", corridor_m=item.corridor_m)
        geom = item.line
    else:
        props.update(kind=str(item.kind), road_class=item.road_class)
        if item.radius_m:
            props["radius_m"] = item.radius_m
        if item.corridor_m:
            props["corridor_m"] = item.corridor_m
        if item.vehicle_classes:
            props["vehicle_classes"] = list(item.vehicle_classes)
        geom = item.geometry
    if item.speed_limit_kmh is not None:
        props["speed_limit_kmh"] = item.speed_limit_kmh
    if item.active_hours is not None:
        props["active_hours"] = str(item.active_hours)
    if item.vehicle_ids:
        props["vehicle_ids"] = sorted(item.vehicle_ids)
    return {"type": "Feature", "id": item.id, "properties": props, "geometry": mapping(geom)}


def to_geojson(fences: list[Geofence], routes: list[Route]) -> dict[str, Any]:
    """A FeatureCollection of geofences then routes."""
    features = [to_feature(f) for f in fences] + [to_feature(r) for r in routes]
    return {"type": "FeatureCollection", "features": features}


__all__ = [
    "Geofence",
    "GeofenceKind",
    "Route",
    "TimeWindow",
    "from_feature",
    "parse_geojson",
    "to_feature",
    "to_geojson",
    "validate_geofence",
]
