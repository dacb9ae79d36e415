"""Alarms the terminal raises itself (JT/T 808 location report alarm flag bits).

DOMAIN.md, Terminal data: bit 0 SOS, 1 overspeed, 2 fatigue driving, 13 overspeed warning,
14 fatigue warning, 18 daily driving time exceeded, 19 overtime parking, 20 area in/out, 21 route
in/out, 22 road-section time too short/long, 23 route deviation, 28 illegal movement. Each bit in
``device_alarm_bits`` becomes a ``device_alarm`` episode (discriminator ``bit<N>``) that opens at
the first fix with the bit set and closes at the first fix with it cleared. The platform's own
overspeed/fatigue/route/area rules run independently (GB/T 35658-2017: terminals do it badly).

The bits count even when the report's position does not (issue 12: an SOS pressed in a tunnel
must reach someone): a report without a usable fix (fix flag off, (0, 0), out of range, a
GPS jump: every ``invalid``/``drift`` verdict whose time is still the report's, see
:data:`gps_monitor.quality.UNTRUSTED_TIME_REASONS`) steps the bits through
:func:`process_without_fix`; an alarm it opens is placed at the vehicle's last good fix and says
so in ``details["without_fix"]`` (the report's quality and reason, and ``position``: source
``last_good_fix`` with that fix's time and coordinates, or ``none`` before any good fix).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from gps_monitor.models import Alarm, Position
from rules.context import Fix, RuleContext, without_fix_evidence

NAME = "device_alarm"

BIT_NAMES: dict[int, str] = {
    0: "sos",
    1: "overspeed",
    2: "fatigue_driving",
    13: "overspeed_warning",
    14: "fatigue_warning",
    18: "daily_driving_time_exceeded",
    19: "overtime_parking",
    20: "area_in_out",
    21: "route_in_out",
    22: "road_section_time",
    23: "route_deviation",
    28: "illegal_movement",
}


@dataclass(frozen=True, slots=True)
class State:
    """Active bits: bit number (as text, JSON keys) -> epoch seconds it was first seen set.

    ``without_fix``: bit -> the ``without_fix`` evidence of an active bit opened by a report
    without a fix (the closing event repeats it: an alarm's stored details are the last
    event's). ``last_without_fix_t``: the newest report without a fix stepped here (an older
    one, or a fix not newer than it, no longer steps the bits).
    """

    active: dict[str, float] | None = None
    without_fix: dict[str, dict[str, Any]] | None = None
    last_without_fix_t: float | None = None


def process(state: State, fix: Fix, ctx: RuleContext) -> tuple[State, list[Alarm]]:
    """Open/close one ``device_alarm`` per configured bit as it is set/cleared."""
    if state.last_without_fix_t is not None and fix.t <= state.last_without_fix_t:
        return state, []
    return _step(state, fix.position.alarm_flags, fix.t, ctx, None)


def process_without_fix(
    state: State,
    position: Position,
    last_fix: tuple[float, float, float, float] | None,
    ctx: RuleContext,
) -> tuple[State, list[Alarm]]:
    """The bits of a report whose position is not usable (module docstring), at its fix time.

    Args:
        position: the report, judged ``invalid`` (with a reason whose time is trusted) or
            ``drift``, newer than ``last_fix``.
        last_fix: the vehicle's last good fix ``(epoch_s, lat, lon, speed_kmh)``, or None.
    """
    t = position.fix_time.timestamp()
    if state.last_without_fix_t is not None and t <= state.last_without_fix_t:
        return state, []
    if not position.alarm_flags and not state.active:
        return state, []
    evidence = without_fix_evidence(position, last_fix)
    state, alarms = _step(state, position.alarm_flags, t, ctx, evidence)
    return replace(state, last_without_fix_t=t), alarms


def _step(
    state: State, flags: int, t: float, ctx: RuleContext, evidence: dict[str, Any] | None
) -> tuple[State, list[Alarm]]:
    """Open the configured bits set in ``flags`` and close the active ones cleared, at ``t``;
    ``evidence`` (a report without a fix) goes into the opened alarms' details."""
    active = state.active or {}
    if not flags and not active:
        return state, []
    configured = _mask(ctx.settings.device_alarm_bits)
    active_bits = 0
    for key in active:
        active_bits |= 1 << int(key)
    if flags & configured == active_bits & configured:
        return state, []  # every configured bit as it was: the usual fix of a vehicle in alarm
    alarms: list[Alarm] = []
    new = dict(active)
    opened_without = dict(state.without_fix or {})
    for bit in ctx.settings.device_alarm_bits:
        key = str(bit)
        on = bool(flags >> bit & 1)
        details: dict[str, Any] = {"bit": bit, "name": BIT_NAMES.get(bit, f"bit{bit}")}
        if on and key not in new:
            new[key] = t
            if evidence is not None:
                details["without_fix"] = evidence
                opened_without[key] = evidence
            alarms.append(
                ctx.alarm(
                    NAME,
                    t,
                    discriminator=f"bit{bit}",
                    details=details,
                    first_fix_t=t,
                    last_fix_t=t,
                )
            )
        elif not on and key in new:
            start = new.pop(key)
            if key in opened_without:
                details["without_fix"] = opened_without.pop(key)
            alarms.append(
                ctx.alarm(
                    NAME,
                    start,
                    discriminator=f"bit{bit}",
                    ended_t=t,
                    details=details,
                    first_fix_t=start,
                    last_fix_t=t,
                    event="closed",
                )
            )
    if new == active:
        return state, alarms
    return replace(state, active=new or None, without_fix=opened_without or None), alarms


_MASKS: dict[tuple[int, ...], int] = {}


def _mask(bits: list[int]) -> int:
    """The alarm flags mask of the configured ``bits`` (remembered per distinct list)."""
    key = tuple(bits)
    mask = _MASKS.get(key)
    if mask is None:
        mask = _MASKS[key] = sum(1 << bit for bit in set(key))
    return mask


def dump(state: State) -> dict[str, Any]:
    out: dict[str, Any] = {"active": dict(state.active or {})}
    if state.without_fix:
        out["without_fix"] = dict(state.without_fix)
    if state.last_without_fix_t is not None:
        out["last_without_fix_t"] = state.last_without_fix_t
    return out


def load(data: dict[str, Any]) -> State:
    return State(
        active=data.get("active") or None,
        without_fix=data.get("without_fix") or None,
        last_without_fix_t=data.get("last_without_fix_t"),
    )
