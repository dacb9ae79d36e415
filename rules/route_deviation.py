"""Route deviation (偏离路线).

Regulation (DOMAIN.md, Route deviation; GB/T 35658-2017 makes it a platform duty): a route is a
polyline with a corridor half-width (m), an optional daily time window and assigned vehicles.
Deviation = outside the corridor for at least ``route_deviation_min_duration_s`` (60 s, DOMAIN.md)
AND ``route_deviation_min_distance_m`` (200 m) driven outside: DOMAIN.md allows duration or
distance; both are required (issue 14) so that a vehicle crawling in a jam or standing at the
corridor's edge while multipath puts it outside raises nothing, while a vehicle really driving
elsewhere meets both within the minute at any speed above 12 km/h. Both thresholds, and the
duration and distance reached when it opened, are in the alarm's details. Back on route only once
well inside: within ``route_return_fraction`` (75 %) of the corridor half-width (hysteresis).

No alarm before the trip has joined the route (first fix well inside the corridor, not in the
last ``route_end_margin_m`` of it) or after it has left it at the end: leaving the corridor when
the last fix inside was within ``route_end_margin_m`` of the route's end finishes the trip (depot,
yard); the vehicle must join again.

Time outside is measured between fixes (first fix outside to the latest), as for overspeed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from gps_monitor.models import Alarm
from rules.context import (
    Fix,
    RuleContext,
    dump_fields,
    route_along,
    route_inside,
    route_offset,
)

NAME = "route_deviation"


@dataclass(frozen=True, slots=True)
class Track:
    """Progress of the vehicle on one route."""

    joined: bool = False
    along_m: float = 0.0
    outside_since_t: float | None = None
    outside_m: float = 0.0
    open_t: float | None = None
    max_offset_m: float = 0.0


@dataclass(frozen=True, slots=True)
class State:
    """Per assigned route id, its :class:`Track`."""

    routes: dict[str, Track] | None = None


def _alarm(
    route_id: str, track: Track, ctx: RuleContext, fix: Fix, corridor_m: float, closed: bool
) -> Alarm:
    assert track.outside_since_t is not None
    return ctx.alarm(
        NAME,
        track.outside_since_t,
        discriminator=route_id,
        ended_t=fix.t if closed else None,
        details={
            "route_id": route_id,
            "corridor_m": corridor_m,
            "max_offset_m": round(track.max_offset_m, 1),
            "outside_distance_m": round(track.outside_m, 1),
            "outside_duration_s": round(fix.t - track.outside_since_t, 1),
            "left_route_at_m": round(track.along_m, 1),
            "min_duration_s": ctx.settings.route_deviation_min_duration_s,
            "min_distance_m": ctx.settings.route_deviation_min_distance_m,
        },
        first_fix_t=track.outside_since_t,
        last_fix_t=fix.t,
        event="closed" if closed else "opened",
    )


def _step(route_id: str, track: Track, fix: Fix, ctx: RuleContext, alarms: list[Alarm]) -> Track:
    route = ctx.geo.routes.get(route_id)
    if route is None:
        return track
    s = ctx.settings
    if not ctx.in_window(route.active_hours, fix.minute_of_day):
        if track.open_t is not None:
            alarms.append(_alarm(route_id, track, ctx, fix, route.corridor_m, closed=True))
        return Track()
    well_inside = route_inside(fix, ctx, route_id, s.route_return_fraction)
    if well_inside is None:
        return track
    half = route.corridor_m
    if not track.joined:
        if well_inside:
            along_m = route_along(fix, ctx, route_id)
            if along_m < ctx.geo.route_length(route_id, fix.zone) - s.route_end_margin_m:
                return Track(joined=True, along_m=along_m)
        return track
    if well_inside:
        offset_m = 0.0
    else:
        offset = route_offset(fix, ctx, route_id)
        if offset is None:
            return track
        offset_m = offset[0]
    end_m = ctx.geo.route_length(route_id, fix.zone) - s.route_end_margin_m
    if well_inside or (offset_m <= half and track.outside_since_t is None):
        if track.open_t is not None:
            alarms.append(_alarm(route_id, track, ctx, fix, half, closed=True))
        if track.outside_since_t is None and track.open_t is None:
            return track
        return Track(joined=True)
    # outside the corridor, or in the hysteresis band after being outside: still outside
    if track.outside_since_t is None:
        # where it left the route: the last fix (inside) projected onto the line
        along_m = route_along(fix, ctx, route_id, previous=True)
        track = replace(track, along_m=along_m)
        if along_m >= end_m:
            return Track()  # left at the end of the route: trip finished
        track = replace(track, outside_since_t=fix.t, max_offset_m=offset_m)
    else:
        track = replace(
            track,
            outside_m=track.outside_m + fix.step_m,
            max_offset_m=max(track.max_offset_m, offset_m),
        )
    assert track.outside_since_t is not None
    if track.open_t is None:
        long_enough = fix.t - track.outside_since_t >= s.route_deviation_min_duration_s
        far_enough = track.outside_m >= s.route_deviation_min_distance_m
        if long_enough and far_enough:
            track = replace(track, open_t=track.outside_since_t)
            alarms.append(_alarm(route_id, track, ctx, fix, half, closed=False))
    return track


def process(state: State, fix: Fix, ctx: RuleContext) -> tuple[State, list[Alarm]]:
    """Step every route assigned to the vehicle with one fix (module docstring)."""
    route_ids = ctx.vehicle.route_ids
    if not route_ids and not state.routes:
        return state, []
    alarms: list[Alarm] = []
    old = state.routes or {}
    new: dict[str, Track] = {}
    for route_id in route_ids:
        track = _step(route_id, old.get(route_id, Track()), fix, ctx, alarms)
        if track != Track():
            new[route_id] = track
    return (State(routes=new or None) if new != old else state), alarms


def dump(state: State) -> dict[str, Any]:
    return {"routes": {k: dump_fields(v) for k, v in (state.routes or {}).items()}}


def load(data: dict[str, Any]) -> State:
    routes = {k: Track(**v) for k, v in (data.get("routes") or {}).items()}
    return State(routes=routes or None)
