"""JT/T 808 message bodies: decoders for what terminals send, encoders for platform replies and
for the simulated terminal, and the conversion of a location report to the MQTT ingest contract.

Units are converted here, once: speed 1/10 km/h -> km/h, coordinates 1e-6 degree with the sign
from status bits 2 (south) and 3 (west), BCD time in the terminal's zone (GMT+8 by default,
JT/T 808-2013 section 8.12) -> UTC, mileage 1/10 km -> km. Alarm and status bit fields are kept
as sent.
"""

from __future__ import annotations

import bisect
import hashlib
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from gps_monitor.active_safety import ITEM_SOURCES
from ingest.jt808.codec import Frame, FrameError, bcd_to_digits, digits_to_bcd, gbk_fixed

# Terminal -> platform
MSG_TERMINAL_REPLY = 0x0001
MSG_HEARTBEAT = 0x0002
MSG_LOGOUT = 0x0003
MSG_REGISTER = 0x0100
MSG_AUTHENTICATE = 0x0102
MSG_LOCATION = 0x0200
MSG_BATCH = 0x0704
# Platform -> terminal
MSG_PLATFORM_REPLY = 0x8001
MSG_REGISTER_REPLY = 0x8100
MSG_TEXT = 0x8300

# 0x8300 flag bits (JT/T 808-2013 table 38 and 2019 alike): bit 0 emergency, bit 2 terminal
# display, bit 3 TTS read aloud (bit 1 and bits 6-7 reserved, bit 4 advertising screen, bit 5
# CAN fault code instead of centre navigation information)
TEXT_FLAG_EMERGENCY = 1 << 0
TEXT_FLAG_DISPLAY = 1 << 2
TEXT_FLAG_TTS = 1 << 3
# 0x8300 text type, 2019 only: 1 notice (通知), 2 service (服务)
TEXT_TYPE_NOTICE = 1
TEXT_TYPE_SERVICE = 2

# 0x8001 result codes (JT/T 808-2013 section 8.2)
RESULT_OK = 0
RESULT_FAILURE = 1
RESULT_MESSAGE_ERROR = 2
RESULT_UNSUPPORTED = 3

# 0x8100 result codes (section 8.6)
REGISTER_OK = 0
REGISTER_VEHICLE_TAKEN = 1  # vehicle already registered (to another terminal)
REGISTER_NO_VEHICLE = 2  # no such vehicle in the database
REGISTER_TERMINAL_TAKEN = 3  # terminal already registered
REGISTER_NO_TERMINAL = 4  # no such terminal in the database

STATUS_ACC_ON = 1 << 0
STATUS_POSITIONED = 1 << 1
STATUS_SOUTH = 1 << 2
STATUS_WEST = 1 << 3

LOCATION_BASE_BYTES = 28
BATCH_TYPE_NORMAL = 0
BATCH_TYPE_REUPLOAD = 1  # 补报: positions buffered while out of coverage


def _text(raw: bytes) -> str:
    """GBK text field with its NUL padding removed (JT/T 808 STRING is GBK)."""
    return raw.rstrip(b"\x00").decode("gbk", errors="replace")


# --------------------------------------------------------------------------------- register


@dataclass(frozen=True, slots=True)
class RegisterRequest:
    """0x0100 terminal registration.

    Layouts (picked by the version flag, then by body length, as devices in the field still
    send the 2011 layout without any flag): 2011 maker[5] model[8] device_id[7]; 2013 maker[5]
    model[20] device_id[7]; 2019 maker[11] model[30] device_id[30]; all preceded by province
    u16, city u16 and followed by plate colour u8 and the plate (GBK, rest of the body).
    """

    province_id: int
    city_id: int
    maker_id: str
    model: str
    device_id: str
    plate_color: int
    plate_number: str
    layout: str


_REGISTER_LAYOUTS = {"2011": (5, 8, 7), "2013": (5, 20, 7), "2019": (11, 30, 30)}


def decode_register(body: bytes, *, is_2019: bool) -> RegisterRequest:
    """Decode a 0x0100 body.

    Raises:
        FrameError(reason="body"): shorter than the fixed part of its layout.
    """
    if is_2019:
        layout = "2019"
    elif len(body) >= 4 + sum(_REGISTER_LAYOUTS["2013"]) + 1:
        layout = "2013"
    else:
        layout = "2011"
    maker_n, model_n, device_n = _REGISTER_LAYOUTS[layout]
    fixed = 4 + maker_n + model_n + device_n + 1
    if len(body) < fixed:
        raise FrameError("body", f"0x0100 {layout}: expected >= {fixed} bytes, got {len(body)}")
    province, city = struct.unpack_from(">HH", body, 0)
    offset = 4
    maker = _text(body[offset : offset + maker_n])
    offset += maker_n
    model = _text(body[offset : offset + model_n])
    offset += model_n
    device = _text(body[offset : offset + device_n])
    offset += device_n
    color = body[offset]
    plate = _text(body[offset + 1 :])
    return RegisterRequest(province, city, maker, model, device, color, plate, layout)


def encode_register(request: RegisterRequest, *, is_2019: bool) -> bytes:
    """0x0100 body (terminal side, for the simulator and tests): 2013 or 2019 layout."""
    maker_n, model_n, device_n = _REGISTER_LAYOUTS["2019" if is_2019 else "2013"]
    return (
        struct.pack(">HH", request.province_id, request.city_id)
        + gbk_fixed(request.maker_id, maker_n)
        + gbk_fixed(request.model, model_n)
        + gbk_fixed(request.device_id, device_n)
        + bytes([request.plate_color])
        + request.plate_number.encode("gbk")
    )


def encode_register_reply(serial: int, result: int, auth_code: str | None) -> bytes:
    """0x8100 body: the register message's serial u16, result u8, auth code (on success)."""
    body = struct.pack(">HB", serial & 0xFFFF, result)
    if result == REGISTER_OK and auth_code:
        body += auth_code.encode("gbk")
    return body


def decode_register_reply(body: bytes) -> tuple[int, int, str]:
    """0x8100 body -> (serial, result, auth_code) (terminal side)."""
    if len(body) < 3:
        raise FrameError("body", f"0x8100: expected >= 3 bytes, got {len(body)}")
    serial, result = struct.unpack_from(">HB", body, 0)
    return serial, result, _text(body[3:])


# ----------------------------------------------------------------------------- authenticate


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """0x0102 authentication: the code issued in 0x8100; 2019 adds IMEI and software version."""

    auth_code: str
    imei: str | None = None
    software_version: str | None = None


def decode_auth(body: bytes, *, is_2019: bool) -> AuthRequest:
    """Decode a 0x0102 body. 2013: the code is the whole body; 2019: code length u8, code,
    IMEI[15], software version[20].

    Raises:
        FrameError(reason="body"): a 2019 body shorter than its code length says.
    """
    if not is_2019:
        return AuthRequest(_text(body))
    if not body or len(body) < 1 + body[0]:
        raise FrameError("body", f"0x0102 2019: expected code length + code, got {body.hex()}")
    n = body[0]
    code = _text(body[1 : 1 + n])
    rest = body[1 + n :]
    imei = _text(rest[:15]) if rest else None
    version = _text(rest[15:35]) if len(rest) > 15 else None
    return AuthRequest(code, imei, version)


def encode_auth(request: AuthRequest, *, is_2019: bool) -> bytes:
    """0x0102 body (terminal side)."""
    code = request.auth_code.encode("gbk")
    if not is_2019:
        return code
    return (
        bytes([len(code)])
        + code
        + gbk_fixed(request.imei, 15)
        + gbk_fixed(request.software_version, 20)
    )


# ------------------------------------------------------------------------------ general reply


def encode_general_reply(serial: int, msg_id: int, result: int) -> bytes:
    """0x8001 body: the answered message's serial u16 and id u16, result u8."""
    return struct.pack(">HHB", serial & 0xFFFF, msg_id, result)


def decode_general_reply(body: bytes) -> tuple[int, int, int]:
    """0x8001 body -> (serial, msg_id, result)."""
    if len(body) != 5:
        raise FrameError("body", f"0x8001: expected 5 bytes, got {len(body)}")
    serial, msg_id, result = struct.unpack(">HHB", body)
    return serial, msg_id, result


def encode_terminal_reply(serial: int, msg_id: int, result: int) -> bytes:
    """0x0001 terminal general response body: same layout as 0x8001 (answered serial u16,
    answered message id u16, result u8: 0 ok, 1 failed, 2 bad message, 3 unsupported)."""
    return encode_general_reply(serial, msg_id, result)


def decode_terminal_reply(body: bytes) -> tuple[int, int, int]:
    """0x0001 body -> (answered serial, answered message id, result)."""
    if len(body) != 5:
        raise FrameError("body", f"0x0001: expected 5 bytes, got {len(body)}")
    serial, msg_id, result = struct.unpack(">HHB", body)
    return serial, msg_id, result


# -------------------------------------------------------------------------------------- text


@dataclass(frozen=True, slots=True)
class TextMessage:
    """0x8300 text message to the driver.

    Layouts: 2013 flags u8, then the text (GBK STRING, the rest of the body); 2019 flags u8,
    text type u8 (1 notice, 2 service), then the text.
    """

    flags: int
    text: str
    text_type: int | None = None  # 2019 only

    @property
    def emergency(self) -> bool:
        return bool(self.flags & TEXT_FLAG_EMERGENCY)

    @property
    def display(self) -> bool:
        return bool(self.flags & TEXT_FLAG_DISPLAY)

    @property
    def tts(self) -> bool:
        return bool(self.flags & TEXT_FLAG_TTS)


def text_flags(*, emergency: bool, display: bool, tts: bool) -> int:
    return (
        (TEXT_FLAG_EMERGENCY if emergency else 0)
        | (TEXT_FLAG_DISPLAY if display else 0)
        | (TEXT_FLAG_TTS if tts else 0)
    )


def encode_text(
    flags: int, text_gbk: bytes, *, is_2019: bool, text_type: int = TEXT_TYPE_NOTICE
) -> bytes:
    """0x8300 body from already GBK-encoded text (see :func:`gps_monitor.commands.text_gbk`)."""
    head = bytes([flags & 0xFF, text_type]) if is_2019 else bytes([flags & 0xFF])
    return head + text_gbk


def decode_text(body: bytes, *, is_2019: bool) -> TextMessage:
    """0x8300 body -> :class:`TextMessage` (a terminal's, or the simulator's, side).

    Raises:
        FrameError(reason="body"): shorter than its fixed part, or text that is not GBK.
    """
    fixed = 2 if is_2019 else 1
    if len(body) < fixed:
        raise FrameError("body", f"0x8300: expected at least {fixed} bytes, got {len(body)}")
    try:
        text = body[fixed:].rstrip(b"\x00").decode("gbk")
    except UnicodeDecodeError as error:
        raise FrameError("body", f"0x8300: expected GBK text, got {error}") from None
    return TextMessage(body[0], text, body[1] if is_2019 else None)


# ---------------------------------------------------------------------------------- location


@dataclass(frozen=True, slots=True)
class LocationReport:
    """A 0x0200 body in wire units, plus its additional items.

    Attributes:
        alarm_flags, status_flags: u32 bit fields as sent.
        latitude_e6, longitude_e6: unsigned degrees x 1e6 (sign lives in the status bits).
        altitude_m: metres (read as signed 16-bit: places below sea level exist).
        speed_dkmh: 1/10 km/h. heading_deg: 0-359.
        bcd_time: YYMMDDhhmmss digits as sent (terminal zone, GMT+8 by default).
        items: additional items {id: raw value bytes}, in arrival order.
    """

    alarm_flags: int
    status_flags: int
    latitude_e6: int
    longitude_e6: int
    altitude_m: int
    speed_dkmh: int
    heading_deg: int
    bcd_time: str
    items: dict[int, bytes] = field(default_factory=dict)

    @property
    def latitude(self) -> float:
        sign = -1 if self.status_flags & STATUS_SOUTH else 1
        return sign * self.latitude_e6 / 1e6

    @property
    def longitude(self) -> float:
        sign = -1 if self.status_flags & STATUS_WEST else 1
        return sign * self.longitude_e6 / 1e6

    @property
    def speed_kmh(self) -> float:
        return self.speed_dkmh / 10

    @property
    def fix_valid(self) -> bool:
        return bool(self.status_flags & STATUS_POSITIONED)

    @property
    def acc_on(self) -> bool:
        return bool(self.status_flags & STATUS_ACC_ON)

    def fix_time(self, utc_offset_min: int = 480) -> datetime:
        """The BCD time read in a zone ``utc_offset_min`` east of UTC, returned in UTC.

        Raises:
            FrameError(reason="bad_time"): not a calendar date/time.
        """
        t = self.bcd_time
        try:
            local = datetime(
                2000 + int(t[0:2]),
                int(t[2:4]),
                int(t[4:6]),
                int(t[6:8]),
                int(t[8:10]),
                int(t[10:12]),
                tzinfo=timezone(timedelta(minutes=utc_offset_min)),
            )
        except ValueError as error:
            raise FrameError("bad_time", f"expected BCD YYMMDDhhmmss, got {t} ({error})") from None
        return local.astimezone(UTC)


def decode_location(body: bytes) -> LocationReport:
    """Decode a 0x0200 body (also each item of a 0x0704).

    Raises:
        FrameError(reason="body"): shorter than 28 bytes, or an additional item running past
            the end of the body.
    """
    if len(body) < LOCATION_BASE_BYTES:
        raise FrameError("body", f"0x0200: expected >= 28 bytes, got {len(body)}")
    alarm, status, lat, lon, alt, speed, heading = struct.unpack_from(">IIIIhHH", body, 0)
    bcd_time = bcd_to_digits(body[22:28]) if body[22:28].hex().isdigit() else body[22:28].hex()
    items: dict[int, bytes] = {}
    offset = LOCATION_BASE_BYTES
    while offset < len(body):
        if offset + 2 > len(body):
            raise FrameError("body", f"0x0200: additional item header cut at byte {offset}")
        item_id, length = body[offset], body[offset + 1]
        end = offset + 2 + length
        if end > len(body):
            raise FrameError(
                "body",
                f"0x0200: item 0x{item_id:02x} expects {length} bytes, "
                f"{len(body) - offset - 2} left",
            )
        items[item_id] = body[offset + 2 : end]
        offset = end
    return LocationReport(alarm, status, lat, lon, alt, speed, heading, bcd_time, items)


def encode_location(report: LocationReport) -> bytes:
    """0x0200 body (terminal side)."""
    out = struct.pack(
        ">IIIIhHH",
        report.alarm_flags,
        report.status_flags,
        report.latitude_e6,
        report.longitude_e6,
        report.altitude_m,
        report.speed_dkmh,
        report.heading_deg,
    ) + digits_to_bcd(report.bcd_time, 6)
    for item_id, value in report.items.items():
        out += bytes([item_id, len(value)]) + value
    return out


@dataclass(frozen=True, slots=True)
class BatchUpload:
    """0x0704: ``batch_type`` 0 normal batch, 1 blind-area re-upload (补报); ``spans`` holds
    each report's (start, end) byte offsets in the body (its length prefix excluded)."""

    batch_type: int
    reports: list[LocationReport]
    spans: list[tuple[int, int]] = field(default_factory=list)

    @property
    def reupload(self) -> bool:
        return self.batch_type == BATCH_TYPE_REUPLOAD


def decode_batch(body: bytes) -> BatchUpload:
    """Decode a 0x0704 body: count u16, type u8, then count x (length u16, 0x0200 body).

    Raises:
        FrameError(reason="body"): the items do not fill the body as the count says.
    """
    if len(body) < 3:
        raise FrameError("body", f"0x0704: expected >= 3 bytes, got {len(body)}")
    count, batch_type = struct.unpack_from(">HB", body, 0)
    offset = 3
    reports = []
    spans = []
    for i in range(count):
        if offset + 2 > len(body):
            raise FrameError("body", f"0x0704: expected {count} items, body ends at item {i}")
        (length,) = struct.unpack_from(">H", body, offset)
        offset += 2
        if offset + length > len(body):
            raise FrameError("body", f"0x0704: item {i} expects {length} bytes, body too short")
        reports.append(decode_location(body[offset : offset + length]))
        spans.append((offset, offset + length))
        offset += length
    return BatchUpload(batch_type, reports, spans)


def encode_batch(reports: list[LocationReport], batch_type: int = BATCH_TYPE_NORMAL) -> bytes:
    """0x0704 body (terminal side)."""
    out = struct.pack(">HB", len(reports), batch_type)
    for report in reports:
        body = encode_location(report)
        out += struct.pack(">H", len(body)) + body
    return out


# ----------------------------------------------------------------- conversion to MQTT contract


def _u(value: bytes) -> int:
    return int.from_bytes(value, "big")


def _obd_rt(text: str) -> dict[str, float]:
    """A "$OBD-RT,power,rpm,speed,throttle,load,coolant,..." vendor item (0xE6 on some
    devices, decoded as traccar does): the fields present, as numbers."""
    names = ("power_v", "rpm", "obd_speed_kmh", "throttle_pct", "engine_load_pct", "coolant_temp_c")
    values = text.strip().split(",")[1:]
    out: dict[str, float] = {}
    for name, value in zip(names, values, strict=False):
        try:
            if value:
                out[name] = float(value)
        except ValueError:
            continue
    return out


def decode_items(items: dict[int, bytes]) -> tuple[float | None, int | None, dict[str, Any]]:
    """Additional items -> (mileage_km, satellites, extras).

    Known items (JT/T 808-2013 table 27, 2019 table 28): 0x01 mileage 1/10 km, 0x02 fuel
    1/10 L, 0x03 tachograph speed 1/10 km/h, 0x04 manual alarm event id, 0x05 tyre pressures,
    0x06 compartment temperature, 0x11 overspeed alarm detail, 0x12 area/route in-out detail,
    0x13 road-section time detail, 0x25 extended vehicle signals, 0x2A IO status, 0x2B analog,
    0x30 signal strength, 0x31 GNSS satellites; T/JSATL 12-2017 0x64 ADAS, 0x65 DSM, 0x66 tyres,
    0x67 blind spot into ``extras["active_safety"]`` (a list). Others are kept as hex under
    ``extras["jt808_items"]`` ("0xe1": "00735443"); a "$OBD-RT" text item is also decoded
    into ``extras["obd"]``. An item of unexpected length is kept as hex too.
    """
    mileage_km: float | None = None
    satellites: int | None = None
    extras: dict[str, Any] = {}
    other: dict[str, str] = {}
    for item_id, value in items.items():
        n = len(value)
        if item_id == 0x01 and n == 4:
            mileage_km = _u(value) / 10
        elif item_id == 0x02 and n == 2:
            extras["fuel_l"] = _u(value) / 10
        elif item_id == 0x03 and n == 2:
            extras["tachograph_speed_kmh"] = _u(value) / 10
        elif item_id == 0x04 and n == 2:
            extras["manual_alarm_event_id"] = _u(value)
        elif item_id == 0x05 and n == 30:
            extras["tyre_pressure"] = list(value)
        elif item_id == 0x06 and n == 2:
            extras["compartment_temp_c"] = int.from_bytes(value, "big", signed=True)
        elif item_id == 0x11 and n in (1, 5):
            extras["overspeed_alarm"] = {
                "location_type": value[0],
                "area_id": _u(value[1:5]) if n == 5 else None,
            }
        elif item_id == 0x12 and n == 6:
            extras["area_alarm"] = {
                "location_type": value[0],
                "area_id": _u(value[1:5]),
                "direction": value[5],
            }
        elif item_id == 0x13 and n == 7:
            extras["route_time_alarm"] = {
                "section_id": _u(value[0:4]),
                "duration_s": _u(value[4:6]),
                "result": value[6],
            }
        elif item_id == 0x25 and n == 4:
            extras["vehicle_signal_flags"] = _u(value)
        elif item_id == 0x2A and n == 2:
            extras["io_status_flags"] = _u(value)
        elif item_id == 0x2B and n == 4:
            extras["analog"] = {"ad0": _u(value[2:4]), "ad1": _u(value[0:2])}
        elif item_id == 0x30 and n == 1:
            extras["signal_strength"] = value[0]
        elif item_id == 0x31 and n == 1:
            satellites = value[0]
        elif item_id in ITEM_SOURCES and _active_safety(item_id, value, extras):
            pass  # T/JSATL 12-2017 0x64-0x67 (ingest/jt808/jsatl.py)
        else:
            other[f"0x{item_id:02x}"] = value.hex()
            if value.startswith(b"$OBD-RT"):
                extras["obd"] = _obd_rt(value.decode("ascii", errors="replace"))
    if other:
        extras["jt808_items"] = other
    return mileage_km, satellites, extras


def _active_safety(item_id: int, value: bytes, extras: dict[str, Any]) -> bool:
    """Decode an active-safety item into ``extras["active_safety"]``; False (kept as hex) when
    it does not decode."""
    from ingest.jt808 import jsatl

    try:
        item = jsatl.decode_item(item_id, value)
    except FrameError:
        return False
    extras.setdefault("active_safety", []).append(item)
    return True


def location_evidence(frame: Frame) -> dict[str, Any]:
    """Evidence of a 0x0200: ``raw_frame_hex``, the frame as received (delimiters and escaping
    included)."""
    return {"raw_frame_hex": frame.wire.hex()}


def batch_evidence(frame: Frame, batch: BatchUpload) -> list[dict[str, Any]]:
    """Evidence of each report of a 0x0704, linear in the frame's size (a copy of the whole
    frame per report made a sub-packaged upload's payload grow with the square of its size).

    Every report gets ``raw_report_hex`` (its own bytes in the body: its 0x0200 body, which
    decodes alone) and ``jt808_frame`` = {``sha256`` of the frame as received (all packets' wire
    bytes concatenated), ``report_index``, ``report_count``}. Each frame as received (the one
    frame, or each packet of a sub-packaged message) is carried once, in ``raw_frames_hex``
    ({"packet index": wire hex}) of the report whose bytes (or length prefix) the packet's body
    starts in (the first report for the batch header, the last for trailing bytes); so the
    positions of one upload together hold the whole frame, and the concatenation of their
    ``raw_frames_hex`` in packet order has that ``sha256``.
    """
    digest = hashlib.sha256(frame.wire).hexdigest()
    count = len(batch.reports)
    out: list[dict[str, Any]] = [
        {
            "raw_report_hex": frame.body[start:end].hex(),
            "jt808_frame": {"sha256": digest, "report_index": i, "report_count": count},
        }
        for i, (start, end) in enumerate(batch.spans)
    ]
    if not out:
        return out
    item_starts = [start - 2 for start, _ in batch.spans]  # where each length prefix begins
    packet_offset = 0
    for index, (wire, body_bytes) in enumerate(frame.packets, start=1):
        carrier = max(bisect.bisect_right(item_starts, packet_offset) - 1, 0)
        out[carrier].setdefault("raw_frames_hex", {})[str(index)] = wire.hex()
        packet_offset += body_bytes
    return out


def to_contract(
    report: LocationReport,
    *,
    utc_offset_min: int,
    evidence: dict[str, Any],
    reupload: bool | None = None,
) -> dict[str, Any]:
    """A location report as one JSON object of the MQTT ingest contract
    (``gps/v1/{terminal_id}/position``; with ``reupload`` set, an element of a ``batch`` array).

    ``extras`` carries the ``evidence`` (:func:`location_evidence`, :func:`batch_evidence`:
    the bytes as received, proof that the data is unaltered), ``bcd_time`` and the decoded
    additional items. A report whose BCD time is not a date gets ``fix_time: null`` so that
    ingest rejects it into ``rejected_messages`` with its raw bytes instead of the gateway
    losing it.
    """
    mileage_km, satellites, extras = decode_items(report.items)
    extras.update(evidence)
    extras["bcd_time"] = report.bcd_time
    try:
        fix_time: str | None = report.fix_time(utc_offset_min).isoformat()
    except FrameError:
        fix_time = None
    position: dict[str, Any] = {
        "fix_time": fix_time,
        "latitude": report.latitude,
        "longitude": report.longitude,
        "speed_kmh": report.speed_kmh,
        "heading_deg": report.heading_deg,
        "altitude_m": report.altitude_m,
        "satellites": satellites,
        "fix_valid": report.fix_valid,
        "acc_on": report.acc_on,
        "alarm_flags": report.alarm_flags,
        "status_flags": report.status_flags,
        "mileage_km": mileage_km,
        "extras": extras,
    }
    if reupload is not None:
        position["reupload"] = reupload
    return position


def bcd_time_from_datetime(moment: datetime, utc_offset_min: int = 480) -> str:
    """A timezone-aware datetime -> YYMMDDhhmmss digits in the terminal's zone."""
    local = moment.astimezone(timezone(timedelta(minutes=utc_offset_min)))
    return local.strftime("%y%m%d%H%M%S")
