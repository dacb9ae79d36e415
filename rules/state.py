"""Rule state persistence: table ``rule_state`` (migration 0021, :mod:`gps_monitor.db.rule_state`),
one JSON row per vehicle.

A state is written only when its JSON differs from what was last written (callers keep the
last written text per vehicle), in the same transaction as the alarms it produced.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import asyncpg

from gps_monitor.db import rule_state
from rules.engine import VehicleState


def state_text(state: VehicleState) -> str:
    """Canonical JSON text of a state (for change detection)."""
    return json.dumps(state.to_json(), sort_keys=True, separators=(",", ":"))


async def load_states(
    conn: asyncpg.Connection | asyncpg.Pool,
) -> dict[int, tuple[VehicleState, str]]:
    """Every stored vehicle state with its canonical text."""
    out: dict[int, tuple[VehicleState, str]] = {}
    for vehicle_id, stored in await rule_state.load(conn):
        state = VehicleState.from_json(stored)
        out[vehicle_id] = (state, state_text(state))
    return out


async def save_states(
    conn: asyncpg.Connection, states: dict[int, VehicleState], written: dict[int, str]
) -> dict[int, str]:
    """Write the states whose JSON changed since ``written``; returns the new texts written
    (merge them into ``written`` once the transaction commits)."""
    changed: dict[int, str] = {}
    rows = []
    for vehicle_id, state in states.items():
        text = state_text(state)
        if written.get(vehicle_id) == text:
            continue
        changed[vehicle_id] = text
        last = datetime.fromtimestamp(state.last[0], UTC) if state.last else None
        rows.append((vehicle_id, text, last))
    await rule_state.save(conn, rows)
    return changed
