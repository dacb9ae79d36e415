"""Smaller JT/T 808 messages (issue 12 item 9), JT/T 808-2013/2019 section numbers in brackets.

- 0x0004 query server time (2019, 8.5): empty body; answered by
- 0x8004 server time answer: UTC time as BCD[6] YYMMDDhhmmss (the 2019 table calls it UTC
  time, as yezhihao/jt808-server's T8004 does; unlike 0x0200 times, which are GMT+8).
- 0x0900 data pass-through up (8.62) / 0x8900 down (8.61): type u8, content (opaque bytes).
- 0x0705 CAN bus data (8.50): item count u16, receive time of the first item BCD[5]
  hhmmss + milliseconds (4 digits, terminal's local time, no date), then per item the CAN id
  u32 (bit 31 channel 0/1, bit 30 frame type 0 standard / 1 extended, bit 29 data collection
  0 raw / 1 average, bits 28-0 bus id) and 8 data bytes.
- 0x0108 terminal upgrade result (8.16): upgrade type u8 (0 terminal, 12 road transport IC card
  reader, 52 GNSS module), result u8 (0 success, 1 failed, 2 cancelled).
- 0x8105 terminal control (8.13): command word u8, then the command's parameters as one GBK
  string separated by ";" (none for 4 reset and 5 factory reset).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ingest.jt808.codec import FrameError, bcd_to_digits, digits_to_bcd

MSG_QUERY_TIME = 0x0004
MSG_TIME_ANSWER = 0x8004
MSG_PASS_THROUGH_UP = 0x0900
MSG_PASS_THROUGH_DOWN = 0x8900
MSG_CAN_DATA = 0x0705
MSG_UPGRADE_RESULT = 0x0108
MSG_TERMINAL_CONTROL = 0x8105

CONTROL_RESET = 4
CONTROL_FACTORY_RESET = 5
UPGRADE_TYPES = {0: "terminal", 12: "ic_card_reader", 52: "gnss_module"}
UPGRADE_RESULTS = {0: "success", 1: "failed", 2: "cancelled"}


def encode_time_answer(now: datetime) -> bytes:
    """0x8004 body: ``now`` in UTC as BCD YYMMDDhhmmss."""
    return digits_to_bcd(now.astimezone(UTC).strftime("%y%m%d%H%M%S"), 6)


def decode_time_answer(body: bytes) -> datetime:
    """0x8004 body -> UTC datetime (terminal side).

    Raises:
        FrameError(reason="body"): not 6 BCD bytes of a date and time.
    """
    if len(body) != 6 or not body.hex().isdigit():
        raise FrameError("body", f"0x8004: expected BCD[6] YYMMDDhhmmss, got {body.hex()}")
    try:
        return datetime.strptime(bcd_to_digits(body), "%y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError as error:
        raise FrameError("body", f"0x8004: {error}") from None


@dataclass(frozen=True, slots=True)
class PassThrough:
    """A 0x0900 / 0x8900 body: pass-through type and the opaque content."""

    pass_type: int
    content: bytes


def decode_pass_through(body: bytes) -> PassThrough:
    if not body:
        raise FrameError("body", "0x0900: expected a type byte, got an empty body")
    return PassThrough(body[0], body[1:])


def encode_pass_through(pass_type: int, content: bytes) -> bytes:
    return bytes([pass_type & 0xFF]) + content


@dataclass(frozen=True, slots=True)
class CanItem:
    can_id: int
    data: bytes

    def as_json(self) -> dict[str, Any]:
        return {
            "can_id": f"0x{self.can_id:08x}",
            "channel": (self.can_id >> 31) & 1,
            "extended_frame": bool(self.can_id >> 30 & 1),
            "averaged": bool(self.can_id >> 29 & 1),
            "bus_id": f"0x{self.can_id & 0x1FFFFFFF:08x}",
            "data_hex": self.data.hex(),
        }


@dataclass(frozen=True, slots=True)
class CanData:
    """A 0x0705 body: the first item's receive time as sent (``first_received_bcd``, 10 digits
    hhmmss + milliseconds) and read (``first_received`` ``hh:mm:ss.mmm``, terminal's local
    time; None when the digits are no time of day), and the items."""

    first_received_bcd: str
    first_received: str | None
    items: tuple[CanItem, ...]


def decode_can_data(body: bytes) -> CanData:
    """0x0705 body -> :class:`CanData`.

    Raises:
        FrameError(reason="body"): shorter than 7 bytes, a time that is not BCD, or a body
            that is not count x 12 bytes after the header.
    """
    if len(body) < 7 or not body[2:7].hex().isdigit():
        raise FrameError("body", f"0x0705: expected count u16 + BCD[5] time, got {body[:7].hex()}")
    (count,) = struct.unpack_from(">H", body, 0)
    digits = bcd_to_digits(body[2:7])
    if len(body) != 7 + 12 * count:
        raise FrameError(
            "body",
            f"0x0705: count says {count} items ({7 + 12 * count} bytes), got {len(body)} bytes",
        )
    items = tuple(
        CanItem(struct.unpack_from(">I", body, 7 + 12 * i)[0], body[11 + 12 * i : 19 + 12 * i])
        for i in range(count)
    )
    hh, mm, ss, ms = int(digits[0:2]), int(digits[2:4]), int(digits[4:6]), int(digits[6:10])
    valid = hh < 24 and mm < 60 and ss < 60 and ms < 1000
    stamp = f"{hh:02d}:{mm:02d}:{ss:02d}.{ms:03d}" if valid else None
    return CanData(digits, stamp, items)


def encode_can_data(first_received_digits: str, items: list[CanItem]) -> bytes:
    """0x0705 body (terminal side); ``first_received_digits`` = hhmmss + 4 digits of ms."""
    out = struct.pack(">H", len(items)) + digits_to_bcd(first_received_digits, 5)
    for item in items:
        out += struct.pack(">I", item.can_id) + item.data[:8].ljust(8, b"\x00")
    return out


def decode_upgrade_result(body: bytes) -> dict[str, Any]:
    """0x0108 body -> ``{"upgrade_type", "result"}`` (names; the codes when not standard)."""
    if len(body) != 2:
        raise FrameError("body", f"0x0108: expected 2 bytes, got {len(body)}")
    return {
        "upgrade_type": UPGRADE_TYPES.get(body[0], body[0]),
        "result": UPGRADE_RESULTS.get(body[1], body[1]),
    }


def encode_terminal_control(command_word: int, parameters: str = "") -> bytes:
    """0x8105 body: command word u8 + parameters (GBK)."""
    return bytes([command_word & 0xFF]) + parameters.encode("gbk")


def decode_terminal_control(body: bytes) -> tuple[int, str]:
    if not body:
        raise FrameError("body", "0x8105: expected a command word, got an empty body")
    return body[0], body[1:].decode("gbk", errors="replace")
