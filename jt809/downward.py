"""What the superior platform asks of us (JT/T 809 downward requests) and the answers we owe.

Requests arrive on either link (the slave link normally, the main link with some superiors)
and are handled the same way; nothing is ignored: each is stored, answered, or (when this
platform cannot serve it) answered as the standard's answer for that request says with result
"failure", or, when the standard has no answer for it, logged with the peer and counted under
``unsupported``.

- **0x9301 查岗** -> a row in ``jt809_platform_queries`` (deadline: the 2019 answer time, else
  ``jt809.query_answer_limit_s``); answered from the duty page, which queues **0x1301**.
- **0x9302 下发平台间报文** -> logged, answered **0x1302** with its info id at once.
- **0x9401 督办** -> a supervision order (``source`` superior) on the vehicle's company;
  answering it queues **0x1401**. A vehicle we do not know: logged and counted (no order).
- **0x9402 报警预警 / 0x9403 实时交换报警** -> an alarm ``superior_warning`` /
  ``superior_alarm`` on the vehicle (it appears in the alarm list with its level).
- **0x9503 下发车辆报文** -> a ``text`` command to the vehicle's terminal (the downlink command
  channel); **0x1503** is queued when the command is final (acknowledged: 0 success; failed or
  expired: 1 failure); a vehicle we do not know is answered 1 at once.
- **0x9501 车辆单向监听, 0x9502 车辆拍照, 0x9504 行驶记录, 0x9505 报警应急**: not served
  (no audio, camera or tachograph relay here); answered 0x1501 / 0x1502 / 0x1504 / 0x1505
  with result 1 (failure; 0x1502: "不支持拍照"), counted under ``unsupported``.

The answers queued in ``jt809_outbox`` are turned into frames by :func:`answer_frame`.
"""

from __future__ import annotations

import logging
import struct
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from gps_monitor import alarm_levels
from gps_monitor.commands import TextBody, build_text
from gps_monitor.config import Settings
from gps_monitor.db import commands as commands_db
from gps_monitor.db import jt809 as jt809_db
from gps_monitor.db import supervisions as supervisions_db
from gps_monitor.db.jt809 import OutboxEntry
from jt809 import exchange as x
from jt809 import messages as m
from jt809.codec import Frame, FrameError

log = logging.getLogger(__name__)

Send = Callable[[int, bytes], Awaitable[bool]]

#: Requests this platform cannot serve -> (answer message, data after the request reference).
UNSERVED_ANSWERS: dict[int, tuple[int, bytes]] = {
    0x9501: (0x1501, b"\x01"),  # 车辆单向监听: 1 监听失败
    0x9502: (0x1502, b"\x00" + bytes(4)),  # 车辆拍照: 0 不支持拍照, no photo
    0x9504: (0x1504, b"\x00" + bytes(4)),  # 行驶记录: no data
    0x9505: (0x1505, b"\x01"),  # 报警应急: 1 失败
}
SUPERIOR_ALARM_TYPES = {x.MSG_WARNING: "superior_warning", x.MSG_EXCHANGE_ALARM: "superior_alarm"}
WARN_TYPE_NAMES = {
    0x0001: "超速报警", 0x0002: "疲劳驾驶报警", 0x0003: "紧急报警", 0x0004: "进入指定区域报警",
    0x0005: "离开指定区域报警", 0x0006: "路段堵塞报警", 0x0007: "危险路段报警",
    0x0008: "越界报警", 0x0009: "盗警", 0x000A: "劫警", 0x000B: "偏离路线报警",
    0x000C: "车辆移动报警", 0x000D: "超时驾驶报警", 0x000E: "其他报警",
}  # fmt: skip


class Downward:
    """Handles the superior's requests of one service (see the module docstring).

    ``send(msg_id, body)`` writes an immediate answer on the best link (False when none is up).
    ``counts``: requests by kind; ``unsupported`` by message or sub-business type.
    """

    def __init__(self, settings: Settings, pool: asyncpg.Pool, send: Send) -> None:
        self.settings = settings
        self.jt = settings.jt809
        self.pool = pool
        self.send = send
        self.counts: Counter[str] = Counter()
        self.unsupported: Counter[int] = Counter()

    async def handle(self, frame: Frame, peer: object) -> None:
        """One request frame; bad bodies and unknown types are counted and logged, never raised
        (the link stays up)."""
        try:
            if frame.msg_id not in (x.MSG_PLATFORM_DOWN, x.MSG_ALARM_DOWN, x.MSG_CONTROL_DOWN):
                self.unsupported[frame.msg_id] += 1
                log.warning("jt809: message 0x%04x from %s not supported; dropped",
                            frame.msg_id, peer)  # fmt: skip
                return
            envelope = x.decode_envelope(frame.msg_id, frame.body, self.jt.version)
            await self._dispatch(frame, envelope, peer)
        except FrameError as error:
            self.counts["bad_requests"] += 1
            log.warning("jt809: request 0x%04x from %s not understood: %s", frame.msg_id, peer,
                        error)  # fmt: skip
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            self.counts["failed_requests"] += 1
            log.error("jt809: request 0x%04x from %s not stored (database: %s)", frame.msg_id,
                      peer, error)  # fmt: skip

    async def _dispatch(self, frame: Frame, envelope: x.Envelope, peer: object) -> None:
        data_type = envelope.data_type
        if data_type == x.MSG_QUERY:
            await self._query(frame, envelope)
        elif data_type == x.MSG_PLATFORM_TEXT:
            await self._platform_text(envelope)
        elif data_type == x.MSG_SUPERVISION:
            await self._supervision(envelope)
        elif data_type in SUPERIOR_ALARM_TYPES:
            await self._superior_alarm(frame, envelope)
        elif data_type == x.MSG_VEHICLE_TEXT:
            await self._vehicle_text(frame, envelope)
        elif data_type in UNSERVED_ANSWERS:
            await self._unserved(frame, envelope)
        else:
            self.unsupported[data_type] += 1
            log.warning("jt809: request 0x%04x/0x%04x from %s not supported; no answer defined",
                        frame.msg_id, data_type, peer)  # fmt: skip

    # ------------------------------------------------------------------ 查岗

    async def _query(self, frame: Frame, envelope: x.Envelope) -> None:
        query = x.decode_query(envelope.data, self.jt.version)
        now = datetime.now(UTC)
        limit_s = query.answer_time_min * 60 or self.jt.query_answer_limit_s
        company_id = None
        if query.object_type == x.QUERY_OBJECT_COMPANY:
            company_id = await jt809_db.company_for_object(self.pool, query.object_id)
        row_id = await jt809_db.insert_query(
            self.pool,
            info_id=query.info_id,
            msg_sn=frame.header.msg_sn,
            object_type=query.object_type,
            object_id=query.object_id,
            company_id=company_id,
            question=query.question,
            received_at=now,
            deadline=now + timedelta(seconds=limit_s),
        )
        self.counts["queries"] += 1
        log.info("jt809: 查岗 %s (info id %s, object %s %r): %s; answer within %.0f s",
                 row_id, query.info_id, query.object_type, query.object_id, query.question,
                 limit_s)  # fmt: skip

    async def _platform_text(self, envelope: x.Envelope) -> None:
        message = x.decode_query(envelope.data, self.jt.version)  # 0x9302: the 0x9301 layout
        self.counts["platform_texts"] += 1
        log.info("jt809: 0x9302 platform message %s: %s", message.info_id, message.question)
        answer = x.Envelope(x.MSG_PLATFORM_TEXT_ANSWER, struct.pack(">I", message.info_id))
        await self.send(
            x.MSG_PLATFORM_UP, x.encode_envelope(x.MSG_PLATFORM_UP, answer, self.jt.version)
        )

    # ------------------------------------------------------------------ 督办

    async def _supervision(self, envelope: x.Envelope) -> None:
        request = x.decode_supervision(envelope.data)
        vehicle = await self._vehicle(envelope)
        if vehicle is None:
            return
        warn = WARN_TYPE_NAMES.get(request.warn_type, f"0x{request.warn_type:04x}")
        note = (
            f"上级平台督办 {request.supervision_id}: {envelope.plate_number} {warn} "
            f"({request.warn_time.isoformat()}); 督办人 {request.supervisor} "
            f"{request.supervisor_tel} {request.supervisor_email}".strip()
        )
        row_id = await supervisions_db.issue_from_superior(
            self.pool,
            company_id=vehicle["company_id"],
            vehicle_id=vehicle["id"],
            note=note,
            deadline=request.deadline,
            superior_info_id=request.supervision_id,
        )
        self.counts["supervisions"] += 1
        log.info("jt809: 督办 %s -> supervision %s on company %s", request.supervision_id,
                 row_id, vehicle["company_id"])  # fmt: skip

    # ------------------------------------------------------------------ warnings

    async def _superior_alarm(self, frame: Frame, envelope: x.Envelope) -> None:
        warning = x.decode_warning(envelope.data, self.jt.version)
        plate = warning.plate_number or envelope.plate_number
        color = warning.plate_color if warning.plate_number else envelope.plate_color
        vehicle = await self._vehicle(x.Envelope(envelope.data_type, b"", plate, color))
        if vehicle is None:
            return
        alarm_type = SUPERIOR_ALARM_TYPES[envelope.data_type]
        details = {
            "warn_type": warning.warn_type,
            "warn_name": WARN_TYPE_NAMES.get(warning.warn_type, f"0x{warning.warn_type:04x}"),
            "content": warning.content,
            "source": "jt809",
        }
        level = alarm_levels.level_for(
            alarm_type, vehicle["vehicle_class"], self.settings.alarms, details
        )
        alarm_id = await jt809_db.insert_superior_alarm(
            self.pool, vehicle, alarm_type, warning.warn_time, details, level
        )
        if alarm_id is not None:  # its 2019 0x1412 quotes this frame
            await jt809_db.record_alarm_report(
                self.pool, alarm_id, envelope.data_type, frame.header.msg_sn
            )
        self.counts[alarm_type] += 1

    # ------------------------------------------------------------------ 0x9503

    async def _vehicle_text(self, frame: Frame, envelope: x.Envelope) -> None:
        text = x.decode_vehicle_text(envelope.data)
        vehicle = await self._vehicle(envelope)
        if vehicle is None:
            answer = x.encode_vehicle_text_answer(
                self.jt.version, text.msg_sequence, frame.header.msg_sn, x.TEXT_FAILED
            )
            await self._send_control(envelope, x.MSG_VEHICLE_TEXT_ANSWER, answer)
            return
        cmd = self.settings.commands
        command = build_text(
            vehicle["terminal_id"],
            TextBody(text=text.text, emergency=text.priority == 0),
            text_max_bytes=max(cmd.text_max_bytes, len(text.text.encode("gbk", "replace"))),
            expiry_s=cmd.expiry_s,
        )
        async with self.pool.acquire() as conn, conn.transaction():
            row = await commands_db.create(
                conn, command, vehicle_id=vehicle["id"], company_id=vehicle["company_id"]
            )
            await jt809_db.record_relayed_text(
                conn, row["id"], text.msg_sequence, frame.header.msg_sn,
                envelope.plate_number, envelope.plate_color,
            )  # fmt: skip
        self.counts["vehicle_texts"] += 1
        log.info("jt809: 0x9503 %s for %s relayed as command %s", text.msg_sequence,
                 envelope.plate_number, row["command_id"])  # fmt: skip

    async def _unserved(self, frame: Frame, envelope: x.Envelope) -> None:
        answer_type, data = UNSERVED_ANSWERS[envelope.data_type]
        self.unsupported[envelope.data_type] += 1
        if self.jt.version == 2019:
            data = struct.pack(">HI", envelope.data_type, frame.header.msg_sn) + data[:1]
        log.warning("jt809: request 0x%04x for %s not served here; answered 0x%04x failure",
                    envelope.data_type, envelope.plate_number, answer_type)  # fmt: skip
        await self._send_control(envelope, answer_type, data)

    async def _send_control(self, envelope: x.Envelope, data_type: int, data: bytes) -> None:
        answer = x.Envelope(data_type, data, envelope.plate_number, envelope.plate_color)
        body = x.encode_envelope(x.MSG_CONTROL_UP, answer, self.jt.version)
        await self.send(x.MSG_CONTROL_UP, body)

    async def _vehicle(self, envelope: x.Envelope) -> dict[str, Any] | None:
        vehicle = await jt809_db.vehicle_by_plate(
            self.pool, envelope.plate_number, envelope.plate_color
        )
        if vehicle is None:
            self.counts["unknown_vehicle"] += 1
            log.warning("jt809: request 0x%04x for %s (colour %s): no such vehicle here",
                        envelope.data_type, envelope.plate_number,
                        envelope.plate_color)  # fmt: skip
        return vehicle


# ------------------------------------------------------------------------------ answers owed


def answer_frame(entry: OutboxEntry, version: int, platform_id: str) -> tuple[int, bytes]:
    """The (message id, body) of a queued answer or registration (``jt809_outbox`` kinds
    query_answer, supervision_answer, alarm_result, text_answer, registration; the vehicle's
    plate and colour are in the payload where the envelope needs them).

    Raises:
        ValueError: a kind that is not an answer.
    """
    p = entry.payload
    if entry.kind == "query_answer":
        answer = x.QueryAnswer(
            p["object_type"], p["object_id"], p["info_id"], p["answer"],
            responder=p.get("responder", ""), source_msg_sn=p["msg_sn"],
        )  # fmt: skip
        envelope = x.Envelope(x.MSG_QUERY_ANSWER, x.encode_query_answer(answer, version))
        return x.MSG_PLATFORM_UP, x.encode_envelope(x.MSG_PLATFORM_UP, envelope, version)
    if entry.kind == "supervision_answer":
        data = x.encode_supervision_answer(p["superior_info_id"], x.SUPERVISION_DONE)
        envelope = x.Envelope(x.MSG_SUPERVISION_ANSWER, data, p["plate_number"], p["plate_color"])
        return m.MSG_VEHICLE_ALARM, x.encode_envelope(m.MSG_VEHICLE_ALARM, envelope, version)
    if entry.kind == "alarm_result":
        data = x.encode_alarm_result(
            version, p["alarm_id"], x.ALARM_RESULT_DONE, p.get("source_msg_sn", 0),
            p.get("source_data_type", x.MSG_ALARM_INFO),
        )  # fmt: skip
        envelope = x.Envelope(x.MSG_ALARM_RESULT, data, p["plate_number"], p["plate_color"])
        return m.MSG_VEHICLE_ALARM, x.encode_envelope(m.MSG_VEHICLE_ALARM, envelope, version)
    if entry.kind == "text_answer":
        result = x.TEXT_SENT if p["state"] == "acknowledged" else x.TEXT_FAILED
        data = x.encode_vehicle_text_answer(version, p["msg_sequence"], p["msg_sn"], result)
        envelope = x.Envelope(x.MSG_VEHICLE_TEXT_ANSWER, data, p["plate_number"], p["plate_color"])
        return x.MSG_CONTROL_UP, x.encode_envelope(x.MSG_CONTROL_UP, envelope, version)
    if entry.kind == "registration":
        reg = x.VehicleRegistration(
            platform_id=platform_id,
            producer_id=p.get("maker_id") or "",
            terminal_model=p.get("model") or "",
            terminal_id=p.get("device_id") or p["terminal_id"][-7:],
            terminal_sim=p["terminal_id"],
            imei=p.get("imei") or "",
        )
        envelope = x.Envelope(
            x.MSG_VEHICLE_REGISTRATION, x.encode_registration(reg, version),
            p["plate_number"], p["plate_color"],
        )  # fmt: skip
        return m.MSG_VEHICLE_DYNAMIC, x.encode_envelope(m.MSG_VEHICLE_DYNAMIC, envelope, version)
    raise ValueError(f"expected an answer kind, got {entry.kind!r}")
