"""Terminal registration (0x0100 -> 0x8100) and authentication (0x0102) against the vehicle
registry (table ``vehicles``) and the issued auth codes (table ``jt808_terminals``, migration
0040).

Registration result codes (JT/T 808-2013 section 8.6): 0 success, 1 the vehicle is already
registered to another terminal, 2 no such vehicle, 3 terminal already registered (not used: a
terminal that registers again, e.g. after a reset, gets its existing code back), 4 no such
terminal.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

import asyncpg

from gps_monitor.db.registry import vehicle_from_row
from gps_monitor.models import Vehicle
from ingest.jt808.messages import (
    REGISTER_NO_TERMINAL,
    REGISTER_NO_VEHICLE,
    REGISTER_OK,
    REGISTER_VEHICLE_TAKEN,
    AuthRequest,
    RegisterRequest,
)

AuthPolicy = Literal["registry", "known_terminal"]

_VEHICLE_COLUMNS = (
    "id, company_id, plate_number, plate_color, vehicle_class, terminal_id, "
    "speed_limit_kmh, utc_offset_min"
)


@dataclass(frozen=True, slots=True)
class RegisterOutcome:
    """Result code for 0x8100 and, on success, the auth code to send."""

    result: int
    auth_code: str | None
    detail: str


class TerminalAuthenticator:
    """Registers and authenticates terminals; one per gateway, shared by all connections.

    Args:
        pool: asyncpg pool on the gps-monitor database.
        policy: ``registry`` (the code issued at registration must be presented) or
            ``known_terminal`` (any code from a terminal registered in ``vehicles``).
        check_plate: a non-empty plate in 0x0100 must equal the registered plate and colour.
    """

    def __init__(self, pool: asyncpg.Pool, *, policy: AuthPolicy, check_plate: bool) -> None:
        self.pool = pool
        self.policy = policy
        self.check_plate = check_plate

    async def vehicle(self, terminal_id: str) -> Vehicle | None:
        """The vehicle registered with that terminal id, or None."""
        row = await self.pool.fetchrow(
            f"SELECT {_VEHICLE_COLUMNS} FROM vehicles WHERE terminal_id = $1", terminal_id
        )
        return vehicle_from_row(row) if row is not None else None

    async def register(
        self, terminal_id: str, phone_bcd: str, request: RegisterRequest
    ) -> RegisterOutcome:
        """Check a 0x0100 registration against the registry; issue or re-issue the auth code."""
        vehicle = await self.vehicle(terminal_id)
        if vehicle is None:
            return RegisterOutcome(
                REGISTER_NO_TERMINAL, None, f"terminal {terminal_id}: no vehicle carries it"
            )
        plate = request.plate_number.strip()
        registered = (vehicle.plate_number, int(vehicle.plate_color))
        if self.check_plate and plate and (plate, request.plate_color) != registered:
            other = await self.pool.fetchval(
                "SELECT terminal_id FROM vehicles WHERE plate_number = $1 AND plate_color = $2",
                plate,
                request.plate_color,
            )
            code = REGISTER_VEHICLE_TAKEN if other is not None else REGISTER_NO_VEHICLE
            return RegisterOutcome(
                code,
                None,
                f"terminal {terminal_id}: expected plate {vehicle.plate_number} colour "
                f"{int(vehicle.plate_color)}, got {plate} colour {request.plate_color}"
                + (f" (registered to terminal {other})" if other else ""),
            )
        auth_code = await self.pool.fetchval(
            """
            INSERT INTO jt808_terminals (terminal_id, auth_code, phone_bcd, layout, province_id,
                city_id, maker_id, model, device_id, plate_number, plate_color)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
            ON CONFLICT (terminal_id) DO UPDATE SET
                phone_bcd = EXCLUDED.phone_bcd, layout = EXCLUDED.layout,
                province_id = EXCLUDED.province_id, city_id = EXCLUDED.city_id,
                maker_id = EXCLUDED.maker_id, model = EXCLUDED.model,
                device_id = EXCLUDED.device_id, plate_number = EXCLUDED.plate_number,
                plate_color = EXCLUDED.plate_color, registered_at = now()
            RETURNING auth_code
            """,
            terminal_id,
            secrets.token_hex(8),
            phone_bcd,
            request.layout,
            request.province_id,
            request.city_id,
            request.maker_id,
            request.model,
            request.device_id,
            plate,
            request.plate_color,
        )
        return RegisterOutcome(REGISTER_OK, auth_code, f"terminal {terminal_id}: registered")

    async def authenticate(self, terminal_id: str, request: AuthRequest) -> Vehicle | None:
        """The terminal's vehicle when the 0x0102 code is accepted, else None."""
        vehicle = await self.vehicle(terminal_id)
        if vehicle is None:
            return None
        if self.policy == "registry":
            issued = await self.pool.fetchval(
                "SELECT auth_code FROM jt808_terminals WHERE terminal_id = $1", terminal_id
            )
            if issued is None or not hmac.compare_digest(
                issued.encode(), request.auth_code.encode()
            ):
                return None
        await self.pool.execute(
            """
            UPDATE jt808_terminals SET last_auth_at = now(),
                imei = coalesce($2, imei), software_version = coalesce($3, software_version)
            WHERE terminal_id = $1
            """,
            terminal_id,
            request.imei,
            request.software_version,
        )
        return vehicle

    async def unregister(self, terminal_id: str) -> None:
        """0x0003 logout (终端注销): the issued code is withdrawn; the terminal must register."""
        await self.pool.execute("DELETE FROM jt808_terminals WHERE terminal_id = $1", terminal_id)
