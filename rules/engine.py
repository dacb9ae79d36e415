"""The rules engine: every evaluated position runs through :data:`RULES`, in this order.

Per vehicle, positions are evaluated strictly in fix-time order. For one position
(:meth:`Engine.process`):

1. any message: ``offline.seen`` (closes an offline episode); with the ``fix`` clock
   (``evaluate``) the offline timer first runs at the fix time;
2. invalid fixes stop here (stored, flagged, excluded from rules: DOMAIN.md, Position quality);
   a fix not newer than the vehicle's last evaluated fix is a duplicate (same fix time) or late
   (older: the caller re-evaluates it with its neighbours, see ``rules.late``) and stops here;
   drift fixes stop here (they never start or extend an episode). Before stopping, a newer
   invalid or drift fix whose time is still the report's (every reason but
   :data:`~gps_monitor.quality.UNTRUSTED_TIME_REASONS`) is offered to the rules that read the
   report rather than its position (a ``process_without_fix(state, position, last, ctx)``
   function: ``device_alarm``'s SOS bit from a tunnel), with the last good fix;
3. each rule of :data:`RULES` steps its own state: ``process(state, fix, ctx) -> (state,
   alarms)``. A rule that raises is logged with the vehicle and skipped (its state unchanged);
   the others still run.
4. alarms raised at a position that names a driver (``extras.driver``, the IC card in the
   vehicle, issue 12 item 7) carry ``details.driver_certificate_no`` unless the rule set it
   itself (fatigue names the driver whose count it is, which after a change of driver may not
   be the one at this position).

:meth:`Engine.tick` is the offline timer of the live service (wall clock).
State is a :class:`VehicleState`: small, explicit and JSON-serialisable (:meth:`to_json`).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from gps_monitor.models import Alarm, Position, Quality
from gps_monitor.quality import UNTRUSTED_TIME_REASONS
from rules import (
    active_safety,
    device_alarm,
    fatigue,
    geofence,
    night_ban,
    offline,
    overspeed,
    route_deviation,
)
from rules.context import RuleContext, make_fix

log = logging.getLogger(__name__)

# The rule order, in one place (read top to bottom). Each module has NAME, State, process,
# dump and load.
RULES: tuple[ModuleType, ...] = (
    offline,  # remembers the last fix; offline displacement on reappearance
    device_alarm,  # bits the terminal set itself
    active_safety,  # T/JSATL ADAS / DSM / tyre / blind-spot alarms the terminal reported
    overspeed,  # limit: speed zone > route > vehicle > class, night factor
    fatigue,  # fatigue_driving, fatigue_warning, daily_driving_limit
    night_ban,  # coaches 02:00-05:00
    route_deviation,  # assigned routes
    geofence,  # forbidden / keep-in / watch (speed zones feed overspeed)
)

# what each rule's fresh State() dumps as: such a rule state is not stored
_FRESH_DUMPS = {m.NAME: m.dump(m.State()) for m in RULES}


@dataclass(slots=True)
class VehicleState:
    """One vehicle's evaluation state.

    Attributes:
        last: the last evaluated fix ``(epoch_s, lat, lon, speed_kmh)`` or None.
        rules: rule NAME -> that rule's state object, never modified once made (a rule's
            ``process`` returns a new object for a change, the same one for none).
        dumps: rule NAME -> (the rule state object dumped last, its dump, None for a fresh
            one's): a cache for :meth:`to_json`, shared by the states :class:`Engine` derives
            from one another, not compared. A rule state that is the very object dumped before
            dumps the same (most rules of most fixes: measured on the benchmark's tracks,
            ``to_json`` 7.4 -> 4.5 us per state).
    """

    last: tuple[float, float, float, float] | None = None
    rules: dict[str, Any] = field(default_factory=dict)
    dumps: dict[str, tuple[Any, Any]] = field(default_factory=dict, compare=False, repr=False)

    def rule(self, module: ModuleType) -> Any:
        found = self.rules.get(module.NAME)
        return found if found is not None else module.State()

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (what ``rule_state.state`` stores). A rule whose state dumps as a
        fresh one's is left out (:meth:`from_json` starts it fresh), and the rules' dumps leave
        out fields at their defaults (:func:`rules.context.dump_fields`): the stored JSON is
        under half the size it was with every field."""
        rules: dict[str, Any] = {}
        dumps = self.dumps
        for m in RULES:
            state = self.rules.get(m.NAME)
            if state is None:
                continue
            cached = dumps.get(m.NAME)
            if cached is not None and cached[0] is state:
                dumped = cached[1]
            else:
                dumped = m.dump(state)
                if dumped == _FRESH_DUMPS[m.NAME]:
                    dumped = None
                dumps[m.NAME] = (state, dumped)
            if dumped is not None:
                rules[m.NAME] = dumped
        return {"last": list(self.last) if self.last is not None else None, "rules": rules}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VehicleState:
        """Inverse of :meth:`to_json`; unknown rules are ignored, missing ones start fresh."""
        last = data.get("last")
        rules_data = data.get("rules") or {}
        rules = {m.NAME: m.load(rules_data[m.NAME]) for m in RULES if m.NAME in rules_data}
        return cls(last=tuple(last) if last else None, rules=rules)


class Engine:
    """Runs :data:`RULES` over positions. Stateless itself: state in, state out.

    ``rules`` may be overridden (tests: a rule that raises); default :data:`RULES`.
    """

    def __init__(self, rules: tuple[ModuleType, ...] = RULES) -> None:
        self.rules = rules
        self.errors = 0
        # (NAME, process, State) of each rule, looked up once instead of three times per fix
        self._steps = tuple((m.NAME, m.process, m.State) for m in rules)

    @staticmethod
    def order(state: VehicleState, position: Position) -> str:
        """``new``, ``duplicate`` (same fix time as the last evaluated fix) or ``late``."""
        if state.last is None:
            return "new"
        t = position.fix_time.timestamp()
        if t > state.last[0]:
            return "new"
        return "duplicate" if t == state.last[0] else "late"

    def process(
        self, state: VehicleState, position: Position, ctx: RuleContext
    ) -> tuple[VehicleState, list[Alarm]]:
        """Evaluate one position of the vehicle of ``ctx`` (module docstring for the steps).

        Returns the new state (a new object; ``state`` is not modified) and the alarm events
        (``opened``/``closed``) in the order the rules raised them.
        """
        rules = dict(state.rules)
        alarms: list[Alarm] = []
        t = position.fix_time.timestamp()
        off = rules.get(offline.NAME) or offline.State()
        if ctx.clock == "fix":
            off, out = offline.tick(off, t, ctx)
            alarms += out
            seen_t = t
        else:
            received = position.received_at
            seen_t = received.timestamp() if received is not None else t
        off, out = offline.seen(off, seen_t, ctx)
        alarms += out
        rules[offline.NAME] = off
        newer = state.last is None or t > state.last[0]
        if position.quality is Quality.INVALID or not newer or position.quality is Quality.DRIFT:
            if newer and position.quality_reason not in UNTRUSTED_TIME_REASONS:
                alarms += self._without_fix(rules, position, state.last, ctx)
            return VehicleState(state.last, rules, state.dumps), with_driver(alarms, position)
        fix = make_fix(position, state.last, ctx.local)
        for name, process, fresh in self._steps:
            current = rules.get(name)
            if current is None:
                current = fresh()
            try:
                new, out = process(current, fix, ctx)
            except Exception:
                self.errors += 1
                log.exception(
                    "rule %s failed for vehicle %s (terminal %s) at %s; skipped",
                    name,
                    ctx.vehicle.vehicle_id,
                    ctx.vehicle.terminal_id,
                    position.fix_time.isoformat(),
                )
                continue
            rules[name] = new
            alarms += out
        last = (t, position.latitude, position.longitude, position.speed_kmh)
        return VehicleState(last, rules, state.dumps), with_driver(alarms, position)

    def _without_fix(
        self,
        rules: dict[str, Any],
        position: Position,
        last: tuple[float, float, float, float] | None,
        ctx: RuleContext,
    ) -> list[Alarm]:
        """Step the rules that read a report without a usable fix (``process_without_fix``);
        ``rules`` is updated in place. A rule that raises is logged and skipped."""
        alarms: list[Alarm] = []
        for module in self.rules:
            step = getattr(module, "process_without_fix", None)
            if step is None:
                continue
            current = rules.get(module.NAME)
            if current is None:
                current = module.State()
            try:
                new, out = step(current, position, last, ctx)
            except Exception:
                self.errors += 1
                log.exception(
                    "rule %s failed for vehicle %s (terminal %s) on a report without a fix "
                    "at %s; skipped",
                    module.NAME,
                    ctx.vehicle.vehicle_id,
                    ctx.vehicle.terminal_id,
                    position.fix_time.isoformat(),
                )
                continue
            rules[module.NAME] = new
            alarms += out
        return alarms

    def tick(
        self, state: VehicleState, now_t: float, ctx: RuleContext
    ) -> tuple[VehicleState, list[Alarm]]:
        """The offline timer at clock time ``now_t`` (epoch seconds)."""
        off = state.rules.get(offline.NAME)
        if off is None:
            return state, []
        new, alarms = offline.tick(off, now_t, ctx)
        if new is off:
            return state, alarms
        rules = dict(state.rules)
        rules[offline.NAME] = new
        return VehicleState(state.last, rules, state.dumps), alarms


def with_driver(alarms: list[Alarm], position: Position) -> list[Alarm]:
    """``alarms`` with ``details.driver_certificate_no`` of the driver the position names
    (unchanged when it names none or the rule already said whose alarm it is)."""
    if not alarms or not position.extras:
        return alarms
    certificate = fatigue.driver_certificate_no(position)
    if not certificate:
        return alarms
    return [
        a
        if "driver_certificate_no" in a.details
        else dataclasses.replace(a, details={**a.details, "driver_certificate_no": certificate})
        for a in alarms
    ]


def merge_events(events: list[Alarm]) -> list[Alarm]:
    """Collapse opened/closed events into one alarm per dedup key (the latest event wins,
    keeping the first ``first_fix_time``), ordered by start, then type, then key."""
    merged: dict[str, Alarm] = {}
    for alarm in events:
        previous = merged.get(alarm.dedup_key)
        if previous is not None and previous.first_fix_time is not None:
            from dataclasses import replace

            alarm = replace(alarm, first_fix_time=previous.first_fix_time)
        merged[alarm.dedup_key] = alarm
    return sorted(merged.values(), key=lambda a: (a.started_at, a.alarm_type, a.dedup_key))
