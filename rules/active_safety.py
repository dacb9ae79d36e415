"""Active-safety alarms (主动安全, T/JSATL 12-2017 "苏标"): the ADAS, DSM, tyre and blind-spot
alarms the terminal reports in 0x0200 items 0x64-0x67 (decoded by the gateway into
``extras["active_safety"]``, :mod:`ingest.jt808.jsatl`) become ``active_safety`` alarms.

Mandatory on 两客一危 vehicles since 2018 (交办运〔2018〕115号). The terminal judges these
itself (a camera sees the lane, the driver's eyes); the platform's part is to raise, show and
prove them. Each item: flag 0 (an event without duration) opens and closes at its fix; flag 1
opens an episode that flag 2 of the same source and type closes. ``details``: ``source`` (adas,
dsm, tyre, bsd), ``name`` (``adas_forward_collision``...), ``type_text`` (前向碰撞报警...),
``jsatl_level`` (1 一级 / 2 二级; ADAS and DSM only), ``speed_kmh`` the terminal gave,
``alarm_id`` the terminal's, ``alarm_key`` the platform's public key of the alarm
(:func:`gps_monitor.active_safety.alarm_key`; the random number sent in 0x9208 is stored with it
in ``jsatl_alarm_numbers``, and the attachments are linked to the alarm through the key)
and ``identification`` (terminal id, time, sequence, attachment count). The level follows
:mod:`gps_monitor.alarm_levels` (二级 -> 2 严重, else 3 一般, ``active_safety.<name>`` overrides).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from gps_monitor.active_safety import FLAG_END, FLAG_START, alarm_key
from gps_monitor.models import Alarm, Position
from rules.context import Fix, RuleContext, without_fix_evidence

NAME = "active_safety"
SEEN_KEPT = 64  # alarm keys remembered against repeats (a terminal repeats its latest ones)
_DETAIL_KEYS = (
    "source", "name", "type_text", "type", "alarm_id", "speed_kmh", "identification",
    "front_vehicle_speed_kmh", "front_distance_100ms", "departure_type", "road_sign_type",
    "road_sign_data", "fatigue_degree", "tyres",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class State:
    """Open episodes (flag 1 seen, flag 2 not yet): ``source:type`` -> [start epoch s, details].

    ``seen``: ``source:type:alarm key`` of the last :data:`SEEN_KEPT` alarms raised. A
    report the terminal sends again carries the same identification, hence the same key
    (:func:`gps_monitor.active_safety.alarm_key`): it is the same alarm, not a new one.
    """

    active: dict[str, list[Any]] | None = None
    seen: list[str] | None = None


def _details(item: dict[str, Any], terminal_id: str) -> dict[str, Any]:
    details = {k: item[k] for k in _DETAIL_KEYS if k in item}
    if "level" in item:
        details["jsatl_level"] = item["level"]
    try:
        details["alarm_key"] = alarm_key(terminal_id, bytes.fromhex(item["identification_hex"]))
    except (KeyError, ValueError, TypeError):
        details["alarm_key"] = None
    return details


def process(state: State, fix: Fix, ctx: RuleContext) -> tuple[State, list[Alarm]]:
    """Open / close one ``active_safety`` alarm per item of the fix (module docstring)."""
    return _step(state, fix.position.extras.get("active_safety"), fix.t, ctx, None)


def process_without_fix(
    state: State,
    position: Position,
    last_fix: tuple[float, float, float, float] | None,
    ctx: RuleContext,
) -> tuple[State, list[Alarm]]:
    """The items of a report whose position is not usable (fix flag off, a jump: issue 12 item
    2, as :func:`rules.device_alarm.process_without_fix`): raised all the same at the report's
    time, placed at the vehicle's last good fix, ``details["without_fix"]`` saying so
    (:func:`rules.context.without_fix_evidence`). A camera sees a phone call in a tunnel too.

    Args:
        position: the report, judged ``invalid`` (with a reason whose time is trusted) or
            ``drift``, newer than ``last_fix``.
        last_fix: the vehicle's last good fix ``(epoch_s, lat, lon, speed_kmh)``, or None.
    """
    items = position.extras.get("active_safety")
    if not items:
        return state, []
    evidence = without_fix_evidence(position, last_fix)
    return _step(state, items, position.fix_time.timestamp(), ctx, evidence)


def _step(
    state: State, items: Any, t: float, ctx: RuleContext, evidence: dict[str, Any] | None
) -> tuple[State, list[Alarm]]:
    """Step the decoded items at ``t``; ``evidence`` (a report without a fix) goes into the
    details of the alarms they open (an episode's close keeps its opening's details)."""
    if not items or not isinstance(items, list):
        return state, []
    active = dict(state.active or {})
    seen = list(state.seen or [])
    alarms: list[Alarm] = []
    for item in items:
        if not isinstance(item, dict) or "source" not in item:
            continue
        key = f"{item['source']}:{item.get('type')}"
        flag = item.get("flag")
        if flag == FLAG_END:
            opened = active.pop(key, None)
            if opened is not None:
                start, details = opened
                alarms.append(_alarm(ctx, start, details, t, closed=True))
            continue
        details = _details(item, ctx.vehicle.terminal_id)
        number = details.get("alarm_key")
        once = f"{key}:{number}" if number is not None else None
        if once is not None and once in seen:
            continue  # the terminal sent this alarm again (a resent report, a position answer)
        if once is not None and (flag != FLAG_START or key not in active):
            seen = [*seen, once][-SEEN_KEPT:]
        if evidence is not None:
            details["without_fix"] = evidence
        if flag == FLAG_START:
            if key in active:
                continue  # already open: the terminal repeated its start
            active[key] = [t, details]
            alarms.append(_alarm(ctx, t, details, None, closed=False))
        else:  # an event: opens and ends at this report
            alarms.append(_alarm(ctx, t, details, t, closed=True))
    if active == (state.active or {}) and seen == (state.seen or []):
        return state, alarms
    return replace(state, active=active or None, seen=seen or None), alarms


def _alarm(
    ctx: RuleContext, start: float, details: dict[str, Any], end: float | None, *, closed: bool
) -> Alarm:
    return ctx.alarm(
        NAME,
        start,
        discriminator=details.get("alarm_key") or details.get("name", ""),
        ended_t=end,
        details=details,
        first_fix_t=start,
        last_fix_t=end if end is not None else start,
        event="closed" if closed else "opened",
    )


def dump(state: State) -> dict[str, Any]:
    return {"active": dict(state.active or {}), "seen": list(state.seen or [])}


def load(data: dict[str, Any]) -> State:
    return State(active=data.get("active") or None, seen=data.get("seen") or None)
