"""Overspeed (超速) episodes.

Regulation (DOMAIN.md, Overspeed): the limit is the most specific of speed-zone geofence >
route (section) > vehicle > vehicle-class default (buses and trucks 100 km/h on expressways;
hazardous goods 80 km/h on expressways, 60 km/h elsewhere); coaches and tour buses at night
(22:00-06:00 local) drive at 80 % of the day limit. An episode opens once the reported speed has
been above the limit for ``overspeed_min_duration_s`` (default 10 s, JT/T 808 parameter 0x0056)
and closes at the first fix at or below it. One alarm per episode.

Duration on sparse data: the time above the limit is measured *between fixes*: from the first fix
above the limit to the latest consecutive one. A single fix above the limit has no measured
duration and never opens an episode, however sparse the data (a 600 s taxi track needs two
consecutive fixes above the limit, which then span 600 s). A gap longer than
``overspeed_max_fix_gap_s`` between fixes ends the episode at the last fix before it.

Cross-check: drift-flagged fixes never reach this rule (engine); a fix whose implied speed from
the previous fix is implausible (above ``quality.drift_speed_kmh``) over a short interval is a
GPS jump, not speeding, and neither starts nor extends an episode; so is a reported speed above
that bound.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from gps_monitor.geofences import GeofenceKind
from gps_monitor.models import Alarm
from rules.context import Fix, RuleContext, dump_fields, fence_hits, night_window, route_inside

NAME = "overspeed"
_CROSS_CHECK_MAX_INTERVAL_S = 60.0


@dataclass(frozen=True, slots=True)
class State:
    """The current run of fixes above the limit (``start_t`` None = no run)."""

    start_t: float | None = None
    last_t: float | None = None
    opened: bool = False
    limit_kmh: float = 0.0
    limit_source: str = ""
    max_speed_kmh: float = 0.0
    speed_time_kmh_s: float = 0.0
    distance_m: float = 0.0
    fixes: int = 0


def class_default_kmh(vehicle_class: str, road_class: str, ctx: RuleContext) -> float:
    """Vehicle-class default limit in km/h (DOMAIN.md: hazmat 80 expressway / 60 other)."""
    s = ctx.settings
    if vehicle_class == "hazmat":
        if road_class == "expressway":
            return s.hazmat_expressway_speed_limit_kmh
        return s.hazmat_other_road_speed_limit_kmh
    return float(getattr(s, f"{vehicle_class}_speed_limit_kmh", s.freight_speed_limit_kmh))


def resolve_limit(fix: Fix, ctx: RuleContext) -> tuple[float, str]:
    """The limit in force at a fix and where it came from.

    Returns ``(limit_kmh, source)`` with source ``geofence:<id>``, ``route:<id>``, ``vehicle``
    or ``class:<class>``, suffixed ``+night`` when the coach/tour-bus night factor applied.
    """
    vehicle = ctx.vehicle
    limit: float | None = None
    source = ""
    hazmat_road = "expressway"
    for fence, _, inside in fence_hits(fix, ctx):
        if inside and fence.kind is GeofenceKind.SPEED_ZONE:
            zone_limit = fence.speed_limit_kmh or getattr(
                ctx.settings, f"{fence.road_class}_speed_limit_kmh", None
            )
            if not zone_limit:
                continue
            if vehicle.vehicle_class == "hazmat":
                zone_limit = min(zone_limit, class_default_kmh("hazmat", fence.road_class, ctx))
            if limit is None or zone_limit < limit:
                limit, source = zone_limit, f"geofence:{fence.id}"
    if limit is None:
        for route_id in vehicle.route_ids:
            route = ctx.geo.routes.get(route_id)
            if route is None or route.speed_limit_kmh is None:
                continue
            if not ctx.in_window(route.active_hours, fix.minute_of_day):
                continue
            if route_inside(fix, ctx, route_id, 1.0):
                limit, source = route.speed_limit_kmh, f"route:{route.id}"
                break
    if limit is None and vehicle.speed_limit_kmh:
        limit, source = vehicle.speed_limit_kmh, "vehicle"
    if limit is None:
        limit = class_default_kmh(vehicle.vehicle_class, hazmat_road, ctx)
        source = f"class:{vehicle.vehicle_class}"
    s = ctx.settings
    if vehicle.vehicle_class in s.night_vehicle_classes and _is_night(fix.minute_of_day, ctx):
        limit, source = limit * s.night_speed_factor, source + "+night"
    return limit, source


def _is_night(minute: int, ctx: RuleContext) -> bool:
    return night_window(ctx.settings.night_start_local, ctx.settings.night_end_local).contains(
        minute
    )


def _details(state: State, end_t: float | None) -> dict[str, Any]:
    assert state.start_t is not None and state.last_t is not None
    until = end_t if end_t is not None else state.last_t
    duration_s = until - state.start_t
    measured_s = state.last_t - state.start_t
    mean = state.speed_time_kmh_s / measured_s if measured_s > 0 else state.max_speed_kmh
    return {
        "limit_kmh": round(state.limit_kmh, 2),
        "limit_source": state.limit_source,
        "max_speed_kmh": round(state.max_speed_kmh, 2),
        "mean_speed_kmh": round(mean, 2),
        "duration_s": round(duration_s, 3),
        "distance_m": round(state.distance_m, 1),
        "fixes": state.fixes,
        "implied_mean_speed_kmh": round(state.distance_m / measured_s * 3.6, 2)
        if measured_s > 0
        else None,
    }


def _close(state: State, end_t: float, ctx: RuleContext) -> list[Alarm]:
    if not state.opened or state.start_t is None:
        return []
    return [
        ctx.alarm(
            NAME,
            state.start_t,
            ended_t=end_t,
            details=_details(state, end_t),
            first_fix_t=state.start_t,
            last_fix_t=state.last_t,
            event="closed",
        )
    ]


def process(state: State, fix: Fix, ctx: RuleContext) -> tuple[State, list[Alarm]]:
    """Step the overspeed episode with one fix. See the module docstring for the rule.

    Returns the new state and at most one alarm event (``opened`` or ``closed``).
    """
    alarms: list[Alarm] = []
    s = ctx.settings
    if state.start_t is not None and fix.dt_s > s.overspeed_max_fix_gap_s:
        alarms += _close(state, state.last_t or state.start_t, ctx)
        state = State()
    speed = fix.position.speed_kmh
    limit, source = resolve_limit(fix, ctx)
    above = speed > limit
    if above:
        jump = (
            0 < fix.dt_s <= _CROSS_CHECK_MAX_INTERVAL_S
            and fix.implied_speed_kmh > ctx.quality.drift_speed_kmh
            and fix.step_m > ctx.quality.drift_min_distance_m
        )
        if jump or speed > ctx.quality.drift_speed_kmh:
            return state, alarms  # GPS jump or implausible reading: neither starts nor extends
    if not above:
        if state.start_t is not None:
            alarms += _close(state, fix.t, ctx)
            return State(), alarms
        return state, alarms
    if state.start_t is None:
        state = State(
            start_t=fix.t,
            last_t=fix.t,
            limit_kmh=limit,
            limit_source=source,
            max_speed_kmh=speed,
            fixes=1,
        )
    else:
        state = replace(
            state,
            last_t=fix.t,
            max_speed_kmh=max(state.max_speed_kmh, speed),
            speed_time_kmh_s=state.speed_time_kmh_s + speed * fix.dt_s,
            distance_m=state.distance_m + fix.step_m,
            fixes=state.fixes + 1,
            limit_kmh=min(state.limit_kmh, limit),
            limit_source=source if limit < state.limit_kmh else state.limit_source,
        )
    start_t = state.start_t
    assert start_t is not None
    if not state.opened and fix.t - start_t >= s.overspeed_min_duration_s:
        state = replace(state, opened=True)
        alarms.append(
            ctx.alarm(
                NAME,
                start_t,
                details=_details(state, None),
                first_fix_t=state.start_t,
                last_fix_t=fix.t,
            )
        )
    return state, alarms


def dump(state: State) -> dict[str, Any]:
    return dump_fields(state)


def load(data: dict[str, Any]) -> State:
    return State(**data)
