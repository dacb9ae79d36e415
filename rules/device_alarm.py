"""Alarms the terminal raises itself (JT/T 808 location report alarm flag bits).

DOMAIN.md, Terminal data: bit 0 SOS, 1 overspeed, 2 fatigue driving, 13 overspeed warning,
14 fatigue warning, 18 daily driving time exceeded, 19 overtime parking, 20 area in/out, 21 route
in/out, 22 road-section time too short/long, 23 route deviation, 28 illegal movement. Each bit in
``device_alarm_bits`` becomes a ``device_alarm`` episode (discriminator ``bit<N>``) that opens at
the first fix with the bit set and closes at the first fix with it cleared. The platform's own
overspeed/fatigue/route/area rules run independently (GB/T 35658-2017: terminals do it badly).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gps_monitor.models import Alarm
from rules.context import Fix, RuleContext

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
    """Active bits: bit number (as text, JSON keys) -> epoch seconds it was first seen set."""

    active: dict[str, float] | None = None


def process(state: State, fix: Fix, ctx: RuleContext) -> tuple[State, list[Alarm]]:
    """Open/close one ``device_alarm`` per configured bit as it is set/cleared."""
    flags = fix.position.alarm_flags
    active = state.active or {}
    if not flags and not active:
        return state, []
    alarms: list[Alarm] = []
    new = dict(active)
    for bit in ctx.settings.device_alarm_bits:
        key = str(bit)
        on = bool(flags >> bit & 1)
        details = {"bit": bit, "name": BIT_NAMES.get(bit, f"bit{bit}")}
        if on and key not in new:
            new[key] = fix.t
            alarms.append(
                ctx.alarm(
                    NAME,
                    fix.t,
                    discriminator=f"bit{bit}",
                    details=details,
                    first_fix_t=fix.t,
                    last_fix_t=fix.t,
                )
            )
        elif not on and key in new:
            start = new.pop(key)
            alarms.append(
                ctx.alarm(
                    NAME,
                    start,
                    discriminator=f"bit{bit}",
                    ended_t=fix.t,
                    details=details,
                    first_fix_t=start,
                    last_fix_t=fix.t,
                    event="closed",
                )
            )
    return (State(active=new or None) if new != active else state), alarms


def dump(state: State) -> dict[str, Any]:
    return {"active": dict(state.active or {})}


def load(data: dict[str, Any]) -> State:
    return State(active=data.get("active") or None)
