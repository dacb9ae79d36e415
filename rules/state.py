"""Rule state persistence: table ``rule_state`` (migration 0021), one JSON row per vehicle.

A state is written only when its JSON differs from what was last written (callers keep the
last written text per vehicle), in the same transaction as the alarms it produced.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import asyncpg

from rules.engine import VehicleState


def state_text(state: VehicleState) -> str:
    """Canonical JSON text of a state (for change detection)."""
    return json.dumps(state.to_json(), sort_keys=True, separators=(",", ":"))


async def load_states(
    conn: asyncpg.Connection | asyncpg.Pool,
) -> dict[int, tuple[VehicleState, str]]:
    """Every stored vehicle state with its canonical text."""
    out: dict[int, tuple[VehicleState, str]] = {}
    for row in await conn.fetch("SELECT vehicle_id, state FROM rule_state"):
        state = VehicleState.from_json(row["state"])
        out[row["vehicle_id"]] = (state, state_text(state))
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
    if rows:
        await conn.executemany(
            "INSERT INTO rule_state (vehicle_id, state, last_fix_time) "
            "VALUES ($1, $2::text::jsonb, $3) "
            "ON CONFLICT (vehicle_id) DO UPDATE SET state = EXCLUDED.state, "
            "last_fix_time = EXCLUDED.last_fix_time, updated_at = now()",
            rows,
        )
    return changed
