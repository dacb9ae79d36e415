"""JT/T 809 bodies of the duty exchange with the superior: registration, alarms in the 2019
layout, 查岗, 督办, warnings, relayed texts, and the answers to requests we cannot serve.

Outer bodies (the "main business type" envelopes, JT/T 809-2011 section 5 / -2019 section 5)::

    0x1200 / 0x1500 / 0x9500   plate 21 bytes GBK, plate colour u8, data_type u16, length u32
    0x1400 / 0x9400            2011: as above; 2019: data_type u16, length u32 (no vehicle:
                               the 2019 alarm bodies carry plate and colour themselves)
    0x1300 / 0x9300            data_type u16, length u32 (platform messages, no vehicle)

Sub-bodies (checked against the published vectors of SmallChi/JT809, see
``tests/test_jt809_exchange.py``; the 2011 0x9301 follows the 2011 standard's table, which
other implementations share: object type u8, object id 12 bytes)::

    0x1201 (2011)  platform_id 11, producer_id 11, terminal_model 20, terminal_id 7,
                   terminal_sim 12 (digits, left padded with '0')
    0x1201 (2019)  platform_id 11, producer_id 11, terminal_model 30, imei 15,
                   terminal_id 30, terminal_sim 13
    0x1402 (2019)  source platform id 11, warn_type u16, warn_time u64, start u64, end u64
                   (UTC seconds), plate 21, colour u8, destination platform id 11,
                   drv_line_id u32, info_length u32, info_content GBK
    0x1412 (2011)  info_id u32 (the 0x1402 info id), result u8
    0x1412 (2019)  source_data_type u16 (0x1402), source_msg_sn u32, result u8
    0x9301 (2011)  object_type u8, object_id 12, info_id u32, info_length u32, question
    0x9301 (2019)  object_type u8, object_id 20, answer_time u8 (minutes), info_id u32,
                   info_length u32, question
    0x1301 (2011)  object_type u8, object_id 12, info_id u32, info_length u32, answer
    0x1301 (2019)  object_type u8, responder 16, responder_tel 20, object_id 20,
                   source_data_type u16 (0x9301), source_msg_sn u32, info_length u32, answer
    0x9401         warn_src u8, warn_type u16, warn_time u64, supervision_id u32,
                   supervision_end_time u64, level u8, supervisor 16, tel 20, email 32
    0x1401         supervision_id u32, result u8 (0 处理中, 1 已处理完毕, 2 不作处理, 3 将来处理)
    0x9402/0x9403  2011: warn_src u8, warn_type u16, warn_time u64, length u32, content;
                   2019: source platform id 11, warn_type, warn_time, start, end, plate 21,
                   colour u8, destination platform id 11, drv_line_id u32, length, content
    0x9503         msg_sequence u32, priority u8, length u32, text GBK
    0x1503 (2011)  msg_id u32 (the 0x9503 msg_sequence), result u8 (0 success, 1 failure)
    0x1503 (2019)  source_data_type u16 (0x9503), source_msg_sn u32, result u8
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, datetime

from jt809.codec import FrameError
from jt809.messages import PLATE_BYTES, fixed_text, read_text

MSG_PLATFORM_UP = 0x1300
MSG_PLATFORM_DOWN = 0x9300
MSG_ALARM_DOWN = 0x9400
MSG_CONTROL_UP = 0x1500
MSG_CONTROL_DOWN = 0x9500
MSG_VEHICLE_REGISTRATION = 0x1201
MSG_QUERY = 0x9301
MSG_QUERY_ANSWER = 0x1301
MSG_PLATFORM_TEXT = 0x9302
MSG_PLATFORM_TEXT_ANSWER = 0x1302
MSG_SUPERVISION = 0x9401
MSG_SUPERVISION_ANSWER = 0x1401
MSG_ALARM_RESULT = 0x1412
MSG_WARNING = 0x9402
MSG_EXCHANGE_ALARM = 0x9403
MSG_VEHICLE_TEXT = 0x9503
MSG_VEHICLE_TEXT_ANSWER = 0x1503
MSG_MONITOR = 0x9501
MSG_MONITOR_ANSWER = 0x1501
MSG_EMERGENCY = 0x9505
MSG_EMERGENCY_ANSWER = 0x1505
MSG_ALARM_INFO = 0x1402

#: Envelopes whose 2019 form has no vehicle (plate, colour) before the data type.
NO_VEHICLE_2019 = frozenset({0x1400, 0x9400})
#: Envelopes that never carry a vehicle.
NO_VEHICLE = frozenset({MSG_PLATFORM_UP, MSG_PLATFORM_DOWN})

QUERY_OBJECT_PLATFORM = 1  # 当前连接的下级平台
QUERY_OBJECT_COMPANY = 2  # 下级平台所属单一业户
QUERY_OBJECT_ALL_COMPANIES = 3  # 下级平台所属所有业户

SUPERVISION_DONE = 1  # 0x1401 result: 已处理完毕
ALARM_RESULT_DONE = 1  # 0x1412 result: 处理完毕 (0 处理中, 2 不作处理, 3 将来处理)
TEXT_SENT = 0  # 0x1503 result: 下发成功
TEXT_FAILED = 1  # 0x1503 result: 下发失败


def _need(data: bytes, size: int, what: str) -> None:
    if len(data) < size:
        raise FrameError("body", f"{what}: expected >= {size} bytes, got {len(data)}")


def _seconds(moment: datetime) -> int:
    return max(0, int(moment.timestamp()))


def _time(seconds: int, what: str) -> datetime:
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, ValueError, OSError):
        raise FrameError("body", f"{what}: expected UTC seconds, got {seconds}") from None


def _text_with_length(data: bytes, offset: int, what: str) -> str:
    """A u32 length then that many GBK bytes, ending the body exactly."""
    _need(data, offset + 4, what)
    (length,) = struct.unpack_from(">I", data, offset)
    if len(data) - offset - 4 != length:
        raise FrameError(
            "body", f"{what}: length says {length} bytes, got {len(data) - offset - 4}"
        )
    return data[offset + 4 :].decode("gbk", errors="replace")


def _with_length(text: str) -> bytes:
    raw = text.encode("gbk", errors="replace")
    return struct.pack(">I", len(raw)) + raw


# ------------------------------------------------------------------------------------ envelope


@dataclass(frozen=True, slots=True)
class Envelope:
    """A main-business body: the vehicle (empty plate when the envelope has none), the
    sub-business ``data_type`` and its ``data``."""

    data_type: int
    data: bytes
    plate_number: str = ""
    plate_color: int = 0


def has_vehicle(msg_id: int, version: int) -> bool:
    return msg_id not in NO_VEHICLE and not (version == 2019 and msg_id in NO_VEHICLE_2019)


def encode_envelope(msg_id: int, envelope: Envelope, version: int) -> bytes:
    head = b""
    if has_vehicle(msg_id, version):
        head = fixed_text(envelope.plate_number, PLATE_BYTES) + bytes([envelope.plate_color])
    return head + struct.pack(">HI", envelope.data_type, len(envelope.data)) + envelope.data


def decode_envelope(msg_id: int, body: bytes, version: int) -> Envelope:
    """Raises FrameError(reason="body"): cut short or a data length that lies."""
    plate, color, offset = "", 0, 0
    if has_vehicle(msg_id, version):
        _need(body, PLATE_BYTES + 1, f"0x{msg_id:04x} vehicle")
        plate, color, offset = read_text(body[:PLATE_BYTES]), body[PLATE_BYTES], PLATE_BYTES + 1
    _need(body, offset + 6, f"0x{msg_id:04x} envelope")
    data_type, length = struct.unpack_from(">HI", body, offset)
    data = body[offset + 6 :]
    if len(data) != length:
        raise FrameError(
            "body", f"0x{msg_id:04x}: data_length says {length} bytes, got {len(data)}"
        )
    return Envelope(data_type, data, plate, color)


# -------------------------------------------------------------------------------- 0x1201


@dataclass(frozen=True, slots=True)
class VehicleRegistration:
    """0x1201: the platform, the terminal's maker, model, id and SIM number."""

    platform_id: str
    producer_id: str
    terminal_model: str
    terminal_id: str
    terminal_sim: str
    imei: str = ""


def encode_registration(reg: VehicleRegistration, version: int) -> bytes:
    if version == 2019:
        return (
            fixed_text(reg.platform_id, 11)
            + fixed_text(reg.producer_id, 11)
            + fixed_text(reg.terminal_model, 30)
            + fixed_text(reg.imei, 15)
            + fixed_text(reg.terminal_id.upper(), 30)
            + fixed_text(reg.terminal_sim, 13)
        )
    return (
        fixed_text(reg.platform_id, 11)
        + fixed_text(reg.producer_id, 11)
        + fixed_text(reg.terminal_model, 20)
        + fixed_text(reg.terminal_id.upper()[-7:], 7)
        + reg.terminal_sim[-12:].rjust(12, "0").encode("ascii", errors="replace")
    )


def decode_registration(data: bytes, version: int) -> VehicleRegistration:
    sizes = (11, 11, 30, 15, 30, 13) if version == 2019 else (11, 11, 20, 7, 12)
    _need(data, sum(sizes), "0x1201")
    fields, offset = [], 0
    for size in sizes:
        fields.append(read_text(data[offset : offset + size]))
        offset += size
    if version == 2019:
        platform, producer, model, imei, terminal, sim = fields
        return VehicleRegistration(platform, producer, model, terminal, sim, imei)
    platform, producer, model, terminal, sim = fields
    return VehicleRegistration(platform, producer, model, terminal, sim.lstrip("0"))


# -------------------------------------------------------------------------------- 0x1402 (2019)


@dataclass(frozen=True, slots=True)
class Alarm2019:
    """0x1402 / 0x9402 / 0x9403 data in the 2019 layout (times UTC)."""

    source_platform_id: str
    warn_type: int
    warn_time: datetime
    start_time: datetime
    end_time: datetime
    plate_number: str
    plate_color: int
    destination_platform_id: str
    drv_line_id: int
    info_content: str


def encode_alarm_2019(alarm: Alarm2019) -> bytes:
    return (
        fixed_text(alarm.source_platform_id, 11)
        + struct.pack(
            ">HQQQ",
            alarm.warn_type,
            _seconds(alarm.warn_time),
            _seconds(alarm.start_time),
            _seconds(alarm.end_time),
        )
        + fixed_text(alarm.plate_number, PLATE_BYTES)
        + bytes([alarm.plate_color])
        + fixed_text(alarm.destination_platform_id, 11)
        + struct.pack(">I", alarm.drv_line_id)
        + _with_length(alarm.info_content)
    )


def _platform_id(raw: bytes) -> str:
    """11-byte platform code: GBK digits/letters, or (some platforms, 0x9402) a big number."""
    if raw and raw[0] == 0 and any(raw):
        return str(int.from_bytes(raw, "big"))
    return read_text(raw)


def decode_alarm_2019(data: bytes) -> Alarm2019:
    _need(data, 11 + 26 + PLATE_BYTES + 1 + 11 + 8, "2019 alarm")
    warn_type, warn, start, end = struct.unpack_from(">HQQQ", data, 11)
    offset = 11 + 26
    plate = read_text(data[offset : offset + PLATE_BYTES])
    color = data[offset + PLATE_BYTES]
    offset += PLATE_BYTES + 1
    destination = _platform_id(data[offset : offset + 11])
    (line,) = struct.unpack_from(">I", data, offset + 11)
    return Alarm2019(
        _platform_id(data[:11]),
        warn_type,
        _time(warn, "warn_time"),
        _time(start, "start_time"),
        _time(end, "end_time"),
        plate,
        color,
        destination,
        line,
        _text_with_length(data, offset + 15, "2019 alarm"),
    )


# -------------------------------------------------------------------------------- 0x1412


def encode_alarm_result(
    version: int, info_id: int, result: int, msg_sn: int = 0, data_type: int = MSG_ALARM_INFO
) -> bytes:
    """0x1412: the handling result of an alarm (2011: its info id; 2019: the data type of the
    frame that reported it, 0x1402 sent by us or 0x9402 / 0x9403 received, and that frame's
    serial number)."""
    if version == 2019:
        return struct.pack(">HIB", data_type, msg_sn & 0xFFFFFFFF, result)
    return struct.pack(">IB", info_id & 0xFFFFFFFF, result)


def decode_alarm_result(data: bytes, version: int) -> tuple[int, int]:
    """-> (info id or source msg sn, result)."""
    if version == 2019:
        _need(data, 7, "0x1412")
        _type, sn, result = struct.unpack_from(">HIB", data)
        return sn, result
    _need(data, 5, "0x1412")
    info_id, result = struct.unpack_from(">IB", data)
    return info_id, result


# -------------------------------------------------------------------------------- 查岗


@dataclass(frozen=True, slots=True)
class PlatformQuery:
    """0x9301 查岗: who is asked (object type 1 platform, 2 one company, 3 all companies, and
    the object id, e.g. the company's 经营许可证号), the info id to quote, the question, and
    (2019) the answer time limit in minutes (0: not given)."""

    object_type: int
    object_id: str
    info_id: int
    question: str
    answer_time_min: int = 0


def encode_query(query: PlatformQuery, version: int) -> bytes:
    if version == 2019:
        head = (
            bytes([query.object_type])
            + fixed_text(query.object_id, 20)
            + bytes([query.answer_time_min & 0xFF])
        )
    else:
        head = bytes([query.object_type]) + fixed_text(query.object_id, 12)
    return head + struct.pack(">I", query.info_id) + _with_length(query.question)


def decode_query(data: bytes, version: int) -> PlatformQuery:
    id_bytes = 20 if version == 2019 else 12
    offset = 1 + id_bytes + (1 if version == 2019 else 0)
    _need(data, offset + 8, "0x9301")
    answer_time = data[1 + id_bytes] if version == 2019 else 0
    (info_id,) = struct.unpack_from(">I", data, offset)
    return PlatformQuery(
        data[0],
        read_text(data[1 : 1 + id_bytes]),
        info_id,
        _text_with_length(data, offset + 4, "0x9301"),
        answer_time,
    )


@dataclass(frozen=True, slots=True)
class QueryAnswer:
    """0x1301: the answer to a 查岗 (2011 quotes the info id; 2019 the request's data type and
    frame serial number, and names the responder)."""

    object_type: int
    object_id: str
    info_id: int
    answer: str
    responder: str = ""
    responder_tel: str = ""
    source_msg_sn: int = 0
    source_data_type: int = MSG_QUERY


def encode_query_answer(answer: QueryAnswer, version: int) -> bytes:
    if version == 2019:
        head = (
            bytes([answer.object_type])
            + fixed_text(answer.responder, 16)
            + fixed_text(answer.responder_tel, 20)
            + fixed_text(answer.object_id, 20)
            + struct.pack(">HI", answer.source_data_type, answer.source_msg_sn & 0xFFFFFFFF)
        )
    else:
        head = (
            bytes([answer.object_type])
            + fixed_text(answer.object_id, 12)
            + struct.pack(">I", answer.info_id & 0xFFFFFFFF)
        )
    return head + _with_length(answer.answer)


def decode_query_answer(data: bytes, version: int) -> QueryAnswer:
    if version == 2019:
        _need(data, 63 + 4, "0x1301")
        source_type, sn = struct.unpack_from(">HI", data, 57)
        return QueryAnswer(
            data[0],
            read_text(data[37:57]),
            0,
            _text_with_length(data, 63, "0x1301"),
            read_text(data[1:17]),
            read_text(data[17:37]),
            sn,
            source_type,
        )
    _need(data, 17 + 4, "0x1301")
    (info_id,) = struct.unpack_from(">I", data, 13)
    return QueryAnswer(
        data[0], read_text(data[1:13]), info_id, _text_with_length(data, 17, "0x1301")
    )


# -------------------------------------------------------------------------------- 督办


@dataclass(frozen=True, slots=True)
class SupervisionRequest:
    """0x9401 督办: the alarm (source, 809 warn type, time), the supervision id to quote, the
    deadline, level (0 紧急, 1 一般) and who supervises (name, telephone, e-mail)."""

    warn_src: int
    warn_type: int
    warn_time: datetime
    supervision_id: int
    deadline: datetime
    level: int
    supervisor: str
    supervisor_tel: str
    supervisor_email: str


SUPERVISION_BYTES = 1 + 2 + 8 + 4 + 8 + 1 + 16 + 20 + 32


def encode_supervision(request: SupervisionRequest) -> bytes:
    return (
        struct.pack(
            ">BHQIQB",
            request.warn_src,
            request.warn_type,
            _seconds(request.warn_time),
            request.supervision_id,
            _seconds(request.deadline),
            request.level,
        )
        + fixed_text(request.supervisor, 16)
        + fixed_text(request.supervisor_tel, 20)
        + fixed_text(request.supervisor_email, 32)
    )


def decode_supervision(data: bytes) -> SupervisionRequest:
    _need(data, SUPERVISION_BYTES, "0x9401")
    src, warn_type, warn, sid, end, level = struct.unpack_from(">BHQIQB", data)
    return SupervisionRequest(
        src,
        warn_type,
        _time(warn, "warn_time"),
        sid,
        _time(end, "supervision_end_time"),
        level,
        read_text(data[24:40]),
        read_text(data[40:60]),
        read_text(data[60:92]),
    )


def encode_supervision_answer(supervision_id: int, result: int) -> bytes:
    return struct.pack(">IB", supervision_id & 0xFFFFFFFF, result)


def decode_supervision_answer(data: bytes) -> tuple[int, int]:
    _need(data, 5, "0x1401")
    sid, result = struct.unpack_from(">IB", data)
    return sid, result


# -------------------------------------------------------------------------------- warnings


@dataclass(frozen=True, slots=True)
class SuperiorWarning:
    """0x9402 报警预警 / 0x9403 实时交换报警 in either layout (2011 has no vehicle in the data:
    it is the envelope's)."""

    warn_type: int
    warn_time: datetime
    content: str
    warn_src: int = 0
    plate_number: str = ""
    plate_color: int = 0
    start_time: datetime | None = None
    end_time: datetime | None = None


def encode_warning(warning: SuperiorWarning, version: int) -> bytes:
    if version == 2019:
        return encode_alarm_2019(
            Alarm2019(
                "",
                warning.warn_type,
                warning.warn_time,
                warning.start_time or warning.warn_time,
                warning.end_time or warning.warn_time,
                warning.plate_number,
                warning.plate_color,
                "",
                0,
                warning.content,
            )
        )
    return struct.pack(
        ">BHQ", warning.warn_src, warning.warn_type, _seconds(warning.warn_time)
    ) + _with_length(warning.content)


def decode_warning(data: bytes, version: int) -> SuperiorWarning:
    if version == 2019:
        alarm = decode_alarm_2019(data)
        return SuperiorWarning(
            alarm.warn_type,
            alarm.warn_time,
            alarm.info_content,
            0,
            alarm.plate_number,
            alarm.plate_color,
            alarm.start_time,
            alarm.end_time,
        )
    _need(data, 15, "0x9402/0x9403")
    src, warn_type, seconds = struct.unpack_from(">BHQ", data)
    return SuperiorWarning(
        warn_type, _time(seconds, "warn_time"), _text_with_length(data, 11, "warning"), src
    )


# -------------------------------------------------------------------------------- 0x9503


@dataclass(frozen=True, slots=True)
class VehicleText:
    """0x9503 下发车辆报文: a text for the driver, with its sequence number and priority
    (0 紧急, 1 一般)."""

    msg_sequence: int
    priority: int
    text: str


def encode_vehicle_text(text: VehicleText) -> bytes:
    return struct.pack(">IB", text.msg_sequence, text.priority) + _with_length(text.text)


def decode_vehicle_text(data: bytes) -> VehicleText:
    _need(data, 9, "0x9503")
    sequence, priority = struct.unpack_from(">IB", data)
    return VehicleText(sequence, priority, _text_with_length(data, 5, "0x9503"))


def encode_vehicle_text_answer(version: int, msg_sequence: int, msg_sn: int, result: int) -> bytes:
    """0x1503 (2011: the 0x9503 msg_sequence; 2019: source data type 0x9503 and the request
    frame's serial number)."""
    if version == 2019:
        return struct.pack(">HIB", MSG_VEHICLE_TEXT, msg_sn & 0xFFFFFFFF, result)
    return struct.pack(">IB", msg_sequence & 0xFFFFFFFF, result)


def decode_vehicle_text_answer(data: bytes, version: int) -> tuple[int, int]:
    """-> (msg_sequence (2011) or source msg sn (2019), result)."""
    if version == 2019:
        _need(data, 7, "0x1503")
        _type, sn, result = struct.unpack_from(">HIB", data)
        return sn, result
    _need(data, 5, "0x1503")
    sequence, result = struct.unpack_from(">IB", data)
    return sequence, result
