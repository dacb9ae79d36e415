"""Downlink commands to terminals: send a text to a driver, query and set the terminal's
parameters, query its position, track it, reset it; follow a command's state and answer.

A command is created ``queued`` (with its audit entry, one transaction); the command dispatcher
in ``gps-monitor ingest`` sends it when the terminal is online and records the answer
(:mod:`ingest.commands`), with its body when the terminal answers with data (the parameter list,
the position). Names, bodies and who may send which: :mod:`gps_monitor.command_kinds`. Bureau
users reach every vehicle, operators their own company's; a vehicle they may not see, or a
terminal no vehicle has, answers 404; a bureau-only command from an operator 403; a body that
fails its checks 422 naming the field (for a parameter: its name, id, range and the value).
"""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gps_monitor.command_kinds import checked_body, kind_of
from gps_monitor.commands import TEXT, CommandError, TextBody, build_command, checked_expiry_s
from gps_monitor.config import CommandsSettings
from gps_monitor.db import audit, registry
from gps_monitor.db import commands as commands_db
from gps_monitor.db.users import Role, User
from gps_monitor.terminal_params import PARAMETERS
from web.deps import CurrentUser, DbId, HandlerUser, PoolDep, SettingsDep, company_scope, not_found

router = APIRouter(prefix="/api/commands", tags=["commands"])


class CommandIn(BaseModel):
    """A command to one vehicle's terminal, named by ``vehicle_id`` or ``terminal_id``."""

    model_config = ConfigDict(extra="forbid")

    vehicle_id: DbId | None = None
    terminal_id: str | None = Field(default=None, min_length=1, max_length=32)
    name: str = Field(default=TEXT, examples=[TEXT, "query_params", "set_params", "track"])
    body: dict[str, Any] = Field(
        description="The name's body (gps_monitor.command_kinds), e.g. text: {text, tts...}; "
        "set_params: {params: {overspeed_limit_kmh: 80}}; track: {interval_s, duration_s}"
    )
    alarm_id: DbId | None = Field(
        default=None, description="The alarm this command is about (临时跟踪 from an alarm)"
    )
    expires_in_s: float | None = Field(
        default=None,
        description="Seconds; default commands.expiry_s; from commands.min_expiry_s (10) to "
        "commands.max_expiry_s (86400), else 422",
    )

    @model_validator(mode="after")
    def _one_target(self) -> CommandIn:
        if (self.vehicle_id is None) == (self.terminal_id is None):
            raise ValueError("expected exactly one of vehicle_id or terminal_id")
        return self


async def target_vehicle(
    conn: asyncpg.Connection | asyncpg.Pool,
    user: User,
    *,
    vehicle_id: int | None = None,
    terminal_id: str | None = None,
) -> asyncpg.Record:
    """The vehicle a command goes to, within the user's scope.

    Raises:
        HTTPException 404: no such vehicle or terminal, another company's, or a vehicle without
            a terminal.
    """
    row = await registry.command_target(
        conn, vehicle_id=vehicle_id, terminal_id=terminal_id, company_id=company_scope(user)
    )
    what = f"vehicle {vehicle_id}" if vehicle_id is not None else f"terminal {terminal_id!r}"
    if row is None:
        raise not_found(what)
    if not row["terminal_id"]:
        raise not_found(f"{what}: terminal")
    return row


async def send_text(
    conn: asyncpg.Connection,
    user: User | None,
    settings: CommandsSettings,
    vehicle: asyncpg.Record,
    body: TextBody,
    *,
    alarm_id: int | None = None,
    expires_in_s: float | None = None,
) -> dict[str, Any]:
    """Queue a text for ``vehicle``'s terminal (see :func:`queue_command`)."""
    return await queue_command(
        conn, user, settings, vehicle, TEXT, body.model_dump(), alarm_id=alarm_id,
        expires_in_s=expires_in_s,
    )  # fmt: skip


async def queue_command(
    conn: asyncpg.Connection,
    user: User | None,
    settings: CommandsSettings,
    vehicle: asyncpg.Record,
    name: str,
    body: dict[str, Any],
    *,
    alarm_id: int | None = None,
    expires_in_s: float | None = None,
) -> dict[str, Any]:
    """Queue command ``name`` for ``vehicle``'s terminal (call inside the caller's transaction;
    audited when ``user`` is given).

    Raises:
        HTTPException 422: a body that fails its checks (:func:`checked_body`: text too long or
            not GBK, a parameter unknown, not settable or out of its range...), or an expiry
            outside ``commands.min_expiry_s`` .. ``commands.max_expiry_s``.
    """
    try:
        expiry_s = checked_expiry_s(
            expires_in_s if expires_in_s is not None else settings.expiry_s,
            settings.min_expiry_s,
            settings.max_expiry_s,
        )
        checked = checked_body(name, body, text_max_bytes=settings.text_max_bytes)
    except CommandError as error:
        raise HTTPException(422, str(error)) from None
    command = build_command(vehicle["terminal_id"], name, checked, expiry_s=expiry_s)
    row = await commands_db.create(
        conn,
        command,
        vehicle_id=vehicle["id"],
        company_id=vehicle["company_id"],
        alarm_id=alarm_id,
        created_by=user.id if user is not None else None,
    )
    if user is not None:
        await audit.record(
            conn,
            user,
            "command.create",
            "command",
            row["id"],
            company_id=vehicle["company_id"],
            details={"name": command.name, "body": command.body, "alarm_id": alarm_id},
        )
    return row


@router.post("", status_code=201)
async def create_command(
    body: CommandIn, user: HandlerUser, pool: PoolDep, settings: SettingsDep
) -> dict[str, Any]:
    """Queue a command for a vehicle's terminal (names: gps_monitor.command_kinds)."""
    try:
        kind = kind_of(body.name)
    except CommandError as error:
        raise HTTPException(422, str(error)) from None
    if kind.bureau_only and user.role != Role.BUREAU:
        raise HTTPException(403, f"{body.name}: expected role bureau, got {user.role}")
    async with pool.acquire() as conn, conn.transaction():
        vehicle = await target_vehicle(
            conn, user, vehicle_id=body.vehicle_id, terminal_id=body.terminal_id
        )
        if body.alarm_id is not None and not await commands_db.alarm_of_vehicle(
            conn, body.alarm_id, vehicle["id"]
        ):
            raise not_found(f"alarm {body.alarm_id} of vehicle {vehicle['id']}")
        return await queue_command(
            conn, user, settings.commands, vehicle, body.name, body.body,
            alarm_id=body.alarm_id, expires_in_s=body.expires_in_s,
        )  # fmt: skip


@router.get("/parameters")
async def terminal_parameters(_: CurrentUser) -> list[dict[str, Any]]:
    """The JT/T 808 terminal parameters the platform knows (gps_monitor.terminal_params): id,
    name (unit in the name), Chinese name, wire type, and for the settable ones the range."""
    return [
        {
            "id": p.id_hex, "name": p.name, "zh": p.zh, "wire": str(p.wire),
            "settable": p.settable,
            "minimum": p.minimum if p.settable else None,
            "maximum": p.maximum if p.settable else None,
            "step": 1 / p.scale,
        }
        for p in PARAMETERS
    ]  # fmt: skip


@router.get("/templates")
async def remind_templates(_: CurrentUser, settings: SettingsDep) -> dict[str, Any]:
    """提醒驾驶员 texts offered per alarm type (``device_alarm.<name>`` for a terminal's own
    alarm such as ``device_alarm.sos``), the default, and the text limit in GBK bytes."""
    c = settings.commands
    return {
        "templates": c.remind_templates,
        "default": c.remind_default_text,
        "text_max_bytes": c.text_max_bytes,
    }


@router.get("/{command_row_id}")
async def get_command(command_row_id: DbId, user: CurrentUser, pool: PoolDep) -> dict[str, Any]:
    """One command with its state and the terminal's answer."""
    row = await commands_db.get(pool, command_row_id, company_scope(user))
    if row is None:
        raise not_found(f"command {command_row_id}")
    return row


@router.get("")
async def list_commands(
    user: CurrentUser,
    pool: PoolDep,
    vehicle_id: DbId | None = None,
    alarm_id: DbId | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """Commands the user may see, newest first, by vehicle or alarm."""
    return await commands_db.listing(pool, company_scope(user), vehicle_id, alarm_id, limit)
