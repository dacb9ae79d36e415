"""Fatigue driving (疲劳驾驶), its warning, and the daily driving limit.

Regulation (DOMAIN.md, Fatigue driving; Road Traffic Safety Law implementing regulations
art. 62; JT/T 808 parameters 0x0057-0x005C):

- continuous driving over ``fatigue_day_limit_s`` (4 h) raises ``fatigue_driving``; for coaches
  and tour buses the limit is ``fatigue_night_limit_s`` (2 h) at night (22:00-06:00 local). The
  limit goes by the local time *at which the driving happens*, never by the time of a later
  fix: the night limit is exceeded at the first moment of driving inside the night window at
  which continuous driving has reached 2 h (driving 20:30-22:00 fires at 22:00 if the vehicle
  is still driving then; daytime driving followed by a stop that ends at night never becomes a
  night violation). The day limit is exceeded whenever continuous driving reaches 4 h; the
  alarm is raised at whichever comes first and records that limit as ``limit_s``;
- a stop of at least ``fatigue_min_rest_s`` (20 min) resets continuous driving (and closes the
  alarm, ended at the start of that stop); a shorter stop does not; midnight does not;
- ``fatigue_warning`` opens ``fatigue_warning_before_s`` (30 min) before the limit (by the same
  rule: 1 h 30 min reached while driving at night, or 3 h 30 min at any time) and closes when
  the limit is reached or the driver rests;
- ``daily_driving_limit`` when driving in one local calendar day (split at local midnight,
  Asia/Shanghai) exceeds ``daily_driving_limit_s`` (8 h; JT/T 808 0x0058 "driving time of the
  day"); it closes at local midnight.

Each interval between two consecutive fixes is classified:

- up to ``fatigue_gap_s`` (300 s) long: driving when the fix's speed is above
  ``moving_speed_kmh`` (5 km/h), otherwise a stop;
- longer (a data gap), judged by the evidence (DOMAIN.md: a gap is rest only where the evidence
  says the vehicle stood still; a gap across which it covered road distance is driving):

  - a stop when it ends within ``fatigue_gap_stationary_m`` (200 m) of where it began, or when
    the vehicle reappears with ACC off without having covered the distance at road speed;
  - driving throughout when it lasts at most ``fatigue_gap_max_driving_s`` (1 h) and its
    straight-line displacement was covered at ``fatigue_gap_driving_speed_kmh`` (20 km/h) or
    more;
  - otherwise *ambiguous*. Counted as driving: only the time its displacement needs at a
    plausible road speed (``fatigue_gap_driving_speed_kmh``, 20 km/h, for gaps up to
    ``fatigue_gap_max_driving_s``, so the count is continuous with the rule above;
    ``fatigue_gap_long_speed_kmh``, 60 km/h, for longer gaps, which are never taken as driving
    throughout), capped at the gap. The rest of the gap counts as stopped time, which resets
    continuous driving when it is at least ``fatigue_min_rest_s``. The driving is placed right
    after the fix before the gap when that fix was moving (the vehicle carried on, then stood),
    otherwise right before the fix after it (it stood, then drove to where it reappeared).

  Every alarm built on such a gap (``fatigue_driving``, ``fatigue_warning``,
  ``daily_driving_limit``) says so in ``details``: ``ambiguous_gaps`` (how many),
  ``ambiguous_s`` (their total length), ``ambiguous_driving_s`` (the part counted as driving)
  and ``evidence`` (the assumption, in words).

Drivers (issue 12 item 7; DOMAIN.md, Drivers: driving-time limits bind the driver). A position
may name the driver whose IC card is in the vehicle (``extras.driver.certificate_no``, set by the
JT/T 808 gateway from 0x0702). Without any card data the counts are the vehicle's, as above.
With it:

- a different driver's card with the vehicle stopped (the fix before the change was not moving)
  starts a fresh continuous-driving count for the incoming driver: the outgoing driver's run,
  warning and alarm close at that fix before the change (``reason`` ``driver change``). A card
  swapped while moving is no rest: the incoming driver takes over the running count;
- the daily total is the driver's: what he drove on this vehicle that day plus what he drove on
  every other vehicle that day (:class:`rules.driver_days.DriverDays`); the daily alarm names
  the driver (``driver_certificate_no``; its discriminator is the day and the driver, so two
  drivers of one vehicle have their own) and the vehicles' shares (``driving_s_by_vehicle``);
- a card pulled out (positions without a driver after a card) changes nothing: the count goes
  on for the last driver known, since nothing shows somebody fresh took the wheel;
- every fatigue alarm carries ``driver_certificate_no`` (the driver whose count it is), taken
  from this rule's state rather than the position, so an alarm closing after a change still
  names the driver it was about.
"""

from __future__ import annotations

import dataclasses
import operator
from dataclasses import dataclass, field
from typing import Any

from gps_monitor.models import Alarm, Position
from rules import driver_days
from rules.context import (
    Fix,
    LocalClock,
    RuleContext,
    dump_fields,
    night_window,
    utc,
)

NAME = "fatigue"
NAME_ALARM = "fatigue_driving"


@dataclass(slots=True)
class State:
    """Continuous driving run, current rest, open episodes, and the local day's total.

    ``ambiguous_*`` count the ambiguous data gaps whose driving went into the current run,
    ``day_ambiguous_*`` those whose driving went into the current local day (module docstring).
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
    ambiguous_driving_s: float = 0.0
    day_ambiguous_gaps: int = 0
    day_ambiguous_s: float = 0.0
    day_ambiguous_driving_s: float = 0.0
    driver: str | None = None  # certificate number of the driver counted (None: the vehicle)
    driver_days: dict[str, float] = field(default_factory=dict)  # "cert|day" -> s on this one


# every field in the constructor's order: the working copy in one C call per fix
_FIELD_VALUES = operator.attrgetter(*(f.name for f in dataclasses.fields(State)))


def _copy(state: State) -> State:
    copied = State(*_FIELD_VALUES(state))
    copied.driver_days = dict(state.driver_days)
    return copied


def driver_certificate_no(position: Position) -> str | None:
    """The certificate number (从业资格证号) of the driver a position names
    (``extras.driver.certificate_no``, as text), or None."""
    found = (position.extras or {}).get("driver")
    if isinstance(found, dict):
        certificate = found.get("certificate_no")
        return str(certificate) if certificate else None
    return None


def driver_of(fix: Fix) -> str | None:
    """:func:`driver_certificate_no` of the fix's position."""
    return driver_certificate_no(fix.position)


def replace(state: State, **changes: Any) -> State:
    """Set fields on the private working copy (see :class:`State`)."""
    for name, value in changes.items():
        setattr(state, name, value)
    return state


def classify(fix: Fix, ctx: RuleContext) -> tuple[str, float]:
    """``(kind, driving_s)`` of the interval ending at this fix: ``driving`` (all of it),
    ``stop`` (none of it) or ``ambiguous`` (``driving_s`` of it counted as driving, the time its
    displacement needs at the road speed; module docstring)."""
    s = ctx.settings
    position = fix.position
    dt_s = fix.dt_s
    if dt_s <= s.fatigue_gap_s:
        return ("driving", dt_s) if position.speed_kmh > s.moving_speed_kmh else ("stop", 0.0)
    if fix.step_m <= s.fatigue_gap_stationary_m:
        return "stop", 0.0
    long_gap = dt_s > s.fatigue_gap_max_driving_s
    road_speed = fix.implied_speed_kmh >= s.fatigue_gap_driving_speed_kmh
    if road_speed and not long_gap:
        return "driving", dt_s
    if position.acc_on is False and not road_speed:
        return "stop", 0.0  # ignition off when it reappears, and not covered at road speed
    speed_kmh = s.fatigue_gap_long_speed_kmh if long_gap else s.fatigue_gap_driving_speed_kmh
    needed_s = fix.step_m / (speed_kmh / 3.6)
    if needed_s >= dt_s:
        return "driving", dt_s  # the displacement needs all of it, even at that speed
    return "ambiguous", needed_s


def _segments(fix: Fix, ctx: RuleContext, driving_s: float) -> list[tuple[bool, float, float]]:
    """``(driving, start_t, end_t)`` pieces of the interval: the driving right after the fix
    before it when that one was moving, else right before this fix (module docstring)."""
    start, end = fix.t - fix.dt_s, fix.t
    if driving_s >= fix.dt_s:
        return [(True, start, end)]
    if driving_s <= 0:
        return [(False, start, end)]
    if (fix.prev_speed_kmh or 0.0) > ctx.settings.moving_speed_kmh:
        return [(True, start, start + driving_s), (False, start + driving_s, end)]
    return [(False, start, end - driving_s), (True, end - driving_s, end)]


def _first_night_t(start_t: float, end_t: float, ctx: RuleContext) -> float | None:
    """The first moment in [start_t, end_t] inside the local night window, or None."""
    s = ctx.settings
    window = night_window(s.night_start_local, s.night_end_local)
    if window.contains(ctx.local.minute_of_day(start_t)):
        return start_t
    local_s = (start_t + ctx.local.offset_s(start_t)) % 86400
    t = start_t + (window.start_min * 60 - local_s) % 86400
    return t if t <= end_t else None


def _crossing(
    before: float, start_t: float, end_t: float, ctx: RuleContext, day_s: float, night_s: float
) -> tuple[float, float] | None:
    """``(time, limit_s)`` at which continuous driving over the driving piece [start_t, end_t]
    (``before`` seconds of it before the piece) first reaches ``day_s`` at any time or, for the
    night vehicle classes, ``night_s`` while it is night (module docstring); None if it does
    not within the piece. ``limit_s`` is the limit whose threshold was crossed first."""
    s = ctx.settings
    after = before + (end_t - start_t)
    found: list[tuple[float, float]] = []
    if after >= day_s:
        found.append((min(end_t, start_t + max(0.0, day_s - before)), s.fatigue_day_limit_s))
    if ctx.vehicle.vehicle_class in s.night_vehicle_classes and after >= night_s:
        reached_t = min(end_t, start_t + max(0.0, night_s - before))
        night_t = _first_night_t(reached_t, end_t, ctx)
        if night_t is not None:
            found.append((night_t, s.fatigue_night_limit_s))
    return min(found) if found else None


def _evidence(gaps: int, gap_s: float, driving_s: float, ctx: RuleContext) -> dict[str, Any]:
    """The ``details`` entries saying how much of the driving rests on ambiguous gaps."""
    if not gaps:
        return {}
    s = ctx.settings
    return {
        "ambiguous_gaps": gaps,
        "ambiguous_s": round(gap_s, 1),
        "ambiguous_driving_s": round(driving_s, 1),
        "evidence": (
            f"ambiguous: {gaps} data gap(s) totalling {round(gap_s)} s neither clearly driven "
            f"nor clearly parked; {round(driving_s)} s of them counted as driving (the time "
            f"their straight-line displacement needs at {s.fatigue_gap_driving_speed_kmh:g} "
            f"km/h, or {s.fatigue_gap_long_speed_kmh:g} km/h for gaps over "
            f"{s.fatigue_gap_max_driving_s:g} s) and the rest as stopped"
        ),
    }


def _run_details(state: State, limit: float, ctx: RuleContext) -> dict[str, Any]:
    details: dict[str, Any] = {
        "continuous_driving_s": round(state.run_driving_s, 1),
        "limit_s": limit,
        "run_started_at": _iso(state.run_start_t),
    }
    if state.driver is not None:
        details["driver_certificate_no"] = state.driver
    return details | _evidence(
        state.ambiguous_gaps, state.ambiguous_s, state.ambiguous_driving_s, ctx
    )


def _day_details(state: State, day: int, ctx: RuleContext) -> dict[str, Any]:
    details: dict[str, Any] = {
        "day": LocalClock.day_iso(day),
        "limit_s": ctx.settings.daily_driving_limit_s,
        "driving_s": round(state.day_driving_s + _others(state, day, ctx), 1),
    }
    if state.driver is not None:
        shares = ctx.driver_days.vehicles(state.driver, day)
        shares[ctx.vehicle.vehicle_id] = state.day_driving_s
        details["driver_certificate_no"] = state.driver
        details["driving_s_by_vehicle"] = {str(v): round(s, 1) for v, s in sorted(shares.items())}
    return details | _evidence(
        state.day_ambiguous_gaps, state.day_ambiguous_s, state.day_ambiguous_driving_s, ctx
    )


def _others(state: State, day: int, ctx: RuleContext) -> float:
    """What the counted driver drove that day on other vehicles (0 without a driver)."""
    if state.driver is None:
        return 0.0
    return ctx.driver_days.others(state.driver, day, ctx.vehicle.vehicle_id)


def _day_discriminator(state: State, day: int) -> str:
    iso = LocalClock.day_iso(day)
    return iso if state.driver is None else f"{iso}|{state.driver}"


def _record_day(state: State, ctx: RuleContext) -> State:
    """Write the counted driver's figure of the day into the state and the shared ledger
    (only yesterday and today are kept in the state)."""
    if state.driver is None or state.day is None:
        return state
    name = driver_days.key(state.driver, state.day)
    state.driver_days[name] = state.day_driving_s
    ctx.driver_days.record(state.driver, state.day, ctx.vehicle.vehicle_id, state.day_driving_s)
    if len(state.driver_days) > 1:
        keep = {state.day, state.day - 1}
        state.driver_days = {
            k: v for k, v in state.driver_days.items() if int(k.rpartition("|")[2]) in keep
        }
    return state


def _iso(t: float | None) -> str | None:
    return utc(t).isoformat() if t is not None else None


def _add_day(
    state: State,
    start_t: float,
    end_t: float,
    gap_s: float,
    ctx: RuleContext,
    alarms: list[Alarm],
) -> State:
    """Add driving over [start_t, end_t] to the local-day totals, split at local midnight.
    ``gap_s``: the length of the ambiguous gap this driving comes from (0 = none)."""
    clock: LocalClock = ctx.local
    limit = ctx.settings.daily_driving_limit_s
    t = start_t
    while t < end_t:
        day = clock.day_number(t)
        if state.day != day:
            state = _roll_day(state, day, clock.next_midnight(t) - 86400, ctx, alarms)
        piece_end = min(end_t, clock.next_midnight(t))
        others = _others(state, day, ctx)
        before = state.day_driving_s + others
        after = before + (piece_end - t)
        state = replace(state, day_driving_s=after - others)
        if gap_s:
            state = replace(
                state,
                day_ambiguous_gaps=state.day_ambiguous_gaps + 1,
                day_ambiguous_s=state.day_ambiguous_s + gap_s,
                day_ambiguous_driving_s=state.day_ambiguous_driving_s + (piece_end - t),
            )
        if state.daily_alarm_t is None and after > limit:
            cross_t = t + (limit - before) if before < limit else t
            state = replace(state, daily_alarm_t=cross_t)
            alarms.append(
                ctx.alarm(
                    "daily_driving_limit",
                    cross_t,
                    discriminator=_day_discriminator(state, day),
                    details=_day_details(state, day, ctx),
                    first_fix_t=cross_t,
                    last_fix_t=end_t,
                )
            )
        t = piece_end
        state = _record_day(state, ctx)
    return state


def _close_daily(
    state: State, end_t: float, ctx: RuleContext, alarms: list[Alarm], extra: dict[str, Any]
) -> None:
    """Close the open daily alarm (if any) at ``end_t``; ``extra`` goes into its details."""
    if state.daily_alarm_t is None or state.day is None:
        return
    alarms.append(
        ctx.alarm(
            "daily_driving_limit",
            state.daily_alarm_t,
            discriminator=_day_discriminator(state, state.day),
            ended_t=end_t,
            details=_day_details(state, state.day, ctx) | extra,
            first_fix_t=state.daily_alarm_t,
            last_fix_t=end_t,
            event="closed",
        )
    )


def _roll_day(
    state: State, day: int, midnight_t: float, ctx: RuleContext, alarms: list[Alarm]
) -> State:
    """Start a new local day; close the previous day's daily alarm at midnight."""
    _close_daily(state, midnight_t, ctx, alarms, {})
    return replace(
        state,
        day=day,
        day_driving_s=0.0,
        daily_alarm_t=None,
        day_ambiguous_gaps=0,
        day_ambiguous_s=0.0,
        day_ambiguous_driving_s=0.0,
    )


def _close_run(
    state: State, end_t: float, ctx: RuleContext, alarms: list[Alarm], reason: str = "rest"
) -> State:
    if state.warning_t is not None:
        alarms.append(
            ctx.alarm(
                "fatigue_warning",
                state.warning_t,
                ended_t=end_t,
                details=_run_details(state, state.alarm_limit_s, ctx) | {"reason": reason},
                event="closed",
            )
        )
    if state.alarm_t is not None:
        alarms.append(
            ctx.alarm(
                NAME_ALARM,
                state.alarm_t,
                ended_t=end_t,
                details=_run_details(state, state.alarm_limit_s, ctx)
                | ({"reason": reason} if reason != "rest" else {}),
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
        ambiguous_driving_s=0.0,
        warning_t=None,
        alarm_t=None,
    )


def _stop(
    state: State, start_t: float, end_t: float, ctx: RuleContext, alarms: list[Alarm]
) -> State:
    """A stop over [start_t, end_t]: rest accumulates; enough of it ends the run."""
    rest_start = state.rest_start_t if state.rest_start_t is not None else start_t
    rest_s = state.rest_s + (end_t - start_t)
    state = replace(state, rest_s=rest_s, rest_start_t=rest_start)
    if rest_s >= ctx.settings.fatigue_min_rest_s and state.run_start_t is not None:
        state = _close_run(state, rest_start, ctx, alarms)
    day = ctx.local.day_number(end_t)
    if state.day != day:
        state = _roll_day(state, day, ctx.local.next_midnight(end_t) - 86400, ctx, alarms)
    return state


def _drive(
    state: State,
    start_t: float,
    end_t: float,
    gap_s: float,
    fix: Fix,
    ctx: RuleContext,
    alarms: list[Alarm],
) -> State:
    """Driving over [start_t, end_t] (from an ambiguous gap of ``gap_s`` when > 0): the run,
    the day's total, the warning and the alarm, crossing times interpolated."""
    s = ctx.settings
    if state.rest_s >= s.fatigue_min_rest_s and state.run_start_t is not None:
        state = _close_run(state, state.rest_start_t or start_t, ctx, alarms)
    before = state.run_driving_s
    driving_s = end_t - start_t
    state = replace(
        state,
        run_start_t=state.run_start_t if state.run_start_t is not None else start_t,
        run_driving_s=before + driving_s,
        rest_s=0.0,
        rest_start_t=None,
    )
    if gap_s:
        state = replace(
            state,
            ambiguous_gaps=state.ambiguous_gaps + 1,
            ambiguous_s=state.ambiguous_s + gap_s,
            ambiguous_driving_s=state.ambiguous_driving_s + driving_s,
        )
    state = _add_day(state, start_t, end_t, gap_s, ctx, alarms)
    day_limit, night_limit = s.fatigue_day_limit_s, s.fatigue_night_limit_s
    warn_s = s.fatigue_warning_before_s
    reached = _crossing(before, start_t, end_t, ctx, day_limit, night_limit)
    warned = _crossing(before, start_t, end_t, ctx, day_limit - warn_s, night_limit - warn_s)
    if state.alarm_t is None and state.warning_t is None and warned and reached is None:
        cross_t, limit = warned
        state = replace(state, warning_t=cross_t, alarm_limit_s=limit)
        alarms.append(
            ctx.alarm(
                "fatigue_warning",
                cross_t,
                details=_run_details(state, limit, ctx),
                first_fix_t=state.run_start_t,
                last_fix_t=fix.t,
            )
        )
    if state.alarm_t is None and reached is not None:
        cross_t, limit = reached
        if state.warning_t is not None:
            alarms.append(
                ctx.alarm(
                    "fatigue_warning",
                    state.warning_t,
                    ended_t=cross_t,
                    details=_run_details(state, limit, ctx) | {"reason": "limit reached"},
                    event="closed",
                )
            )
        state = replace(state, alarm_t=cross_t, alarm_limit_s=limit, warning_t=None)
        alarms.append(
            ctx.alarm(
                NAME_ALARM,
                cross_t,
                details=_run_details(state, limit, ctx),
                first_fix_t=state.run_start_t,
                last_fix_t=fix.t,
            )
        )
    return state


def process(state: State, fix: Fix, ctx: RuleContext) -> tuple[State, list[Alarm]]:
    """Step continuous driving, warning and daily totals with one fix (module docstring)."""
    alarms: list[Alarm] = []
    if fix.prev_t is None or fix.dt_s <= 0:
        incoming = driver_of(fix) if fix.prev_t is None else None
        if state.day is None or (incoming is not None and state.driver is None):
            day = state.day if state.day is not None else ctx.local.day_number(fix.t)
            state = replace(_copy(state), day=day, driver=incoming or state.driver)
        return state, alarms
    state = _copy(state)
    incoming = driver_of(fix)
    if incoming is not None and incoming != state.driver:
        state = _change_driver(state, incoming, fix, ctx, alarms)
    kind, driving_s = classify(fix, ctx)
    gap_s = fix.dt_s if kind == "ambiguous" else 0.0
    for driving, start_t, end_t in _segments(fix, ctx, driving_s):
        if driving:
            state = _drive(state, start_t, end_t, gap_s, fix, ctx, alarms)
        else:
            state = _stop(state, start_t, end_t, ctx, alarms)
    return state, alarms


def _change_driver(
    state: State, incoming: str, fix: Fix, ctx: RuleContext, alarms: list[Alarm]
) -> State:
    """Another driver's card (module docstring): with the vehicle stopped, the outgoing
    driver's run and daily alarm close at the fix before the change and the incoming driver's
    day starts from what he drove on this vehicle that day; while moving he takes over the run."""
    s = ctx.settings
    moving = (fix.prev_speed_kmh or 0.0) > s.moving_speed_kmh
    if moving:
        return replace(state, driver=incoming)
    change_t = fix.prev_t if fix.prev_t is not None else fix.t
    if state.run_start_t is not None:
        state = _close_run(state, change_t, ctx, alarms, reason="driver change")
        state = replace(state, rest_s=0.0, rest_start_t=None)
    _close_daily(state, change_t, ctx, alarms, {"reason": "driver change"})
    day = state.day if state.day is not None else ctx.local.day_number(change_t)
    own_s = state.driver_days.get(driver_days.key(incoming, day), 0.0)
    return replace(
        state,
        driver=incoming,
        day=day,
        day_driving_s=own_s,
        daily_alarm_t=None,
        day_ambiguous_gaps=0,
        day_ambiguous_s=0.0,
        day_ambiguous_driving_s=0.0,
    )


def dump(state: State) -> dict[str, Any]:
    return dump_fields(state)


def load(data: dict[str, Any]) -> State:
    """Inverse of :func:`dump`; fields a newer version added start at their defaults."""
    return State(**{k: v for k, v in data.items() if k in State.__slots__})
