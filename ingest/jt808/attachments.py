"""The active-safety attachment server (T/JSATL 12-2017 section 4.5, issue 12 item 8).

1. A 0x0200 carrying an ADAS / DSM / tyre / blind-spot item whose alarm identification announces
   attachments (count > 0) is answered, after its 0x8001, with **0x9208**: this server's address
   (``attachments.advertised_host``, or the address the terminal reached the gateway at) and
   port, the identification and a fresh random alarm number
   (:func:`gps_monitor.active_safety.new_alarm_number`), stored first in ``jsatl_alarm_numbers``
   with the terminal, the public alarm key (:func:`gps_monitor.active_safety.alarm_key`, the key
   the rules engine puts in the alarm) and an expiry ``attachments.alarm_ttl_s`` away. Only a
   stored, unexpired number issued to the terminal naming it is accepted here, so uploads survive
   a gateway restart and a number computed from the alarm identification is refused. When the
   number cannot be stored, no 0x9208 is sent (logged, ``stats.numbers_not_stored``).
2. The terminal connects here (TCP) and sends **0x1210** (alarm number, the files' names and
   sizes; answered 0x8001), then per file **0x1211** (name, type, size; 0x8001), the file's
   **data frames** (``30 31 63 64``, name[50], offset u32, length u32, bytes; unframed, not
   answered) and **0x1212** (done), answered **0x9212**: result 0, or result 1 with the missing
   (offset, length) segments, which the terminal sends again before another 0x1212.
3. Each file is written to a :class:`gps_monitor.media_store.Spool` as its data arrives (in
   chunks of at most 16 KiB; bytes already held or beyond the announced size are dropped, so
   resent segments never overlap), and when complete stored under its SHA-256 with a ``media``
   row (source ``jsatl``, the alarm number and key, linked to the alarm carrying the key). After
   ``media.resend_max_requests`` 0x9212 requests, or when the connection ends before 0x1212, what
   came is stored as incomplete with the missing segments and the reason.

File names come from the terminal: they are matched byte for byte between 0x1211 and the data
frames and kept (NUL shown as ``\\x00``) in ``media.file_name`` for display; no path is ever made
from them. A connection must deliver each frame, data frame head, or 16 KiB of data within
``attachments.read_timeout_s``, so one that trickles bytes is closed; a frame longer than
4 KiB or a refused alarm number ends the connection too. Other connections are not affected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from gps_monitor.active_safety import FLAG_END, alarm_key, new_alarm_number
from gps_monitor.config import Settings
from gps_monitor.db import jsatl_alarm_numbers as numbers_db
from gps_monitor.db import media as media_db
from gps_monitor.media import JSATL_FILE_TYPES, OCTET_STREAM
from gps_monitor.media_store import MediaStore, Spool
from ingest.jt808 import jsatl
from ingest.jt808 import messages as m
from ingest.jt808.codec import Frame, FrameError, decode_frame, encode_frame
from ingest.jt808.server import Jt808Gateway, Session

log = logging.getLogger(__name__)

CHUNK_BYTES = 16 * 1024  # file data read (and spooled) at a time
READ_BYTES = 16 * 1024  # bytes per recv (asyncio's default 256 KiB would be held per peer)
MAX_FRAME_BYTES = 4096


@dataclass(slots=True)
class FileUpload:
    """One announced file of an attachment connection."""

    name: bytes
    size: int
    file_type: int | None
    spool: Spool | None = None
    covered: list[tuple[int, int]] = field(default_factory=list)  # merged [start, end)
    requests: int = 0
    done: bool = False

    def missing(self) -> list[tuple[int, int]]:
        """(offset, length) of the bytes of [0, size) not received."""
        gaps, at = [], 0
        for start, end in self.covered:
            if start > at:
                gaps.append((at, start - at))
            at = max(at, end)
        if at < self.size:
            gaps.append((at, self.size - at))
        return gaps

    def new_ranges(self, offset: int, length: int) -> list[tuple[int, int]]:
        """The parts of [offset, offset + length) within the file and not yet held."""
        start, end = max(0, offset), min(self.size, offset + length)
        out = []
        for gap_start, gap_len in self.missing():
            lo, hi = max(start, gap_start), min(end, gap_start + gap_len)
            if lo < hi:
                out.append((lo, hi))
        return out

    def cover(self, start: int, end: int) -> None:
        spans = sorted([*self.covered, (start, end)])
        merged: list[tuple[int, int]] = []
        for s, e in spans:
            if merged and s <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], e))
            else:
                merged.append((s, e))
        self.covered = merged


@dataclass(slots=True)
class AttachmentStats:
    alarms_requested: int = 0
    numbers_not_stored: int = 0
    connections: int = 0
    closed_timeout: int = 0
    refused: int = 0
    files_stored: int = 0
    files_incomplete: int = 0
    bad_frames: int = 0


class AttachmentServer:
    """Sends 0x9208 for the gateway (a location hook) and serves the uploads. :meth:`start`
    listens; ``port`` is the bound port afterwards."""

    def __init__(
        self, settings: Settings, store: MediaStore, pool: asyncpg.Pool, gateway: Jt808Gateway
    ) -> None:
        self.settings = settings
        self.at = settings.attachments
        self.store = store
        self.pool = pool
        self.stats = AttachmentStats()
        self.port = self.at.port
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        gateway.register_location_hook(self.on_location)

    async def start(self, host: str | None = None, port: int | None = None) -> asyncio.Server:
        self._server = await asyncio.start_server(
            self._serve, host if host is not None else self.at.host,
            self.at.port if port is None else port, limit=MAX_FRAME_BYTES * 2, backlog=4096,
        )  # fmt: skip
        self.port = self._server.sockets[0].getsockname()[1]
        return self._server

    # ------------------------------------------------------------------ 0x9208 (gateway)

    async def on_location(self, session: Session, frame: Frame, position: dict[str, Any]) -> bytes:
        """0x9208 frames for the active-safety items of a 0x0200 that announce attachments, each
        with a new alarm number stored before the frame is made (module docstring)."""
        items = (position.get("extras") or {}).get("active_safety") or []
        out = b""
        terminal_id = frame.header.terminal_id
        for item in items:
            ident = item.get("identification") or {}
            if not ident.get("attachments") or item.get("flag") == FLAG_END:
                continue
            identification = bytes.fromhex(item["identification_hex"])
            number = new_alarm_number()
            issued = numbers_db.IssuedNumber(
                number, terminal_id, alarm_key(terminal_id, identification), identification
            )
            try:
                await numbers_db.issue(self.pool, issued, self.at.alarm_ttl_s)
            except (asyncpg.PostgresError, OSError) as error:
                self.stats.numbers_not_stored += 1
                log.error("attachments %s: alarm number not stored, no 0x9208 sent: %s",
                          terminal_id, error)  # fmt: skip
                continue
            body = jsatl.encode_attachment_request(
                self._advertised(session), self.port, 0, identification, number
            )
            out += encode_frame(
                jsatl.MSG_ATTACHMENT_REQUEST, frame.header.phone, session.next_serial(), body,
                version=frame.header.version,
            )  # fmt: skip
            self.stats.alarms_requested += 1
        return out

    def _advertised(self, session: Session) -> str:
        if self.at.advertised_host:
            return self.at.advertised_host
        connection = session.connection
        transport = connection.transport if connection is not None else None
        sockname = transport.get_extra_info("sockname") if transport is not None else None
        return str(sockname[0]) if sockname else "127.0.0.1"

    # ------------------------------------------------------------------------ uploads

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        if hasattr(writer.transport, "max_size"):
            writer.transport.max_size = READ_BYTES
        peer = writer.get_extra_info("peername")
        upload = _Connection(self, reader, writer)
        try:
            await upload.run()
        except TimeoutError:
            self.stats.closed_timeout += 1
            log.info("attachments %s: nothing complete within %.0f s, closed", peer,
                     self.at.read_timeout_s)  # fmt: skip
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError) as error:
            log.info("attachments %s: connection ended: %s", peer, type(error).__name__)
        except _Refused as error:
            self.stats.refused += 1
            log.info("attachments %s: %s, closed", peer, error)
        finally:
            await upload.finish_all("connection ended before 0x1212")
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def store_file(
        self, issued: numbers_db.IssuedNumber, upload: FileUpload, reason: str | None
    ) -> dict[str, Any] | None:
        """Commit a file (or what came of it) and write its ``media`` row."""
        terminal_id, number = issued.terminal_id, issued.alarm_number
        sha256, size = None, 0
        try:
            if upload.spool is not None and upload.spool.size_bytes > 0:
                stored = await asyncio.to_thread(self.store.commit, upload.spool)
                sha256, size = stored.sha256, stored.size_bytes
            elif upload.spool is not None:
                self.store.discard(upload.spool)
        except OSError as error:
            reason = f"store_failed: {error}"
        unknown = ("other", OCTET_STREAM, "bin")
        name, mime, _ext = JSATL_FILE_TYPES.get(
            upload.file_type if upload.file_type is not None else 0x04, unknown
        )
        missing = upload.missing()
        record = media_db.MediaRecord(
            source="jsatl", terminal_id=terminal_id, sha256=sha256, size_bytes=size,
            media_type=name, content_type=mime, complete=reason is None,
            incomplete_reason=reason, missing=[o for o, _ in missing] or None,
            alarm_number=number, alarm_key=issued.alarm_key, file_name=display_name(upload.name),
        )  # fmt: skip
        try:
            row = await media_db.insert(self.pool, record, self.settings.media.link_window_s)
        except (asyncpg.PostgresError, OSError) as error:
            log.error("attachments %s: row for %s not written (sha256 %s kept): %s",
                      terminal_id, display_name(upload.name), sha256, error)  # fmt: skip
            return None
        if reason is None:
            self.stats.files_stored += 1
        else:
            self.stats.files_incomplete += 1
        log.info("attachments %s: %s stored as media %d (%d bytes, alarm %s)%s", terminal_id,
                 display_name(upload.name), row["id"], size, row["alarm_id"],
                 f", incomplete: {reason}" if reason else "")  # fmt: skip
        return row


def display_name(raw: bytes) -> str:
    """A terminal's file name as text to show: GBK, NUL as ``\\x00``, at most 200 characters."""
    return raw.decode("gbk", errors="replace").replace("\x00", "\\x00")[:200]


class _Refused(Exception):
    """The connection is not one this server serves (unknown alarm number, another terminal)."""


class _Connection:
    """One terminal's attachment connection."""

    def __init__(
        self, server: AttachmentServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.timeout_s = server.at.read_timeout_s
        self.terminal_id: str | None = None
        self.phone = ""
        self.version: int | None = None
        self.number: numbers_db.IssuedNumber | None = None
        self.files: dict[bytes, FileUpload] = {}
        self.serial = 0
        self.progress_s = 0.0

    async def _read(self, n: int) -> bytes:
        async with asyncio.timeout(self.timeout_s):
            return await self.reader.readexactly(n)

    async def run(self) -> None:
        self.progress_s = time.monotonic()
        while True:
            if time.monotonic() - self.progress_s > self.timeout_s:
                raise TimeoutError  # bytes keep coming, but nothing complete (garbage)
            async with asyncio.timeout(self.timeout_s):
                first = await self.reader.read(1)
            if not first:
                return
            if first == b"\x7e":
                async with asyncio.timeout(self.timeout_s):
                    content = await self.reader.readuntil(b"\x7e")
                if len(content) > 1:
                    await self._frame(content[:-1])
                else:  # 7E 7E: the first was a closing delimiter; this one opens
                    await self._frame(await self._until_delimiter())
            elif first == jsatl.DATA_MAGIC[:1]:
                head = first + await self._read(jsatl.DATA_HEAD_BYTES - 1)
                await self._data(head)
            else:
                self.server.stats.bad_frames += 1

    async def _until_delimiter(self) -> bytes:
        async with asyncio.timeout(self.timeout_s):
            return (await self.reader.readuntil(b"\x7e"))[:-1]

    async def _frame(self, content: bytes) -> None:
        try:
            frame = decode_frame(content)
        except FrameError as error:
            self.server.stats.bad_frames += 1
            log.info("attachments: bad frame (%s)", error)
            return
        self.progress_s = time.monotonic()
        header = frame.header
        if self.terminal_id is not None and header.terminal_id != self.terminal_id:
            raise _Refused(f"frame from terminal {header.terminal_id} on {self.terminal_id}'s")
        self.phone, self.version = header.phone, header.version
        try:
            if header.msg_id == jsatl.MSG_ATTACHMENT_INFO:
                await self._info(frame)
            elif header.msg_id == jsatl.MSG_FILE_INFO:
                self._file_info(frame)
            elif header.msg_id == jsatl.MSG_FILE_DONE:
                await self._file_done(frame)
            else:
                self._general(frame, m.RESULT_UNSUPPORTED)
        except FrameError as error:
            self.server.stats.bad_frames += 1
            log.info("attachments %s: bad 0x%04x body (%s)", self.terminal_id, header.msg_id,
                     error)  # fmt: skip
            self._general(frame, m.RESULT_MESSAGE_ERROR)

    def _send(self, msg_id: int, body: bytes) -> None:
        serial, self.serial = self.serial, (self.serial + 1) & 0xFFFF
        self.writer.write(encode_frame(msg_id, self.phone, serial, body, version=self.version))

    def _general(self, frame: Frame, result: int) -> None:
        header = frame.header
        self._send(
            m.MSG_PLATFORM_REPLY, m.encode_general_reply(header.serial, header.msg_id, result)
        )

    async def _info(self, frame: Frame) -> None:
        info = jsatl.decode_attachment_info(frame.body)
        terminal_id = frame.header.terminal_id
        try:
            issued = await numbers_db.issued_to(self.server.pool, info.alarm_number, terminal_id)
        except (asyncpg.PostgresError, OSError) as error:
            self._general(frame, m.RESULT_FAILURE)
            await self.writer.drain()
            raise _Refused(f"terminal {terminal_id}: alarm number not checked: {error}") from None
        if issued is None:
            self._general(frame, m.RESULT_FAILURE)
            await self.writer.drain()
            raise _Refused(f"terminal {terminal_id}: alarm number {info.alarm_number!r} was not "
                           "issued to it (or expired)")  # fmt: skip
        self.terminal_id, self.number = terminal_id, issued
        for name, size in info.files:
            self.files.setdefault(name, FileUpload(name, size, None))
        self._general(frame, m.RESULT_OK)

    def _file_info(self, frame: Frame) -> None:
        name, file_type, size = jsatl.decode_file_info(frame.body)
        if self.number is None:
            self._general(frame, m.RESULT_FAILURE)
            return
        if size > self.server.at.max_file_bytes:
            log.info("attachments %s: %s refused: %d bytes, limit %d", self.terminal_id,
                     display_name(name), size, self.server.at.max_file_bytes)  # fmt: skip
            self._general(frame, m.RESULT_FAILURE)
            return
        upload = self.files.get(name)
        if upload is None or upload.done:
            # only the files 0x1210 announced, each once: else one issued alarm number would
            # let a peer write file after file (64 MiB each) into the store without end
            log.info("attachments %s: %s refused: %s", self.terminal_id, display_name(name),
                     "already stored" if upload else "not in the 0x1210 list")  # fmt: skip
            self._general(frame, m.RESULT_FAILURE)
            return
        upload.size, upload.file_type = size, file_type
        self._general(frame, m.RESULT_OK)

    async def _data(self, head: bytes) -> None:
        name, offset, length = jsatl.decode_data_head(head)
        upload = self.files.get(name)
        if upload is not None and upload.file_type is not None and upload.spool is None:
            upload.spool = self.server.store.spool()
        done = 0
        while done < length:
            chunk = await self._read(min(CHUNK_BYTES, length - done))
            self.progress_s = time.monotonic()
            if upload is not None and upload.spool is not None and not upload.done:
                at = offset + done
                for start, end in upload.new_ranges(at, len(chunk)):
                    upload.spool.write(start, chunk[start - at : end - at])
                    upload.cover(start, end)
            done += len(chunk)

    async def _file_done(self, frame: Frame) -> None:
        name, file_type, _size = jsatl.decode_file_info(frame.body)
        upload = self.files.get(name)
        if upload is None or upload.done or self.number is None or self.terminal_id is None:
            self._send(jsatl.MSG_FILE_DONE_REPLY, jsatl.encode_file_done_reply(name, file_type, []))
            return
        missing = upload.missing()
        limit = self.server.settings.media.resend_max_requests
        if missing and upload.requests < limit:
            upload.requests += 1
            reply = jsatl.encode_file_done_reply(name, file_type, missing)
            self._send(jsatl.MSG_FILE_DONE_REPLY, reply)
            return
        reason = None
        if missing:
            reason = (f"missing_segments: {len(missing)} segment(s) of {upload.size} bytes never "
                      f"came after {upload.requests} request(s)")  # fmt: skip
        upload.done = True
        await self.server.store_file(self.number, upload, reason)
        self._send(jsatl.MSG_FILE_DONE_REPLY, jsatl.encode_file_done_reply(name, file_type, []))

    async def finish_all(self, reason: str) -> None:
        """Store what came of files still open (connection gone), never silently dropped."""
        if self.terminal_id is None or self.number is None:
            for upload in self.files.values():
                if upload.spool is not None:
                    self.server.store.discard(upload.spool)
            return
        for upload in self.files.values():
            if not upload.done and (upload.spool is not None or upload.file_type is not None):
                upload.done = True
                await self.server.store_file(self.number, upload, reason)
