"""Position quality verdicts (DOMAIN.md, Position quality): pure functions, no I/O.

- invalid: fix flag off, (0, 0), latitude/longitude out of range, fix time more than
  ``future_tolerance_s`` (default 5 min) ahead of arrival, or a reported speed no vehicle of its
  class drives (``implausible_speed``: above ``max_plausible_speed_kmh``) -> stored, flagged,
  excluded from rules, mileage and the day's maximum speed.
- duplicate: same vehicle and fix time -> stored once (the database key does it).
- drift (漂移): a fix whose implied speed from its neighbours exceeds ``drift_speed_kmh``
  (default 200 km/h) while the neighbours agree with each other.
- late: older than the vehicle's newest fix (blind-area upload) -> stored, never moves the
  live marker back.

Live data only knows the previous fix when a new one arrives, so drift is decided with a small
state machine (:func:`judge_drift`): a jump away from the last good fix is held as *suspect*
(flagged drift at once); if the next fix agrees with the suspect rather than with the last good
fix, the vehicle really is there and the suspect is cleared back to ok. Only a *different, later*
fix can confirm: the same fix sent twice (same fix time, whatever its position) never confirms
itself, it leaves the state as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from gps_monitor.config import QualitySettings
from gps_monitor.geo import distance_m, speed_over_kmh
from gps_monitor.models import Position, Quality, VehicleClass

# invalid verdicts whose fix time is not the report's time either (a +/-8 h zone mistake): every
# other invalid or drift report still happened when it says, so the terminal's own alarm bits
# in it count (rules.device_alarm), only its position does not
UNTRUSTED_TIME_REASONS = frozenset({"future_fix_time"})


def max_plausible_speed_kmh(vehicle_class: VehicleClass | str, settings: QualitySettings) -> float:
    """The highest reported speed (km/h) a vehicle of ``vehicle_class`` can really drive.

    ``settings.max_plausible_speed_kmh`` per class (defaults: twice the class's highest legal
    limit in DOMAIN.md, Overspeed: 200 km/h for buses and trucks, whose expressway limit is
    100 km/h, 160 km/h for hazardous goods, limited to 80 km/h), so no real overspeed is ever
    judged implausible. A class missing from the mapping gets the highest bound configured.
    """
    bounds = settings.max_plausible_speed_kmh
    found = bounds.get(str(vehicle_class))
    return found if found is not None else max(bounds.values())


def invalid_reason(
    position: Position,
    received_at: datetime,
    settings: QualitySettings,
    *,
    max_speed_kmh: float | None = None,
) -> str | None:
    """Why a fix is invalid, or None when it is usable.

    Args:
        max_speed_kmh: the vehicle class's plausibility bound (:func:`max_plausible_speed_kmh`);
            None = the reported speed is not judged (vehicle unknown).

    Returns one of ``fix_not_valid``, ``zero_coordinates``, ``latitude_out_of_range``,
    ``longitude_out_of_range``, ``future_fix_time`` (usually a +/-8 h time-zone mistake in the
    terminal), ``implausible_speed`` (reported speed above ``max_speed_kmh``: a terminal fault,
    or a speed derived from a GPS jump).
    """
    if not position.fix_valid:
        return "fix_not_valid"
    if position.latitude == 0 and position.longitude == 0:
        return "zero_coordinates"
    if not -90.0 <= position.latitude <= 90.0:
        return "latitude_out_of_range"
    if not -180.0 <= position.longitude <= 180.0:
        return "longitude_out_of_range"
    if position.fix_time - received_at > timedelta(seconds=settings.future_tolerance_s):
        return "future_fix_time"
    if max_speed_kmh is not None and position.speed_kmh > max_speed_kmh:
        return "implausible_speed"
    return None


def is_jump(a: Position, b: Position, settings: QualitySettings) -> bool:
    """True when going from fix ``a`` to fix ``b`` needs an implausible speed.

    Implausible = implied speed above ``drift_speed_kmh`` over more than ``drift_min_distance_m``.
    """
    return _jump(a, b, settings)[0]


def _jump(a: Position, b: Position, settings: QualitySettings) -> tuple[bool, float]:
    """:func:`is_jump` and the geodesic distance (metres) it measured, measured once."""
    dist_m = distance_m(a.latitude, a.longitude, b.latitude, b.longitude)
    if dist_m <= settings.drift_min_distance_m:
        return False, dist_m
    return speed_over_kmh(dist_m, a.fix_time, b.fix_time) > settings.drift_speed_kmh, dist_m


@dataclass(frozen=True, slots=True)
class DriftState:
    """Per-vehicle live drift state.

    anchor: the newest fix judged ok (None before the first one).
    suspect: a fix flagged drift that the next fix may still clear.
    """

    anchor: Position | None = None
    suspect: Position | None = None


@dataclass(frozen=True, slots=True)
class DriftVerdict:
    """Outcome of :func:`judge_drift`.

    quality: verdict for the new fix (ok or drift).
    cleared: a previously flagged suspect that turns out to be good (re-flag it ok), or None.
    state: the vehicle's next drift state.
    distance_m: for an ok fix that moved past the anchor, the geodesic distance (metres) from
        the fix it was judged against (the anchor, or the cleared suspect), as measured for the
        verdict; None otherwise.
    """

    quality: Quality
    cleared: Position | None
    state: DriftState
    distance_m: float | None = None


def judge_drift(state: DriftState, position: Position, settings: QualitySettings) -> DriftVerdict:
    """Judge a valid, in-order fix against the vehicle's recent fixes.

    Rules, with A = anchor (last ok fix), S = suspect, P = the new fix:
    - no anchor: P is ok and becomes the anchor.
    - P not newer than the newest of A and S (the same fix sent again): state unchanged, P gets
      the verdict of the fix it repeats (drift when it has S's fix time, else ok); it never
      confirms S, even where its position is S's.
    - A -> P plausible: P ok; a pending S stays drift (its neighbours agree: a one-fix jump).
    - A -> P a jump, S exists and S -> P plausible: the vehicle moved; S is cleared, P ok.
    - otherwise P is drift and becomes the suspect.
    """
    anchor, suspect = state.anchor, state.suspect
    newest = suspect if suspect is not None else anchor
    if newest is not None and position.fix_time <= newest.fix_time:
        repeats_suspect = suspect is not None and position.fix_time == suspect.fix_time
        return DriftVerdict(Quality.DRIFT if repeats_suspect else Quality.OK, None, state)
    if anchor is None:
        return DriftVerdict(Quality.OK, None, DriftState(anchor=position))
    jump, from_anchor_m = _jump(anchor, position, settings)
    if not jump:
        return DriftVerdict(Quality.OK, None, DriftState(anchor=position), from_anchor_m)
    if suspect is not None:
        jump, from_suspect_m = _jump(suspect, position, settings)
        if not jump:
            return DriftVerdict(Quality.OK, suspect, DriftState(anchor=position), from_suspect_m)
    return DriftVerdict(Quality.DRIFT, None, DriftState(anchor=anchor, suspect=position))


def judge_late_drift(
    before: Position | None, position: Position, after: Position | None, settings: QualitySettings
) -> Quality:
    """Verdict for a late (out-of-order) fix judged with its real stored neighbours.

    Drift when it jumps from both neighbours while they agree with each other; with one
    neighbour only, drift when it jumps from that one.
    """
    if before is not None and after is not None:
        if (
            is_jump(before, position, settings)
            and is_jump(position, after, settings)
            and not is_jump(before, after, settings)
        ):
            return Quality.DRIFT
        return Quality.OK
    neighbour = before or after
    if neighbour is not None and is_jump(neighbour, position, settings):
        return Quality.DRIFT
    return Quality.OK
