"""Terminal registration (0x0100 -> 0x8100) and authentication (0x0102) against the vehicle
registry (table ``vehicles``) and the issued auth codes (table ``jt808_terminals``, migration
0040).

Registration result codes (JT/T 808-2013 section 8.6, table 9; 2019 the same): 0 success (with
the auth code), 1 vehicle already registered, 2 no such vehicle in the database, 3 terminal
already registered, 4 no such terminal in the database. What this gateway answers, so that an
unverified peer never gets a working code and the answers do not tell which numbers exist:

- the terminal id is no vehicle's, or the 0x0100 plate and colour differ from that vehicle's
  (an empty plate differs too): result 2, whatever the reason. The phone number of a
  terminal is printed on its SIM and a plate is painted on the car, so 4 (unknown number) and
  1 (plate held by another terminal) would let anyone enumerate the registry; 2 ("no vehicle
  matching what you sent") is true in every one of these cases.
- the terminal already holds a code (it registered before and has not logged out): result 3
  and no code; it must authenticate with the code it has. With ``reregistration=
  "same_identity"`` a new code is issued (the old one withdrawn) when plate, colour, maker,
  model and device id all equal the stored registration and no connection of this gateway is
  authenticated as that terminal; otherwise 3.
- else (first registration, or again after 0x0003 logout / an operator's :meth:`forget`):
  result 0 and a new random code.

Leading open servers do less: traccar answers every 0x0100 with success and accepts any
0x0102 (the phone number is the identity); jt808-server (yezhihao) builds the code from the
registration's own fields. Neither stops a peer that knows a phone number.
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
    REGISTER_NO_VEHICLE,
    REGISTER_OK,
    REGISTER_TERMINAL_TAKEN,
    AuthRequest,
    RegisterRequest,
)

AuthPolicy = Literal["registry", "known_terminal"]
ReregistrationPolicy = Literal["refuse", "same_identity"]

_VEHICLE_COLUMNS = (
    "id, company_id, plate_number, plate_color, vehicle_class, terminal_id, "
    "speed_limit_kmh, utc_offset_min"
)


@dataclass(frozen=True, slots=True)
class RegisterOutcome:
    """Result code for 0x8100 and, on success, the auth code to send; ``detail`` is for the
    gateway's log only (it names the reason, which the terminal is not told)."""

    result: int
    auth_code: str | None
    detail: str


class TerminalAuthenticator:
    """Registers and authenticates terminals; one per gateway, shared by all connections.

    Args:
        pool: asyncpg pool on the gps-monitor database.
        policy: ``registry`` (the code issued at registration must be presented) or
            ``known_terminal`` (any code from a terminal registered in ``vehicles``).
        check_plate: 0x0100 must carry the registered plate and colour.
        reregistration: ``refuse`` or ``same_identity`` (module docstring).
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        policy: AuthPolicy,
        check_plate: bool,
        reregistration: ReregistrationPolicy = "refuse",
    ) -> None:
        self.pool = pool
        self.policy = policy
        self.check_plate = check_plate
        self.reregistration = reregistration

    async def vehicle(self, terminal_id: str) -> Vehicle | None:
        """The vehicle registered with that terminal id, or None."""
        row = await self.pool.fetchrow(
            f"SELECT {_VEHICLE_COLUMNS} FROM vehicles WHERE terminal_id = $1", terminal_id
        )
        return vehicle_from_row(row) if row is not None else None

    async def register(
        self, terminal_id: str, phone_bcd: str, request: RegisterRequest, *, online: bool = False
    ) -> RegisterOutcome:
        """Check a 0x0100 registration; issue an auth code or refuse (module docstring).

        Args:
            terminal_id: the header's terminal id; phone_bcd: its BCD digits as sent.
            online: another connection of the gateway is authenticated as this terminal.
        """
        vehicle = await self.vehicle(terminal_id)
        plate = request.plate_number.strip()
        if vehicle is None:
            return RegisterOutcome(
                REGISTER_NO_VEHICLE, None, f"terminal {terminal_id}: no vehicle carries it"
            )
        registered = (vehicle.plate_number, int(vehicle.plate_color))
        if self.check_plate and (plate, request.plate_color) != registered:
            return RegisterOutcome(
                REGISTER_NO_VEHICLE,
                None,
                f"terminal {terminal_id}: expected plate {vehicle.plate_number} colour "
                f"{int(vehicle.plate_color)}, got {plate!r} colour {request.plate_color}",
            )
        async with self.pool.acquire() as connection, connection.transaction():
            stored = await connection.fetchrow(
                "SELECT maker_id, model, device_id, plate_number, plate_color "
                "FROM jt808_terminals WHERE terminal_id = $1 FOR UPDATE",
                terminal_id,
            )
            if stored is not None:
                refusal = self._reregistration_refusal(terminal_id, plate, request, stored, online)
                if refusal is not None:
                    return RegisterOutcome(REGISTER_TERMINAL_TAKEN, None, refusal)
            auth_code = secrets.token_hex(8)
            await connection.execute(
                """
                INSERT INTO jt808_terminals (terminal_id, auth_code, phone_bcd, layout,
                    province_id, city_id, maker_id, model, device_id, plate_number, plate_color)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                ON CONFLICT (terminal_id) DO UPDATE SET
                    auth_code = EXCLUDED.auth_code, phone_bcd = EXCLUDED.phone_bcd,
                    layout = EXCLUDED.layout, province_id = EXCLUDED.province_id,
                    city_id = EXCLUDED.city_id, maker_id = EXCLUDED.maker_id,
                    model = EXCLUDED.model, device_id = EXCLUDED.device_id,
                    plate_number = EXCLUDED.plate_number, plate_color = EXCLUDED.plate_color,
                    registered_at = now()
                """,
                terminal_id,
                auth_code,
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
        again = " again (same identity; old code withdrawn)" if stored is not None else ""
        return RegisterOutcome(REGISTER_OK, auth_code, f"terminal {terminal_id}: registered{again}")

    def _reregistration_refusal(
        self,
        terminal_id: str,
        plate: str,
        request: RegisterRequest,
        stored: asyncpg.Record,
        online: bool,
    ) -> str | None:
        """Why a terminal that holds a code gets none now (None: issue a new one)."""
        if self.reregistration == "refuse":
            return f"terminal {terminal_id}: already registered; it must authenticate"
        if online:
            return f"terminal {terminal_id}: already registered and online on another connection"
        sent = (plate, request.plate_color, request.maker_id, request.model, request.device_id)
        kept = (
            stored["plate_number"],
            stored["plate_color"],
            stored["maker_id"],
            stored["model"],
            stored["device_id"],
        )
        if sent != kept:
            return (
                f"terminal {terminal_id}: already registered as (plate, colour, maker, model, "
                f"device) {kept}, got {sent}"
            )
        return None

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

    async def unregister(self, terminal_id: str) -> bool:
        """0x0003 logout (终端注销), or an operator's ``gps-monitor jt808 --forget-terminal``:
        the issued code is withdrawn and the terminal must register again. Returns whether
        the terminal had one."""
        status = await self.pool.execute(
            "DELETE FROM jt808_terminals WHERE terminal_id = $1", terminal_id
        )
        return status != "DELETE 0"
