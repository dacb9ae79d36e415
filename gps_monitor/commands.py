"""The downlink command channel: what the platform asks a terminal to do, and its answer.

Contract (README, MQTT contract; topics in :mod:`gps_monitor.topics`):

- The platform publishes one command at QoS 1 on ``cmd/v1/{terminal_id}/{name}``::

      {"command_id": "6f1c…", "name": "text", "created_at": "2026-…Z", "expires_at": "2026-…Z",
       "body": {"text": "您已超速行驶，请减速慢行", "emergency": false, "display": true,
                "tts": true}}

- The terminal (or the JT/T 808 gateway in front of it) answers at QoS 1 on
  ``gps/v1/{terminal_id}/cmd_result``: ``{"command_id": "6f1c…", "result": 0}`` with ``result``
  0 ok, 1 failed, 2 bad message, 3 unsupported (the JT/T 808 0x0001 general response codes),
  optionally ``answered_at`` (ISO 8601), ``detail`` and ``body`` (a JSON object: what the
  terminal answered besides its result, e.g. the parameter list of a 0x0104 or the position of a
  0x0201; stored on the command row as ``result_body``).
- Presence: ``gps/v1/{terminal_id}/status`` ``{"online": true|false}`` (the gateway publishes it
  as a terminal authenticates and as its connection ends; an MQTT terminal publishes ``true``
  after connecting and sets ``false`` as its will).

A command's state (table ``commands``): ``queued`` (created; its terminal is offline or it is not
yet dispatched) -> ``sent`` (published while the terminal was online) -> ``acknowledged`` (result
0) / ``failed`` (result 1-3) / ``expired`` (no answer by ``expires_at``). An answer that arrives
after expiry still records what the terminal said.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum, StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gps_monitor.errors import GpsMonitorError, PayloadError

TEXT = "text"  #: 0x8300 text message to the driver (every name: gps_monitor.command_kinds)


class CommandState(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    ACKNOWLEDGED = "acknowledged"
    FAILED = "failed"
    EXPIRED = "expired"


FINAL_STATES: frozenset[CommandState] = frozenset(
    {CommandState.ACKNOWLEDGED, CommandState.FAILED, CommandState.EXPIRED}
)


class CommandResult(IntEnum):
    """The terminal's answer (JT/T 808-2013 section 8.1, 0x0001 general response)."""

    OK = 0
    FAILED = 1
    BAD_MESSAGE = 2
    UNSUPPORTED = 3


class CommandError(GpsMonitorError):
    """A command cannot be built as asked (too long, not encodable, unknown name...).

    ``field`` names the offending field of the request.
    """

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


class TextBody(BaseModel):
    """Body of a ``text`` command (JT/T 808 0x8300 flags: bit 0 emergency, bit 2 terminal
    display, bit 3 TTS read aloud)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str = Field(min_length=1, description="Shown and/or read aloud to the driver (GBK).")
    emergency: bool = False
    display: bool = True
    tts: bool = True


def text_gbk(text: str, max_bytes: int) -> bytes:
    """``text`` encoded as GBK (JT/T 808 STRING), checked against the terminal's limit.

    Raises:
        CommandError(field="text"): empty, a character GBK cannot encode (named with its
            position and code point), or longer than ``max_bytes`` GBK bytes.
    """
    if not text:
        raise CommandError("text", "expected at least one character, got an empty text")
    try:
        raw = text.encode("gbk")
    except UnicodeEncodeError as error:
        char = text[error.start]
        raise CommandError(
            "text",
            f"expected characters GBK can encode (JT/T 808 text is GBK), got {char!r} "
            f"(U+{ord(char):04X}) at position {error.start + 1}",
        ) from None
    if len(raw) > max_bytes:
        raise CommandError(
            "text",
            f"expected at most {max_bytes} bytes in GBK (the terminal's limit; a Chinese "
            f"character takes 2), got {len(raw)}",
        )
    return raw


def checked_expiry_s(expiry_s: float, min_expiry_s: float, max_expiry_s: float) -> float:
    """``expiry_s`` (seconds from creation) if within ``min_expiry_s`` .. ``max_expiry_s``.

    Raises:
        CommandError(field="expires_in_s"): outside the bounds (or not a number), naming them.
    """
    if not min_expiry_s <= expiry_s <= max_expiry_s:
        raise CommandError(
            "expires_in_s",
            f"expected {min_expiry_s:g} to {max_expiry_s:g} seconds, got {expiry_s:g}",
        )
    return expiry_s


@dataclass(frozen=True, slots=True)
class Command:
    """One command as published on ``cmd/v1/{terminal_id}/{name}``."""

    command_id: str
    terminal_id: str
    name: str
    body: dict[str, Any]
    created_at: datetime
    expires_at: datetime

    def to_message(self) -> bytes:
        """The MQTT payload (UTF-8 JSON, times ISO 8601 UTC)."""
        return json.dumps(
            {
                "command_id": self.command_id,
                "name": self.name,
                "created_at": _iso(self.created_at),
                "expires_at": _iso(self.expires_at),
                "body": self.body,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()


def new_command_id() -> str:
    return str(uuid.uuid4())


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class _CommandMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    command_id: str = Field(min_length=1, max_length=64)
    name: str | None = None
    created_at: datetime
    expires_at: datetime
    body: dict[str, Any]


def parse_command(terminal_id: str, name: str, payload: bytes) -> Command:
    """A ``cmd/v1`` message back into a :class:`Command` (the gateway's side).

    Raises:
        PayloadError(reason="malformed_command"): not JSON of the contract's shape.
    """
    try:
        data = _CommandMessage.model_validate_json(payload)
    except ValidationError as error:
        raise PayloadError("malformed_command", _first_error(error)) from None
    return Command(data.command_id, terminal_id, name, data.body, data.created_at, data.expires_at)


class CommandAnswer(BaseModel):
    """A ``gps/v1/{terminal_id}/cmd_result`` message."""

    model_config = ConfigDict(extra="ignore")

    command_id: str = Field(min_length=1, max_length=64)
    result: CommandResult
    answered_at: datetime | None = None
    detail: str | None = Field(default=None, max_length=2000)
    body: dict[str, Any] | None = None


class PresenceMessage(BaseModel):
    """A ``gps/v1/{terminal_id}/status`` message."""

    model_config = ConfigDict(extra="ignore")

    online: bool


def parse_answer(payload: bytes) -> CommandAnswer:
    """Raises PayloadError(reason="malformed_answer") when not the contract's shape."""
    try:
        return CommandAnswer.model_validate_json(payload)
    except ValidationError as error:
        raise PayloadError("malformed_answer", _first_error(error)) from None


def parse_presence(payload: bytes) -> PresenceMessage:
    """Raises PayloadError(reason="malformed_status") when not the contract's shape."""
    try:
        return PresenceMessage.model_validate_json(payload)
    except ValidationError as error:
        raise PayloadError("malformed_status", _first_error(error)) from None


def answer_message(
    command_id: str,
    result: int,
    answered_at: datetime,
    detail: str = "",
    body: dict[str, Any] | None = None,
) -> bytes:
    """The ``cmd_result`` payload a gateway publishes for a terminal's answer (``body``: what
    the terminal answered besides the result, when it did)."""
    out: dict[str, Any] = {
        "command_id": command_id,
        "result": int(result),
        "answered_at": _iso(answered_at),
    }
    if detail:
        out["detail"] = detail
    if body is not None:
        out["body"] = body
    return json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode()


def presence_message(online: bool) -> bytes:
    return json.dumps({"online": online, "at": _iso(datetime.now(UTC))}).encode()


def _first_error(error: ValidationError) -> str:
    item = error.errors()[0]
    where = ".".join(str(p) for p in item["loc"]) or "payload"
    return f"{where}: {item['msg']}, got {str(item.get('input'))[:80]!r}"


def state_for_result(result: int) -> CommandState:
    return CommandState.ACKNOWLEDGED if result == CommandResult.OK else CommandState.FAILED


def build_text(
    terminal_id: str,
    body: TextBody,
    *,
    text_max_bytes: int,
    expiry_s: float,
    now: datetime | None = None,
) -> Command:
    """A new ``text`` command to ``terminal_id`` expiring ``expiry_s`` seconds from ``now``.

    Raises:
        CommandError(field="text"): see :func:`text_gbk`.
    """
    text_gbk(body.text, text_max_bytes)
    created_at = now or datetime.now(UTC)
    return Command(
        command_id=new_command_id(),
        terminal_id=terminal_id,
        name=TEXT,
        body=body.model_dump(),
        created_at=created_at,
        expires_at=created_at + timedelta(seconds=expiry_s),
    )


def build_command(
    terminal_id: str,
    name: str,
    body: dict[str, Any],
    *,
    expiry_s: float,
    now: datetime | None = None,
) -> Command:
    """A new command ``name`` with an already checked ``body`` (see
    :func:`gps_monitor.command_kinds.checked_body`), expiring ``expiry_s`` seconds from ``now``."""
    created_at = now or datetime.now(UTC)
    return Command(
        new_command_id(), terminal_id, name, body, created_at,
        created_at + timedelta(seconds=expiry_s),
    )  # fmt: skip


def remind_text(templates: dict[str, str], default: str, alarm_type: str, name: str | None) -> str:
    """The 提醒驾驶员 template of an alarm: ``device_alarm.<name>`` (e.g. ``device_alarm.sos``)
    first for a terminal's own alarm, then the alarm type, then ``default``."""
    if name:
        specific = templates.get(f"{alarm_type}.{name}")
        if specific:
            return specific
    return templates.get(alarm_type) or default
