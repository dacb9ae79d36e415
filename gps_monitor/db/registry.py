"""Companies and vehicles: the registry every service resolves terminals against."""

from __future__ import annotations

import re
from typing import Any

import asyncpg

from gps_monitor.errors import GpsMonitorError, NotFoundError
from gps_monitor.models import Company, PlateColor, Vehicle, VehicleClass

_VEHICLE_COLUMNS = (
    "id, company_id, plate_number, plate_color, vehicle_class, terminal_id, "
    "speed_limit_kmh, utc_offset_min"
)


TERMINAL_ID_MAX = 32
_TERMINAL_ID = re.compile(r"[A-Za-z0-9._-]+")


class TerminalIdError(GpsMonitorError, ValueError):
    """A terminal id that cannot be a level of an MQTT topic (``gps/v1/{terminal_id}/...``).

    Also a ValueError, so a pydantic validator raising it answers 422.
    """


def check_terminal_id(terminal_id: str) -> str:
    """``terminal_id`` if it can be registered: 1 to 32 letters, digits, '-', '_' or '.' (safe
    as an MQTT topic level: no '/', '+', '#', spaces or control characters).

    Raises:
        TerminalIdError: says what was expected and what came.
    """
    if len(terminal_id) > TERMINAL_ID_MAX or not _TERMINAL_ID.fullmatch(terminal_id):
        raise TerminalIdError(
            f"terminal_id: expected 1 to {TERMINAL_ID_MAX} letters, digits, '-', '_' or '.' "
            f"(safe in an MQTT topic), got {terminal_id!r}"
        )
    return terminal_id


def vehicle_from_row(row: asyncpg.Record) -> Vehicle:
    return Vehicle(
        id=row["id"],
        company_id=row["company_id"],
        plate_number=row["plate_number"],
        plate_color=PlateColor(row["plate_color"]),
        vehicle_class=VehicleClass(row["vehicle_class"]),
        terminal_id=row["terminal_id"],
        speed_limit_kmh=row["speed_limit_kmh"],
        utc_offset_min=row["utc_offset_min"],
    )


async def ensure_company(conn: asyncpg.Connection | asyncpg.Pool, name: str) -> Company:
    """The company of that name, created if missing."""
    row = await conn.fetchrow(
        "INSERT INTO companies (name) VALUES ($1) "
        "ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id, name",
        name,
    )
    assert row is not None
    return Company(id=row["id"], name=row["name"])


async def ensure_vehicle(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    company_id: int,
    plate_number: str,
    terminal_id: str,
    vehicle_class: VehicleClass = VehicleClass.FREIGHT,
    plate_color: PlateColor = PlateColor.YELLOW,
    speed_limit_kmh: float | None = None,
    **extra: Any,
) -> Vehicle:
    """The vehicle with that terminal, created (or updated to these values) if needed.

    ``extra`` may set other ``vehicles`` columns (``night_ban_exempt``, ``utc_offset_min``...).

    Raises:
        TerminalIdError: ``terminal_id`` is not valid (see :func:`check_terminal_id`).
    """
    check_terminal_id(terminal_id)
    columns = [
        "company_id",
        "plate_number",
        "plate_color",
        "vehicle_class",
        "terminal_id",
        "speed_limit_kmh",
        *extra,
    ]
    values = [
        company_id,
        plate_number,
        int(plate_color),
        str(vehicle_class),
        terminal_id,
        speed_limit_kmh,
        *extra.values(),
    ]
    placeholders = ", ".join(f"${i + 1}" for i in range(len(values)))
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c != "terminal_id")
    row = await conn.fetchrow(
        f"INSERT INTO vehicles ({', '.join(columns)}) VALUES ({placeholders}) "
        f"ON CONFLICT (terminal_id) DO UPDATE SET {updates} RETURNING {_VEHICLE_COLUMNS}",
        *values,
    )
    assert row is not None
    return vehicle_from_row(row)


async def vehicle_by_terminal(conn: asyncpg.Connection | asyncpg.Pool, terminal_id: str) -> Vehicle:
    """The vehicle carrying that terminal.

    Raises:
        NotFoundError: no vehicle is registered with that terminal id.
    """
    row = await conn.fetchrow(
        f"SELECT {_VEHICLE_COLUMNS} FROM vehicles WHERE terminal_id = $1", terminal_id
    )
    if row is None:
        raise NotFoundError(f"terminal {terminal_id!r}: expected a registered vehicle, found none")
    return vehicle_from_row(row)
