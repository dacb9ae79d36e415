"""Offline (离线) and offline displacement (离线位移).

Regulation (DOMAIN.md, Online / offline): a vehicle is offline when no message has arrived for
longer than ``offline_after_s`` (5 min), whatever the state of any socket. This is checked on a
timer (:func:`tick`), not only when positions arrive. The clock is the live service's wall clock
against the arrival time of the last message; in ``evaluate`` it is the fix time, so a gap in a
track raises ``offline`` just as the live service would. The episode starts at the last message
and ends when the next message arrives.

A hazardous-goods vehicle (``offline_displacement_vehicle_classes``) that reappears more than
``offline_displacement_m`` (1 km) from its last fix after an offline period raises
``offline_displacement`` (instantaneous: it showed up elsewhere without a trace in between).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from gps_monitor.geo import distance_m
from gps_monitor.models import Alarm
from rules.context import Fix, RuleContext, dump_fields, utc

NAME = "offline"


@dataclass(frozen=True, slots=True)
class State:
    """Last message time (clock), last fix, and the open offline episode."""

    last_seen_t: float | None = None
    last_fix_t: float | None = None
    last_lat: float | None = None
    last_lon: float | None = None
    open_t: float | None = None


def tick(state: State, now_t: float, ctx: RuleContext) -> tuple[State, list[Alarm]]:
    """The timer: open an offline episode when nothing arrived for ``offline_after_s``."""
    if state.last_seen_t is None or state.open_t is not None:
        return state, []
    if now_t - state.last_seen_t <= ctx.settings.offline_after_s:
        return state, []
    alarm = ctx.alarm(
        NAME,
        state.last_seen_t,
        details={
            "threshold_s": ctx.settings.offline_after_s,
            "last_fix_time": utc(state.last_fix_t).isoformat() if state.last_fix_t else None,
        },
        first_fix_t=state.last_fix_t,
        last_fix_t=state.last_fix_t,
    )
    return replace(state, open_t=state.last_seen_t), [alarm]


def seen(state: State, seen_t: float, ctx: RuleContext) -> tuple[State, list[Alarm]]:
    """A message of any kind (also an invalid fix) arrived at clock time ``seen_t``: close an
    open episode."""
    alarms: list[Alarm] = []
    if state.open_t is not None:
        alarms.append(
            ctx.alarm(
                NAME,
                state.open_t,
                ended_t=max(seen_t, state.open_t),
                details={
                    "threshold_s": ctx.settings.offline_after_s,
                    "offline_s": round(max(seen_t, state.open_t) - state.open_t, 1),
                },
                first_fix_t=state.last_fix_t,
                last_fix_t=state.last_fix_t,
                event="closed",
            )
        )
    last = state.last_seen_t
    seen = seen_t if last is None or seen_t > last else last
    if seen == last and state.open_t is None:
        return state, alarms
    return State(seen, state.last_fix_t, state.last_lat, state.last_lon, None), alarms


def process(state: State, fix: Fix, ctx: RuleContext) -> tuple[State, list[Alarm]]:
    """An ok fix: offline displacement check after an offline period, then remember the fix.

    The engine has already called :func:`seen` for the message (which closes the episode); the
    displacement is judged against the fix before the gap.
    """
    alarms: list[Alarm] = []
    s = ctx.settings
    gap_s = fix.t - state.last_fix_t if state.last_fix_t is not None else 0.0
    if (
        state.last_fix_t is not None
        and state.last_lat is not None
        and state.last_lon is not None
        and gap_s > s.offline_after_s
        and ctx.vehicle.vehicle_class in s.offline_displacement_vehicle_classes
    ):
        moved_m = distance_m(
            state.last_lat, state.last_lon, fix.position.latitude, fix.position.longitude
        )
        if moved_m > s.offline_displacement_m:
            alarms.append(
                ctx.alarm(
                    "offline_displacement",
                    fix.t,
                    ended_t=fix.t,
                    details={
                        "displacement_m": round(moved_m, 1),
                        "threshold_m": s.offline_displacement_m,
                        "gap_s": round(gap_s, 1),
                        "last_fix_time": utc(state.last_fix_t).isoformat(),
                    },
                    first_fix_t=state.last_fix_t,
                    last_fix_t=fix.t,
                )
            )
    position = fix.position
    state = State(state.last_seen_t, fix.t, position.latitude, position.longitude, state.open_t)
    return state, alarms


def dump(state: State) -> dict[str, Any]:
    return dump_fields(state)


def load(data: dict[str, Any]) -> State:
    return State(**data)
