"""JT/T 809 message bodies this platform sends and receives.

Layouts (JT/T 809-2011 section 5, checked against the published test frames of SmallChi/JT809,
see ``tests/test_jt809_codec.py``)::

    0x1001 login         user_id u32, password 8 bytes, down_link_ip 32 bytes, down_link_port u16
    0x1002 login answer  result u8, verify_code u32
    0x1003 logout        user_id u32, password 8 bytes          (0x1004 answer: empty)
    0x1005 / 0x1006      heartbeat / answer: empty               (slave link 0x9005 / 0x9006)
    0x9001 slave login   verify_code u32;   0x9002 answer: result u8
    0x1200 / 0x1400      vehicle sub-body: plate 21 bytes GBK (zero padded), plate colour u8,
                         data_type u16, data_length u32, data
    GNSS data (2011, 36 bytes): encrypt u8, day u8, month u8, year u16, hour u8, minute u8,
                         second u8 (GMT+8), lon u32, lat u32 (degrees x 1e6, unsigned; the
                         hemisphere is in state bits 2/3 as in JT/T 808), vec1 u16 (GNSS speed
                         km/h), vec2 u16 (tachograph speed km/h), vec3 u32 (total mileage km),
                         direction u16 (degrees), altitude u16 (m), state u32, alarm u32
    0x1202 (2011)        one GNSS data
    0x1202 (2019)        encrypt u8, gnss_data_length u32, gnss_data (a JT/T 808 0x0200 body),
                         platform_id1 11 bytes, alarm1 u32, platform_id2, alarm2,
                         platform_id3, alarm3
    0x1203               count u8 (1-5), then that many 0x1202 bodies
    0x1402 (2011)        warn_src u8, warn_type u16, warn_time u64 (UTC seconds), info_id u32,
                         info_length u32, info_content GBK
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from gps_monitor.models import Position
from jt809.codec import FrameError

MSG_LOGIN = 0x1001
MSG_LOGIN_ANSWER = 0x1002
MSG_LOGOUT = 0x1003
MSG_LOGOUT_ANSWER = 0x1004
MSG_HEARTBEAT = 0x1005
MSG_HEARTBEAT_ANSWER = 0x1006
MSG_DISCONNECT_NOTICE = 0x1007
MSG_SLAVE_LOGIN = 0x9001
MSG_SLAVE_LOGIN_ANSWER = 0x9002
MSG_SLAVE_LOGOUT = 0x9003
MSG_SLAVE_LOGOUT_ANSWER = 0x9004
MSG_SLAVE_HEARTBEAT = 0x9005
MSG_SLAVE_HEARTBEAT_ANSWER = 0x9006
MSG_VEHICLE_DYNAMIC = 0x1200
MSG_REALTIME_POSITION = 0x1202
MSG_REUPLOAD_POSITIONS = 0x1203
MSG_VEHICLE_ALARM = 0x1400
MSG_ALARM_INFO = 0x1402

# 0x1002 result codes (JT/T 809-2011 table 6).
LOGIN_RESULTS = {
    0: "success",
    1: "IP address incorrect",
    2: "access code incorrect",
    3: "user not registered",
    4: "password incorrect",
    5: "resources tight, try later",
    9: "other",
}
SLAVE_LOGIN_RESULTS = {0: "success", 1: "verify code incorrect", 2: "resources tight", 3: "other"}

REUPLOAD_MAX_POSITIONS = 5
PLATE_BYTES = 21
GNSS_2011 = struct.Struct(">BBBHBBBIIHHIHHII")
GNSS_2011_BYTES = GNSS_2011.size  # 36
BEIJING = timezone(timedelta(hours=8))
STATUS_SOUTH = 1 << 2
STATUS_WEST = 1 << 3

# Our alarm types -> JT/T 809 warn types (DOMAIN.md, issue 10).
WARN_OVERSPEED = 0x0001
WARN_FATIGUE = 0x0002
WARN_EMERGENCY = 0x0003
WARN_ENTER_AREA = 0x0004
WARN_LEAVE_AREA = 0x0005
WARN_ROUTE_DEVIATION = 0x000B
WARN_OVERTIME_DRIVING = 0x000D
WARN_OTHER = 0x000E
WARN_TYPES: dict[str, int] = {
    "overspeed": WARN_OVERSPEED,
    "fatigue_driving": WARN_FATIGUE,
    "forbidden_area_entry": WARN_ENTER_AREA,
    "geofence_enter": WARN_ENTER_AREA,
    "keep_in_area_exit": WARN_LEAVE_AREA,
    "geofence_exit": WARN_LEAVE_AREA,
    "route_deviation": WARN_ROUTE_DEVIATION,
    "daily_driving_limit": WARN_OVERTIME_DRIVING,
}
WARN_SRC_TERMINAL = 1
WARN_SRC_PLATFORM = 2
DEVICE_ALARM_SOS_BIT = 0  # JT/T 808 alarm bit 0: emergency (SOS) button


def warn_type_for(alarm_type: str, details: dict[str, object] | None = None) -> int:
    """The JT/T 809 warn type of one of our alarm types: a ``device_alarm`` of ``bit`` 0 (the
    JT/T 808 emergency/SOS bit, see rules/device_alarm.py) is 0x0003 emergency; types with no
    809 counterpart (offline, night_ban, other device bits...) are 0x000E other."""
    if alarm_type == "device_alarm" and details and details.get("bit") == DEVICE_ALARM_SOS_BIT:
        return WARN_EMERGENCY
    return WARN_TYPES.get(alarm_type, WARN_OTHER)


def fixed_text(value: str, size: int) -> bytes:
    """``value`` in GBK, zero padded to ``size`` bytes.

    Raises:
        FrameError(reason="body"): not GBK-encodable or longer than ``size`` bytes.
    """
    try:
        raw = value.encode("gbk")
    except UnicodeEncodeError:
        raise FrameError("body", f"expected GBK text, got {value!r}") from None
    if len(raw) > size:
        raise FrameError("body", f"expected at most {size} GBK bytes, got {len(raw)} ({value!r})")
    return raw.ljust(size, b"\x00")


def read_text(raw: bytes) -> str:
    """GBK text up to its first zero byte."""
    return raw.split(b"\x00", 1)[0].decode("gbk", errors="replace")


def _need(body: bytes, size: int, what: str) -> None:
    if len(body) < size:
        raise FrameError("body", f"{what}: expected >= {size} bytes, got {len(body)}")


# ------------------------------------------------------------------------------ link management


@dataclass(frozen=True, slots=True)
class Login:
    """0x1001: user id, password, the address of our slave-link server and (2019 only) our
    接入码 MSG_GNSSCENTERID."""

    user_id: int
    password: str
    down_link_ip: str
    down_link_port: int
    access_code: int = 0


def encode_login(login: Login, version: int = 2011) -> bytes:
    """0x1001 body. 2011 (46 bytes): USERID u32, PASSWORD 8, DOWN_LINK_IP 32, DOWN_LINK_PORT
    u16. 2019 (50 bytes) puts MSG_GNSSCENTERID u32 after the password (JT/T 809-2019 0x1001;
    layout as in zboyco/jtt809 pkg/jtt809/registration.go, commit 6f2c0c86)."""
    center = struct.pack(">I", login.access_code) if version == 2019 else b""
    return (
        struct.pack(">I", login.user_id)
        + fixed_text(login.password, 8)
        + center
        + fixed_text(login.down_link_ip, 32)
        + struct.pack(">H", login.down_link_port)
    )


def decode_login(body: bytes, version: int = 2011) -> Login:
    """Raises FrameError when the body is shorter than the version's layout."""
    if version == 2019:
        _need(body, 50, "0x1001 (2019)")
        user_id, center = struct.unpack_from(">I8xI", body)
        (port,) = struct.unpack_from(">H", body, 48)
        return Login(user_id, read_text(body[4:12]), read_text(body[16:48]), port, center)
    _need(body, 46, "0x1001")
    (user_id,) = struct.unpack_from(">I", body)
    (port,) = struct.unpack_from(">H", body, 44)
    return Login(user_id, read_text(body[4:12]), read_text(body[12:44]), port)


def encode_login_answer(result: int, verify_code: int) -> bytes:
    return struct.pack(">BI", result, verify_code)


def decode_login_answer(body: bytes) -> tuple[int, int]:
    """0x1002 -> (result, verify_code)."""
    _need(body, 5, "0x1002")
    result, verify_code = struct.unpack_from(">BI", body)
    return result, verify_code


def encode_logout(user_id: int, password: str) -> bytes:
    return struct.pack(">I", user_id) + fixed_text(password, 8)


def encode_slave_login(verify_code: int) -> bytes:
    return struct.pack(">I", verify_code)


def decode_slave_login(body: bytes) -> int:
    _need(body, 4, "0x9001")
    return int(struct.unpack_from(">I", body)[0])


# ----------------------------------------------------------------------------- vehicle sub-body


@dataclass(frozen=True, slots=True)
class VehicleMessage:
    """A 0x1200/0x1400/... body: the vehicle, the sub-business type and its data."""

    plate_number: str
    plate_color: int
    data_type: int
    data: bytes


def encode_vehicle_message(message: VehicleMessage) -> bytes:
    return (
        fixed_text(message.plate_number, PLATE_BYTES)
        + struct.pack(">BHI", message.plate_color, message.data_type, len(message.data))
        + message.data
    )


def decode_vehicle_message(body: bytes) -> VehicleMessage:
    """Raises FrameError(reason="body") when cut short or the data length lies."""
    _need(body, PLATE_BYTES + 7, "vehicle sub-body")
    color, data_type, length = struct.unpack_from(">BHI", body, PLATE_BYTES)
    data = body[PLATE_BYTES + 7 :]
    if len(data) != length:
        raise FrameError("body", f"data_length says {length} bytes, got {len(data)}")
    return VehicleMessage(read_text(body[:PLATE_BYTES]), color, data_type, data)


# ------------------------------------------------------------------------------------ positions


@dataclass(frozen=True, slots=True)
class GnssData:
    """One position in JT/T 809 wire units (2011 layout).

    Attributes:
        fix_time_local: GMT+8 wall-clock time of the fix.
        longitude_e6, latitude_e6: unsigned degrees x 1e6.
        speed_kmh, tachograph_speed_kmh: whole km/h. mileage_km: whole km.
        heading_deg, altitude_m: whole degrees, metres. state, alarm: JT/T 808 bit fields.
    """

    fix_time_local: datetime
    longitude_e6: int
    latitude_e6: int
    speed_kmh: int
    tachograph_speed_kmh: int
    mileage_km: int
    heading_deg: int
    altitude_m: int
    state: int
    alarm: int
    encrypted: int = 0

    @property
    def fix_time(self) -> datetime:
        return self.fix_time_local.astimezone(UTC)

    @property
    def latitude(self) -> float:
        return (-1 if self.state & STATUS_SOUTH else 1) * self.latitude_e6 / 1e6

    @property
    def longitude(self) -> float:
        return (-1 if self.state & STATUS_WEST else 1) * self.longitude_e6 / 1e6


def gnss_from_position(position: Position) -> GnssData:
    """Our position (UTC, signed degrees, km/h floats) -> wire units (GMT+8, rounded)."""
    state = position.status_flags & ~(STATUS_SOUTH | STATUS_WEST)
    if position.latitude < 0:
        state |= STATUS_SOUTH
    if position.longitude < 0:
        state |= STATUS_WEST
    return GnssData(
        fix_time_local=position.fix_time.astimezone(BEIJING),
        longitude_e6=min(round(abs(position.longitude) * 1e6), 0xFFFFFFFF),
        latitude_e6=min(round(abs(position.latitude) * 1e6), 0xFFFFFFFF),
        speed_kmh=min(round(position.speed_kmh), 0xFFFF),
        tachograph_speed_kmh=min(round(position.speed_kmh), 0xFFFF),
        mileage_km=min(round(position.mileage_km or 0), 0xFFFFFFFF),
        heading_deg=round(position.heading_deg or 0) % 360,
        altitude_m=max(0, min(round(position.altitude_m or 0), 0xFFFF)),
        state=state & 0xFFFFFFFF,
        alarm=position.alarm_flags & 0xFFFFFFFF,
    )


def encode_gnss(gnss: GnssData) -> bytes:
    t = gnss.fix_time_local
    return GNSS_2011.pack(
        gnss.encrypted,
        t.day,
        t.month,
        t.year,
        t.hour,
        t.minute,
        t.second,
        gnss.longitude_e6,
        gnss.latitude_e6,
        gnss.speed_kmh,
        gnss.tachograph_speed_kmh,
        gnss.mileage_km,
        gnss.heading_deg,
        gnss.altitude_m,
        gnss.state,
        gnss.alarm,
    )


def decode_gnss(body: bytes, offset: int = 0) -> GnssData:
    """Raises FrameError(reason="body"): cut short or not a calendar date."""
    _need(body[offset:], GNSS_2011_BYTES, "GNSS data")
    (enc, day, month, year, hour, minute, second, lon, lat, v1, v2, v3, direction, alt, state,
     alarm) = GNSS_2011.unpack_from(body, offset)  # fmt: skip
    try:
        local = datetime(year, month, day, hour, minute, second, tzinfo=BEIJING)
    except ValueError as error:
        raise FrameError("body", f"GNSS data: expected a date and time ({error})") from None
    return GnssData(local, lon, lat, v1, v2, v3, direction, alt, state, alarm, enc)


def encode_reupload(positions: list[GnssData]) -> bytes:
    """0x1203 data: 1 to 5 GNSS data."""
    if not 1 <= len(positions) <= REUPLOAD_MAX_POSITIONS:
        raise ValueError(f"expected 1-{REUPLOAD_MAX_POSITIONS} positions, got {len(positions)}")
    return bytes([len(positions)]) + b"".join(encode_gnss(p) for p in positions)


def decode_reupload(data: bytes) -> list[GnssData]:
    _need(data, 1, "0x1203")
    count = data[0]
    if len(data) != 1 + count * GNSS_2011_BYTES:
        raise FrameError(
            "body", f"0x1203: {count} positions need {1 + count * 36} bytes, got {len(data)}"
        )
    return [decode_gnss(data, 1 + i * GNSS_2011_BYTES) for i in range(count)]


# --------------------------------------------------------------------------------------- alarms


@dataclass(frozen=True, slots=True)
class AlarmInfo:
    """0x1402 data (2011): source, warn type, time, info id, text."""

    warn_src: int
    warn_type: int
    warn_time: datetime
    info_id: int
    info_content: str


def encode_alarm_info(alarm: AlarmInfo) -> bytes:
    text = alarm.info_content.encode("gbk", errors="replace")
    return (
        struct.pack(
            ">BHQII",
            alarm.warn_src,
            alarm.warn_type,
            int(alarm.warn_time.timestamp()),
            alarm.info_id & 0xFFFFFFFF,
            len(text),
        )
        + text
    )


def decode_alarm_info(data: bytes) -> AlarmInfo:
    _need(data, 19, "0x1402")
    src, warn_type, seconds, info_id, length = struct.unpack_from(">BHQII", data)
    if len(data) != 19 + length:
        raise FrameError("body", f"0x1402: info_length says {length}, got {len(data) - 19}")
    return AlarmInfo(
        src,
        warn_type,
        datetime.fromtimestamp(seconds, UTC),
        info_id,
        data[19:].decode("gbk", errors="replace"),
    )


# ------------------------------------------------------------------------- 2019 position body

PLATFORM_ID_BYTES = 11
_ITEM_MILEAGE = 0x01  # JT/T 808 additional item: mileage, u32 in 1/10 km


def encode_position_2019(
    position: Position, platform_id: str = "", platform_alarm: int = 0
) -> bytes:
    """0x1202 data in JT/T 809-2019: encrypt 0, the position as a JT/T 808 0x0200 body (GMT+8
    BCD time, speed 1/10 km/h, mileage item 0x01 when known), then three platform ids (11 bytes)
    with their alarm u32; this platform is PLATFORM_ID1, the other two are zero."""
    from ingest.jt808.messages import LocationReport, bcd_time_from_datetime, encode_location

    gnss = gnss_from_position(position)
    items: dict[int, bytes] = {}
    if position.mileage_km is not None:
        items[_ITEM_MILEAGE] = min(round(position.mileage_km * 10), 0xFFFFFFFF).to_bytes(4, "big")
    report = LocationReport(
        alarm_flags=gnss.alarm,
        status_flags=gnss.state,
        latitude_e6=gnss.latitude_e6,
        longitude_e6=gnss.longitude_e6,
        altitude_m=max(-32768, min(round(position.altitude_m or 0), 32767)),
        speed_dkmh=min(round(position.speed_kmh * 10), 0xFFFF),
        heading_deg=gnss.heading_deg,
        bcd_time=bcd_time_from_datetime(position.fix_time),
        items=items,
    )
    return encode_gnss_2019(encode_location(report), platform_id, platform_alarm)


def encode_gnss_2019(location_body: bytes, platform_id: str, platform_alarm: int) -> bytes:
    """Wrap a JT/T 808 0x0200 body as 2019 0x1202 data (see :func:`encode_position_2019`)."""
    empty = bytes(PLATFORM_ID_BYTES) + bytes(4)
    return (
        struct.pack(">BI", 0, len(location_body))
        + location_body
        + fixed_text(platform_id, PLATFORM_ID_BYTES)
        + struct.pack(">I", platform_alarm)
        + empty
        + empty
    )


def decode_position_2019(data: bytes, offset: int = 0) -> tuple[GnssData, int]:
    """2019 0x1202 data at ``offset`` -> (the position in 2011 wire units, bytes used).

    Raises:
        FrameError(reason="body"): cut short, or a 0x0200 body that does not decode.
    """
    from ingest.jt808.codec import FrameError as Jt808FrameError
    from ingest.jt808.messages import decode_location

    _need(data[offset:], 5, "0x1202 (2019)")
    encrypted, length = struct.unpack_from(">BI", data, offset)
    end = offset + 5 + length + 3 * (PLATFORM_ID_BYTES + 4)
    _need(data, end, "0x1202 (2019)")
    try:
        report = decode_location(data[offset + 5 : offset + 5 + length])
        fix_time = report.fix_time()
    except Jt808FrameError as error:
        raise FrameError("body", f"0x1202 (2019) GNSS data: {error}") from None
    mileage = report.items.get(_ITEM_MILEAGE)
    gnss = GnssData(
        fix_time_local=fix_time.astimezone(BEIJING),
        longitude_e6=report.longitude_e6,
        latitude_e6=report.latitude_e6,
        speed_kmh=round(report.speed_kmh),
        tachograph_speed_kmh=round(report.speed_kmh),
        mileage_km=round(int.from_bytes(mileage, "big") / 10) if mileage else 0,
        heading_deg=report.heading_deg,
        altitude_m=report.altitude_m,
        state=report.status_flags,
        alarm=report.alarm_flags,
        encrypted=encrypted,
    )
    return gnss, end - offset


def encode_reupload_data(bodies: list[bytes]) -> bytes:
    """0x1203 data from 1 to 5 already encoded 0x1202 data (either version)."""
    if not 1 <= len(bodies) <= REUPLOAD_MAX_POSITIONS:
        raise ValueError(f"expected 1-{REUPLOAD_MAX_POSITIONS} positions, got {len(bodies)}")
    return bytes([len(bodies)]) + b"".join(bodies)


def decode_positions(data_type: int, data: bytes, *, is_2019: bool) -> list[GnssData]:
    """The positions of a 0x1202 or 0x1203 data in either version's layout.

    Raises:
        FrameError(reason="body"): a layout that does not fit.
    """
    if not is_2019:
        return [decode_gnss(data)] if data_type == MSG_REALTIME_POSITION else decode_reupload(data)
    if data_type == MSG_REALTIME_POSITION:
        return [decode_position_2019(data)[0]]
    _need(data, 1, "0x1203 (2019)")
    positions, offset = [], 1
    for _ in range(data[0]):
        gnss, used = decode_position_2019(data, offset)
        positions.append(gnss)
        offset += used
    if offset != len(data):
        raise FrameError("body", f"0x1203 (2019): {len(data) - offset} bytes left over")
    return positions
