"""Geofence (电子围栏) enter/exit, forbidden areas and keep-in areas.

Regulation (DOMAIN.md, Geofences; GB/T 35658-2017 makes area alarms a platform duty):

- ``forbidden`` (禁入): ``forbidden_area_entry`` opens on entry, closes on exit;
- ``keep_in`` (禁出): ``keep_in_area_exit`` opens on leaving (or at the first fix outside),
  closes on return;
- ``watch``: ``geofence_enter`` / ``geofence_exit``, instantaneous (ended_at = started_at);
  not at a vehicle's very first fix (nothing to compare with: Home Assistant's zone trigger);
- ``speed_zone``: no alarm of its own; its limit is used by overspeed.

Flapping: a vehicle counts as inside only ``geofence_hysteresis_m`` (30 m) inside the boundary and
as outside only that far outside it; between the two its state is unchanged, so a parked vehicle
whose GPS drifts across the boundary raises nothing. ``geofence_dwell_s`` (default 0) optionally
requires the new state to last that long (the event keeps its first fix's time).

Exits that raise an alarm (``keep_in_area_exit``, ``geofence_exit``) need more (issue 14): the
vehicle must stay outside for ``geofence_exit_min_duration_s`` (30 s) AND get
``geofence_exit_min_distance_m`` (100 m) beyond the boundary, so a vehicle that edges out of its
yard and back, or one GPS fix thrown outside, raises nothing. DOMAIN.md asks for hysteresis or a
dwell time without a figure; the defaults are three fixes at the usual 10 s interval and a depth
well beyond parked GPS scatter. The alarm keeps the time of the first fix outside, and its details
give both thresholds and the duration and depth reached.

Sparse fixes: when both fixes are outside a forbidden or watch fence but the straight segment
between them passes through it (deeper than the hysteresis), the pass is reported with times
interpolated along the segment and ``"inferred_from_segment": true``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import shapely
from shapely import LineString

from gps_monitor.geofences import Geofence, GeofenceKind
from gps_monitor.models import Alarm
from rules.context import Fix, RuleContext, dump_fields, fence_hits

NAME = "geofence"
_ALARM_ON_INSIDE = {GeofenceKind.FORBIDDEN: "forbidden_area_entry"}
_ALARM_ON_OUTSIDE = {GeofenceKind.KEEP_IN: "keep_in_area_exit"}


@dataclass(frozen=True, slots=True)
class FenceTrack:
    """The vehicle's state for one geofence: inside or not, a pending change (since
    ``pending_t``, at most ``pending_depth_m`` across the boundary), an open alarm."""

    inside: bool
    since_t: float
    pending_t: float | None = None
    open_t: float | None = None
    pending_depth_m: float = 0.0


@dataclass(frozen=True, slots=True)
class State:
    """Per geofence id, a :class:`FenceTrack` (only fences the vehicle is inside of, keep-in
    fences it is outside of, and fences with a pending change)."""

    fences: dict[str, FenceTrack] | None = None


def _details(fence: Geofence, **extra: Any) -> dict[str, Any]:
    return {"geofence_id": fence.id, "geofence_name": fence.name, "kind": str(fence.kind)} | extra


def _transition(
    fence: Geofence,
    inside: bool,
    at_t: float,
    track: FenceTrack | None,
    ctx: RuleContext,
    fix: Fix,
    alarms: list[Alarm],
    evidence: dict[str, Any] | None = None,
) -> FenceTrack:
    """Change the vehicle's state for ``fence`` at ``at_t``, raising its alarms; ``evidence``
    joins the details of the alarm the change opens."""
    kind = fence.kind
    extra = evidence or {}
    if kind is GeofenceKind.WATCH:
        if fix.prev_t is None:  # the first fix of the vehicle: no previous state to compare
            return FenceTrack(inside=inside, since_t=at_t)
        alarm_type = "geofence_enter" if inside else "geofence_exit"
        alarms.append(
            ctx.alarm(
                alarm_type,
                at_t,
                discriminator=fence.id,
                ended_t=at_t,
                details=_details(fence, **extra),
                first_fix_t=at_t,
                last_fix_t=at_t,
            )
        )
        return FenceTrack(inside=inside, since_t=at_t)
    opening = _ALARM_ON_INSIDE.get(kind) if inside else _ALARM_ON_OUTSIDE.get(kind)
    closing = _ALARM_ON_OUTSIDE.get(kind) if inside else _ALARM_ON_INSIDE.get(kind)
    if closing and track is not None and track.open_t is not None:
        alarms.append(
            ctx.alarm(
                closing,
                track.open_t,
                discriminator=fence.id,
                ended_t=at_t,
                details=_details(fence),
                first_fix_t=track.open_t,
                last_fix_t=fix.t,
                event="closed",
            )
        )
    if opening:
        alarms.append(
            ctx.alarm(
                opening,
                at_t,
                discriminator=fence.id,
                details=_details(fence, **extra),
                first_fix_t=at_t,
                last_fix_t=fix.t,
            )
        )
        return FenceTrack(inside=inside, since_t=at_t, open_t=at_t)
    return FenceTrack(inside=inside, since_t=at_t)


def _segment_passes(fix: Fix, ctx: RuleContext, tracked: set[str], alarms: list[Alarm]) -> None:
    """Report fences the segment from the previous fix crossed though both ends are outside."""
    if fix.prev_t is None:
        return
    geo = ctx.geo
    h = ctx.settings.geofence_hysteresis_m
    if fix.step_m <= 2 * h + 1.0:
        return
    prev_xy = fix.prev_xy()
    if prev_xy is None:
        return
    prev_x, prev_y = prev_xy
    zone = geo.pass_index.zone(fix.zone)
    vehicle = ctx.vehicle
    segment: LineString | None = None
    for j in zone.crossed(prev_x, prev_y, fix.x, fix.y):
        fence = geo.geofences[geo.pass_positions[j]]
        if fence.kind not in (GeofenceKind.FORBIDDEN, GeofenceKind.WATCH):
            continue
        if fence.id in tracked or not fence.applies_to(vehicle.vehicle_class, vehicle.vehicle_id):
            continue
        if fence.active_hours is not None and not fence.active_hours.contains(fix.minute_of_day):
            continue
        inner = zone.inner(j, h)
        if inner is None or inner.is_empty:
            continue
        segment = segment or LineString([(prev_x, prev_y), (fix.x, fix.y)])
        crossing = segment.intersection(inner)
        if crossing.is_empty:
            continue
        ends = shapely.line_locate_point(segment, shapely.points(shapely.get_coordinates(crossing)))
        length = segment.length or 1.0
        t0 = fix.prev_t + fix.dt_s * float(ends.min()) / length
        t1 = fix.prev_t + fix.dt_s * float(ends.max()) / length
        extra = {"inferred_from_segment": True}
        if fence.kind is GeofenceKind.WATCH:
            for alarm_type, at in (("geofence_enter", t0), ("geofence_exit", t1)):
                alarms.append(
                    ctx.alarm(
                        alarm_type,
                        at,
                        discriminator=fence.id,
                        ended_t=at,
                        details=_details(fence, **extra),
                        first_fix_t=fix.prev_t,
                        last_fix_t=fix.t,
                    )
                )
        else:
            alarms.append(
                ctx.alarm(
                    "forbidden_area_entry",
                    t0,
                    discriminator=fence.id,
                    ended_t=t1,
                    details=_details(fence, **extra),
                    first_fix_t=fix.prev_t,
                    last_fix_t=fix.t,
                )
            )


def _change(
    fence: Geofence,
    i: int,
    wanted: bool,
    track: FenceTrack | None,
    inside_now: bool,
    fix: Fix,
    ctx: RuleContext,
    alarms: list[Alarm],
) -> FenceTrack | None:
    """The vehicle is beyond the hysteresis band on the other side: change state now, or once
    the change has lasted the dwell time (and, for an exit alarm, the exit minimums)."""
    s = ctx.settings
    exit_alarm = not wanted and fence.kind in (GeofenceKind.KEEP_IN, GeofenceKind.WATCH)
    need_s = max(s.geofence_dwell_s, s.geofence_exit_min_duration_s if exit_alarm else 0.0)
    need_m = s.geofence_exit_min_distance_m if exit_alarm else 0.0
    if need_s <= 0 and need_m <= 0:
        return _transition(fence, wanted, fix.t, track, ctx, fix, alarms)
    # metres beyond the boundary (capped: a fence with no shape in this zone is infinitely far)
    depth_m = min(abs(ctx.geo.fence_zone(fix.zone).signed_distance_m(i, fix.x, fix.y)), 1e7)
    pending = track.pending_t if track is not None and track.pending_t is not None else None
    if pending is None:
        pending, deepest_m = fix.t, depth_m
    else:
        assert track is not None
        deepest_m = max(track.pending_depth_m, depth_m)
    if fix.t - pending >= need_s and deepest_m >= need_m:
        evidence = (
            {
                "min_duration_s": need_s,
                "min_distance_m": need_m,
                "outside_duration_s": round(fix.t - pending, 1),
                "outside_depth_m": round(deepest_m, 1),
            }
            if exit_alarm
            else None
        )
        return _transition(fence, wanted, pending, track, ctx, fix, alarms, evidence)
    base = track or FenceTrack(inside=inside_now, since_t=fix.t)
    return FenceTrack(base.inside, base.since_t, pending, base.open_t, deepest_m)


def process(state: State, fix: Fix, ctx: RuleContext) -> tuple[State, list[Alarm]]:
    """Step every geofence near the fix, and those the vehicle was inside of (module
    docstring)."""
    geo = ctx.geo
    if not geo.geofences:
        return state, []
    old = state.fences or {}
    h = ctx.settings.geofence_hysteresis_m
    # fence id -> (fence, index, fix inside it); distances only where the state may change
    near: dict[str, tuple[Geofence, int, bool]] = {
        fence.id: (fence, i, inside)
        for fence, i, inside in fence_hits(fix, ctx)
        if fence.kind is not GeofenceKind.SPEED_ZONE
    }
    zone = geo.fence_zone(fix.zone)
    for fence_id in old:
        if fence_id not in near and fence_id in geo.fence_pos:
            i = geo.fence_pos[fence_id]
            near[fence_id] = (geo.geofences[i], i, zone.contains(i, fix.x, fix.y))
    for i in geo.keep_ins_for(ctx.vehicle):
        fence = geo.geofences[i]
        if fence.id not in near and (
            fence.active_hours is None or fence.active_hours.contains(fix.minute_of_day)
        ):
            near[fence.id] = (fence, i, False)
    alarms: list[Alarm] = []
    new: dict[str, FenceTrack] = {}
    for fence_id, (fence, i, inside) in near.items():
        track = old.get(fence_id)
        inside_now = track.inside if track is not None else fence.kind is GeofenceKind.KEEP_IN
        wanted = inside_now
        if inside != inside_now:  # across the boundary: beyond the hysteresis band?
            signed_m = zone.signed_distance_m(i, fix.x, fix.y)
            if inside_now and signed_m > h:
                wanted = False
            elif not inside_now and signed_m < -h:
                wanted = True
        if wanted == inside_now:
            if track is not None and track.pending_t is not None:
                track = FenceTrack(track.inside, track.since_t, None, track.open_t)
        else:
            track = _change(fence, i, wanted, track, inside_now, fix, ctx, alarms)
        if track is not None and (
            track.inside != (fence.kind is GeofenceKind.KEEP_IN)
            or track.pending_t is not None
            or track.open_t is not None
        ):
            new[fence_id] = track
    _segment_passes(fix, ctx, set(old) | set(new), alarms)
    return (State(fences=new or None) if new != old else state), alarms


def dump(state: State) -> dict[str, Any]:
    return {"fences": {k: dump_fields(v) for k, v in (state.fences or {}).items()}}


def load(data: dict[str, Any]) -> State:
    fences = {k: FenceTrack(**v) for k, v in (data.get("fences") or {}).items()}
    return State(fences=fences or None)
