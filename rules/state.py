"""Rule state persistence: table ``rule_state`` (migration 0021, :mod:`gps_monitor.db.rule_state`),
one JSON row per vehicle.

A state is written only when its JSON differs from what was last written (callers keep the
last written text per vehicle), in the same transaction as the alarms it produced. The JSON
leaves out what a fresh state holds (:meth:`VehicleState.to_json`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import asyncpg
from pydantic_core import PydanticSerializationError, to_json

from gps_monitor.db import rule_state
from rules.engine import VehicleState


def state_text(state: VehicleState) -> str:
    """The JSON text of a state, as stored and for change detection: the same state built the
    same way gives the same text (keys in the order the rules dump them; equal states whose
    fences or routes were met in another order may differ, and are then written once more).

    Written by pydantic-core (5x ``json.dumps`` with ``sort_keys``); a state it cannot write
    (a string with a lone surrogate from a payload's extras) falls back to ``json.dumps``, and
    the database says what is wrong with it, as it did before.
    """
    data = state.to_json()
    try:
        return to_json(data).decode()
    except PydanticSerializationError:
        return json.dumps(data, separators=(",", ":"))


async def load_states(
    conn: asyncpg.Connection | asyncpg.Pool, vehicle_ids: Sequence[int] | None = None
) -> dict[int, tuple[VehicleState, str]]:
    """Every stored vehicle state (of ``vehicle_ids`` when given) with its canonical text."""
    out: dict[int, tuple[VehicleState, str]] = {}
    for vehicle_id, stored in await rule_state.load(conn, vehicle_ids):
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
        rows.append((vehicle_id, text, state.last[0] if state.last else None))
    await rule_state.save(conn, rows)
    return changed
