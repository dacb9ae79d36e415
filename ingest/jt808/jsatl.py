"""T/JSATL 12-2017 ("苏标") wire formats: the 0x0200 items 0x64-0x67 and the attachment
messages 0x9208, 0x1210, 0x1211, 0x1212, 0x9212 and the file data frame.

Checked against SmallChi/JT808's JT808.Protocol.Extensions.SuBiao test vectors
(``tests/test_jt808_active_safety.py`` names each). Layouts (big-endian; lat/lon 1e-6 degree,
speed km/h, altitude m, time BCD YYMMDDhhmmss GMT+8)::

    identification (16): terminal id ASCII[7], time BCD[6], sequence u8, attachments u8, reserved u8
    0x64 ADAS (47): alarm id u32, flag u8, type u8, level u8, front vehicle speed u8, front
          distance u8 (100 ms), departure type u8, road sign type u8, road sign data u8, speed u8,
          altitude u16, lat u32, lon u32, time BCD[6], vehicle status u16, identification
    0x65 DSM (47): alarm id u32, flag, type, level, fatigue degree u8, reserved[4], speed u8,
          altitude, lat, lon, time, vehicle status, identification
    0x66 tyre: alarm id u32, flag, speed u8, altitude, lat, lon, time, vehicle status,
          identification, count u8, count x (position u8, alarm type u16, pressure u16 kPa,
          temperature u16 degC, battery u16 %)
    0x67 blind spot (41): alarm id u32, flag, type u8, speed u8, altitude, lat, lon, time,
          vehicle status, identification
    0x9208: server IP length u8, IP, TCP port u16, UDP port u16, identification, alarm number
          ASCII[32], reserved[16]
    0x1210: terminal id[7], identification, alarm number[32], info type u8, count u8,
          count x (name length u8, name, size u32)
    0x1211 / 0x1212: name length u8, name, file type u8, size u32
    0x9212: name length u8, name, file type u8, result u8 (0 done, 1 resend), count u8,
          count x (offset u32, length u32)
    data frame: 30 31 63 64, name[50] (NUL padded), offset u32, length u32, data
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from gps_monitor.active_safety import ITEM_SOURCES, type_name
from ingest.jt808.codec import FrameError

MSG_ATTACHMENT_INFO = 0x1210
MSG_FILE_INFO = 0x1211
MSG_FILE_DONE = 0x1212
MSG_ATTACHMENT_REQUEST = 0x9208
MSG_FILE_DONE_REPLY = 0x9212
DATA_MAGIC = b"\x30\x31\x63\x64"
DATA_HEAD_BYTES = 4 + 50 + 4 + 4
IDENTIFICATION_BYTES = 16


def _bcd(raw: bytes) -> str:
    return raw.hex()


@dataclass(frozen=True, slots=True)
class Identification:
    """报警标识号: the terminal's own id, the alarm's BCD time, sequence, attachment count."""

    terminal_id: str
    bcd_time: str
    sequence: int
    attachments: int
    reserved: int = 0

    def encode(self) -> bytes:
        return (
            self.terminal_id.encode("ascii")[:7].ljust(7, b"\x00")
            + bytes.fromhex(self.bcd_time)
            + bytes([self.sequence, self.attachments, self.reserved])
        )


def decode_identification(raw: bytes) -> Identification:
    if len(raw) < IDENTIFICATION_BYTES:
        raise FrameError("body", f"alarm identification: expected 16 bytes, got {len(raw)}")
    return Identification(
        raw[:7].rstrip(b"\x00").decode("ascii", errors="replace"),
        _bcd(raw[7:13]),
        raw[13],
        raw[14],
        raw[15],
    )


def _tail(value: bytes, offset: int, out: dict[str, Any]) -> int:
    """speed u8, altitude u16, lat u32, lon u32, time BCD[6], vehicle status u16, identification
    from ``offset``; returns the offset after them."""
    speed, altitude, lat, lon = struct.unpack_from(">BHII", value, offset)
    offset += 11
    out.update(
        speed_kmh=speed, altitude_m=altitude, latitude=lat / 1e6, longitude=lon / 1e6,
        bcd_time=_bcd(value[offset : offset + 6]),
    )  # fmt: skip
    offset += 6
    (out["vehicle_status"],) = struct.unpack_from(">H", value, offset)
    offset += 2
    ident_raw = value[offset : offset + IDENTIFICATION_BYTES]
    ident = decode_identification(ident_raw)
    out["identification"] = {
        "terminal_id": ident.terminal_id, "bcd_time": ident.bcd_time,
        "sequence": ident.sequence, "attachments": ident.attachments,
    }  # fmt: skip
    out["identification_hex"] = ident_raw.hex()
    return offset + IDENTIFICATION_BYTES


_FIXED = {0x64: 47, 0x65: 47, 0x67: 41}


def decode_item(item_id: int, value: bytes) -> dict[str, Any]:
    """One active-safety item as a JSON-ready dict (``source``, ``alarm_id``, ``flag``,
    ``type``, ``name``, ``type_text``, ``level`` for ADAS/DSM, speed, position, time,
    ``identification`` and its hex, and the source's own fields).

    Raises:
        FrameError(reason="body"): shorter than its layout.
    """
    source = ITEM_SOURCES[item_id]
    need = _FIXED.get(item_id, 4 + 1 + 21 + IDENTIFICATION_BYTES + 1)
    if len(value) < need:
        raise FrameError(
            "body", f"item 0x{item_id:02x}: expected >= {need} bytes, got {len(value)}"
        )
    alarm_id, flag = struct.unpack_from(">IB", value, 0)
    out: dict[str, Any] = {"source": source, "alarm_id": alarm_id, "flag": flag}
    offset = 5
    if item_id == 0x64:
        kind, level, front_speed, distance, departure, sign_type, sign_data = struct.unpack_from(
            ">7B", value, offset
        )
        out.update(
            type=kind, level=level, front_vehicle_speed_kmh=front_speed,
            front_distance_100ms=distance, departure_type=departure, road_sign_type=sign_type,
            road_sign_data=sign_data,
        )  # fmt: skip
        offset += 7
    elif item_id == 0x65:
        kind, level, fatigue = struct.unpack_from(">3B", value, offset)
        out.update(type=kind, level=level, fatigue_degree=fatigue)
        out["reserved_hex"] = value[offset + 3 : offset + 7].hex()
        offset += 3 + 4
    elif item_id == 0x67:
        out["type"] = value[offset]
        offset += 1
    offset = _tail(value, offset, out)
    if item_id == 0x66:
        count = value[offset]
        offset += 1
        if len(value) < offset + 9 * count:
            raise FrameError("body", f"item 0x66: expected {count} tyre events, body too short")
        events = []
        kinds = 0
        for _ in range(count):
            position, kind, pressure, temperature, battery = struct.unpack_from(
                ">BHHHH", value, offset
            )
            offset += 9
            kinds |= kind
            events.append({
                "tyre_position": position, "type": kind, "pressure_kpa": pressure,
                "temperature_c": temperature, "battery_pct": battery,
            })  # fmt: skip
        out["tyres"] = events
        out["type"] = kinds
    out["name"], out["type_text"] = type_name(source, out["type"])
    return out


def encode_item(item: dict[str, Any]) -> tuple[int, bytes]:
    """(item id, value) of a dict of :func:`decode_item`'s shape (the simulator's side)."""
    item_id = {v: k for k, v in ITEM_SOURCES.items()}[item["source"]]
    out = struct.pack(">IB", item["alarm_id"], item["flag"])
    if item_id == 0x64:
        out += struct.pack(
            ">7B", item["type"], item["level"], item.get("front_vehicle_speed_kmh", 0),
            item.get("front_distance_100ms", 0), item.get("departure_type", 0),
            item.get("road_sign_type", 0), item.get("road_sign_data", 0),
        )  # fmt: skip
    elif item_id == 0x65:
        out += struct.pack(">3B", item["type"], item["level"], item.get("fatigue_degree", 0))
        out += bytes.fromhex(item.get("reserved_hex", "00000000"))
    elif item_id == 0x67:
        out += bytes([item["type"]])
    out += struct.pack(
        ">BHII", item["speed_kmh"], item["altitude_m"], round(item["latitude"] * 1e6),
        round(item["longitude"] * 1e6),
    ) + bytes.fromhex(item["bcd_time"]) + struct.pack(">H", item["vehicle_status"])  # fmt: skip
    out += bytes.fromhex(item["identification_hex"])
    if item_id == 0x66:
        tyres = item.get("tyres", [])
        out += bytes([len(tyres)])
        for t in tyres:
            out += struct.pack(
                ">BHHHH", t["tyre_position"], t["type"], t["pressure_kpa"], t["temperature_c"],
                t["battery_pct"],
            )  # fmt: skip
    return item_id, out


# ---------------------------------------------------------------------- attachment messages


def _name(body: bytes, offset: int) -> tuple[bytes, int]:
    if offset >= len(body):
        raise FrameError("body", f"file name length expected at byte {offset}, body ends")
    n = body[offset]
    if offset + 1 + n > len(body):
        raise FrameError("body", f"file name of {n} bytes runs past the body")
    return body[offset + 1 : offset + 1 + n], offset + 1 + n


@dataclass(frozen=True, slots=True)
class AttachmentInfo:
    """0x1210: which alarm the files belong to and the files announced (raw names, sizes)."""

    terminal_id: str
    identification: bytes
    alarm_number: str
    info_type: int
    files: tuple[tuple[bytes, int], ...]


def decode_attachment_info(body: bytes) -> AttachmentInfo:
    """Raises FrameError(reason="body") when shorter than its layout says."""
    if len(body) < 7 + 16 + 32 + 2:
        raise FrameError("body", f"0x1210: expected >= 57 bytes, got {len(body)}")
    terminal = body[:7].rstrip(b"\x00").decode("ascii", errors="replace")
    number = body[23:55].rstrip(b"\x00").decode("ascii", errors="replace")
    info_type, count = body[55], body[56]
    offset = 57
    files = []
    for _ in range(count):
        name, offset = _name(body, offset)
        if offset + 4 > len(body):
            raise FrameError("body", "0x1210: file size runs past the body")
        (size,) = struct.unpack_from(">I", body, offset)
        offset += 4
        files.append((name, size))
    return AttachmentInfo(terminal, body[7:23], number, info_type, tuple(files))


def encode_attachment_info(info: AttachmentInfo) -> bytes:
    out = (
        info.terminal_id.encode("ascii")[:7].ljust(7, b"\x00")
        + info.identification
        + info.alarm_number.encode("ascii")[:32].ljust(32, b"\x00")
        + bytes([info.info_type, len(info.files)])
    )
    for name, size in info.files:
        out += bytes([len(name)]) + name + struct.pack(">I", size)
    return out


def decode_file_info(body: bytes) -> tuple[bytes, int, int]:
    """0x1211 / 0x1212 body -> (raw name, file type, size)."""
    name, offset = _name(body, 0)
    if offset + 5 > len(body):
        raise FrameError("body", f"0x1211/0x1212: expected type and size after the name, got "
                         f"{len(body) - offset} bytes")  # fmt: skip
    file_type = body[offset]
    (size,) = struct.unpack_from(">I", body, offset + 1)
    return name, file_type, size


def encode_file_info(name: bytes, file_type: int, size: int) -> bytes:
    return bytes([len(name)]) + name + bytes([file_type]) + struct.pack(">I", size)


def encode_file_done_reply(
    name: bytes, file_type: int, missing: list[tuple[int, int]], result: int | None = None
) -> bytes:
    """0x9212: result 0 (all in) or 1 (resend) with the missing (offset, length) segments
    (at most 100); ``result`` overrides the code."""
    listed = missing[:100]
    code = (1 if listed else 0) if result is None else result
    out = bytes([len(name)]) + name + bytes([file_type, code, len(listed)])
    for offset, length in listed:
        out += struct.pack(">II", offset, length)
    return out


def decode_file_done_reply(body: bytes) -> tuple[bytes, int, int, list[tuple[int, int]]]:
    """0x9212 -> (name, file type, result, missing segments) (terminal side)."""
    name, offset = _name(body, 0)
    file_type, result, count = body[offset], body[offset + 1], body[offset + 2]
    offset += 3
    segments = [struct.unpack_from(">II", body, offset + 8 * i) for i in range(count)]
    return name, file_type, result, [(int(o), int(n)) for o, n in segments]


def encode_attachment_request(
    host: str, tcp_port: int, udp_port: int, identification: bytes, alarm_number: str
) -> bytes:
    """0x9208 body."""
    ip = host.encode("ascii")
    return (
        bytes([len(ip)]) + ip + struct.pack(">HH", tcp_port, udp_port) + identification
        + alarm_number.encode("ascii")[:32].ljust(32, b"\x00") + bytes(16)
    )  # fmt: skip


def decode_attachment_request(body: bytes) -> tuple[str, int, int, bytes, str]:
    """0x9208 -> (host, TCP port, UDP port, identification, alarm number) (terminal side)."""
    n = body[0]
    host = body[1 : 1 + n].decode("ascii", errors="replace")
    tcp, udp = struct.unpack_from(">HH", body, 1 + n)
    offset = 5 + n
    identification = body[offset : offset + 16]
    number = body[offset + 16 : offset + 48].rstrip(b"\x00").decode("ascii", errors="replace")
    return host, tcp, udp, identification, number


def encode_data_frame(name: bytes, offset: int, data: bytes) -> bytes:
    return DATA_MAGIC + name[:50].ljust(50, b"\x00") + struct.pack(">II", offset, len(data)) + data


def decode_data_head(head: bytes) -> tuple[bytes, int, int]:
    """The 62-byte head of a data frame -> (name as sent, NUL padding removed; offset; length)."""
    if len(head) != DATA_HEAD_BYTES or not head.startswith(DATA_MAGIC):
        raise FrameError("data", f"expected a data frame head 30316364..., got {head[:8].hex()}")
    offset, length = struct.unpack_from(">II", head, 54)
    return head[4:54].rstrip(b"\x00"), offset, length
