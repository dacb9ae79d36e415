"""MQTT message -> positions: size, JSON and contract checks (gps_monitor.payload).

A message is accepted or rejected as a whole: one bad element rejects a batch message (its raw
bytes are kept in ``rejected_messages`` with the index and field of the first bad element).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from gps_monitor import fastjson
from gps_monitor.config import IngestSettings
from gps_monitor.errors import PayloadError
from gps_monitor.models import Position
from gps_monitor.payload import parse_position, shown
from gps_monitor.topics import InboundKind


def check_size(payload: bytes, settings: IngestSettings) -> None:
    """Raises PayloadError(reason="oversize") above ``max_payload_bytes``."""
    if len(payload) > settings.max_payload_bytes:
        raise PayloadError(
            "oversize",
            f"payload: expected at most {settings.max_payload_bytes} bytes, got {len(payload)}",
        )


def decode_positions(
    payload: bytes,
    kind: InboundKind,
    terminal_id: str,
    received_at: datetime,
    settings: IngestSettings,
    vehicle_id: int | None = None,
    company_id: int | None = None,
) -> list[Position]:
    """Decode one inbound message into its positions (in message order).

    Args:
        payload: the raw MQTT payload (UTF-8 JSON).
        kind: ``position`` (one JSON object) or ``batch`` (a non-empty JSON array of them).
        terminal_id: the topic's terminal.
        received_at: arrival time (UTC), stamped on every position.
        vehicle_id, company_id: the terminal's vehicle and its company, set on every position
            when given (ingest has looked them up: no copy of each position to set them).

    Raises:
        PayloadError: ``oversize`` (bytes, or more than ``max_batch_positions`` elements),
            ``too_deep`` (values nested deeper than ``max_extras_depth`` levels),
            ``malformed_json`` (not UTF-8 JSON), ``wrong_type`` (not an object / array, a value
            of the wrong type or range, a NUL character in any string or key, NaN or an
            infinite number in ``extras``),
            ``missing_field``, ``out_of_range`` (a fix time outside the supported years, a
            speed, altitude or mileage outside what JT/T 808 can carry).
    """
    check_size(payload, settings)
    try:
        data: Any = fastjson.loads(payload)
    except RecursionError:
        raise PayloadError(
            "too_deep",
            f"payload: expected JSON objects/arrays nested at most {settings.max_extras_depth} "
            "levels inside a position (extras is level 1), got more than the parser follows",
        ) from None
    except UnicodeDecodeError as error:
        raise PayloadError("malformed_json", f"payload: expected UTF-8 JSON, got {error}") from None
    except json.JSONDecodeError as error:
        raise PayloadError(
            "malformed_json",
            f"payload: expected JSON, got {error.msg} at line {error.lineno} column {error.colno}",
        ) from None
    except ValueError as error:  # json.loads refuses an integer of more than 4,300 digits
        raise PayloadError("malformed_json", f"payload: expected JSON, got {error}") from None
    if b"\\u0000" in payload:  # the only way JSON can carry a NUL; PostgreSQL text refuses it
        _refuse_nul(data, "")
    if b"NaN" in payload or b"Infinity" in payload:  # not JSON; PostgreSQL's jsonb refuses them
        for where, item in [("", data)] if kind == "position" else _items(data):
            if isinstance(item, dict) and "extras" in item:
                _refuse_non_finite(item["extras"], f"{where}extras")
    # n brackets hold at most n - 1 containers inside a position, so no deeper nesting: the
    # walk is skipped for the usual flat position (counting bytes is far cheaper than it)
    shallow = payload.count(b"{") + payload.count(b"[") <= settings.max_extras_depth + 1
    if kind == "position":
        if not shallow:
            check_depth(data, settings.max_extras_depth, "")
        return [parse_position(data, terminal_id, received_at, "", vehicle_id, company_id)]
    if not isinstance(data, list):
        raise PayloadError(
            "wrong_type", f"batch payload: expected a JSON array, got {type(data).__name__}"
        )
    if not data:
        raise PayloadError("wrong_type", "batch payload: expected a non-empty array, got []")
    if len(data) > settings.max_batch_positions:
        raise PayloadError(
            "oversize",
            f"batch payload: expected at most {settings.max_batch_positions} positions, "
            f"got {len(data)}",
        )
    if not shallow:
        for i, item in enumerate(data):
            check_depth(item, settings.max_extras_depth, f"[{i}]")
    return [
        parse_position(item, terminal_id, received_at, f"[{i}].", vehicle_id, company_id)
        for i, item in enumerate(data)
    ]


def decode_contact(payload: bytes, settings: IngestSettings) -> None:
    """Check a contact message (``gps/v1/{terminal_id}/heartbeat``): empty, or one JSON object
    (e.g. the gateway's ``{"msg_id": "0x0002"}``; its members are for logs and not stored).

    Raises:
        PayloadError: ``oversize``, ``malformed_json`` (not UTF-8 JSON), ``wrong_type`` (JSON
            but not an object), ``too_deep``.
    """
    check_size(payload, settings)
    if not payload.strip():
        return
    try:
        data: Any = fastjson.loads(payload)
    except RecursionError:
        raise PayloadError("too_deep", "heartbeat payload: nested too deep to parse") from None
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError, an over-long integer
        raise PayloadError(
            "malformed_json", f"heartbeat payload: expected empty or a JSON object, got {error}"
        ) from None
    if not isinstance(data, dict):
        raise PayloadError(
            "wrong_type",
            f"heartbeat payload: expected empty or a JSON object, got {type(data).__name__}",
        )
    check_depth(data, settings.max_extras_depth, "")


def check_depth(position: Any, max_extras_depth: int, where: str) -> None:
    """Refuse a position object whose values nest deeper than ``max_extras_depth`` levels of
    JSON objects/arrays (``extras`` itself is level 1; unknown fields count the same).

    Walks iteratively, so any depth the JSON parser produced is measured without recursion.
    Only objects and arrays are visited and a path is only spelled out for them: a flat
    position (the usual case) costs one type check per field.

    Raises:
        PayloadError(reason="too_deep"): names the path where the limit is passed.
    """
    if not isinstance(position, dict):
        return  # parse_position says what is wrong with it
    containers = dict | list
    stack: list[tuple[Any, str, int]] = [(v, f"{where}.{k}" if where else k, 1)
                                         for k, v in position.items()
                                         if isinstance(v, containers)]  # fmt: skip
    while stack:
        value, path, depth = stack.pop()
        if depth > max_extras_depth:
            raise PayloadError(
                "too_deep",
                f"{path[:200]}: expected JSON objects/arrays nested at most {max_extras_depth} "
                f"levels inside a position (extras is level 1), got level {depth}",
            )
        if isinstance(value, dict):
            stack.extend((v, f"{path}.{k}", depth + 1) for k, v in value.items()
                         if isinstance(v, containers))  # fmt: skip
        else:
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)
                         if isinstance(v, containers))  # fmt: skip


def _items(data: Any) -> list[tuple[str, Any]]:
    """``("[i].", element)`` of a batch payload's array (nothing when it is not one: the
    checks after say what is wrong with it)."""
    return [(f"[{i}].", item) for i, item in enumerate(data)] if isinstance(data, list) else []


def _values(value: Any, where: str) -> Iterator[tuple[str, Any]]:
    """``value`` and every value inside it, each with its path (``where`` for ``value``;
    ``.key`` and ``[i]`` below), in document order. Iterative: any depth the parser produced
    is walked without recursion."""
    stack: list[tuple[str, Any]] = [(where, value)]
    while stack:
        path, item = stack.pop()
        yield path, item
        if isinstance(item, dict):
            stack.extend((f"{path}.{k}" if path else str(k), v) for k, v in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", v) for i, v in reversed(list(enumerate(item))))


def _refuse_non_finite(value: Any, where: str) -> None:
    """Raises PayloadError(reason="wrong_type") at the first NaN or infinite number in
    ``value`` (a position's ``extras``, at ``where``), which the parser takes but JSON has
    none of, and which ``extras``, stored as jsonb, cannot hold (before, such a message failed
    its batch's transaction and was set aside only when stored alone). The position's own
    fields say so themselves."""
    for path, item in _values(value, where):
        if isinstance(item, float) and not math.isfinite(item):
            raise PayloadError(
                "wrong_type", f"{_place(path)}: expected a finite number, got {shown(item)}"
            )


def _refuse_nul(value: Any, where: str) -> None:
    """Raises PayloadError(reason="wrong_type") at the first string or key holding U+0000."""
    for path, item in _values(value, where):
        if isinstance(item, str) and "\x00" in item:
            raise PayloadError(
                "wrong_type",
                f"{_place(path)}: expected text without NUL characters, got {shown(item)}",
            )
        if isinstance(item, dict):
            for key in item:
                if "\x00" in key:
                    raise PayloadError(
                        "wrong_type",
                        f"{_place(path)}: expected keys without NUL characters, got key "
                        f"{shown(key)}",
                    )


def _place(path: str, limit: int = 100) -> str:
    """A value's path for an error detail, its middle cut when long (a value nested deep), so
    that what was expected and what came still follow it."""
    if not path:
        return "payload"
    return path if len(path) <= limit else f"{path[: limit // 2]}...{path[-(limit // 2) :]}"
