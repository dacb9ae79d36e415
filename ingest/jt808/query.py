"""JT/T 808 position query and temporary tracking (JT/T 808-2013 sections 8.19-8.21, 2019 alike).

- 0x8201 position query: empty body; answered by
- 0x0201 position query answer: the query's serial u16, then a 0x0200 location body. Its
  position also goes into the normal position path (published like a 0x0200).
- 0x8202 temporary tracking: interval u16 (s; 0 stops tracking), validity u32 (s). The terminal
  answers 0x0001 and then reports 0x0200 every ``interval_s`` for ``duration_s``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ingest.jt808 import messages as m
from ingest.jt808.codec import FrameError

MSG_QUERY_POSITION = 0x8201
MSG_POSITION_ANSWER = 0x0201
MSG_TRACK = 0x8202


@dataclass(frozen=True, slots=True)
class PositionAnswer:
    """A 0x0201 body: the serial of the 0x8201 it answers and the location report."""

    answer_serial: int
    report: m.LocationReport
    report_bytes: bytes  # the 0x0200 body inside, as received


def decode_position_answer(body: bytes) -> PositionAnswer:
    """0x0201 body -> :class:`PositionAnswer`.

    Raises:
        FrameError(reason="body"): shorter than 2 + 28 bytes, or a bad location body.
    """
    if len(body) < 2 + m.LOCATION_BASE_BYTES:
        raise FrameError("body", f"0x0201: expected >= 30 bytes, got {len(body)}")
    (serial,) = struct.unpack_from(">H", body, 0)
    return PositionAnswer(serial, m.decode_location(body[2:]), body[2:])


def encode_position_answer(answer_serial: int, report: m.LocationReport) -> bytes:
    """0x0201 body (terminal side)."""
    return struct.pack(">H", answer_serial & 0xFFFF) + m.encode_location(report)


def encode_track(interval_s: int, duration_s: int) -> bytes:
    """0x8202 body: interval u16 s, validity u32 s.

    Raises:
        FrameError(reason="body"): a value outside its field.
    """
    if not (0 <= interval_s <= 0xFFFF and 0 <= duration_s <= 0xFFFFFFFF):
        raise FrameError("body", f"0x8202: expected u16, u32; got {interval_s}, {duration_s}")
    return struct.pack(">HI", interval_s, duration_s)


def decode_track(body: bytes) -> tuple[int, int]:
    """0x8202 body -> (interval_s, duration_s)."""
    if len(body) != 6:
        raise FrameError("body", f"0x8202: expected 6 bytes, got {len(body)}")
    interval_s, duration_s = struct.unpack(">HI", body)
    return interval_s, duration_s
