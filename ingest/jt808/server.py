"""The JT/T 808 gateway: an asyncio TCP server speaking JT/T 808 to terminals and publishing
their positions on the MQTT ingest contract (``gps/v1/{terminal_id}/position|batch``).

Per connection (one :class:`TerminalConnection` protocol holding one :class:`Session`): the
byte stream is cut at 0x7E, each frame decoded; a bad frame (checksum, length, escaping,
truncation) is dropped and counted and the connection stays up. A connection that sends no
valid frame for ``jt808.idle_timeout_s`` is closed (this also ends slow-loris connections that
trickle bytes but never complete a frame), and so is one not authenticated within
``jt808.auth_timeout_s`` (heartbeats are answered with result 0 before that). Frames of one
connection are handled in order; the 0x8001 reply to a location report or batch is sent only
after the broker acknowledged the MQTT publish (QoS 1 PUBACK, see
:mod:`ingest.jt808.publisher`), with result 1 (failure) when it did not, so the terminal resends.

Handled: 0x0100 register (-> 0x8100), 0x0102 authenticate, 0x0003 logout, 0x0002 heartbeat,
0x0200 location, 0x0704 batch / blind-area upload (-> 0x8001 each); sub-packaged messages are
reassembled first (each packet is answered as it arrives), only for a connection authenticated
as the frame's terminal (0x0100 excepted) and within a packet count per message and byte caps
per connection and across the gateway (:class:`ingest.jt808.codec.SubpackageAssembler`).
Location data from a connection that has not authenticated as that terminal is refused (0x8001
result 1) and never published. A 0x0704's positions are published in batch payloads under
ingest's size limits (:func:`batch_payloads`), all acknowledged before the terminal's result 0.
Terminal replies (0x0001) get no answer (one to a 0x8300 becomes the command's answer, see
:mod:`ingest.jt808.downlink`); other messages get 0x8001 result 3 (unsupported), unless a module
registered a handler for them (:meth:`Jt808Gateway.register`): :mod:`ingest.jt808.uplink`
(0x0104, 0x0201, 0x0004, 0x0900, 0x0705, 0x0108), the photo and active-safety modules.

Contact (issue 12): every valid frame from a connection authenticated as the frame's terminal
(a heartbeat, a logout, a reply, an unsupported message; the 0x0102 that authenticates it) keeps
the terminal online: the gateway publishes ``gps/v1/{terminal_id}/heartbeat`` (QoS 1, in the
background: the answer never waits for it), at most once per connection per
``ingest.contact_min_interval_s``; a published position counts as contact too. An
unauthenticated peer's heartbeat is answered but published as nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from gps_monitor import topics
from gps_monitor.config import IngestSettings, Jt808Settings, Settings
from gps_monitor.errors import PayloadError
from ingest.jt808 import messages as m
from ingest.jt808 import uplink
from ingest.jt808.auth import TerminalAuthenticator
from ingest.jt808.codec import (
    Frame,
    FrameError,
    FrameSplitter,
    SubpackageAssembler,
    SubpackageBudget,
    SubpackageRefused,
    decode_frame,
    encode_frame,
)
from ingest.jt808.downlink import Downlink
from ingest.jt808.publisher import PublishError

log = logging.getLogger(__name__)

MAX_QUEUED_FRAMES = 64  # frames waiting on one connection before reading pauses
# ... or bytes of them (wire): a photo upload's 1 KB packets would otherwise queue 64 x 2 KB per
# connection (1,000 uploading terminals: +130 MB RSS); reading resumes below half of either
MAX_QUEUED_BYTES = 16 * 1024
READ_BYTES = 16 * 1024  # bytes read per recv (asyncio's default 256 KiB, see connection_made)


Handler = Callable[["Session", Frame], Awaitable[bytes | None]]
PacketHandler = Callable[["Session", Frame, float], Awaitable[bytes | None]]
LocationHook = Callable[["Session", Frame, dict[str, Any]], Awaitable[bytes]]
PositionExtras = Callable[["Session"], Awaitable[dict[str, Any]]]


class Publisher(Protocol):
    async def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1; return once the broker acknowledged, else raise PublishError."""


@dataclass(slots=True)
class GatewayStats:
    """Counters of one gateway process (logged every ``stats_interval_s``)."""

    connections_open: int = 0
    connections_total: int = 0
    idle_closed: int = 0
    unauthenticated_closed: int = 0
    frames_ok: int = 0
    frames_non_bcd_phone: int = 0  # accepted; the id is the phone field's hex
    frames_bad: Counter[str] = field(default_factory=Counter)
    garbage_bytes: int = 0
    buffer_overflows: int = 0
    subpackages_expired: int = 0
    subpackages_refused: Counter[str] = field(default_factory=Counter)
    positions_published: int = 0
    contacts_published: int = 0
    contact_publish_failures: int = 0
    positions_bad_time: int = 0
    publish_failures: int = 0
    unauthenticated_refused: int = 0
    registrations: Counter[int] = field(default_factory=Counter)
    auth_ok: int = 0
    auth_refused: int = 0
    handler_errors: int = 0
    unsupported: int = 0

    def snapshot(self) -> dict[str, Any]:
        """Plain dict of the counters (frames_bad by reason, registrations by result code)."""
        out = {name: getattr(self, name) for name in self.__slots__}
        out["frames_bad"] = dict(self.frames_bad)
        out["subpackages_refused"] = dict(self.subpackages_refused)
        out["registrations"] = dict(self.registrations)
        return out


class Session:
    """State of one terminal connection: its frame splitter, its sub-package reassembly
    (created on the first sub-package it may hold, within the gateway's ``budget``), the
    terminal it authenticated as, and the serial of the platform's next message to it."""

    __slots__ = (
        "_assembler",
        "budget",
        "connection",
        "contact_s",
        "jt",
        "peer",
        "reply_serial",
        "splitter",
        "terminal_id",
        "utc_offset_min",
        "vehicle_id",
    )

    def __init__(
        self,
        peer: str,
        jt: Jt808Settings,
        budget: SubpackageBudget,
        connection: TerminalConnection | None = None,
    ) -> None:
        self.peer = peer
        self.connection = connection
        self.jt = jt
        self.budget = budget
        self.splitter = FrameSplitter(jt.max_frame_bytes)
        self._assembler: SubpackageAssembler | None = None  # created on the first sub-package
        self.terminal_id: str | None = None  # set once authenticated
        self.vehicle_id: int | None = None
        self.utc_offset_min = 480
        self.reply_serial = 0
        self.contact_s: float | None = None  # loop time contact was last published

    @property
    def assembler(self) -> SubpackageAssembler:
        if self._assembler is None:
            jt = self.jt
            self._assembler = SubpackageAssembler(
                jt.subpackage_timeout_s,
                max_packets=jt.subpackage_max_packets,
                max_connection_bytes=jt.subpackage_max_connection_bytes,
                budget=self.budget,
            )
        return self._assembler

    @property
    def subpackages_expired(self) -> int:
        return self._assembler.expired if self._assembler is not None else 0

    @property
    def held_bytes(self) -> int:
        """Bytes this connection holds in its splitter buffer and unfinished sub-packages."""
        held = self.splitter.buffered_bytes
        return held + (self._assembler.held_bytes if self._assembler is not None else 0)

    def release(self) -> None:
        """Free the unfinished sub-packaged messages (connection closed)."""
        if self._assembler is not None:
            self._assembler.clear()

    @property
    def authenticated(self) -> bool:
        return self.terminal_id is not None

    def next_serial(self) -> int:
        serial = self.reply_serial
        self.reply_serial = (serial + 1) & 0xFFFF
        return serial


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def batch_payloads(positions: list[bytes], limits: IngestSettings) -> Iterator[tuple[bytes, int]]:
    """Pack contract positions (each one JSON object) into batch payloads (JSON arrays) of at
    most ``limits.max_payload_bytes`` bytes and ``limits.max_batch_positions`` elements, in
    order: what one ingest message may carry, so none is refused as oversize. Yields
    (payload, position count). A position too large even alone is yielded as the bare object
    (count 1), for the position topic: ingest then files it in ``rejected_messages`` with
    its bytes and the reason, and nothing else of the upload is lost with it.
    """
    max_bytes, max_count = limits.max_payload_bytes, limits.max_batch_positions
    chunk: list[bytes] = []
    size = 2  # the brackets
    for position in positions:
        if 2 + len(position) > max_bytes:
            if chunk:
                yield b"[" + b",".join(chunk) + b"]", len(chunk)
                chunk, size = [], 2
            yield position, 1
            continue
        if chunk and (size + 1 + len(position) > max_bytes or len(chunk) >= max_count):
            yield b"[" + b",".join(chunk) + b"]", len(chunk)
            chunk, size = [], 2
        size += len(position) + (1 if chunk else 0)
        chunk.append(position)
    if chunk:
        yield b"[" + b",".join(chunk) + b"]", len(chunk)


class Jt808Gateway:
    """The TCP server. ``await gateway.start()`` returns the listening ``asyncio.Server``.

    Args:
        settings: ``settings.jt808`` (port, timeouts, limits, auth policy) and
            ``settings.mqtt.topic_prefix``.
        authenticator: registry checks for 0x0100 / 0x0102 / 0x0003.
        publisher: QoS 1 publisher that returns once the broker has the message.
        downlink: commands to terminals and their answers (None: no downlink).
    """

    def __init__(
        self,
        settings: Settings,
        authenticator: TerminalAuthenticator,
        publisher: Publisher,
        downlink: Downlink | None = None,
    ) -> None:
        self.settings = settings
        self.jt = settings.jt808
        self.prefix = settings.mqtt.topic_prefix
        self.authenticator = authenticator
        self.publisher = publisher
        self.downlink = downlink
        self.stats = GatewayStats()
        self.subpackage_budget = SubpackageBudget(self.jt.subpackage_max_total_bytes)
        self._connections: set[TerminalConnection] = set()
        # the connection each terminal last authenticated on (for "is it online" and for
        # platform-initiated messages to a terminal)
        self._by_terminal: dict[str, TerminalConnection] = {}
        self._contact_tasks: set[asyncio.Task[None]] = set()
        self._packet_handlers: dict[int, PacketHandler] = {}
        self._location_hooks: list[LocationHook] = []
        self._position_extras: list[PositionExtras] = []
        self._handlers: dict[int, Handler] = {
            m.MSG_HEARTBEAT: self._on_heartbeat,
            m.MSG_REGISTER: self._on_register,
            m.MSG_AUTHENTICATE: self._on_authenticate,
            m.MSG_LOGOUT: self._on_logout,
            m.MSG_LOCATION: self._on_location,
            m.MSG_BATCH: self._on_batch,
        }
        uplink.install(self)  # issue 12: parameters, position query, 0x0004, 0x0900, 0x0705...

    def register(self, msg_id: int, handler: Handler) -> None:
        """Answer ``msg_id`` with ``handler`` (sub-packaged messages reassembled first)."""
        self._handlers[msg_id] = handler

    def register_packets(self, msg_id: int, handler: PacketHandler) -> None:
        """Hand every frame of ``msg_id`` to ``handler(session, frame, now_s)`` as it arrives,
        each packet of a sub-packaged one unassembled (an upload streamed to storage, 0x0801),
        once the connection is authenticated as the frame's terminal."""
        self._packet_handlers[msg_id] = handler

    def register_location_hook(self, hook: LocationHook) -> None:
        """Call ``await hook(session, frame, position)`` for each 0x0200 after its answer is ready;
        the frames it returns are sent after that answer (0x9208 for active-safety alarms)."""
        self._location_hooks.append(hook)

    def register_position_extras(self, extras: PositionExtras) -> None:
        """Merge ``await extras(session)`` into the ``extras`` of each 0x0200 position before
        it is published (the current driver, :mod:`ingest.jt808.driver_uplink`)."""
        self._position_extras.append(extras)

    def writer(self, terminal_id: str) -> Callable[[bytes], None] | None:
        """Write bytes to the connection authenticated as ``terminal_id`` (None: not here)."""
        connection = self._by_terminal.get(terminal_id)
        return connection.write if connection is not None and connection.open else None

    async def start(self, host: str | None = None, port: int | None = None) -> asyncio.Server:
        """Listen on ``host:port`` (default from settings; port 0 = any free port)."""
        loop = asyncio.get_running_loop()
        return await loop.create_server(
            lambda: TerminalConnection(self),
            host if host is not None else self.jt.host,
            self.jt.port if port is None else port,
            backlog=4096,
        )

    async def close_connections(self) -> None:
        """Close every terminal connection and wait for frames being handled (shutdown)."""
        connections = list(self._connections)
        for connection in connections:
            connection.close()
        tasks = [c.task for c in connections if c.task is not None]
        tasks += self._contact_tasks
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    def _decode(self, session: Session, content: bytes, wire: bytes) -> Frame | None:
        try:
            frame = decode_frame(content, wire)
        except FrameError as error:
            self.stats.frames_bad[error.reason] += 1
            log.info("jt808 %s: bad frame dropped (%s): %s", session.peer, error, wire.hex())
            return None
        self.stats.frames_ok += 1
        if not frame.header.phone_is_bcd:
            self.stats.frames_non_bcd_phone += 1
        return frame

    def online(self, terminal_id: str) -> bool:
        """Whether a connection of this gateway is authenticated as that terminal."""
        connection = self._by_terminal.get(terminal_id)
        return connection is not None and connection.open

    def held_bytes(self) -> int:
        """Bytes all connections hold in splitter buffers and unfinished sub-packages."""
        return sum(c.session.held_bytes for c in self._connections if c.session is not None)

    def _set_terminal(self, session: Session, terminal_id: str | None) -> None:
        """Authenticate ``session`` as ``terminal_id`` (None: no longer authenticated) and keep
        the terminal -> connection index in step."""
        old = session.terminal_id
        if old is not None and self._by_terminal.get(old) is session.connection:
            del self._by_terminal[old]
        session.terminal_id = terminal_id
        if terminal_id is not None and session.connection is not None:
            self._by_terminal[terminal_id] = session.connection
        if old is not None and old != terminal_id and self.downlink is not None:
            # logged out, refused, or the connection ended: no more commands that way
            connection = session.connection
            self.downlink.detach(old, connection.write if connection is not None else None)

    def _subpackage(self, session: Session, frame: Frame, now_s: float) -> Frame | bytes:
        """One packet of a sub-packaged message: the whole message once complete, else the
        reply to this packet. Only a session authenticated as the frame's terminal (or a
        registration) may have packets held, only for messages this gateway handles, and only
        within the caps of :class:`SubpackageAssembler`."""
        header = frame.header
        if header.encryption or header.msg_id not in self._handlers:
            self.stats.unsupported += 1
            return self._general_reply(session, frame, m.RESULT_UNSUPPORTED)
        if header.msg_id != m.MSG_REGISTER:
            refused = self._refuse_unauthenticated(session, frame)
            if refused is not None:
                return refused
        try:
            whole = session.assembler.add(frame, now_s)
        except SubpackageRefused as error:
            self.stats.subpackages_refused[error.reason] += 1
            log.info("jt808 %s: sub-package refused (%s)", session.peer, error)
            return self._general_reply(session, frame, m.RESULT_FAILURE)
        if whole is None:
            return self._general_reply(session, frame, m.RESULT_OK)
        return whole

    async def _dispatch(self, session: Session, frame: Frame, now_s: float) -> bytes | None:
        """Answer one frame; then note it as the terminal's contact when the connection was
        (or has just become) authenticated as the frame's terminal."""
        terminal_id = frame.header.terminal_id
        authenticated = session.terminal_id == terminal_id
        reply = await self._answer(session, frame, now_s)
        if authenticated or session.terminal_id == terminal_id:
            self._contact(session, frame, now_s)
        return reply

    def _contact(self, session: Session, frame: Frame, now_s: float) -> None:
        """Publish contact for the frame's terminal, unless this connection published contact
        (or a position) within ``ingest.contact_min_interval_s``."""
        if frame.header.msg_id in (m.MSG_LOCATION, m.MSG_BATCH):
            return  # its positions are its contact (see _publish_then_reply)
        interval_s = self.settings.ingest.contact_min_interval_s
        if session.contact_s is not None and now_s - session.contact_s < interval_s:
            return
        session.contact_s = now_s
        topic = topics.heartbeat_topic(frame.header.terminal_id, self.prefix)
        payload = _json({"msg_id": f"0x{frame.header.msg_id:04x}"})
        task = asyncio.get_running_loop().create_task(
            self._publish_contact(session, topic, payload)
        )
        self._contact_tasks.add(task)
        task.add_done_callback(self._contact_tasks.discard)

    async def _publish_contact(self, session: Session, topic: str, payload: bytes) -> None:
        try:
            await self.publisher.publish(topic, payload)
        except (PublishError, PayloadError) as error:
            self.stats.contact_publish_failures += 1
            session.contact_s = None  # the next frame tries again
            log.info("jt808 %s: contact not published: %s", session.peer, error)
            return
        self.stats.contacts_published += 1

    async def _answer(self, session: Session, frame: Frame, now_s: float) -> bytes | None:
        header = frame.header
        try:
            packets = self._packet_handlers.get(header.msg_id)
            if packets is not None and not header.encryption:
                refused = self._refuse_unauthenticated(session, frame)
                return refused if refused is not None else await packets(session, frame, now_s)
            if header.subpackage_total is not None:
                whole = self._subpackage(session, frame, now_s)
                if isinstance(whole, bytes):
                    return whole
                frame = whole
            if frame.header.encryption:
                self.stats.unsupported += 1
                return self._general_reply(session, frame, m.RESULT_UNSUPPORTED)
            handler = self._handlers.get(frame.header.msg_id)
            if handler is None:
                if frame.header.msg_id == m.MSG_TERMINAL_REPLY:
                    self._on_terminal_reply(session, frame)
                    return None
                self.stats.unsupported += 1
                return self._general_reply(session, frame, m.RESULT_UNSUPPORTED)
            return await handler(session, frame)
        except FrameError as error:
            self.stats.frames_bad[error.reason] += 1
            log.info("jt808 %s: bad message body (%s): %s", session.peer, error, frame.wire.hex())
            return self._general_reply(session, frame, m.RESULT_MESSAGE_ERROR)
        except Exception:
            self.stats.handler_errors += 1
            log.exception(
                "jt808 %s: handling 0x%04x failed: %s",
                session.peer,
                header.msg_id,
                frame.wire.hex(),
            )
            return self._general_reply(session, frame, m.RESULT_FAILURE)

    # ---------------------------------------------------------------------------- replies

    def reply(self, session: Session, frame: Frame, msg_id: int, body: bytes) -> bytes:
        """A platform message ``msg_id`` to the frame's terminal, in its header version."""
        return self._reply(session, frame, msg_id, body)

    def general_reply(self, session: Session, frame: Frame, result: int) -> bytes:
        """0x8001 answering ``frame`` with ``result``."""
        return self._general_reply(session, frame, result)

    def _reply(self, session: Session, frame: Frame, msg_id: int, body: bytes) -> bytes:
        header = frame.header
        return encode_frame(
            msg_id, header.phone, session.next_serial(), body, version=header.version
        )

    def _general_reply(self, session: Session, frame: Frame, result: int) -> bytes:
        header = frame.header
        body = m.encode_general_reply(header.serial, header.msg_id, result)
        return self._reply(session, frame, m.MSG_PLATFORM_REPLY, body)

    # --------------------------------------------------------------------------- handlers

    async def _on_heartbeat(self, session: Session, frame: Frame) -> bytes:
        return self._general_reply(session, frame, m.RESULT_OK)

    async def _on_register(self, session: Session, frame: Frame) -> bytes:
        header = frame.header
        request = m.decode_register(frame.body, is_2019=header.is_2019)
        outcome = await self.authenticator.register(
            header.terminal_id,
            header.phone,
            request,
            online=self.online(header.terminal_id) and session.terminal_id != header.terminal_id,
        )
        self.stats.registrations[outcome.result] += 1
        log.info(
            "jt808 %s: register of terminal %s (phone field %s%s) -> %d (%s)",
            session.peer,
            header.terminal_id,
            header.phone,
            "" if header.phone_is_bcd else ", not BCD: its hex is the id",
            outcome.result,
            outcome.detail,
        )
        body = m.encode_register_reply(header.serial, outcome.result, outcome.auth_code)
        return self._reply(session, frame, m.MSG_REGISTER_REPLY, body)

    async def _on_authenticate(self, session: Session, frame: Frame) -> bytes | None:
        header = frame.header
        request = m.decode_auth(frame.body, is_2019=header.is_2019)
        vehicle = await self.authenticator.authenticate(header.terminal_id, request)
        if vehicle is None:
            self.stats.auth_refused += 1
            self._set_terminal(session, None)
            log.info("jt808 %s: terminal %s refused", session.peer, header.terminal_id)
            return self._general_reply(session, frame, m.RESULT_FAILURE)
        self.stats.auth_ok += 1
        self._set_terminal(session, header.terminal_id)
        session.vehicle_id = vehicle.id
        session.utc_offset_min = self.jt.utc_offset_overrides_min.get(
            header.terminal_id, vehicle.utc_offset_min
        )
        reply = self._general_reply(session, frame, m.RESULT_OK)
        if self.downlink is not None and session.connection is not None:
            connection = session.connection
            connection.write(reply)  # the answer first, then any command held for it
            self.downlink.attach(
                header.terminal_id, header.phone, header.version, connection.write,
                session.next_serial,
            )  # fmt: skip
            return None
        return reply

    async def _on_logout(self, session: Session, frame: Frame) -> bytes:
        terminal_id = frame.header.terminal_id
        if session.terminal_id == terminal_id:
            await self.authenticator.unregister(terminal_id)
            self._set_terminal(session, None)
        return self._general_reply(session, frame, m.RESULT_OK)

    def _on_terminal_reply(self, session: Session, frame: Frame) -> None:
        """0x0001: the answer to a platform message (only a 0x8300's counts, and only from the
        terminal this connection authenticated as)."""
        if self.downlink is not None and session.terminal_id == frame.header.terminal_id:
            self.downlink.on_terminal_reply(session.terminal_id, frame.body)

    def _refuse_unauthenticated(self, session: Session, frame: Frame) -> bytes | None:
        if session.terminal_id == frame.header.terminal_id:
            return None
        self.stats.unauthenticated_refused += 1
        log.info(
            "jt808 %s: 0x%04x from terminal %s refused: not authenticated on this connection",
            session.peer,
            frame.header.msg_id,
            frame.header.terminal_id,
        )
        return self._general_reply(session, frame, m.RESULT_FAILURE)

    async def _on_location(self, session: Session, frame: Frame) -> bytes:
        refused = self._refuse_unauthenticated(session, frame)
        if refused is not None:
            return refused
        report = m.decode_location(frame.body)
        position = m.to_contract(
            report, utc_offset_min=session.utc_offset_min, evidence=m.location_evidence(frame)
        )
        if position["fix_time"] is None:
            self.stats.positions_bad_time += 1
        for extras in self._position_extras:
            added = await extras(session)
            if added:  # most positions: no card data, nothing to merge
                position["extras"] = {**(position.get("extras") or {}), **added}
        topic = topics.position_topic(frame.header.terminal_id, self.prefix)
        reply = await self._publish_then_reply(session, frame, [(topic, _json(position), 1)])
        for hook in self._location_hooks:
            reply += await hook(session, frame, position)
        return reply

    async def _on_batch(self, session: Session, frame: Frame) -> bytes:
        refused = self._refuse_unauthenticated(session, frame)
        if refused is not None:
            return refused
        batch = m.decode_batch(frame.body)
        terminal_id = frame.header.terminal_id
        position_topic = topics.position_topic(terminal_id, self.prefix)
        good: list[bytes] = []
        messages: list[tuple[str, bytes, int]] = []
        for report, evidence in zip(batch.reports, m.batch_evidence(frame, batch), strict=True):
            position = m.to_contract(
                report,
                utc_offset_min=session.utc_offset_min,
                evidence=evidence,
                reupload=batch.reupload,
            )
            if position["fix_time"] is None:
                # Alone on the position topic, so ingest rejects only this one (with its raw
                # bytes) instead of the whole batch.
                self.stats.positions_bad_time += 1
                messages.append((position_topic, _json(position), 1))
            else:
                good.append(_json(position))
        batch_topic = topics.batch_topic(terminal_id, self.prefix)
        chunks = [
            (batch_topic if payload.startswith(b"[") else position_topic, payload, count)
            for payload, count in batch_payloads(good, self.settings.ingest)
        ]
        return await self._publish_then_reply(session, frame, chunks + messages)

    async def _publish_then_reply(
        self, session: Session, frame: Frame, messages: list[tuple[str, bytes, int]]
    ) -> bytes:
        try:
            for topic, payload, count in messages:
                await self.publisher.publish(topic, payload)
                self.stats.positions_published += count
            session.contact_s = asyncio.get_running_loop().time()
        except (PublishError, PayloadError) as error:
            self.stats.publish_failures += 1
            log.warning("jt808 %s: %s; terminal told to resend", session.peer, error)
            return self._general_reply(session, frame, m.RESULT_FAILURE)
        return self._general_reply(session, frame, m.RESULT_OK)


class TerminalConnection(asyncio.Protocol):
    """One terminal's TCP connection (an asyncio protocol: no task while it is idle).

    Bytes are split and decoded as they arrive; valid frames queue up and one task at a time
    handles them in order (started when a frame arrives, ending when the queue is empty).
    Reading pauses while more than ``MAX_QUEUED_FRAMES`` wait. The idle timer is one timer
    handle, re-armed lazily: a valid frame only records the time.
    """

    __slots__ = (
        "connected_s",
        "gateway",
        "last_valid_s",
        "loop",
        "queue",
        "queued_bytes",
        "session",
        "task",
        "timer",
        "transport",
    )

    def __init__(self, gateway: Jt808Gateway) -> None:
        self.gateway = gateway
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None
        self.queue: deque[Frame] = deque()
        self.queued_bytes = 0
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.last_valid_s = self.connected_s = self.loop.time()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        gateway = self.gateway
        self.transport = transport
        if hasattr(transport, "max_size"):  # asyncio's selector transport reads 256 KiB a
            transport.max_size = READ_BYTES  # recv; a photo upload would hold that per peer
        jt = gateway.jt
        self.session = Session(
            str(transport.get_extra_info("peername")), jt, gateway.subpackage_budget, self
        )
        gateway._connections.add(self)
        gateway.stats.connections_open += 1
        gateway.stats.connections_total += 1
        first_check_s = min(jt.idle_timeout_s, jt.auth_timeout_s)
        self.timer = self.loop.call_at(self.connected_s + first_check_s, self._check_idle)

    def data_received(self, data: bytes) -> None:
        session = self.session
        assert session is not None
        stats = self.gateway.stats
        splitter = session.splitter
        garbage, overflows = splitter.garbage_bytes, splitter.overflows
        candidates = splitter.feed(data)
        stats.garbage_bytes += splitter.garbage_bytes - garbage
        stats.buffer_overflows += splitter.overflows - overflows
        for content, wire in candidates:
            frame = self.gateway._decode(session, content, wire)
            if frame is not None:
                self.last_valid_s = self.loop.time()
                self.queue.append(frame)
                self.queued_bytes += len(frame.wire)
        if self.queue and self.task is None:
            self.task = self.loop.create_task(self._handle_queue())
        full = len(self.queue) > MAX_QUEUED_FRAMES or self.queued_bytes > MAX_QUEUED_BYTES
        if full and self.transport is not None:
            self.transport.pause_reading()

    async def _handle_queue(self) -> None:
        session = self.session
        assert session is not None
        try:
            while self.queue:
                frame = self.queue.popleft()
                self.queued_bytes -= len(frame.wire)
                reply = await self.gateway._dispatch(session, frame, self.loop.time())
                transport = self.transport
                if transport is None or transport.is_closing():
                    return
                if reply is not None:
                    transport.write(reply)
                if (
                    len(self.queue) <= MAX_QUEUED_FRAMES // 2
                    and self.queued_bytes <= MAX_QUEUED_BYTES // 2
                ):
                    transport.resume_reading()
        finally:
            self.task = None

    def _check_idle(self) -> None:
        jt = self.gateway.jt
        session = self.session
        now_s = self.loop.time()
        idle_deadline_s = self.last_valid_s + jt.idle_timeout_s
        authenticated = session is not None and session.authenticated
        auth_deadline_s = self.connected_s + jt.auth_timeout_s
        if now_s >= idle_deadline_s:
            self.gateway.stats.idle_closed += 1
            reason = f"no valid frame for {jt.idle_timeout_s:.0f} s"
        elif not authenticated and now_s >= auth_deadline_s:
            self.gateway.stats.unauthenticated_closed += 1
            reason = f"not authenticated within {jt.auth_timeout_s:.0f} s"
        else:
            next_s = idle_deadline_s if authenticated else min(idle_deadline_s, auth_deadline_s)
            self.timer = self.loop.call_at(next_s, self._check_idle)
            return
        self.timer = None
        log.info(
            "jt808 %s (%s): %s, closed",
            session.peer if session else "?",
            session.terminal_id if session else None,
            reason,
        )
        self.close()

    @property
    def open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def write(self, data: bytes) -> None:
        """Send bytes to the terminal (dropped once the connection is closing)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        gateway = self.gateway
        if self in gateway._connections:
            gateway._connections.discard(self)
            gateway.stats.connections_open -= 1
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        session = self.session
        if session is not None:
            gateway.stats.subpackages_expired += session.subpackages_expired
            session.release()
            gateway._set_terminal(session, None)
        self.queue.clear()
        self.queued_bytes = 0
        self.transport = None
        if exc is not None:
            log.debug("jt808 connection lost: %s", exc)


async def log_stats_forever(gateway: Jt808Gateway, interval_s: float) -> None:
    """Log the gateway counters every ``interval_s`` seconds."""
    while True:
        await asyncio.sleep(interval_s)
        snapshot = gateway.stats.snapshot()
        snapshot["subpackage_held_bytes"] = gateway.subpackage_budget.held_bytes
        log.info("jt808 stats %s", json.dumps(snapshot))
