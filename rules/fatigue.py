"""Fatigue driving (疲劳驾驶), its warning, and the daily driving limit.

Regulation (DOMAIN.md, Fatigue driving; Road Traffic Safety Law implementing regulations
art. 62; JT/T 808 parameters 0x0057-0x005C):

- continuous driving over ``fatigue_day_limit_s`` (4 h) raises ``fatigue_driving``; for coaches
  and tour buses while the fix falls in the night window (22:00-06:00 local) the limit is
  ``fatigue_night_limit_s`` (2 h);
- a stop of at least ``fatigue_min_rest_s`` (20 min) resets continuous driving (and closes the
  alarm, ended at the start of that stop); a shorter stop does not; midnight does not;
- ``fatigue_warning`` opens ``fatigue_warning_before_s`` (30 min) before the limit and closes
  when the limit is reached or the driver rests;
- ``daily_driving_limit`` when driving in one local calendar day (split at local midnight,
  Asia/Shanghai) exceeds ``daily_driving_limit_s`` (8 h; JT/T 808 0x0058 "driving time of the
  day"); it closes at local midnight.

Each interval between two consecutive fixes is classified:

- up to ``fatigue_gap_s`` long: driving when the fix's speed is above ``moving_speed_kmh``
  (5 km/h), otherwise a stop;
- longer (a data gap): a stop when the evidence says the vehicle stood still (it ends within
  ``fatigue_gap_stationary_m`` of where it began, or it reappears with ACC off without having
  covered the distance at road speed); driving when the distance was covered at road speed
  (implied speed >= ``fatigue_gap_driving_speed_kmh``);
  otherwise *ambiguous*: not rest (DOMAIN.md: a gap is rest only where the evidence says so), so
  counted as driving, and the alarm says how many ambiguous gaps and seconds it includes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gps_monitor.models import Alarm
from rules.context import Fix, LocalClock, RuleContext, fields_of, night_window, utc

NAME = "fatigue"
NAME_ALARM = "fatigue_driving"


@dataclass(slots=True)
class State:
    """Continuous driving run, current rest, open episodes, and the local day's total.

    Not frozen for speed: :func:`process` works on a private copy and never mutates the state
    it was given (callers may keep and compare old states).
    """

    run_start_t: float | None = None
    run_driving_s: float = 0.0
    rest_s: float = 0.0
    rest_start_t: float | None = None
    ambiguous_gaps: int = 0
    ambiguous_s: float = 0.0
    warning_t: float | None = None
    alarm_t: float | None = None
    alarm_limit_s: float = 0.0
    day: int | None = None
    day_driving_s: float = 0.0
    daily_alarm_t: float | None = None


def _copy(state: State) -> State:
    return State(
        state.run_start_t,
        state.run_driving_s,
        state.rest_s,
        state.rest_start_t,
        state.ambiguous_gaps,
        state.ambiguous_s,
        state.warning_t,
        state.alarm_t,
        state.alarm_limit_s,
        state.day,
        state.day_driving_s,
        state.daily_alarm_t,
    )


def replace(state: State, **changes: Any) -> State:
    """Set fields on the private working copy (see :class:`State`)."""
    for name, value in changes.items():
        setattr(state, name, value)
    return state


def classify(fix: Fix, ctx: RuleContext) -> str:
    """``driving``, ``stop`` or ``ambiguous`` for the interval ending at this fix."""
    s = ctx.settings
    position = fix.position
    if fix.dt_s <= s.fatigue_gap_s:
        return "driving" if position.speed_kmh > s.moving_speed_kmh else "stop"
    if fix.step_m <= s.fatigue_gap_stationary_m:
        return "stop"
    if fix.implied_speed_kmh >= s.fatigue_gap_driving_speed_kmh:
        return "driving"
    if position.acc_on is False:
        return "stop"  # ignition off when it reappears, and not covered at road speed
    return "ambiguous"


def limit_s(fix: Fix, ctx: RuleContext) -> float:
    """Continuous driving limit at this fix: 2 h at night for coach/tour bus, else 4 h."""
    s = ctx.settings
    if ctx.vehicle.vehicle_class in s.night_vehicle_classes and night_window(
        s.night_start_local, s.night_end_local
    ).contains(fix.minute_of_day):
        return s.fatigue_night_limit_s
    return s.fatigue_day_limit_s


def _run_details(state: State, limit: float) -> dict[str, Any]:
    details: dict[str, Any] = {
        "continuous_driving_s": round(state.run_driving_s, 1),
        "limit_s": limit,
        "run_started_at": _iso(state.run_start_t),
    }
    if state.ambiguous_gaps:
        details["ambiguous_gaps"] = state.ambiguous_gaps
        details["ambiguous_s"] = round(state.ambiguous_s, 1)
        details["evidence"] = (
            f"ambiguous: {state.ambiguous_gaps} data gap(s) totalling "
            f"{round(state.ambiguous_s)} s neither clearly driven nor clearly parked were "
            "counted as driving"
        )
    return details


def _iso(t: float | None) -> str | None:
    return utc(t).isoformat() if t is not None else None


def _add_day(
    state: State, start_t: float, end_t: float, ctx: RuleContext, alarms: list[Alarm]
) -> State:
    """Add driving over [start_t, end_t] to the local-day totals, split at local midnight."""
    clock: LocalClock = ctx.local
    limit = ctx.settings.daily_driving_limit_s
    t = start_t
    while t < end_t:
        day = clock.day_number(t)
        if state.day != day:
            state = _roll_day(state, day, clock.next_midnight(t) - 86400, ctx, alarms)
        piece_end = min(end_t, clock.next_midnight(t))
        before = state.day_driving_s
        after = before + (piece_end - t)
        state = replace(state, day_driving_s=after)
        if state.daily_alarm_t is None and after > limit:
            cross_t = t + (limit - before) if before < limit else t
            state = replace(state, daily_alarm_t=cross_t)
            alarms.append(
                ctx.alarm(
                    "daily_driving_limit",
                    cross_t,
                    discriminator=LocalClock.day_iso(day),
                    details={
                        "day": LocalClock.day_iso(day),
                        "limit_s": limit,
                        "driving_s": round(after, 1),
                    },
                    first_fix_t=cross_t,
                    last_fix_t=end_t,
                )
            )
        t = piece_end
    return state


def _roll_day(
    state: State, day: int, midnight_t: float, ctx: RuleContext, alarms: list[Alarm]
) -> State:
    """Start a new local day; close the previous day's daily alarm at midnight."""
    if state.daily_alarm_t is not None and state.day is not None:
        alarms.append(
            ctx.alarm(
                "daily_driving_limit",
                state.daily_alarm_t,
                discriminator=LocalClock.day_iso(state.day),
                ended_t=midnight_t,
                details={
                    "day": LocalClock.day_iso(state.day),
                    "limit_s": ctx.settings.daily_driving_limit_s,
                    "driving_s": round(state.day_driving_s, 1),
                },
                first_fix_t=state.daily_alarm_t,
                last_fix_t=midnight_t,
                event="closed",
            )
        )
    return replace(state, day=day, day_driving_s=0.0, daily_alarm_t=None)


def _close_run(state: State, end_t: float, ctx: RuleContext, alarms: list[Alarm]) -> State:
    if state.warning_t is not None:
        alarms.append(
            ctx.alarm(
                "fatigue_warning",
                state.warning_t,
                ended_t=end_t,
                details=_run_details(state, state.alarm_limit_s) | {"reason": "rest"},
                event="closed",
            )
        )
    if state.alarm_t is not None:
        alarms.append(
            ctx.alarm(
                NAME_ALARM,
                state.alarm_t,
                ended_t=end_t,
                details=_run_details(state, state.alarm_limit_s),
                first_fix_t=state.run_start_t,
                last_fix_t=end_t,
                event="closed",
            )
        )
    return replace(
        state,
        run_start_t=None,
        run_driving_s=0.0,
        ambiguous_gaps=0,
        ambiguous_s=0.0,
        warning_t=None,
        alarm_t=None,
    )


def process(state: State, fix: Fix, ctx: RuleContext) -> tuple[State, list[Alarm]]:
    """Step continuous driving, warning and daily totals with one fix (module docstring)."""
    alarms: list[Alarm] = []
    if fix.prev_t is None or fix.dt_s <= 0:
        if state.day is None:
            state = replace(_copy(state), day=ctx.local.day_number(fix.t))
        return state, alarms
    state = _copy(state)
    s = ctx.settings
    kind = classify(fix, ctx)
    prev_t = fix.prev_t
    if kind == "stop":
        rest_start = state.rest_start_t if state.rest_start_t is not None else prev_t
        rest_s = state.rest_s + fix.dt_s
        state = replace(state, rest_s=rest_s, rest_start_t=rest_start)
        if rest_s >= s.fatigue_min_rest_s and state.run_start_t is not None:
            state = _close_run(state, rest_start, ctx, alarms)
        day = ctx.local.day_number(fix.t)
        if state.day != day:
            state = _roll_day(state, day, ctx.local.next_midnight(fix.t) - 86400, ctx, alarms)
        return state, alarms
    # driving (or ambiguous, counted as driving)
    if state.rest_s >= s.fatigue_min_rest_s and state.run_start_t is not None:
        state = _close_run(state, state.rest_start_t or prev_t, ctx, alarms)
    before = state.run_driving_s
    state = replace(
        state,
        run_start_t=state.run_start_t if state.run_start_t is not None else prev_t,
        run_driving_s=before + fix.dt_s,
        rest_s=0.0,
        rest_start_t=None,
        ambiguous_gaps=state.ambiguous_gaps + (kind == "ambiguous"),
        ambiguous_s=state.ambiguous_s + (fix.dt_s if kind == "ambiguous" else 0.0),
    )
    state = _add_day(state, prev_t, fix.t, ctx, alarms)
    limit = limit_s(fix, ctx)
    after = state.run_driving_s
    warn_at = limit - s.fatigue_warning_before_s
    if state.alarm_t is None and state.warning_t is None and after >= warn_at and after < limit:
        cross_t = prev_t + max(0.0, warn_at - before)
        state = replace(state, warning_t=cross_t, alarm_limit_s=limit)
        alarms.append(
            ctx.alarm(
                "fatigue_warning",
                cross_t,
                details=_run_details(state, limit),
                first_fix_t=state.run_start_t,
                last_fix_t=fix.t,
            )
        )
    if state.alarm_t is None and after >= limit:
        cross_t = min(fix.t, prev_t + max(0.0, limit - before))
        if state.warning_t is not None:
            alarms.append(
                ctx.alarm(
                    "fatigue_warning",
                    state.warning_t,
                    ended_t=cross_t,
                    details=_run_details(state, limit) | {"reason": "limit reached"},
                    event="closed",
                )
            )
        state = replace(state, alarm_t=cross_t, alarm_limit_s=limit, warning_t=None)
        alarms.append(
            ctx.alarm(
                NAME_ALARM,
                cross_t,
                details=_run_details(state, limit),
                first_fix_t=state.run_start_t,
                last_fix_t=fix.t,
            )
        )
    return state, alarms


def dump(state: State) -> dict[str, Any]:
    return fields_of(state)


def load(data: dict[str, Any]) -> State:
    return State(**data)
