"""Long-distance coach ban 02:00-05:00 (DOMAIN.md, Long-distance coaches 02:00-05:00).

Scheduled long-distance coaches (``night_ban_vehicle_classes``, default coach) must not run
between ``night_ban_start_local`` and ``night_ban_end_local`` (02:00-05:00 local time) unless the
vehicle is exempt (``vehicles.night_ban_exempt``: relay drivers). An episode begins at the first
fix in the window with the speed above ``moving_speed_kmh``; its alarm opens only once the
vehicle has kept going for ``night_ban_min_duration_s`` (60 s, first to latest moving fix) AND
covered ``night_ban_min_distance_m`` (500 m) since then, so a coach rolling a few hundred
metres into a stop or a relay point just after 02:00 raises nothing (DOMAIN.md gives no figure:
the defaults are its route-deviation minimum of 60 s and a distance no manoeuvre in a stop or
yard covers, while a coach really running covers 1 km in that minute at 60 km/h).
The alarm keeps the episode's start and records both thresholds and what was reached when it
opened. An episode closes when the vehicle has stood still for ``night_ban_stop_s`` (ended at
the start of that stop) or the window ends (ended at the window's end); an episode that never
reached both thresholds ends without any alarm.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from gps_monitor.models import Alarm
from rules.context import Fix, RuleContext, dump_fields, night_window

NAME = "night_ban"


@dataclass(frozen=True, slots=True)
class State:
    """Episode since ``open_t`` (its first moving fix), when the current stop began, distance
    and top speed in it; ``pending`` while the alarm has not yet opened (below the minimum
    duration or distance)."""

    open_t: float | None = None
    stop_since_t: float | None = None
    last_moving_t: float | None = None
    distance_m: float = 0.0
    max_speed_kmh: float = 0.0
    pending: bool = False


def _details(state: State, ctx: RuleContext, **extra: Any) -> dict[str, Any]:
    s = ctx.settings
    return {
        "window": f"{s.night_ban_start_local}-{s.night_ban_end_local}",
        "distance_m": round(state.distance_m, 1),
        "max_speed_kmh": round(state.max_speed_kmh, 2),
        "min_duration_s": s.night_ban_min_duration_s,
        "min_distance_m": s.night_ban_min_distance_m,
        **extra,
    }


def _close(state: State, end_t: float, reason: str, ctx: RuleContext) -> tuple[State, list[Alarm]]:
    assert state.open_t is not None
    if state.pending:  # never reached the minimum duration and distance: no alarm
        return State(), []
    alarm = ctx.alarm(
        NAME,
        state.open_t,
        ended_t=end_t,
        details=_details(state, ctx, reason=reason),
        first_fix_t=state.open_t,
        last_fix_t=state.last_moving_t,
        event="closed",
    )
    return State(), [alarm]


def _maybe_open(state: State, fix: Fix, ctx: RuleContext) -> tuple[State, list[Alarm]]:
    """Open the alarm at a moving fix once the episode has lasted (first to latest moving fix)
    and covered the minimums."""
    s = ctx.settings
    assert state.open_t is not None
    duration_s = fix.t - state.open_t
    if not state.pending or (
        duration_s < s.night_ban_min_duration_s or state.distance_m < s.night_ban_min_distance_m
    ):
        return state, []
    details = _details(
        state, ctx, speed_kmh=fix.position.speed_kmh, duration_s_at_open=round(duration_s, 1)
    )
    alarm = ctx.alarm(
        NAME, state.open_t, details=details, first_fix_t=state.open_t, last_fix_t=fix.t
    )
    return replace(state, pending=False), [alarm]


def process(state: State, fix: Fix, ctx: RuleContext) -> tuple[State, list[Alarm]]:
    """Step the night-ban episode with one fix (module docstring)."""
    s = ctx.settings
    vehicle = ctx.vehicle
    if vehicle.vehicle_class not in s.night_ban_vehicle_classes or vehicle.night_ban_exempt:
        return state, []
    window = night_window(s.night_ban_start_local, s.night_ban_end_local)
    in_window = window.contains(fix.minute_of_day)
    moving = fix.position.speed_kmh > s.moving_speed_kmh
    if state.open_t is not None and not in_window:
        since_end_min = (fix.minute_of_day - window.end_min) % 1440
        end_t = max(state.open_t, fix.t - since_end_min * 60 - fix.t % 60)
        if state.stop_since_t is not None:
            end_t = min(end_t, state.stop_since_t)
        return _close(state, end_t, "window ended", ctx)
    if not in_window:
        return state, []
    if moving:
        if state.open_t is None:
            state = State(
                open_t=fix.t,
                last_moving_t=fix.t,
                max_speed_kmh=fix.position.speed_kmh,
                pending=True,
            )
            return _maybe_open(state, fix, ctx)
        state = replace(
            state,
            stop_since_t=None,
            last_moving_t=fix.t,
            distance_m=state.distance_m + fix.step_m,
            max_speed_kmh=max(state.max_speed_kmh, fix.position.speed_kmh),
        )
        return _maybe_open(state, fix, ctx)
    if state.open_t is None:
        return state, []
    stop_since = state.stop_since_t if state.stop_since_t is not None else fix.t
    if fix.t - stop_since >= s.night_ban_stop_s:
        return _close(replace(state, stop_since_t=stop_since), stop_since, "stopped", ctx)
    return replace(state, stop_since_t=stop_since, distance_m=state.distance_m + fix.step_m), []


def dump(state: State) -> dict[str, Any]:
    return dump_fields(state)


def load(data: dict[str, Any]) -> State:
    return State(**data)
