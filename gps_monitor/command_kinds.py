"""Every command name the platform sends on ``cmd/v1/{terminal_id}/{name}``: its body, who may
send it, and the checks made before it is queued (422 in the API).

- ``text``: 0x8300, :class:`~gps_monitor.commands.TextBody`; answered 0x0001.
- ``query_params``: 0x8104 (all) or 0x8106 (``names`` / ``ids``), :class:`QueryParamsBody`;
  answered 0x0104, the parameter list is the answer's body.
- ``set_params``: 0x8103, :class:`SetParamsBody`; answered 0x0001.
- ``query_position``: 0x8201, ``{}``; answered 0x0201, the position is the answer's body.
- ``track``: 0x8202, :class:`TrackBody`; answered 0x0001.
- ``terminal_control`` (bureau only): 0x8105, :class:`TerminalControlBody`; answered 0x0001.
- ``pass_through`` (bureau only): 0x8900, :class:`PassThroughBody`; answered 0x0001 if at all.
- ``query_driver``: 0x8702, ``{}``; answered by the terminal's next 0x0702, the driver identity
  is the answer's body (:mod:`ingest.jt808.driver_uplink`).

Operators act on their own company's vehicles only (the API's scope check). Terminal control
(a reset cuts the terminal off for a minute or two) and raw pass-through bytes (meaning set by
the device maker) are the bureau's only: a choice where the issue names only the reset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gps_monitor.commands import TEXT, CommandError, TextBody, text_gbk
from gps_monitor.terminal_params import ParameterError, check_settings, names_to_ids

QUERY_PARAMS = "query_params"
SET_PARAMS = "set_params"
QUERY_POSITION = "query_position"
TRACK = "track"
TERMINAL_CONTROL = "terminal_control"
PASS_THROUGH = "pass_through"
QUERY_DRIVER = "query_driver"

CONTROL_ACTIONS = {"reset": 4, "factory_reset": 5}  # JT/T 808 0x8105 command words


class QueryParamsBody(BaseModel):
    """Which parameters to ask for: none given = all (0x8104), else these (0x8106) by our name
    and/or by id (vendor ids such as 0xF000 included)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    names: list[str] = Field(default_factory=list, max_length=255)
    ids: list[int] = Field(default_factory=list, max_length=255)

    @field_validator("ids")
    @classmethod
    def _u32(cls, ids: list[int]) -> list[int]:
        for i in ids:
            if not 0 <= i <= 0xFFFFFFFF:
                raise ValueError(f"expected parameter ids 0 to 0xFFFFFFFF, got {i}")
        return ids


class SetParamsBody(BaseModel):
    """Values to set by our name, in our units: ``{"params": {"overspeed_limit_kmh": 80}}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    params: dict[str, Any]


class QueryPositionBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrackBody(BaseModel):
    """临时跟踪 (0x8202): report every ``interval_s`` for ``duration_s``; ``interval_s`` 0 stops
    a tracking in progress."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    interval_s: int = Field(ge=0, le=3600, description="Seconds between reports; 0 = stop")
    duration_s: int = Field(ge=0, le=86400, description="How long the tracking lasts (s)")


class TerminalControlBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Literal["reset", "factory_reset"]


class PassThroughBody(BaseModel):
    """0x8900: the pass-through type (0x00 GNSS detail, 0x0B IC card, 0x41/0x42 serial ports,
    0xF0-0xFF user defined) and the content as hex."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pass_type: int = Field(ge=0, le=255)
    content_hex: str = Field(pattern=r"^([0-9a-fA-F]{2}){0,1000}$")


class QueryDriverBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True, slots=True)
class CommandKind:
    name: str
    body: type[BaseModel]
    bureau_only: bool = False
    changes_terminal: bool = False  # its answer goes into the audit trail


KINDS: dict[str, CommandKind] = {
    k.name: k
    for k in (
        CommandKind(TEXT, TextBody),
        CommandKind(QUERY_PARAMS, QueryParamsBody),
        CommandKind(SET_PARAMS, SetParamsBody, changes_terminal=True),
        CommandKind(QUERY_POSITION, QueryPositionBody),
        CommandKind(TRACK, TrackBody, changes_terminal=True),
        CommandKind(TERMINAL_CONTROL, TerminalControlBody, bureau_only=True, changes_terminal=True),
        CommandKind(PASS_THROUGH, PassThroughBody, bureau_only=True, changes_terminal=True),
        CommandKind(QUERY_DRIVER, QueryDriverBody),
    )
}
AUDITED_ANSWERS: frozenset[str] = frozenset(k.name for k in KINDS.values() if k.changes_terminal)


def kind_of(name: str) -> CommandKind:
    """Raises CommandError(field="name") for a name the platform does not send."""
    kind = KINDS.get(name)
    if kind is None:
        raise CommandError("name", f"expected one of {', '.join(KINDS)}, got {name!r}")
    return kind


def checked_body(name: str, body: dict[str, Any], *, text_max_bytes: int) -> dict[str, Any]:
    """The body of a ``name`` command as it goes out, after every check.

    Raises:
        CommandError: unknown name (field ``name``), a body not of the name's shape, a text too
            long or not GBK, a parameter name unknown or not settable, a value out of its range
            (field ``body.<...>``, the message names the parameter, its id, range and value).
    """
    kind = kind_of(name)
    try:
        model = kind.body.model_validate(body)
    except ValidationError as error:
        item = error.errors()[0]
        where = ".".join(str(p) for p in item["loc"])
        raise CommandError(
            f"body.{where}" if where else "body", f"{item['msg']}, got {item.get('input')!r}"
        ) from None
    try:
        if isinstance(model, TextBody):
            text_gbk(model.text, text_max_bytes)
        elif isinstance(model, SetParamsBody):
            return {"params": check_settings(model.params)}
        elif isinstance(model, QueryParamsBody):
            names_to_ids(model.names)
    except ParameterError as error:
        raise CommandError(f"body.{error.field}", error.detail) from None
    except CommandError as error:
        raise CommandError(f"body.{error.field}", error.detail) from None
    return model.model_dump()
