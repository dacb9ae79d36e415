"""Photo evidence over JT/T 808 (issue 12 item 6): the ``take_photo`` command (0x8801), the
terminal's answer (0x0805), multimedia events (0x0800) and uploads (0x0801) streamed to the media
store packet by packet, with 0x8800 / 0x8003 asking for what is missing.

Bodies (JT/T 808-2013 sections 8.53-8.57, 2019 alike; checked against SmallChi/JT808's vectors in
``tests/test_jt808_media.py``)::

    0x0800  multimedia id u32, type u8, format u8, event code u8, channel u8
    0x0801  the same 8 bytes, location basic information (a 0x0200 body without items, 28 bytes),
            then the media data; sub-packaged (props bit 13) when larger than one frame
    0x8800  multimedia id u32 [, count u8, packet index u16 x count]  (ids only when complete)
    0x8003  first packet's serial u16, count u8 (2019: u16), packet index u16 x count
    0x8801  channel u8, command u16 (photos; 0 stop, 0xFFFF video), interval u16 s, save u8,
            resolution u8, quality u8, brightness u8, contrast u8, saturation u8, chroma u8
    0x0805  answered serial u16, result u8 (0 ok, 1 failed, 2 channel unsupported)
            [, count u16, multimedia id u32 x count]

How an upload flows (one upload per terminal at a time, as terminals send them; it survives a
reconnect of the terminal, since it is keyed by terminal, not by connection):

- Each 0x0801 packet is written to a :class:`gps_monitor.media_store.Spool` as it arrives (the
  gateway never holds the file; the first packet's 36-byte head is decoded and kept). Packets are
  answered 0x8001 result 0, except the one that ends a round, answered 0x8800.
- When the last packet (index = total) has come, or the packets a resend request named: all in
  -> stored under its SHA-256, the ``media`` row inserted, then 0x8800 with the id only (the
  terminal's copy may go); some missing -> 0x8800 listing them (at most 255, the u8 count).
- An upload that received nothing for ``media.packet_timeout_s`` (its last packet lost, or a
  packet count that lies) gets 0x8003 naming its first packet's serial and the missing indexes.
- After ``media.resend_max_requests`` requests, or when ``media.max_upload_bytes`` would be
  passed (that packet is answered result 1), or a new upload of the terminal starts: the upload
  is stored as it is, ``complete = false`` with the reason and the missing indexes.

Linking: a 0x0805 names the multimedia ids a ``take_photo`` command produced, so their upload is
stored with that command (and through it the command's alarm, :mod:`gps_monitor.db.media`); an
upload with event code 0 (platform command) and no 0x0805 goes with the terminal's latest
``take_photo`` command of the last ``PHOTO_COMMAND_WINDOW_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg

from gps_monitor.commands import Command
from gps_monitor.config import Settings
from gps_monitor.db import media as media_db
from gps_monitor.media import (
    EVENT_CODES,
    MEDIA_FORMATS,
    MEDIA_TYPES,
    OCTET_STREAM,
    TAKE_PHOTO,
    TakePhotoBody,
)
from gps_monitor.media_store import MediaStore, Spool
from ingest.jt808 import messages as m
from ingest.jt808.codec import Frame, FrameError, encode_frame
from ingest.jt808.downlink import Downlink
from ingest.jt808.server import Jt808Gateway, Session

log = logging.getLogger(__name__)

MSG_MEDIA_EVENT = 0x0800
MSG_MEDIA_UPLOAD = 0x0801
MSG_CAMERA_REPLY = 0x0805
MSG_RESEND_REQUEST = 0x8003
MSG_MEDIA_UPLOAD_REPLY = 0x8800
MSG_CAMERA = 0x8801

MEDIA_HEAD_BYTES = 8
UPLOAD_HEAD_BYTES = MEDIA_HEAD_BYTES + m.LOCATION_BASE_BYTES  # 36
MAX_LISTED = 255  # 0x8800 count is a u8
PHOTO_COMMAND_WINDOW_S = 600.0
MAX_REMEMBERED_IDS = 4096


# ------------------------------------------------------------------------------- bodies


@dataclass(frozen=True, slots=True)
class MediaHead:
    """The 8 bytes 0x0800 and 0x0801 start with (codes: :mod:`gps_monitor.media`)."""

    multimedia_id: int
    media_type: int
    format_code: int
    event_code: int
    channel: int

    def encode(self) -> bytes:
        return struct.pack(
            ">IBBBB",
            self.multimedia_id,
            self.media_type,
            self.format_code,
            self.event_code,
            self.channel,
        )


def decode_media_event(body: bytes) -> MediaHead:
    """0x0800 body (8 bytes; 2019 alike).

    Raises:
        FrameError(reason="body"): shorter than 8 bytes.
    """
    if len(body) < MEDIA_HEAD_BYTES:
        raise FrameError("body", f"0x0800: expected 8 bytes, got {len(body)}")
    return MediaHead(*struct.unpack_from(">IBBBB", body, 0))


def decode_upload_head(body: bytes) -> tuple[MediaHead, m.LocationReport]:
    """The head of a 0x0801 (its first packet): media head and the location basic information.

    Raises:
        FrameError(reason="body"): shorter than 36 bytes.
    """
    if len(body) < UPLOAD_HEAD_BYTES:
        raise FrameError(
            "body", f"0x0801 first packet: expected >= {UPLOAD_HEAD_BYTES} bytes, got {len(body)}"
        )
    return decode_media_event(body), m.decode_location(body[MEDIA_HEAD_BYTES:UPLOAD_HEAD_BYTES])


def encode_upload_head(head: MediaHead, report: m.LocationReport) -> bytes:
    """Media head + the report's 28 basic bytes (its items are not part of 0x0801)."""
    return head.encode() + m.encode_location(report)[: m.LOCATION_BASE_BYTES]


def encode_camera(body: TakePhotoBody) -> bytes:
    """0x8801 body of a ``take_photo`` command (upload at once unless ``save``)."""
    return struct.pack(
        ">BHHBBBBBBB",
        body.channel,
        body.count,
        body.interval_s,
        1 if body.save else 0,
        body.resolution,
        body.quality,
        body.brightness,
        body.contrast,
        body.saturation,
        body.chroma,
    )


@dataclass(frozen=True, slots=True)
class CameraCommand:
    """A decoded 0x8801 (the terminal's side): ``command`` photos, 0 stop, 0xFFFF video."""

    channel: int
    command: int
    interval_s: int
    save: int
    resolution: int
    quality: int
    brightness: int
    contrast: int
    saturation: int
    chroma: int


def decode_camera(body: bytes) -> CameraCommand:
    """0x8801 body -> :class:`CameraCommand`.

    Raises:
        FrameError(reason="body"): not 12 bytes.
    """
    if len(body) != 12:
        raise FrameError("body", f"0x8801: expected 12 bytes, got {len(body)}")
    return CameraCommand(*struct.unpack(">BHHBBBBBBB", body))


def encode_camera_reply(serial: int, result: int, ids: list[int]) -> bytes:
    """0x0805 body (terminal side): ids only with result 0."""
    body = struct.pack(">HB", serial & 0xFFFF, result)
    if result == 0:
        body += struct.pack(f">H{len(ids)}I", len(ids), *ids)
    return body


def decode_camera_reply(body: bytes) -> tuple[int, int, list[int]]:
    """0x0805 body -> (answered serial, result, multimedia ids).

    Raises:
        FrameError(reason="body"): shorter than 3 bytes, or fewer ids than its count says.
    """
    if len(body) < 3:
        raise FrameError("body", f"0x0805: expected >= 3 bytes, got {len(body)}")
    serial, result = struct.unpack_from(">HB", body, 0)
    if len(body) < 5:
        return serial, result, []
    (count,) = struct.unpack_from(">H", body, 3)
    if len(body) < 5 + 4 * count:
        raise FrameError("body", f"0x0805: expected {count} ids ({5 + 4 * count} bytes), got "
                         f"{len(body)} bytes")  # fmt: skip
    return serial, result, list(struct.unpack_from(f">{count}I", body, 5))


def encode_upload_reply(multimedia_id: int, missing: list[int]) -> bytes:
    """0x8800 body: the id alone when complete, else the count and the missing indexes."""
    if not missing:
        return struct.pack(">I", multimedia_id)
    listed = missing[:MAX_LISTED]
    return struct.pack(f">IB{len(listed)}H", multimedia_id, len(listed), *listed)


def decode_upload_reply(body: bytes) -> tuple[int, list[int]]:
    """0x8800 body -> (multimedia id, missing packet indexes); 4 bytes or a count 0: none."""
    if len(body) < 4:
        raise FrameError("body", f"0x8800: expected >= 4 bytes, got {len(body)}")
    (multimedia_id,) = struct.unpack_from(">I", body, 0)
    if len(body) == 4:
        return multimedia_id, []
    count = body[4]
    if len(body) < 5 + 2 * count:
        raise FrameError("body", f"0x8800: expected {count} indexes, got {len(body) - 5} bytes")
    return multimedia_id, list(struct.unpack_from(f">{count}H", body, 5))


def encode_resend_request(first_serial: int, missing: list[int], *, is_2019: bool) -> bytes:
    """0x8003 body: first packet's serial, count (u8; 2019 u16), packet indexes."""
    listed = missing[: 0xFFFF if is_2019 else MAX_LISTED][:500]  # within a 1023-byte body
    count = struct.pack(">H", len(listed)) if is_2019 else bytes([len(listed)])
    indexes = struct.pack(f">{len(listed)}H", *listed)
    return struct.pack(">H", first_serial & 0xFFFF) + count + indexes


def decode_resend_request(body: bytes, *, is_2019: bool) -> tuple[int, list[int]]:
    """0x8003 body -> (first packet's serial, packet indexes) (terminal side)."""
    width = 2 if is_2019 else 1
    if len(body) < 2 + width:
        raise FrameError("body", f"0x8003: expected >= {2 + width} bytes, got {len(body)}")
    (serial,) = struct.unpack_from(">H", body, 0)
    count = int.from_bytes(body[2 : 2 + width], "big")
    start = 2 + width
    if len(body) < start + 2 * count:
        raise FrameError("body", f"0x8003: expected {count} indexes, got {len(body) - start} bytes")
    return serial, list(struct.unpack_from(f">{count}H", body, start))


def encode_take_photo(command: Command, _is_2019: bool) -> tuple[int, bytes]:
    """``take_photo`` -> 0x8801 (the downlink's encoder for that command name)."""
    return MSG_CAMERA, encode_camera(TakePhotoBody.model_validate(command.body))


# ------------------------------------------------------------------------------- uploads


@dataclass(slots=True)
class Upload:
    """One terminal's 0x0801 in progress."""

    terminal_id: str
    phone: str
    version: int | None
    session: Session
    total: int
    first_serial: int
    spool: Spool
    last_s: float
    head: MediaHead | None = None
    report: m.LocationReport | None = None
    requests: int = 0
    requested: set[int] = field(default_factory=set)

    def missing(self) -> list[int]:
        """The packet indexes not held (O(total): called once per round, not per packet)."""
        if self.spool.count >= self.total:
            return []
        have = self.spool.keys()
        return [i for i in range(1, self.total + 1) if i not in have]

    def belongs(self, total: int, index: int, first_serial: int) -> bool:
        """Whether a packet is this upload's: its first transmission (same count and first
        serial) or a packet a resend request named."""
        if total != self.total:
            return False
        return first_serial == self.first_serial or index in self.requested


@dataclass(slots=True)
class MediaStats:
    events: int = 0
    packets: int = 0
    stored: int = 0
    incomplete: int = 0
    resend_requests: int = 0
    refused: int = 0
    store_failures: int = 0


class MediaUploads:
    """Registers the photo messages with the gateway (and ``take_photo`` with the downlink) and
    keeps the uploads in progress. :meth:`run` checks their timeouts until cancelled.

    Args:
        settings: ``settings.media`` (limits, resend policy, link window).
        store: where the bytes go.
        pool: the database (``media`` rows).
    """

    def __init__(
        self,
        settings: Settings,
        store: MediaStore,
        pool: asyncpg.Pool,
        gateway: Jt808Gateway,
        downlink: Downlink | None = None,
    ) -> None:
        self.media = settings.media
        self.store = store
        self.pool = pool
        self.gateway = gateway
        self.downlink = downlink
        self.stats = MediaStats()
        self.uploads: dict[str, Upload] = {}
        self._ids: OrderedDict[tuple[str, int], str] = OrderedDict()  # (terminal, id) -> command
        self._photo_commands: dict[str, tuple[str, float]] = {}  # terminal -> (command, time)
        self._refused: dict[str, tuple[int, int]] = {}  # terminal -> (total, first serial)
        self.stored_listeners: list[Callable[[dict[str, object]], None]] = []
        gateway.register(MSG_MEDIA_EVENT, self.on_event)
        gateway.register(MSG_CAMERA_REPLY, self.on_camera_reply)
        gateway.register_packets(MSG_MEDIA_UPLOAD, self.on_packet)
        if downlink is not None:
            downlink.register_command(TAKE_PHOTO, encode_take_photo, MSG_CAMERA)
            downlink.sent_listeners.append(self._on_command_sent)

    # ---------------------------------------------------------------- gateway handlers

    async def on_event(self, session: Session, frame: Frame) -> bytes:
        """0x0800: logged and answered (the 0x0801 that follows carries the same head)."""
        head = decode_media_event(frame.body)
        self.stats.events += 1
        log.info(
            "jt808 terminal %s: multimedia event id %d type %s event %s channel %d",
            frame.header.terminal_id, head.multimedia_id, MEDIA_TYPES.get(head.media_type),
            EVENT_CODES.get(head.event_code, head.event_code), head.channel,
        )  # fmt: skip
        return self.gateway.general_reply(session, frame, m.RESULT_OK)

    async def on_camera_reply(self, session: Session, frame: Frame) -> None:
        """0x0805: the answer to a ``take_photo`` command, naming the photos it will upload."""
        serial, result, ids = decode_camera_reply(frame.body)
        terminal_id = frame.header.terminal_id
        if self.downlink is None or session.terminal_id != terminal_id:
            return
        detail = f"multimedia ids {ids}" if ids else ""
        command_id = self.downlink.answer_serial(terminal_id, serial, result, detail)
        if command_id is None:
            return
        for multimedia_id in ids:
            self._ids[(terminal_id, multimedia_id)] = command_id
        while len(self._ids) > MAX_REMEMBERED_IDS:
            self._ids.popitem(last=False)

    def _on_command_sent(self, command: Command, _serial: int) -> None:
        if command.name == TAKE_PHOTO:
            loop_s = asyncio.get_running_loop().time()
            self._photo_commands[command.terminal_id] = (command.command_id, loop_s)

    async def on_packet(self, session: Session, frame: Frame, now_s: float) -> bytes | None:
        """One 0x0801 frame (a packet, or a whole small upload): spool it; answer as the module
        docstring says."""
        header = frame.header
        total = header.subpackage_total or 1
        index = header.subpackage_index or 1
        if not 1 <= index <= total:
            raise FrameError("subpackage", f"expected 1 <= index <= total, got {index}/{total}")
        terminal_id = header.terminal_id
        first_serial = (header.serial - (index - 1)) & 0xFFFF
        self.stats.packets += 1
        upload = self.uploads.get(terminal_id)
        if upload is not None and not upload.belongs(total, index, first_serial):
            gone = _ranges(upload.missing())
            await self._finish(
                upload, f"superseded: a new upload began with packets {gone} missing"
            )
            upload = None
        if upload is None:
            if self._refused.get(terminal_id) == (total, first_serial):
                return self.gateway.general_reply(session, frame, m.RESULT_FAILURE)
            self._refused.pop(terminal_id, None)
            if len(self.uploads) >= self.media.max_uploads:
                self.stats.refused += 1
                log.warning("jt808 terminal %s: 0x0801 refused: %d uploads in progress",
                            terminal_id, len(self.uploads))  # fmt: skip
                return self.gateway.general_reply(session, frame, m.RESULT_FAILURE)
            upload = Upload(
                terminal_id, header.phone, header.version, session, total, first_serial,
                self.store.spool(), now_s,
            )  # fmt: skip
            self.uploads[terminal_id] = upload
        upload.session, upload.last_s = session, now_s
        data = frame.body
        if index == 1:
            upload.head, upload.report = decode_upload_head(data)
            data = data[UPLOAD_HEAD_BYTES:]
        if upload.spool.size_bytes + len(data) > self.media.max_upload_bytes:
            self._refused[terminal_id] = (total, first_serial)  # its later packets too
            await self._finish(
                upload,
                f"size_limit: expected at most {self.media.max_upload_bytes} bytes of media "
                f"data, packet {index} of {total} would make {upload.spool.size_bytes + len(data)}",
            )
            return self.gateway.general_reply(session, frame, m.RESULT_FAILURE)
        upload.spool.write(index, data)
        upload.requested.discard(index)
        return await self._after_packet(upload, frame, index)

    async def _after_packet(self, upload: Upload, frame: Frame, index: int) -> bytes:
        session = upload.session
        if upload.spool.count >= upload.total and upload.head is not None:
            await self._finish(upload, None)
            body = encode_upload_reply(upload.head.multimedia_id, [])
            return self.gateway.reply(session, frame, MSG_MEDIA_UPLOAD_REPLY, body)
        round_over = index == upload.total if upload.requests == 0 else not upload.requested
        if round_over and upload.head is not None:
            missing = upload.missing()
            if upload.requests >= self.media.resend_max_requests:
                await self._finish(upload, self._missing_reason(upload))
                body = encode_upload_reply(upload.head.multimedia_id, [])
                return self.gateway.reply(session, frame, MSG_MEDIA_UPLOAD_REPLY, body)
            self._count_request(upload, missing)
            body = encode_upload_reply(upload.head.multimedia_id, missing)
            return self.gateway.reply(session, frame, MSG_MEDIA_UPLOAD_REPLY, body)
        return self.gateway.general_reply(session, frame, m.RESULT_OK)

    def _count_request(self, upload: Upload, missing: list[int]) -> None:
        upload.requests += 1
        upload.requested = set(missing[:MAX_LISTED])
        self.stats.resend_requests += 1
        log.info(
            "jt808 terminal %s: 0x0801 id %s, packets %s of %d missing: resend request %d",
            upload.terminal_id, upload.head.multimedia_id if upload.head else "?",
            _ranges(missing), upload.total, upload.requests,
        )  # fmt: skip

    @staticmethod
    def _missing_reason(upload: Upload) -> str:
        return (
            f"missing_packets: packets {_ranges(upload.missing())} of {upload.total} never came "
            f"after {upload.requests} resend request(s)"
        )

    # ------------------------------------------------------------------------ timeouts

    async def run(self) -> None:
        """Check the uploads' timeouts every second until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(1.0, self.media.packet_timeout_s / 4))
            await self.check_timeouts(loop.time())

    async def check_timeouts(self, now_s: float) -> None:
        """Ask again for the missing packets of each upload silent for ``packet_timeout_s``
        (0x8003), or store it as incomplete once the requests are used up."""
        for upload in list(self.uploads.values()):
            if now_s - upload.last_s < self.media.packet_timeout_s:
                continue
            if upload.requests >= self.media.resend_max_requests:
                await self._finish(upload, self._missing_reason(upload))
                continue
            missing = upload.missing()
            self._count_request(upload, missing)
            upload.last_s = now_s
            write = self.gateway.writer(upload.terminal_id)
            if write is not None:
                body = encode_resend_request(
                    upload.first_serial, missing, is_2019=upload.version is not None
                )
                serial = upload.session.next_serial()
                write(encode_frame(MSG_RESEND_REQUEST, upload.phone, serial, body,
                                   version=upload.version))  # fmt: skip

    # ------------------------------------------------------------------------- storage

    async def _finish(self, upload: Upload, incomplete_reason: str | None) -> None:
        """Store what the upload holds and insert its row (complete when no reason)."""
        if self.uploads.get(upload.terminal_id) is upload:
            del self.uploads[upload.terminal_id]
        missing = upload.missing()
        sha256, size = None, 0
        try:
            if upload.spool.size_bytes > 0:
                stored = await asyncio.to_thread(self.store.commit, upload.spool)
                sha256, size = stored.sha256, stored.size_bytes
            else:
                self.store.discard(upload.spool)
        except OSError as error:
            self.stats.store_failures += 1
            log.error("jt808 terminal %s: 0x0801 not stored: %s", upload.terminal_id, error)
            incomplete_reason = f"store_failed: {error}"
            with contextlib.suppress(OSError):
                self.store.discard(upload.spool)
        record = self._record(upload, sha256, size, incomplete_reason, missing)
        try:
            row = await media_db.insert(self.pool, record, self.media.link_window_s)
        except (asyncpg.PostgresError, OSError) as error:
            self.stats.store_failures += 1
            log.error("jt808 terminal %s: media row not written (sha256 %s kept in the store): "
                      "%s", upload.terminal_id, sha256, error)  # fmt: skip
            return
        if incomplete_reason is None:
            self.stats.stored += 1
        else:
            self.stats.incomplete += 1
        log.info(
            "jt808 terminal %s: media %d stored (%d bytes, sha256 %s, alarm %s)%s",
            upload.terminal_id, row["id"], size, sha256, row["alarm_id"],
            f", incomplete: {incomplete_reason}" if incomplete_reason else "",
        )  # fmt: skip
        for listener in self.stored_listeners:
            listener(row)

    def _record(
        self,
        upload: Upload,
        sha256: str | None,
        size: int,
        reason: str | None,
        missing: list[int],
    ) -> media_db.MediaRecord:
        head, report = upload.head, upload.report
        fix_time = latitude = longitude = speed = None
        if report is not None:
            with contextlib.suppress(FrameError):
                fix_time = report.fix_time(upload.session.utc_offset_min)
            latitude, longitude, speed = report.latitude, report.longitude, report.speed_kmh
        media_type = MEDIA_TYPES.get(head.media_type, "other") if head else "other"
        content_type = MEDIA_FORMATS[head.format_code][1] if head and head.format_code in \
            MEDIA_FORMATS else OCTET_STREAM  # fmt: skip
        return media_db.MediaRecord(
            source="jt808",
            terminal_id=upload.terminal_id,
            sha256=sha256,
            size_bytes=size,
            media_type=media_type,
            content_type=content_type,
            complete=reason is None,
            incomplete_reason=reason,
            missing=missing or None,
            multimedia_id=head.multimedia_id if head else None,
            format_code=head.format_code if head else None,
            event_code=head.event_code if head else None,
            channel=head.channel if head else None,
            fix_time=fix_time,
            latitude=latitude,
            longitude=longitude,
            speed_kmh=speed,
            alarm_flags=report.alarm_flags if report else None,
            status_flags=report.status_flags if report else None,
            command_uuid=self._command_for(upload),
        )

    def _command_for(self, upload: Upload) -> str | None:
        head = upload.head
        if head is None:
            return None
        named = self._ids.pop((upload.terminal_id, head.multimedia_id), None)
        if named is not None:
            return named
        recent = self._photo_commands.get(upload.terminal_id)
        loop_s = asyncio.get_running_loop().time()
        if head.event_code == 0 and recent and loop_s - recent[1] < PHOTO_COMMAND_WINDOW_S:
            return recent[0]
        return None

    def close(self) -> None:
        """Drop the spools of uploads still in progress (shutdown; their terminals resend)."""
        for upload in self.uploads.values():
            with contextlib.suppress(OSError):
                self.store.discard(upload.spool)
        self.uploads.clear()


def _ranges(indexes: list[int]) -> str:
    """[1, 2, 3, 7] -> "1-3, 7" (log lines and reasons stay short for a long list)."""
    out: list[str] = []
    for i in indexes:
        if out and out[-1].split("-")[-1] == str(i - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{i}"
        else:
            out.append(str(i))
    return ", ".join(out)
