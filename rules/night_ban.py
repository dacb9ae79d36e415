"""Long-distance coach ban 02:00-05:00 (DOMAIN.md, Long-distance coaches 02:00-05:00).

Scheduled long-distance coaches (``night_ban_vehicle_classes``, default coach) must not run
between ``night_ban_start_local`` and ``night_ban_end_local`` (02:00-05:00 local time) unless the
vehicle is exempt (``vehicles.night_ban_exempt``: relay drivers). An episode opens at the first
fix in the window with the speed above ``moving_speed_kmh`` and closes when the vehicle has stood
still for ``night_ban_stop_s`` (ended at the start of that stop) or the window ends (ended at
the window's end).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from gps_monitor.models import Alarm
from rules.context import Fix, RuleContext, fields_of, night_window

NAME = "night_ban"


@dataclass(frozen=True, slots=True)
class State:
    """Open episode (``open_t``), when the current stop began, fixes and distance in it."""

    open_t: float | None = None
    stop_since_t: float | None = None
    last_moving_t: float | None = None
    distance_m: float = 0.0
    max_speed_kmh: float = 0.0


def _close(state: State, end_t: float, reason: str, ctx: RuleContext) -> tuple[State, list[Alarm]]:
    assert state.open_t is not None
    alarm = ctx.alarm(
        NAME,
        state.open_t,
        ended_t=end_t,
        details={
            "window": f"{ctx.settings.night_ban_start_local}-{ctx.settings.night_ban_end_local}",
            "distance_m": round(state.distance_m, 1),
            "max_speed_kmh": round(state.max_speed_kmh, 2),
            "reason": reason,
        },
        first_fix_t=state.open_t,
        last_fix_t=state.last_moving_t,
        event="closed",
    )
    return State(), [alarm]


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
            state = State(open_t=fix.t, last_moving_t=fix.t, max_speed_kmh=fix.position.speed_kmh)
            details = {
                "window": f"{s.night_ban_start_local}-{s.night_ban_end_local}",
                "speed_kmh": fix.position.speed_kmh,
            }
            return state, [ctx.alarm(NAME, fix.t, details=details, first_fix_t=fix.t)]
        return replace(
            state,
            stop_since_t=None,
            last_moving_t=fix.t,
            distance_m=state.distance_m + fix.step_m,
            max_speed_kmh=max(state.max_speed_kmh, fix.position.speed_kmh),
        ), []
    if state.open_t is None:
        return state, []
    stop_since = state.stop_since_t if state.stop_since_t is not None else fix.t
    if fix.t - stop_since >= s.night_ban_stop_s:
        return _close(replace(state, stop_since_t=stop_since), stop_since, "stopped", ctx)
    return replace(state, stop_since_t=stop_since, distance_m=state.distance_m + fix.step_m), []


def dump(state: State) -> dict[str, Any]:
    return fields_of(state)


def load(data: dict[str, Any]) -> State:
    return State(**data)
