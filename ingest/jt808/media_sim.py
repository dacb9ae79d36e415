"""The simulated terminal's side of photo evidence (``jt808-sim``, tests, benchmarks/media.py):
answer 0x8801 with 0x0805, upload the photo as 0x0801 in sub-packages, resend what 0x8800 /
0x8003 asks for.
"""

from __future__ import annotations

import io
import logging
import random
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ingest.jt808 import messages as m
from ingest.jt808.codec import Frame, encode_frame
from ingest.jt808.media import (
    MSG_CAMERA,
    MSG_CAMERA_REPLY,
    MSG_MEDIA_UPLOAD,
    MSG_MEDIA_UPLOAD_REPLY,
    MSG_RESEND_REQUEST,
    MediaHead,
    decode_camera,
    decode_resend_request,
    decode_upload_reply,
    encode_camera_reply,
    encode_upload_head,
)

if TYPE_CHECKING:
    from ingest.jt808.sim import SimCamera, SimTerminal

__all__ = ["MSG_CAMERA", "MSG_MEDIA_UPLOAD_REPLY", "MSG_RESEND_REQUEST", "shoot", "sim_photo"]

log = logging.getLogger(__name__)

REPLY_TIMEOUT_S = 60.0


def sim_photo(size_bytes: int, seed: int = 0) -> bytes:
    """A real JPEG of about ``size_bytes`` (noise compresses little, so its size follows its
    pixel count), different for each ``seed``. Pillow comes with the report dependencies."""
    from PIL import Image

    side = max(16, int((size_bytes / 0.78) ** 0.5))  # ~0.78 bytes per noise pixel at q85
    noise = random.Random(seed).randbytes(side * side * 3)
    out = io.BytesIO()
    Image.frombytes("RGB", (side, side), noise).save(out, "JPEG", quality=85)
    return out.getvalue()


def simulated_report(moment: datetime | None = None) -> m.LocationReport:
    """Where the simulated camera says it took the photo (Chongqing, 52.3 km/h)."""
    moment = moment or datetime.now(UTC)
    return m.LocationReport(
        alarm_flags=0,
        status_flags=m.STATUS_ACC_ON | m.STATUS_POSITIONED,
        latitude_e6=29_563_010,
        longitude_e6=106_551_556,
        altitude_m=250,
        speed_dkmh=523,
        heading_deg=90,
        bcd_time=m.bcd_time_from_datetime(moment),
    )


async def shoot(camera: SimCamera, frame: Frame) -> None:
    """Answer a 0x8801 with 0x0805 and upload ``command`` photos (at least one)."""
    terminal = camera.terminal
    order = decode_camera(frame.body)
    count = max(1, order.command if order.command < 0xFFFF else 1)
    ids = list(range(camera.next_id, camera.next_id + count))
    camera.next_id += count
    _, wire = terminal.frame(MSG_CAMERA_REPLY, encode_camera_reply(frame.header.serial, 0, ids))
    await terminal.send_raw(wire)
    for multimedia_id in ids:
        photo = sim_photo(camera.photo_bytes, seed=multimedia_id)
        head = MediaHead(multimedia_id, 0, 0, 0, order.channel)
        if await upload(terminal, camera, head, photo):
            camera.uploaded.append(multimedia_id)


async def upload(terminal: SimTerminal, camera: SimCamera, head: MediaHead, data: bytes) -> bool:
    """Send one upload (dropping ``camera.drop_packets`` the first time) and resend what the
    gateway asks for until its 0x8800 says complete; whether it did."""
    body = encode_upload_head(head, simulated_report()) + data
    size = camera.packet_bytes
    packets = [body[i : i + size] for i in range(0, len(body), size)]
    total = len(packets)
    first_serial = terminal.serial
    for index, packet in enumerate(packets, start=1):
        wire = _packet(terminal, packet, total, index)
        if index not in camera.drop_packets:
            await terminal.send_raw(wire)
    while True:
        reply = await camera.reply(REPLY_TIMEOUT_S)
        if reply.header.msg_id == MSG_MEDIA_UPLOAD_REPLY:
            multimedia_id, missing = decode_upload_reply(reply.body)
            if multimedia_id != head.multimedia_id:
                continue
            if not missing:
                return True
        else:
            is_2019 = terminal.version is not None
            serial, missing = decode_resend_request(reply.body, is_2019=is_2019)
            if serial != first_serial:
                continue
        log.info("jt808-sim %s: resending packets %s of %d", terminal.phone, missing, total)
        for index in missing:
            if 1 <= index <= total:
                await terminal.send_raw(_packet(terminal, packets[index - 1], total, index))


def _packet(terminal: SimTerminal, body: bytes, total: int, index: int) -> bytes:
    """One 0x0801 packet with the terminal's next serial."""
    serial = terminal.serial
    terminal.serial = (serial + 1) & 0xFFFF
    return encode_frame(
        MSG_MEDIA_UPLOAD, terminal.phone, serial, body, version=terminal.version,
        subpackage=(total, index),
    )  # fmt: skip
