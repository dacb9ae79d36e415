"""JT/T 808 terminal parameter messages (JT/T 808-2013 sections 8.8-8.11, 2019 alike).

- 0x8103 set parameters: count u8, then items (id u32, length u8, value).
- 0x8104 query all parameters: empty body.
- 0x8106 query given parameters: count u8, then ids u32.
- 0x0104 the terminal's answer to either: the query's serial u16, count u8, then items.

Values are read with the parameter table of :mod:`gps_monitor.terminal_params` (typed, units
converted); an id we do not know, or a known id whose length does not fit its type, is kept as
its raw bytes in hex, never dropped. A 0x0104 whose item count does not match the items in the
body (fewer items than the count, or bytes left over) is refused as a whole with the reason: a
count that lies means the list cannot be trusted.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from gps_monitor.terminal_params import BY_ID, BY_NAME, WIRE_BYTES, Parameter, WireType
from ingest.jt808.codec import FrameError

MSG_SET_PARAMS = 0x8103
MSG_QUERY_PARAMS = 0x8104
MSG_QUERY_SOME_PARAMS = 0x8106
MSG_PARAMS_ANSWER = 0x0104


@dataclass(frozen=True, slots=True)
class ParamItem:
    """One parameter item as on the wire: id and value bytes."""

    param_id: int
    value: bytes


@dataclass(frozen=True, slots=True)
class ParamsAnswer:
    """A 0x0104 body: the serial of the 0x8104/0x8106 it answers and the items in order."""

    answer_serial: int
    items: tuple[ParamItem, ...]


def encode_items(items: list[ParamItem]) -> bytes:
    """Count u8 + items (the body of 0x8103, and of 0x0104 after its serial).

    Raises:
        FrameError(reason="body"): more than 255 items or a value longer than 255 bytes.
    """
    if len(items) > 255:
        raise FrameError("body", f"expected at most 255 parameters, got {len(items)}")
    out = bytearray([len(items)])
    for item in items:
        if len(item.value) > 255:
            raise FrameError(
                "body", f"0x{item.param_id:04x}: expected <= 255 bytes, got {len(item.value)}"
            )
        out += struct.pack(">IB", item.param_id, len(item.value)) + item.value
    return bytes(out)


def decode_items(body: bytes, offset: int, what: str) -> tuple[ParamItem, ...]:
    """Count u8 at ``offset`` and exactly that many items filling the rest of ``body``.

    Raises:
        FrameError(reason="body"): the body ends before the count's items, or bytes are left
            after them (the count lies).
    """
    if len(body) < offset + 1:
        raise FrameError("body", f"{what}: expected a parameter count at byte {offset}, got none")
    count = body[offset]
    at = offset + 1
    items = []
    for i in range(count):
        if at + 5 > len(body):
            raise FrameError(
                "body", f"{what}: count says {count} parameters, the body ends in item {i + 1}"
            )
        param_id, length = struct.unpack_from(">IB", body, at)
        if at + 5 + length > len(body):
            raise FrameError(
                "body",
                f"{what}: count says {count} parameters, item {i + 1} (0x{param_id:04x}) "
                f"expects {length} bytes, {len(body) - at - 5} left",
            )
        items.append(ParamItem(param_id, body[at + 5 : at + 5 + length]))
        at += 5 + length
    if at != len(body):
        raise FrameError(
            "body", f"{what}: count says {count} parameters, {len(body) - at} bytes left after them"
        )
    return tuple(items)


def decode_set(body: bytes) -> tuple[ParamItem, ...]:
    """0x8103 body -> items (the terminal's side: the simulator)."""
    return decode_items(body, 0, "0x8103")


def encode_query_some(param_ids: list[int]) -> bytes:
    """0x8106 body: count u8, ids u32."""
    if not 1 <= len(param_ids) <= 255:
        raise FrameError("body", f"0x8106: expected 1 to 255 ids, got {len(param_ids)}")
    return bytes([len(param_ids)]) + b"".join(struct.pack(">I", i) for i in param_ids)


def decode_query_some(body: bytes) -> list[int]:
    """0x8106 body -> ids.

    Raises:
        FrameError(reason="body"): length other than 1 + 4 x count.
    """
    if not body or len(body) != 1 + 4 * body[0]:
        raise FrameError("body", f"0x8106: expected count u8 + count x u32, got {body.hex()}")
    return [struct.unpack_from(">I", body, 1 + 4 * i)[0] for i in range(body[0])]


def decode_answer(body: bytes) -> ParamsAnswer:
    """0x0104 body -> :class:`ParamsAnswer`.

    Raises:
        FrameError(reason="body"): shorter than 3 bytes, or a count that does not match the
            items (see :func:`decode_items`).
    """
    if len(body) < 3:
        raise FrameError("body", f"0x0104: expected >= 3 bytes, got {len(body)}")
    (serial,) = struct.unpack_from(">H", body, 0)
    return ParamsAnswer(serial, decode_items(body, 2, "0x0104"))


def encode_answer(answer_serial: int, items: list[ParamItem]) -> bytes:
    """0x0104 body (terminal side)."""
    return struct.pack(">H", answer_serial & 0xFFFF) + encode_items(items)


# ---------------------------------------------------------------------- values <-> our units


def encode_value(parameter: Parameter, value: float | int | str) -> bytes:
    """A value in our unit as the parameter's wire bytes (numbers scaled: 80.5 km/h -> 805)."""
    if parameter.wire is WireType.STRING:
        return str(value).encode("gbk")
    wire = round(float(value) * parameter.scale)
    return wire.to_bytes(WIRE_BYTES[parameter.wire], "big")


def setting_items(values: dict[str, float | int]) -> list[ParamItem]:
    """Checked settings by name (:func:`gps_monitor.terminal_params.check_settings`) -> items."""
    return [ParamItem(BY_NAME[n].param_id, encode_value(BY_NAME[n], v)) for n, v in values.items()]


def read_item(item: ParamItem) -> dict[str, Any]:
    """One item as JSON: ``{"id": "0x0055", "name": "overspeed_limit_kmh", "value": 80}``; an
    unknown id, or a known one whose bytes do not fit its type, as ``{"id", "raw_hex"}`` (plus
    ``name`` and ``problem`` when known)."""
    out: dict[str, Any] = {"id": f"0x{item.param_id:04x}"}
    parameter = BY_ID.get(item.param_id)
    if parameter is None:
        out["raw_hex"] = item.value.hex()
        return out
    out["name"] = parameter.name
    value = item.value
    if parameter.wire is WireType.STRING:
        try:
            out["value"] = value.rstrip(b"\x00").decode("gbk")
        except UnicodeDecodeError:
            out["raw_hex"] = value.hex()
            out["problem"] = "expected GBK text"
        return out
    size = WIRE_BYTES[parameter.wire]
    if len(value) != size:
        out["raw_hex"] = value.hex()
        out["problem"] = f"expected {size} bytes ({parameter.wire}), got {len(value)}"
        return out
    number = int.from_bytes(value, "big")
    out["value"] = number if parameter.scale == 1 else number / parameter.scale
    return out


def answer_body(answer: ParamsAnswer) -> dict[str, Any]:
    """The ``cmd_result`` body of a 0x0104: ``{"answer_serial", "count", "params": [...]}``
    (items as :func:`read_item`, in the terminal's order)."""
    return {
        "answer_serial": answer.answer_serial,
        "count": len(answer.items),
        "params": [read_item(i) for i in answer.items],
    }
