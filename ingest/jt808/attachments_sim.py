"""The simulated terminal's side of active safety (``jt808-sim``, tests, benchmarks/media.py):
an ADAS alarm with attachments in a 0x0200 (item 0x64), and, on the platform's 0x9208, the
upload to the attachment server: 0x1210, per file 0x1211, data frames, 0x1212, then whatever
0x9212 asks for again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ingest.jt808 import jsatl
from ingest.jt808 import messages as m
from ingest.jt808.codec import Frame, FrameSplitter, decode_frame, encode_frame
from ingest.jt808.media_sim import simulated_report

if TYPE_CHECKING:
    from ingest.jt808.sim import SimCamera

log = logging.getLogger(__name__)

DATA_FRAME_BYTES = 16 * 1024
TIMEOUT_S = 60.0


def adas_report(
    terminal_code: str, sequence: int, attachments: int, moment: datetime | None = None
) -> m.LocationReport:
    """A 0x0200 with one ADAS forward-collision alarm (二级, an event) announcing
    ``attachments`` files; ``terminal_code`` is the terminal's own 7-character id."""
    moment = moment or datetime.now(UTC)
    report = simulated_report(moment)
    bcd = m.bcd_time_from_datetime(moment)
    ident = jsatl.Identification(terminal_code, bcd, sequence & 0xFF, attachments)
    item = {
        "source": "adas", "alarm_id": sequence, "flag": 0, "type": 0x01, "level": 2,
        "front_vehicle_speed_kmh": 40, "front_distance_100ms": 8, "speed_kmh": 52,
        "altitude_m": report.altitude_m, "latitude": report.latitude,
        "longitude": report.longitude, "bcd_time": bcd, "vehicle_status": 1,
        "identification_hex": ident.encode().hex(),
    }  # fmt: skip
    item_id, value = jsatl.encode_item(item)
    items = {0x01: struct.pack(">I", 123456), item_id: value}
    return m.LocationReport(
        report.alarm_flags, report.status_flags, report.latitude_e6, report.longitude_e6,
        report.altitude_m, report.speed_dkmh, report.heading_deg, report.bcd_time, items,
    )  # fmt: skip


class _Link:
    """The attachment-server connection of one upload."""

    def __init__(self, phone: str, version: int | None) -> None:
        self.phone, self.version = phone, version
        self.serial = 0
        self.splitter = FrameSplitter(8192)
        self.pending: list[Frame] = []
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, msg_id: int, body: bytes) -> None:
        assert self.writer is not None
        serial, self.serial = self.serial, self.serial + 1
        self.writer.write(encode_frame(msg_id, self.phone, serial, body, version=self.version))
        await self.writer.drain()

    async def raw(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)
        await self.writer.drain()

    async def read(self, msg_id: int) -> Frame:
        assert self.reader is not None
        async with asyncio.timeout(TIMEOUT_S):
            while True:
                for i, frame in enumerate(self.pending):
                    if frame.header.msg_id == msg_id:
                        return self.pending.pop(i)
                data = await self.reader.read(4096)
                if not data:
                    raise ConnectionError("attachment server closed the connection")
                for content, wire in self.splitter.feed(data):
                    self.pending.append(decode_frame(content, wire))


async def upload_attachments(camera: SimCamera, frame: Frame) -> None:
    """Answer a 0x9208: upload ``camera.attachments`` (name, bytes) to the server it names,
    leaving the data frames in ``camera.drop_segments`` out of the first pass."""
    terminal = camera.terminal
    host, port, _udp, identification, number = jsatl.decode_attachment_request(frame.body)
    link = _Link(terminal.phone, terminal.version)
    link.reader, link.writer = await asyncio.open_connection(host, port)
    try:
        files = [(name.replace("{number}", number).encode(), data)
                 for name, data in camera.attachments]  # fmt: skip
        info = jsatl.AttachmentInfo(
            identification[:7].decode("ascii", errors="replace").rstrip("\x00"), identification,
            number, 0, tuple((name, len(data)) for name, data in files),
        )  # fmt: skip
        await link.send(jsatl.MSG_ATTACHMENT_INFO, jsatl.encode_attachment_info(info))
        _, _, result = m.decode_general_reply((await link.read(m.MSG_PLATFORM_REPLY)).body)
        if result != m.RESULT_OK:
            log.info("jt808-sim %s: 0x1210 refused (%d)", terminal.phone, result)
            camera.attachments_refused.append(number)
            return
        for name, data in files:
            file_type = 0x00 if name.endswith(b".jpg") else 0x02
            await link.send(jsatl.MSG_FILE_INFO, jsatl.encode_file_info(name, file_type, len(data)))
            await link.read(m.MSG_PLATFORM_REPLY)
            segments = [(o, min(DATA_FRAME_BYTES, len(data) - o))
                        for o in range(0, len(data), DATA_FRAME_BYTES)]  # fmt: skip
            for index, (offset, length) in enumerate(segments):
                if index not in camera.drop_segments:
                    await link.raw(
                        jsatl.encode_data_frame(name, offset, data[offset : offset + length])
                    )
            while True:
                await link.send(
                    jsatl.MSG_FILE_DONE, jsatl.encode_file_info(name, file_type, len(data))
                )
                reply = await link.read(jsatl.MSG_FILE_DONE_REPLY)
                _, _, result, missing = jsatl.decode_file_done_reply(reply.body)
                if result == 0:
                    break
                for offset, length in missing:
                    await link.raw(
                        jsatl.encode_data_frame(name, offset, data[offset : offset + length])
                    )
        camera.attachments_sent.append(number)
    finally:
        link.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await link.writer.wait_closed()
