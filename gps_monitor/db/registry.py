"""Companies and vehicles: the registry every service resolves terminals against.

Two shapes of a vehicle row, each made in one place: :class:`~gps_monitor.models.Vehicle` for the
services (:func:`vehicle_from_row`) and the registry entry the web app answers (a dict with the
company name, ``night_ban_exempt`` and ``active``; :func:`_entry`). The writes of the web app
(create, update, deactivate, delete, bulk import) take the caller's connection, so the caller
writes its audit entry in the same transaction.

A vehicle is deactivated (停用: sold, scrapped, off the road) rather than deleted once it has
positions or alarms: its history stays evidence. A deactivated vehicle leaves the 入网率
denominator (``must_connect`` false) and shows as 停用 in the registry; its terminal stays
registered, so a message it still sends is stored, not rejected.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import asyncpg

from gps_monitor.db import drivers
from gps_monitor.errors import GpsMonitorError, NotFoundError
from gps_monitor.models import Company, PlateColor, Vehicle, VehicleClass

if TYPE_CHECKING:
    from gps_monitor.vehicle_import import ImportRow

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


# ---------------------------------------------------- the registry as the web edits it


class RegistryError(GpsMonitorError):
    """A registry change refused for a reason tied to one field.

    Attributes:
        field: the input field at fault (``plate_number``, ``terminal_id``, ``name``,
            ``company_id``, ``username``...).
        kind: ``taken`` (unique value already registered), ``unknown_company`` (no such company)
            or ``has_history`` (a vehicle with positions or alarms cannot be deleted).
    """

    def __init__(self, field: str, kind: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.kind = kind


_UNIQUE_FIELDS = {
    "vehicles_terminal_id_key": "terminal_id",
    "vehicles_plate_number_plate_color_key": "plate_number",
    "companies_name_key": "name",
}

_ENTRY_COLUMNS = (
    "v.id, v.company_id, c.name AS company_name, v.plate_number, v.plate_color, "
    "v.vehicle_class, v.terminal_id, v.speed_limit_kmh, v.night_ban_exempt, v.active"
)
_ENTRY_SELECT = f"SELECT {_ENTRY_COLUMNS} FROM vehicles v JOIN companies c ON c.id = v.company_id"
EDITABLE_COLUMNS = (
    "company_id",
    "plate_number",
    "plate_color",
    "vehicle_class",
    "terminal_id",
    "speed_limit_kmh",
    "night_ban_exempt",
    "active",
)
"""The ``vehicles`` columns the web app may set (``active`` also sets ``must_connect``)."""


def _entry(row: asyncpg.Record) -> dict[str, Any]:
    """A registry entry (the web app's vehicle) from a row of :data:`_ENTRY_SELECT`."""
    return dict(row)


def _taken(error: asyncpg.UniqueViolationError, values: Mapping[str, Any]) -> RegistryError:
    field = _UNIQUE_FIELDS.get(error.constraint_name or "", "unknown")
    if field == "plate_number":
        what = (
            f"plate {values.get('plate_number')!r} colour {values.get('plate_color')}: expected "
            "a plate number + colour not yet registered, got one registered to another vehicle"
        )
    else:
        what = (
            f"{field} {values.get(field)!r}: expected a value not yet registered, "
            "got one registered to another"
        )
    return RegistryError(field, "taken", what)


def _unknown_company(company_id: object) -> RegistryError:
    return RegistryError(
        "company_id", "unknown_company", f"company_id {company_id}: expected an existing company"
    )


async def list_companies(
    conn: asyncpg.Connection | asyncpg.Pool, company_id: int | None = None
) -> list[dict[str, Any]]:
    """Companies (only ``company_id`` when given), by name: ``{id, name, vehicles}`` with the
    number of its vehicles (active or not)."""
    rows = await conn.fetch(
        "SELECT c.id, c.name, count(v.id) AS vehicles FROM companies c "
        "LEFT JOIN vehicles v ON v.company_id = c.id "
        "WHERE $1::bigint IS NULL OR c.id = $1 GROUP BY c.id ORDER BY c.name",
        company_id,
    )
    return [dict(r) for r in rows]


async def company_name(conn: asyncpg.Connection | asyncpg.Pool, company_id: int) -> str | None:
    """The name of a company, or None when there is no such company."""
    name = await conn.fetchval("SELECT name FROM companies WHERE id = $1", company_id)
    return None if name is None else str(name)


async def command_target(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    vehicle_id: int | None,
    terminal_id: str | None,
    company_id: int | None,
) -> asyncpg.Record | None:
    """The vehicle a command goes to, by id and/or terminal number, within ``company_id`` (None:
    any company): ``id``, ``company_id``, ``terminal_id`` (None or '' without a terminal) and
    ``plate_number``; None when no vehicle matches."""
    return await conn.fetchrow(
        "SELECT id, company_id, terminal_id, plate_number FROM vehicles "
        "WHERE ($1::bigint IS NULL OR id = $1) AND ($2::text IS NULL OR terminal_id = $2) "
        "AND ($3::bigint IS NULL OR company_id = $3)",
        vehicle_id,
        terminal_id,
        company_id,
    )


async def vehicles_of_other_companies(
    conn: asyncpg.Connection | asyncpg.Pool, vehicle_ids: list[int], company_id: int
) -> list[int]:
    """The ids among ``vehicle_ids`` of vehicles registered to a company other than
    ``company_id``, ascending (unknown ids are not listed)."""
    rows = await conn.fetch(
        "SELECT id FROM vehicles WHERE id = ANY($1::bigint[]) AND company_id <> $2 ORDER BY id",
        vehicle_ids,
        company_id,
    )
    return [r["id"] for r in rows]


async def rule_settings(conn: asyncpg.Connection | asyncpg.Pool) -> list[asyncpg.Record]:
    """What the rules engine needs of every vehicle: ``id``, ``company_id``, ``terminal_id``,
    ``vehicle_class``, ``speed_limit_kmh`` (None: the class default), ``night_ban_exempt``."""
    return await conn.fetch(
        "SELECT id, company_id, terminal_id, vehicle_class, speed_limit_kmh, "
        "night_ban_exempt FROM vehicles"
    )


async def vehicle_labels(
    conn: asyncpg.Connection | asyncpg.Pool, vehicle_ids: list[int] | None = None
) -> list[asyncpg.Record]:
    """How vehicles are named to people (alarm pop-ups, notifications, reports): ``id``,
    ``plate_number``, ``plate_color``, ``vehicle_class``, ``terminal_id``, ``company_id``,
    ``company_name``; of every vehicle, or of ``vehicle_ids`` (unknown ids are left out)."""
    return await conn.fetch(
        "SELECT v.id, v.plate_number, v.plate_color, v.vehicle_class, v.terminal_id, "
        "v.company_id, c.name AS company_name "
        "FROM vehicles v JOIN companies c ON c.id = v.company_id "
        "WHERE $1::bigint[] IS NULL OR v.id = ANY($1::bigint[])",
        vehicle_ids,
    )


async def vehicle_ids_by_plate(
    conn: asyncpg.Connection | asyncpg.Pool, plate_number: str, plate_color: int | None = None
) -> list[int]:
    """Ids of the vehicles registered under ``plate_number`` (and ``plate_color`` when given)."""
    rows = await conn.fetch(
        "SELECT id FROM vehicles WHERE plate_number = $1 "
        "AND ($2::smallint IS NULL OR plate_color = $2)",
        plate_number,
        plate_color,
    )
    return [r["id"] for r in rows]


async def company_ids_by_name(
    conn: asyncpg.Connection | asyncpg.Pool, names: list[str]
) -> dict[str, int]:
    """``{name: id}`` of the companies among ``names`` that exist (exact names)."""
    rows = await conn.fetch("SELECT id, name FROM companies WHERE name = ANY($1::text[])", names)
    return {r["name"]: r["id"] for r in rows}


async def create_company(conn: asyncpg.Connection | asyncpg.Pool, name: str) -> Company:
    """A new company.

    Raises:
        RegistryError: ``taken``, a company of that name exists.
    """
    try:
        row = await conn.fetchrow(
            "INSERT INTO companies (name) VALUES ($1) RETURNING id, name", name
        )
    except asyncpg.UniqueViolationError as error:
        raise _taken(error, {"name": name}) from error
    assert row is not None
    return Company(id=row["id"], name=row["name"])


async def rename_company(
    conn: asyncpg.Connection | asyncpg.Pool, company_id: int, name: str
) -> Company:
    """The company under its new name.

    Raises:
        RegistryError: ``taken``, another company has that name.
        NotFoundError: no such company.
    """
    try:
        row = await conn.fetchrow(
            "UPDATE companies SET name = $2 WHERE id = $1 RETURNING id, name", company_id, name
        )
    except asyncpg.UniqueViolationError as error:
        raise _taken(error, {"name": name}) from error
    if row is None:
        raise NotFoundError(f"company {company_id}: not found")
    return Company(id=row["id"], name=row["name"])


async def list_vehicles(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    company_id: int | None = None,
    plate: str | None = None,
    limit: int = 20000,
) -> list[dict[str, Any]]:
    """Registry entries by plate: all, or of one company, or whose plate contains ``plate``
    (case-insensitive); at most ``limit``."""
    rows = await conn.fetch(
        f"{_ENTRY_SELECT} WHERE ($1::bigint IS NULL OR v.company_id = $1) "
        "AND ($2::text IS NULL OR v.plate_number ILIKE '%' || $2 || '%') "
        "ORDER BY v.plate_number LIMIT $3",
        company_id,
        plate,
        limit,
    )
    return [_entry(r) for r in rows]


async def registry_entry(
    conn: asyncpg.Connection | asyncpg.Pool, vehicle_id: int, company_id: int | None = None
) -> dict[str, Any]:
    """The registry entry of one vehicle (of company ``company_id`` when given).

    Raises:
        NotFoundError: no such vehicle, or one of another company (the same answer).
    """
    row = await conn.fetchrow(
        f"{_ENTRY_SELECT} WHERE v.id = $1 AND ($2::bigint IS NULL OR v.company_id = $2)",
        vehicle_id,
        company_id,
    )
    if row is None:
        raise NotFoundError(f"vehicle {vehicle_id}: not found")
    return _entry(row)


async def vehicle_card(
    conn: asyncpg.Connection | asyncpg.Pool, vehicle_id: int, company_id: int | None = None
) -> dict[str, Any]:
    """The map's vehicle card: the registry entry, ``latest`` (its ``latest_positions`` marker
    or None), ``open_alarms`` (up to 50 unended, open or acknowledged, newest first) and
    ``driver`` (the driver whose IC card is in, :func:`gps_monitor.db.drivers.current_driver`,
    or None).

    Raises:
        NotFoundError: as :func:`registry_entry`.
    """
    card = await registry_entry(conn, vehicle_id, company_id)
    latest = await conn.fetchrow(
        "SELECT fix_time, last_message_at, latitude, longitude, speed_kmh, heading_deg, acc_on "
        "FROM latest_positions WHERE vehicle_id = $1",
        vehicle_id,
    )
    card["latest"] = dict(latest) if latest else None
    alarms = await conn.fetch(
        "SELECT id, alarm_type, started_at, status, late FROM alarms "
        "WHERE vehicle_id = $1 AND ended_at IS NULL AND status IN ('open', 'acknowledged') "
        "ORDER BY started_at DESC LIMIT 50",
        vehicle_id,
    )
    card["open_alarms"] = [dict(r) for r in alarms]
    card["driver"] = await drivers.current_driver(conn, vehicle_id)
    return card


def _column_value(name: str, value: Any) -> Any:
    if name == "plate_color" and value is not None:
        return int(value)
    if name == "vehicle_class" and value is not None:
        return str(value)
    return value


async def create_vehicle(conn: asyncpg.Connection, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Register a vehicle; ``fields`` are :data:`EDITABLE_COLUMNS` values (``plate_color`` a
    code, ``vehicle_class`` a class name). Answers the registry entry.

    Raises:
        RegistryError: ``taken`` (terminal id, or plate number + colour) or ``unknown_company``.
        TerminalIdError: a terminal id that is not valid.
    """
    check_terminal_id(fields["terminal_id"])
    columns = [c for c in EDITABLE_COLUMNS if c in fields]
    values = [_column_value(c, fields[c]) for c in columns]
    placeholders = ", ".join(f"${i + 1}" for i in range(len(values)))
    try:
        async with conn.transaction():  # a savepoint inside the caller's transaction
            row = await conn.fetchrow(
                f"WITH v AS (INSERT INTO vehicles ({', '.join(columns)}) "
                f"VALUES ({placeholders}) RETURNING *) "
                f"SELECT {_ENTRY_COLUMNS} FROM v JOIN companies c ON c.id = v.company_id",
                *values,
            )
    except asyncpg.UniqueViolationError as error:
        raise _taken(error, fields) from error
    except asyncpg.ForeignKeyViolationError as error:
        raise _unknown_company(fields.get("company_id")) from error
    assert row is not None
    return _entry(row)


async def update_vehicle(
    conn: asyncpg.Connection, vehicle_id: int, changes: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Set some :data:`EDITABLE_COLUMNS` of a vehicle; answers its entry ``(before, after)``.
    Setting ``active`` sets ``must_connect`` to the same value (a deactivated vehicle leaves the
    入网率 denominator).

    Raises:
        ValueError: a column outside :data:`EDITABLE_COLUMNS`, or no change at all.
        RegistryError: ``taken`` or ``unknown_company``.
        NotFoundError: no such vehicle.
    """
    unknown = set(changes) - set(EDITABLE_COLUMNS)
    if unknown or not changes:
        raise ValueError(
            f"expected changes to some of {', '.join(EDITABLE_COLUMNS)}, got {sorted(changes)}"
        )
    before = await registry_entry(conn, vehicle_id)
    columns = list(changes)
    sets = [f"{name} = ${i + 2}" for i, name in enumerate(columns)]
    if "active" in changes:
        sets.append(f"must_connect = ${columns.index('active') + 2}")
    try:
        async with conn.transaction():
            await conn.execute(
                f"UPDATE vehicles SET {', '.join(sets)} WHERE id = $1",
                vehicle_id,
                *(_column_value(c, changes[c]) for c in columns),
            )
    except asyncpg.UniqueViolationError as error:
        raise _taken(error, {**before, **changes}) from error
    except asyncpg.ForeignKeyViolationError as error:
        raise _unknown_company(changes.get("company_id")) from error
    return before, await registry_entry(conn, vehicle_id)


async def delete_vehicle(conn: asyncpg.Connection, vehicle_id: int) -> dict[str, Any]:
    """Delete a vehicle registered by mistake (no position, alarm or report yet); answers the
    entry it was.

    Raises:
        RegistryError: ``has_history``: it has positions, alarms or evidence reports (deactivate
            it instead: its history is evidence).
        NotFoundError: no such vehicle.
    """
    entry = await registry_entry(conn, vehicle_id)
    history = await conn.fetchrow(
        "SELECT EXISTS (SELECT 1 FROM positions WHERE vehicle_id = $1) AS positions, "
        "EXISTS (SELECT 1 FROM alarms WHERE vehicle_id = $1) AS alarms",
        vehicle_id,
    )
    assert history is not None
    kept = [name for name in ("positions", "alarms") if history[name]]
    if kept:
        raise RegistryError(
            "id",
            "has_history",
            f"vehicle {entry['plate_number']}: expected no stored positions or alarms to delete "
            f"it, got {' and '.join(kept)} (kept as evidence); deactivate it instead",
        )
    try:
        async with conn.transaction():
            await conn.execute("DELETE FROM vehicles WHERE id = $1", vehicle_id)
    except asyncpg.ForeignKeyViolationError as error:  # commands, reports... refer to it
        raise RegistryError(
            "id",
            "has_history",
            f"vehicle {entry['plate_number']}: expected nothing recorded about it to delete it, "
            f"got {error.table_name} rows; deactivate it instead",
        ) from error
    return entry


_IMPORTED = EDITABLE_COLUMNS[:6]  # what a file row sets: not night_ban_exempt, active


def _refused(row: ImportRow, field: str, kind: str, message: str, **ctx: Any) -> dict[str, Any]:
    return {
        "line": row.line,
        "plate_number": row.cells.get("plate_number"),
        "outcome": "refused",
        "vehicle_id": None,
        "errors": [{"field": field, "type": f"registry_{kind}", "msg": message, "ctx": ctx}],
    }


async def import_vehicles(conn: asyncpg.Connection, rows: list[ImportRow]) -> list[dict[str, Any]]:
    """Apply checked import rows in the caller's transaction, row by row; answers one outcome
    per row, in file order: ``{line, plate_number, outcome, vehicle_id, errors[, vehicle,
    changes]}`` (``vehicle``: the registry entry written).

    ``outcome`` is ``added`` (a new plate number + colour), ``updated`` (the plate was
    registered: its company, class, terminal or limit set to the row's; ``changes`` holds the
    values before), ``unchanged`` or ``refused`` with ``errors`` (``{field, type, msg}``): a
    cell the row check refused (pydantic types), ``registry_unknown_company``,
    ``registry_duplicate_in_file`` (the plate or terminal of an earlier row) or
    ``registry_taken`` (the terminal is another vehicle's). Each row runs in a savepoint, so a
    refused row leaves nothing behind; whether the whole is committed is the caller's choice.
    """
    checked = [r.vehicle for r in rows if r.vehicle is not None]
    companies = await company_ids_by_name(conn, sorted({v.company for v in checked}))
    registered = await _entries_by_plate(
        conn, [(v.plate_number, int(v.plate_color)) for v in checked]
    )
    seen_plates: dict[tuple[str, int], int] = {}
    seen_terminals: dict[str, int] = {}
    outcomes: list[dict[str, Any]] = []
    for row in rows:
        v = row.vehicle
        if v is None:
            outcomes.append(
                {
                    "line": row.line,
                    "plate_number": row.cells.get("plate_number"),
                    "outcome": "refused",
                    "vehicle_id": None,
                    "errors": row.errors,
                }
            )
            continue
        plate = (v.plate_number, int(v.plate_color))
        if plate in seen_plates or v.terminal_id in seen_terminals:
            field, first = (
                ("plate_number", seen_plates[plate])
                if plate in seen_plates
                else ("terminal_id", seen_terminals[v.terminal_id])
            )
            outcomes.append(
                _refused(
                    row, field, "duplicate_in_file", f"{field}: the same as row {first}", line=first
                )
            )
            continue
        seen_plates[plate] = seen_terminals[v.terminal_id] = row.line
        if v.company not in companies:
            outcomes.append(
                _refused(
                    row,
                    "company",
                    "unknown_company",
                    f"company {v.company!r}: expected the exact name of a registered company",
                )
            )
            continue
        fields = {**v.model_dump(exclude={"company"}), "company_id": companies[v.company]}
        outcomes.append(await _import_one(conn, row, fields, registered.get(plate)))
    return outcomes


def _same(stored: Any, wanted: Any) -> bool:
    """Equal, a stored ``real`` (float32) compared to the tenth of a km/h it was given in."""
    if isinstance(stored, float) and isinstance(wanted, float | int):
        return round(stored, 1) == round(float(wanted), 1)
    return bool(stored == wanted)


async def _entries_by_plate(
    conn: asyncpg.Connection, plates: list[tuple[str, int]]
) -> dict[tuple[str, int], dict[str, Any]]:
    """The registry entries of those (plate number, plate colour) that are registered."""
    rows = await conn.fetch(
        f"{_ENTRY_SELECT} WHERE (v.plate_number, v.plate_color) IN "
        "(SELECT * FROM unnest($1::text[], $2::smallint[]))",
        [p for p, _ in plates],
        [c for _, c in plates],
    )
    return {(r["plate_number"], r["plate_color"]): _entry(r) for r in rows}


async def _import_one(
    conn: asyncpg.Connection,
    row: ImportRow,
    fields: dict[str, Any],
    before: dict[str, Any] | None,
) -> dict[str, Any]:
    """One checked row against the vehicle registered with its plate (``before``, or None)."""
    out: dict[str, Any] = {"line": row.line, "plate_number": fields["plate_number"], "errors": []}
    try:
        if before is None:
            entry = await create_vehicle(conn, fields)
            return {**out, "outcome": "added", "vehicle_id": entry["id"], "vehicle": entry}
        wanted = {c: _column_value(c, fields[c]) for c in _IMPORTED}
        changes = {c: value for c, value in wanted.items() if not _same(before[c], value)}
        if not changes:
            return {**out, "outcome": "unchanged", "vehicle_id": before["id"]}
        _, after = await update_vehicle(conn, before["id"], changes)
        return {
            **out,
            "outcome": "updated",
            "vehicle_id": before["id"],
            "vehicle": after,
            "changes": {c: before[c] for c in changes},
        }
    except RegistryError as error:
        return _refused(row, error.field, error.kind, str(error))
