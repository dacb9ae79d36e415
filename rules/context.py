"""What every rule sees: the vehicle profile, the current fix with its step from the previous
one, the geofences/routes in force, local time, and how alarms are built.

The engine builds one :class:`Fix` per evaluated position (projection, local time, distance and
implied speed from the previous fix computed once) and one :class:`RuleContext` per vehicle and
settings; rules only read them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import shapely
from shapely import Point

from gps_monitor.alarm_levels import level_for
from gps_monitor.config import AlarmsSettings, QualitySettings, RulesSettings
from gps_monitor.geo import (
    ZonedIndex,
    ZoneKey,
    ZoneShapes,
    fast_distance_m,
    projection_of_zone,
    zone_key,
)
from gps_monitor.geofences import Geofence, Route, TimeWindow
from gps_monitor.models import Alarm, Position
from rules.driver_days import DriverDays


@dataclass(frozen=True, slots=True)
class VehicleProfile:
    """The vehicle facts rules need.

    Attributes:
        vehicle_id, company_id: registry ids (0 in offline ``evaluate``).
        terminal_id: the terminal (alarm output names it).
        vehicle_class: coach, tour_bus, hazmat, heavy_truck, freight.
        speed_limit_kmh: the vehicle's own limit, None = its class default.
        night_ban_exempt: exempt from the 02:00-05:00 coach ban (relay drivers).
        route_ids: routes assigned to it.
    """

    vehicle_id: int
    company_id: int
    terminal_id: str
    vehicle_class: str
    speed_limit_kmh: float | None = None
    night_ban_exempt: bool = False
    route_ids: tuple[str, ...] = ()


@lru_cache(maxsize=8)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


class LocalClock:
    """Epoch seconds -> local minute of day / local date, with the UTC offset cached per hour
    (zoneinfo per call would dominate the per-position cost)."""

    def __init__(self, timezone: str) -> None:
        self.tz = _zone(timezone)
        self._offsets: dict[int, int] = {}

    def offset_s(self, t: float) -> int:
        hour = int(t // 3600)
        offset = self._offsets.get(hour)
        if offset is None:
            utcoffset = datetime.fromtimestamp(hour * 3600, self.tz).utcoffset()
            offset = int(utcoffset.total_seconds()) if utcoffset else 0
            if len(self._offsets) > 10_000:
                self._offsets.clear()
            self._offsets[hour] = offset
        return offset

    def minute_of_day(self, t: float) -> int:
        return int((t + self.offset_s(t)) // 60) % 1440

    def day_number(self, t: float) -> int:
        """Local calendar day as days since 1970-01-01 (local)."""
        return int((t + self.offset_s(t)) // 86400)

    def next_midnight(self, t: float) -> float:
        """Epoch seconds of the next local midnight after ``t``."""
        offset = self.offset_s(t)
        return (int((t + offset) // 86400) + 1) * 86400 - offset

    @staticmethod
    def day_iso(day_number: int) -> str:
        return (datetime(1970, 1, 1) + timedelta(days=day_number)).date().isoformat()


def utc(t: float) -> datetime:
    """Epoch seconds -> aware UTC datetime."""
    return datetime.fromtimestamp(t, UTC)


def without_fix_evidence(
    position: Position, last_fix: tuple[float, float, float, float] | None
) -> dict[str, Any]:
    """``details["without_fix"]`` of an alarm opened by a report without a usable fix (issue 12
    item 2): the report's ``quality``, ``quality_reason`` and ``report_fix_time``, and
    ``position``: ``{"source": "last_good_fix", "fix_time", "latitude", "longitude"}`` of
    ``last_fix`` ``(epoch_s, lat, lon, speed_kmh)``, or ``{"source": "none"}`` before any."""
    where: dict[str, Any] = {"source": "none"}
    if last_fix is not None:
        where = {
            "source": "last_good_fix",
            "fix_time": utc(last_fix[0]).isoformat(),
            "latitude": last_fix[1],
            "longitude": last_fix[2],
        }
    return {
        "quality": str(position.quality),
        "quality_reason": position.quality_reason,
        "report_fix_time": position.fix_time.isoformat(),
        "position": where,
    }


@dataclass(slots=True)
class Fix:
    """One position as the rules see it.

    Attributes:
        position: the position.
        t: fix time, epoch seconds.
        minute_of_day: local minute after midnight (settings.timezone).
        zone, x, y: local projected zone and metres (projected on first use: a vehicle with
            no geofence or route near it never needs them).
        prev_t, prev_lat, prev_lon, prev_speed_kmh: the previous evaluated fix (None at first).
        dt_s: seconds since the previous fix (0 at first).
        step_m: distance from the previous fix, metres.
        implied_speed_kmh: step_m / dt_s in km/h (0 when dt_s is 0).
    """

    position: Position
    t: float
    minute_of_day: int
    zone: ZoneKey
    prev_t: float | None = None
    prev_lat: float | None = None
    prev_lon: float | None = None
    prev_speed_kmh: float | None = None
    dt_s: float = 0.0
    step_m: float = 0.0
    implied_speed_kmh: float = 0.0
    _fence_hits: list[tuple[Geofence, int, bool]] | None = None
    _point: Any = None
    _routes: dict[tuple[str, float], bool] | None = None
    _xy: tuple[float, float] | None = None

    @property
    def x(self) -> float:
        return (self._xy or self._project())[0]

    @property
    def y(self) -> float:
        return (self._xy or self._project())[1]

    def _project(self) -> tuple[float, float]:
        p = self.position
        self._xy = projection_of_zone(self.zone).xy(p.longitude, p.latitude)
        return self._xy

    def prev_xy(self) -> tuple[float, float] | None:
        """The previous fix projected into this fix's zone (None at the first fix or when it
        lies in another zone)."""
        if self.prev_lat is None or self.prev_lon is None:
            return None
        if zone_key(self.prev_lon, self.prev_lat) != self.zone:
            return None
        return projection_of_zone(self.zone).xy(self.prev_lon, self.prev_lat)

    @property
    def point(self) -> Any:
        """The projected shapely Point (created once per fix)."""
        if self._point is None:
            self._point = Point(self.x, self.y)
        return self._point


class GeoContext:
    """The geofences and routes in force, indexed for lookup per zone.

    Args:
        geofences: every geofence (applicability per vehicle is checked per fix).
        routes: every route (applies only to vehicles listing it in ``route_ids``).
    """

    def __init__(self, geofences: list[Geofence], routes: list[Route]) -> None:
        self.geofences = geofences
        self.routes = {r.id: r for r in routes}
        self.fence_index = ZonedIndex(
            [f.geometry for f in geofences], [f.buffer_m for f in geofences]
        )
        self._route_list = list(self.routes.values())
        self._route_pos = {r.id: i for i, r in enumerate(self._route_list)}
        self.route_index = ZonedIndex([r.line for r in self._route_list])
        self._route_bands: dict[tuple[str, ZoneKey, float], Any] = {}
        self._band_bounds: dict[int, tuple[float, float, float, float]] = {}
        self.fence_pos = {f.id: i for i, f in enumerate(geofences)}
        # fences grouped by who they apply to (classes, assigned vehicles): one index per group,
        # so a vehicle only looks up the groups that concern it
        groups: dict[tuple[tuple[str, ...], frozenset[int]], list[int]] = {}
        for i, f in enumerate(geofences):
            groups.setdefault((f.vehicle_classes, f.vehicle_ids), []).append(i)
        self._groups = [
            (
                classes,
                ids,
                members,
                ZonedIndex(
                    [geofences[i].geometry for i in members],
                    [geofences[i].buffer_m for i in members],
                ),
            )
            for (classes, ids), members in groups.items()
        ]
        self._vehicle_groups: dict[tuple[int, str], list[tuple[list[int], ZonedIndex]]] = {}
        self._vehicle_keep_ins: dict[tuple[int, str], list[int]] = {}
        # forbidden / watch fences only, for the segment test between sparse fixes
        self.pass_positions = [
            i for i, f in enumerate(geofences) if f.kind in ("forbidden", "watch")
        ]
        self.pass_index = ZonedIndex(
            [geofences[i].geometry for i in self.pass_positions],
            [geofences[i].buffer_m for i in self.pass_positions],
        )

    def groups_for(self, vehicle: VehicleProfile) -> list[tuple[list[int], ZonedIndex]]:
        """The fence groups (global indices, index) that apply to the vehicle; cached."""
        key = (vehicle.vehicle_id, vehicle.vehicle_class)
        found = self._vehicle_groups.get(key)
        if found is None:
            found = [
                (members, index)
                for classes, ids, members, index in self._groups
                if (not classes or vehicle.vehicle_class in classes)
                and (not ids or vehicle.vehicle_id in ids)
            ]
            self._vehicle_groups[key] = found
        return found

    def keep_ins_for(self, vehicle: VehicleProfile) -> list[int]:
        """Indices of the keep-in geofences that apply to the vehicle; cached."""
        key = (vehicle.vehicle_id, vehicle.vehicle_class)
        found = self._vehicle_keep_ins.get(key)
        if found is None:
            found = sorted(
                i
                for members, _ in self.groups_for(vehicle)
                for i in members
                if self.geofences[i].kind == "keep_in"
            )
            self._vehicle_keep_ins[key] = found
        return found

    def fence_zone(self, key: ZoneKey) -> ZoneShapes:
        return self.fence_index.zone(key)

    def route_well_inside(self, route_id: str, key: ZoneKey, fraction: float) -> Any:
        """The prepared polygon of points within ``fraction`` x corridor of the route's line in
        a zone (fast containment before any exact distance), or None."""
        cache_key = (route_id, key, fraction)
        found = self._route_bands.get(cache_key)
        if found is None:
            line = self.route_geometry(route_id, key)
            if line is None:
                return None
            found = line.buffer(self.routes[route_id].corridor_m * fraction, quad_segs=8)
            shapely.prepare(found)
            self._route_bands[cache_key] = found
        return found

    def band_bounds(self, band: Any) -> tuple[float, float, float, float]:
        """Envelope of a corridor polygon (cached by identity)."""
        found = self._band_bounds.get(id(band))
        if found is None:
            found = self._band_bounds[id(band)] = tuple(band.bounds)
        return found

    def route_length(self, route_id: str, key: ZoneKey) -> float:
        """Length in metres of the route's line in a zone (0 when unknown)."""
        line = self.route_geometry(route_id, key)
        return float(line.length) if line is not None else 0.0

    def route_geometry(self, route_id: str, key: ZoneKey) -> Any:
        """The route's projected LineString in a zone, or None when unknown / out of zone."""
        pos = self._route_pos.get(route_id)
        if pos is None:
            return None
        return self.route_index.zone(key).geometries[pos]


EMPTY_GEO = GeoContext([], [])


@dataclass(slots=True)
class RuleContext:
    """Everything a rule reads besides its own state and the fix.

    ``late``: the positions are blind-area uploads: alarms are marked late.
    ``clock``: ``fix`` (offline measured on fix times: ``evaluate``) or ``wall`` (live service:
    offline on arrival time, checked by a timer).
    """

    vehicle: VehicleProfile
    settings: RulesSettings
    quality: QualitySettings
    geo: GeoContext = EMPTY_GEO
    local: LocalClock = field(default_factory=lambda: LocalClock("Asia/Shanghai"))
    late: bool = False
    clock: str = "fix"
    levels: AlarmsSettings = field(default_factory=AlarmsSettings)
    # drivers' daily driving on every vehicle (one ledger per worker; issue 12 item 7)
    driver_days: DriverDays = field(default_factory=DriverDays)

    def in_window(self, window: TimeWindow | None, t_minute: int) -> bool:
        return window is None or window.contains(t_minute)

    def alarm(
        self,
        alarm_type: str,
        started_t: float,
        *,
        discriminator: str = "",
        ended_t: float | None = None,
        details: dict[str, Any] | None = None,
        first_fix_t: float | None = None,
        last_fix_t: float | None = None,
        event: str = "opened",
    ) -> Alarm:
        """Build an alarm of this vehicle. The dedup key is vehicle + type + discriminator +
        start, so the same episode always gets the same key; the level comes from
        :func:`gps_monitor.alarm_levels.level_for` (type, vehicle class, ``levels``)."""
        started = utc(started_t)
        vehicle = self.vehicle
        who = str(vehicle.vehicle_id) if vehicle.vehicle_id else f"t:{vehicle.terminal_id}"
        key = f"{who}|{alarm_type}|{discriminator}|{started.isoformat()}"
        return Alarm(
            alarm_type=alarm_type,
            dedup_key=key,
            vehicle_id=vehicle.vehicle_id,
            company_id=vehicle.company_id,
            terminal_id=vehicle.terminal_id,
            started_at=started,
            ended_at=utc(ended_t) if ended_t is not None else None,
            late=self.late,
            details=details or {},
            first_fix_time=utc(first_fix_t) if first_fix_t is not None else None,
            last_fix_time=utc(last_fix_t) if last_fix_t is not None else None,
            event=event,
            level=level_for(alarm_type, vehicle.vehicle_class, self.levels, details),
        )


def make_fix(
    position: Position,
    prev: tuple[float, float, float, float] | None,
    local: LocalClock,
) -> Fix:
    """Build the :class:`Fix` of a position given the previous fix ``(t, lat, lon, speed)``."""
    t = position.fix_time.timestamp()
    lon, lat = position.longitude, position.latitude
    fix = Fix(position=position, t=t, minute_of_day=local.minute_of_day(t), zone=zone_key(lon, lat))
    if prev is not None:
        pt, plat, plon, pspeed = prev
        fix.prev_t, fix.prev_lat, fix.prev_lon, fix.prev_speed_kmh = pt, plat, plon, pspeed
        fix.dt_s = t - pt
        fix.step_m = fast_distance_m(plat, plon, lat, lon)
        fix.implied_speed_kmh = fix.step_m / fix.dt_s * 3.6 if fix.dt_s > 0 else 0.0
    return fix


def fence_hits(fix: Fix, ctx: RuleContext) -> list[tuple[Geofence, int, bool]]:
    """Geofences in force for this vehicle whose envelope holds the fix:
    ``(geofence, index in ctx.geo.geofences, fix inside it)``. Computed once per fix, cached.
    Distances to the boundary are left to the caller (``ctx.geo.fence_zone(fix.zone)
    .signed_distance_m``), which needs them only when the state may change."""
    if fix._fence_hits is not None:
        return fix._fence_hits
    geo = ctx.geo
    hits: list[tuple[Geofence, int, bool]] = []
    if geo.geofences:
        minute = fix.minute_of_day
        x, y = fix.x, fix.y
        for members, index in geo.groups_for(ctx.vehicle):
            zone = index.zone(fix.zone)
            for j in zone.candidates(x, y):
                i = members[j]
                fence = geo.geofences[i]
                if fence.active_hours is not None and not fence.active_hours.contains(minute):
                    continue
                hits.append((fence, i, zone.contains(j, x, y)))
    fix._fence_hits = hits
    return hits


@lru_cache(maxsize=32)
def night_window(start: str, end: str) -> TimeWindow:
    """The cached :class:`TimeWindow` of two ``HH:MM`` local times."""
    return TimeWindow.parse(f"{start}-{end}")


def route_inside(fix: Fix, ctx: RuleContext, route_id: str, fraction: float) -> bool | None:
    """Whether the fix lies within ``fraction`` x the route's corridor half-width of its line
    (prepared-polygon containment, no distance computed); None when the route is unknown or
    outside the fix's zone. Cached on the fix."""
    cache = fix._routes
    if cache is None:
        cache = fix._routes = {}
    key = (route_id, fraction)
    found = cache.get(key)
    if found is None:
        band = ctx.geo.route_well_inside(route_id, fix.zone, fraction)
        if band is None:
            return None
        minx, miny, maxx, maxy = ctx.geo.band_bounds(band)
        x, y = fix.x, fix.y
        if x < minx or x > maxx or y < miny or y > maxy:
            found = cache[key] = False
        else:
            found = cache[key] = bool(shapely.contains_xy(band, x, y))
    return found


def route_offset(fix: Fix, ctx: RuleContext, route_id: str) -> tuple[float, float] | None:
    """``(offset_m, length_m)``: exact distance of the fix from a route's line and the line's
    length, in the fix's zone; None when the route is unknown or outside the zone."""
    line = ctx.geo.route_geometry(route_id, fix.zone)
    if line is None:
        return None
    return float(line.distance(fix.point)), float(line.length)


def route_along(fix: Fix, ctx: RuleContext, route_id: str, *, previous: bool = False) -> float:
    """Metres along the route's line of the fix (or of the previous fix) projected onto it."""
    line = ctx.geo.route_geometry(route_id, fix.zone)
    if line is None:
        return 0.0
    if previous:
        xy = fix.prev_xy()
        if xy is None:
            return 0.0
        return float(line.project(Point(*xy)))
    return float(line.project(fix.point))


_NO_DEFAULT = object()
_defaults_of: dict[type, tuple[tuple[str, Any], ...]] = {}


def dump_fields(state: Any) -> dict[str, Any]:
    """A flat slots dataclass as a dict of the fields that are not at their default (same value
    and type), for the state JSON: ``type(state)(**dump_fields(state)) == state``. Most fields
    of a vehicle's rule states sit at their defaults, and the stored JSON's size is what the
    database pays for on every write (half the size, twice the rows per CPU-second)."""
    cls = type(state)
    defaults = _defaults_of.get(cls)
    if defaults is None:
        defaults = _defaults_of[cls] = tuple(
            (
                f.name,
                f.default
                if f.default is not dataclasses.MISSING
                else f.default_factory()
                if f.default_factory is not dataclasses.MISSING
                else _NO_DEFAULT,
            )
            for f in dataclasses.fields(cls)
        )
    out: dict[str, Any] = {}
    for name, default in defaults:
        value = getattr(state, name)
        if value is default or (type(value) is type(default) and value == default):
            continue
        out[name] = value
    return out
