"""The per-vehicle quality pipeline: positions of one vehicle -> judged rows for the writer.

Order of verdicts for each position (DOMAIN.md, Position quality; gps_monitor.quality):

1. duplicate: the same (vehicle, fix time) already in the open batch -> dropped (the first is
   kept); one already stored is left to the writer's ``ON CONFLICT DO NOTHING``.
2. invalid (fix flag off, (0, 0), out of range, future time, a reported speed above the vehicle
   class's plausibility bound) -> stored ``invalid``; it neither
   moves the vehicle's newest fix time nor takes part in drift judgement.
3. late (older than the newest valid fix seen) -> ``late=True``, judged with its real stored
   (and pending) neighbours by :func:`~gps_monitor.quality.judge_late_drift`.
4. in order -> :func:`~gps_monitor.quality.judge_drift` state machine; a suspect that a later
   fix (not a copy of itself) confirms is cleared back to ``ok``.

State is resumed from the database the first time a vehicle is seen (so a restart continues
where the stored history ends) and dropped with :meth:`Pipeline.reset` whenever an uncommitted
batch is abandoned (the broker redelivers it and it is judged again).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from gps_monitor.config import QualitySettings
from gps_monitor.db import positions as positions_db
from gps_monitor.db.positions import PositionRow, WriteBatch
from gps_monitor.geo import distance_m
from gps_monitor.models import Position, Quality, Vehicle
from gps_monitor.quality import (
    DriftState,
    invalid_reason,
    judge_drift,
    judge_late_drift,
    max_plausible_speed_kmh,
)


@dataclass(slots=True)
class VehicleState:
    """Live quality state of one vehicle."""

    newest_fix_time: datetime | None = None
    drift: DriftState = field(default_factory=DriftState)


@dataclass(slots=True)
class PipelineStats:
    """Counters since start (positions)."""

    ok: int = 0
    invalid: int = 0
    drift: int = 0
    late: int = 0
    duplicate_in_batch: int = 0
    drift_cleared: int = 0


class Pipeline:
    """Judges positions vehicle by vehicle, in fix-time order, into a :class:`WriteBatch`."""

    def __init__(self, settings: QualitySettings) -> None:
        self.settings = settings
        self.states: dict[int, VehicleState] = {}
        self.stats = PipelineStats()

    def reset(self) -> None:
        """Forget all vehicle states (after an abandoned batch); they reload from the database."""
        self.states.clear()

    async def preload(self, conn: asyncpg.Connection | asyncpg.Pool, vehicle_ids: set[int]) -> None:
        """Load the states of the vehicles not yet known, in three queries for all of them."""
        missing = [vid for vid in vehicle_ids if vid not in self.states]
        if not missing:
            return
        for vid, tail in (await positions_db.vehicle_tails(conn, missing)).items():
            self.states[vid] = VehicleState(
                newest_fix_time=tail.newest_fix_time,
                drift=DriftState(anchor=tail.anchor, suspect=tail.suspect),
            )

    async def _state(
        self, conn: asyncpg.Connection | asyncpg.Pool, vehicle_id: int
    ) -> VehicleState:
        state = self.states.get(vehicle_id)
        if state is None:
            tail = await positions_db.vehicle_tail(conn, vehicle_id)
            state = VehicleState(
                newest_fix_time=tail.newest_fix_time,
                drift=DriftState(anchor=tail.anchor, suspect=tail.suspect),
            )
            self.states[vehicle_id] = state
        return state

    async def judge(
        self,
        conn: asyncpg.Connection | asyncpg.Pool,
        vehicle: Vehicle,
        positions: list[Position],
        raw_index: int,
        batch: WriteBatch,
        pending_keys: dict[tuple[int, datetime], int],
    ) -> int:
        """Judge the positions of one message of ``vehicle`` and append them to ``batch``.

        Args:
            conn: database access for the vehicle's stored history.
            positions: decoded positions (``received_at`` set), any order.
            raw_index: index of their message in ``batch.raw``.
            pending_keys: (vehicle_id, fix_time) -> index in ``batch.positions`` of the open
                batch (updated here).

        Returns:
            how many positions were appended.
        """
        state = self.states.get(vehicle.id) or await self._state(conn, vehicle.id)
        max_speed_kmh = max_plausible_speed_kmh(vehicle.vehicle_class, self.settings)
        appended = 0
        ordered = sorted(positions, key=_fix_time) if len(positions) > 1 else positions
        for i, position in enumerate(ordered):
            # the worker's decoder set them already (then this is the position itself)
            p = position.evolve(vehicle_id=vehicle.id, company_id=vehicle.company_id)
            key = (vehicle.id, p.fix_time)
            if key in pending_keys:
                self.stats.duplicate_in_batch += 1
                continue
            row = self._judge_now(state, p, raw_index, batch, pending_keys, max_speed_kmh)
            if row is None:  # late: judged with its stored neighbours
                row = await self._judge_late(
                    conn, p, raw_index, batch, pending_keys, ordered[i + 1 :], max_speed_kmh
                )
            pending_keys[key] = len(batch.positions)
            batch.positions.append(row)
            appended += 1
        return appended

    def _judge_now(
        self,
        state: VehicleState,
        p: Position,
        raw_index: int,
        batch: WriteBatch,
        pending_keys: dict[tuple[int, datetime], int],
        max_speed_kmh: float,
    ) -> PositionRow | None:
        """The row of an invalid or in-order fix (no query: the usual case, not awaited);
        None for a valid late fix, which :meth:`_judge_late` judges."""
        assert p.received_at is not None and p.vehicle_id is not None
        reason = invalid_reason(p, p.received_at, self.settings, max_speed_kmh=max_speed_kmh)
        late = state.newest_fix_time is not None and p.fix_time < state.newest_fix_time
        if reason is not None:
            self.stats.invalid += 1
            return PositionRow(
                p.evolve(quality=Quality.INVALID, quality_reason=reason, late=late), raw_index
            )
        if late:
            return None
        verdict = judge_drift(state.drift, p, self.settings)
        previous_ok = state.drift.anchor
        if verdict.cleared is not None:
            self._clear(verdict.cleared, batch, pending_keys)
            previous_ok = verdict.cleared
        state.drift = verdict.state
        state.newest_fix_time = p.fix_time
        return self._row(
            p.evolve(quality=verdict.quality, quality_reason=_drift_reason(verdict.quality)),
            raw_index,
            previous_ok,
            verdict.distance_m,
        )

    async def _judge_late(
        self,
        conn: asyncpg.Connection | asyncpg.Pool,
        p: Position,
        raw_index: int,
        batch: WriteBatch,
        pending_keys: dict[tuple[int, datetime], int],
        following: list[Position],
        max_speed_kmh: float,
    ) -> PositionRow:
        """The row of a valid fix older than the vehicle's newest: drift judged against its
        stored and pending neighbours."""
        self.stats.late += 1
        before, after = await self._neighbours(
            conn, p, batch, pending_keys, following, max_speed_kmh
        )
        quality = judge_late_drift(before, p, after, self.settings)
        return self._row(
            p.evolve(quality=quality, quality_reason=_drift_reason(quality), late=True),
            raw_index,
            before,
        )

    def _row(
        self,
        p: Position,
        raw_index: int,
        previous_ok: Position | None,
        measured_m: float | None = None,
    ) -> PositionRow:
        """The row of ``p``; ``measured_m``: the distance from ``previous_ok`` when the
        verdict measured it already."""
        if p.quality == Quality.DRIFT:
            self.stats.drift += 1
        else:
            self.stats.ok += 1
        if p.quality != Quality.OK or previous_ok is None:
            return PositionRow(p, raw_index)
        if measured_m is None:
            measured_m = distance_m(
                previous_ok.latitude, previous_ok.longitude, p.latitude, p.longitude
            )
        return PositionRow(
            p,
            raw_index,
            distance_m=measured_m,
            interval_s=(p.fix_time - previous_ok.fix_time).total_seconds(),
        )

    def _clear(
        self, suspect: Position, batch: WriteBatch, pending_keys: dict[tuple[int, datetime], int]
    ) -> None:
        """A drift suspect confirmed by the next fix: ok after all."""
        self.stats.drift_cleared += 1
        key = (suspect.vehicle_id, suspect.fix_time)
        index = pending_keys.get(key)  # type: ignore[arg-type]
        if index is not None:
            row = batch.positions[index]
            batch.positions[index] = PositionRow(
                row.position.evolve(quality=Quality.OK, quality_reason=None),
                row.raw_index, row.distance_m, row.interval_s,
            )  # fmt: skip
        else:
            assert suspect.vehicle_id is not None
            batch.cleared.append(suspect.evolve(quality=Quality.OK, quality_reason=None))

    async def _neighbours(
        self,
        conn: asyncpg.Connection | asyncpg.Pool,
        p: Position,
        batch: WriteBatch,
        pending_keys: dict[tuple[int, datetime], int],
        following: list[Position],
        max_speed_kmh: float,
    ) -> tuple[Position | None, Position | None]:
        """Nearest fixes before and after ``p``: stored and pending ok ones, and the next valid
        fix of the same message (a blind-area upload carries its own neighbours)."""
        assert p.vehicle_id is not None
        before, after = await positions_db.neighbour_ok_fixes(conn, p.vehicle_id, p.fix_time)
        for (vid, fix_time), index in pending_keys.items():
            if vid != p.vehicle_id:
                continue
            candidate = batch.positions[index].position
            if candidate.quality != Quality.OK:
                continue
            if fix_time < p.fix_time and (before is None or fix_time > before.fix_time):
                before = candidate
            elif fix_time > p.fix_time and (after is None or fix_time < after.fix_time):
                after = candidate
        for candidate in following:
            if candidate.fix_time <= p.fix_time:
                continue
            received_at = p.received_at or candidate.fix_time
            if invalid_reason(candidate, received_at, self.settings, max_speed_kmh=max_speed_kmh):
                continue
            if after is None or candidate.fix_time < after.fix_time:
                after = candidate
            break
        return before, after


def _fix_time(position: Position) -> datetime:
    return position.fix_time


def _drift_reason(quality: Quality) -> str | None:
    return "implausible_jump" if quality == Quality.DRIFT else None
