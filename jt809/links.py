"""The two JT/T 809 links of the lower platform.

- :class:`MainLink` (主链路): TCP client to the superior. Login 0x1001 -> 0x1002 (result 0 and a
  verify code, else the refusal's code is logged and the link retried with backoff), heartbeat
  0x1005 when idle ``heartbeat_interval_s`` (answered 0x1006), reset when nothing arrives for
  ``link_timeout_s``; 0x1003 logout on shutdown. Reconnects with exponential backoff
  (``reconnect_delay_s`` doubling up to ``reconnect_delay_max_s``) for as long as it takes.
- :class:`SlaveLinkServer` (从链路): TCP server the superior connects to after our login. 0x9001
  must carry the verify code the superior gave in 0x1002 (answer 0x9002 result 0, else 1);
  0x9005 is answered 0x9006, 0x9003 with 0x9004. A connection that logged in is in
  ``logged_in``: the service may send upward traffic on it while the main link is down.

Every other frame received on either link (the superior's requests: 0x9300, 0x9400, 0x9500
...) goes to ``on_frame(frame, peer)`` (:class:`jt809.downward.Downward`); without one it is
counted as unhandled.

Bad frames (crc, escape, length, truncated, oversize, body) are dropped and counted with the
peer in the log; the connection stays up. Messages this side does not handle are counted by id.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from gps_monitor.config import Jt809Settings
from gps_monitor.mqtt import Backoff
from jt809 import messages as m
from jt809.codec import EncryptionKeys, Frame, FrameCodec, FrameError, FrameSplitter

log = logging.getLogger(__name__)

READ_BYTES = 65536
OnFrame = Callable[[Frame, Any], Awaitable[None]]


def build_codec(settings: Jt809Settings) -> FrameCodec:
    """The frame codec of our links: version, 接入码, M1/IA1/IC1 when set, encryption switch."""
    keys = (
        EncryptionKeys(settings.m1, settings.ia1, settings.ic1)
        if settings.m1 or settings.ia1 or settings.ic1
        else None
    )
    return FrameCodec(settings.version, settings.access_code, keys=keys, encrypt=settings.encrypt)


class LinkStats:
    """Counters of one service: frames sent and received by message id, bad frames by reason."""

    def __init__(self) -> None:
        self.sent: Counter[int] = Counter()
        self.received: Counter[int] = Counter()
        self.bad_frames: Counter[str] = Counter()
        self.unhandled: Counter[int] = Counter()
        self.login_refusals: Counter[int] = Counter()

    def summary(self) -> str:
        def ids(counter: Counter[int]) -> str:
            return ",".join(f"0x{k:04x}={v}" for k, v in sorted(counter.items())) or "-"

        return (
            f"sent {ids(self.sent)}; received {ids(self.received)}; bad frames "
            f"{dict(self.bad_frames) or '-'}; unhandled {ids(self.unhandled)}"
        )


class FrameConnection:
    """One TCP connection carrying JT/T 809 frames both ways (either link)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        codec: FrameCodec,
        stats: LinkStats,
        max_frame_bytes: int,
        serials: itertools.count[int],
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.codec = codec
        self.stats = stats
        self.splitter = FrameSplitter(max_frame_bytes)
        self.peer = writer.get_extra_info("peername")
        self._pending: list[Frame] = []
        self._serials = serials
        self.last_received = time.monotonic()

    async def send(self, msg_id: int, body: bytes) -> int:
        """Write one frame and wait until the socket took it (``drain``); returns the frame's
        serial number (MSG_SN, u32) as written in its header.

        Raises:
            ConnectionError / OSError: the connection is gone.
        """
        key = random.getrandbits(32) if self.codec.encrypt else 0
        serial = next(self._serials) & 0xFFFFFFFF
        frame = self.codec.encode(msg_id, body, serial, encrypt_key=key)
        if self.writer.is_closing():
            raise ConnectionResetError(f"link to {self.peer} is closed")
        self.writer.write(frame)
        await self.writer.drain()
        self.stats.sent[msg_id] += 1
        return serial

    async def receive(self) -> Frame | None:
        """The next good frame, or None at end of stream. Bad frames are counted and logged."""
        while not self._pending:
            data = await self.reader.read(READ_BYTES)
            if not data:
                return None
            oversize_before = self.splitter.oversize
            garbage_before = self.splitter.garbage_bytes
            for raw in self.splitter.feed(data):
                try:
                    self._pending.append(self.codec.decode(raw))
                except FrameError as error:
                    self.stats.bad_frames[error.reason] += 1
                    log.warning("jt809: dropped a frame from %s: %s", self.peer, error)
            if self.splitter.garbage_bytes > garbage_before:
                garbage = self.splitter.garbage_bytes - garbage_before
                self.stats.bad_frames["garbage_bytes"] += garbage
                log.warning("jt809: dropped %d byte(s) outside 5B...5D frames from %s", garbage,
                            self.peer)  # fmt: skip
            if self.splitter.oversize > oversize_before:
                self.stats.bad_frames["oversize"] += self.splitter.oversize - oversize_before
                log.warning("jt809: dropped an oversize frame from %s", self.peer)
        self.last_received = time.monotonic()
        frame = self._pending.pop(0)
        self.stats.received[frame.msg_id] += 1
        return frame

    async def close(self) -> None:
        """Close the socket and wait until it is closed. A cancellation while waiting is the
        caller's and goes on (swallowing it kept a cancelled main link running)."""
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


def _raise_if_cancelled() -> None:
    """Raise CancelledError when the current task has a cancellation pending that an await
    swallowed: a callback (``on_up``) or a child's cleanup (the heartbeat's) can. A loop that
    went on after that never stopped, and the service's shutdown waited for it forever. The
    links wait under ``asyncio.timeout``: ``asyncio.wait_for`` of Python 3.11 drops a
    cancellation that comes as the awaited frame does (CPython gh-86296, fixed in 3.12)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class LoginRefused(Exception):
    """The superior answered 0x1002 with a result other than 0."""

    def __init__(self, result: int) -> None:
        meaning = m.LOGIN_RESULTS.get(result, "unknown code")
        super().__init__(f"login refused by the superior: result {result} ({meaning})")
        self.result = result


class MainLink:
    """The main link as a TCP client, kept up for as long as :meth:`run` runs.

    ``on_up(connection)`` runs once logged in; ``on_down(reason)`` when a logged-in link is
    lost. ``status`` is a one-line state for logs and the bureau page: ``connecting`` at
    first, then ``up``, ``down: why`` or ``refused: ... result N (meaning)``, kept until the
    next attempt's outcome.
    """

    def __init__(
        self,
        settings: Jt809Settings,
        codec: FrameCodec,
        stats: LinkStats,
        on_up: Callable[[FrameConnection], Awaitable[None]],
        on_down: Callable[[str], Awaitable[None]],
    ) -> None:
        self.settings = settings
        self.codec = codec
        self.stats = stats
        self.on_up = on_up
        self.on_down = on_down
        self.connection: FrameConnection | None = None
        self.verify_code: int | None = None
        self.status = "down"
        self.on_frame: OnFrame | None = None
        self._serials = itertools.count(1)

    @property
    def down_link_ip(self) -> str:
        return self.settings.slave_advertised_ip or self.settings.slave_host

    async def run(self) -> None:
        """Connect, log in and serve the link; reconnect with backoff forever (until cancelled)."""
        backoff = Backoff(self.settings.reconnect_delay_s, self.settings.reconnect_delay_max_s)
        host, port = self.settings.superior_host, self.settings.superior_port
        self.status = "connecting"
        while True:
            _raise_if_cancelled()
            # the status keeps the last outcome (a refusal and its code) until the next one
            try:
                async with asyncio.timeout(self.settings.login_timeout_s):
                    reader, writer = await asyncio.open_connection(host, port)
            except (OSError, TimeoutError) as error:
                self.status = f"down: {error or 'connect timed out'}"
                delay = backoff.next_delay_s()
                log.warning("jt809: main link to %s:%s failed (%s); retry in %.1f s", host, port,
                            error or "timeout", delay)  # fmt: skip
                await asyncio.sleep(delay)
                continue
            connection = FrameConnection(
                reader, writer, self.codec, self.stats, self.settings.max_frame_bytes,
                self._serials,
            )  # fmt: skip
            reason = "closed"
            try:
                self.verify_code = await self._login(connection)
                backoff.reset()
                self.connection = connection
                self.status = "up"
                log.info("jt809: main link to %s:%s up (verify code %s)", host, port,
                         self.verify_code)  # fmt: skip
                await self.on_up(connection)
                _raise_if_cancelled()
                reason = await self._serve(connection)
            except LoginRefused as refused:
                self.stats.login_refusals[refused.result] += 1
                self.status = f"refused: {refused}"
                log.error("jt809: %s (superior %s:%s)", refused, host, port)
                reason = "refused"
            except (OSError, TimeoutError, FrameError) as error:
                reason = f"{type(error).__name__}: {error}"
                log.warning("jt809: main link to %s:%s lost (%s)", host, port, reason)
            finally:
                was_up = self.connection is connection
                self.connection = None
                await connection.close()
            _raise_if_cancelled()
            if was_up:
                self.status = f"down: {reason}"
                await self.on_down(reason)
            elif reason != "refused":  # never logged in: say why (a silent superior, ...)
                self.status = f"down: {reason}"
            delay = backoff.next_delay_s()
            log.info("jt809: main link reconnecting in %.1f s", delay)
            await asyncio.sleep(delay)

    async def _login(self, connection: FrameConnection) -> int:
        login = m.Login(
            self.settings.user_id, self.settings.password, self.down_link_ip,
            self.settings.slave_port, self.settings.access_code,
        )  # fmt: skip
        await connection.send(m.MSG_LOGIN, m.encode_login(login, self.codec.version))
        deadline = time.monotonic() + self.settings.login_timeout_s
        while True:
            left = deadline - time.monotonic()
            try:
                async with asyncio.timeout(max(left, 0.001)):
                    frame = await connection.receive()
            except TimeoutError:
                raise TimeoutError(
                    f"no 0x1002 login answer within {self.settings.login_timeout_s:g} s"
                ) from None
            if frame is None:
                raise ConnectionResetError("superior closed the main link before 0x1002")
            if frame.msg_id != m.MSG_LOGIN_ANSWER:
                self.stats.unhandled[frame.msg_id] += 1
                continue
            result, verify_code = m.decode_login_answer(frame.body)
            if result != 0:
                raise LoginRefused(result)
            return verify_code

    async def _serve(self, connection: FrameConnection) -> str:
        """Read frames and keep the heartbeat until the link ends; returns why it ended."""
        heartbeat = asyncio.create_task(self._heartbeat(connection))
        try:
            while True:
                try:
                    async with asyncio.timeout(self.settings.link_timeout_s):
                        frame = await connection.receive()
                except TimeoutError:
                    return f"nothing received for {self.settings.link_timeout_s:.0f} s"
                if frame is None:
                    return "closed by the superior"
                if frame.msg_id in (m.MSG_HEARTBEAT_ANSWER, m.MSG_LOGOUT_ANSWER):
                    continue
                if frame.msg_id == m.MSG_DISCONNECT_NOTICE:
                    log.warning("jt809: superior sent 0x1007 (main link disconnect notice)")
                    continue
                if self.on_frame is not None:
                    await self.on_frame(frame, connection.peer)
                    continue
                self.stats.unhandled[frame.msg_id] += 1
                log.info("jt809: main link message 0x%04x not handled", frame.msg_id)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _heartbeat(self, connection: FrameConnection) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval_s)
            with contextlib.suppress(OSError):
                await connection.send(m.MSG_HEARTBEAT, b"")

    async def logout(self) -> None:
        """Send 0x1003 on a logged-in link (best effort, at shutdown)."""
        connection = self.connection
        if connection is None:
            return
        with contextlib.suppress(OSError):
            body = m.encode_logout(self.settings.user_id, self.settings.password)
            await connection.send(m.MSG_LOGOUT, body)


class SlaveLinkServer:
    """The slave link: a TCP server for the superior, checking 0x9001's verify code against
    ``verify_code()`` (the one of the current main-link login)."""

    def __init__(
        self,
        settings: Jt809Settings,
        codec: FrameCodec,
        stats: LinkStats,
        verify_code: Callable[[], int | None],
    ) -> None:
        self.settings = settings
        self.codec = codec
        self.stats = stats
        self.verify_code = verify_code
        self.connections: set[FrameConnection] = set()
        self.logged_in: set[FrameConnection] = set()
        self.on_frame: OnFrame | None = None
        self._serials = itertools.count(1)
        self.server: asyncio.Server | None = None

    @property
    def status(self) -> str:
        return "up" if self.logged_in else "down"

    async def start(self, host: str | None = None, port: int | None = None) -> int:
        """Listen; returns the bound port."""
        self.server = await asyncio.start_server(
            self._handle, host or self.settings.slave_host, port or self.settings.slave_port
        )
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for connection in list(self.connections):
            await connection.close()
        if self.server is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = FrameConnection(
            reader, writer, self.codec, self.stats, self.settings.max_frame_bytes, self._serials
        )
        self.connections.add(connection)
        log.info("jt809: slave link from %s", connection.peer)
        try:
            while True:
                async with asyncio.timeout(self.settings.link_timeout_s):
                    frame = await connection.receive()
                if frame is None:
                    return
                await self._answer(connection, frame)
        except (OSError, TimeoutError, FrameError) as error:
            log.info("jt809: slave link from %s ended (%s)", connection.peer, error)
        finally:
            self.connections.discard(connection)
            self.logged_in.discard(connection)
            await connection.close()

    async def _answer(self, connection: FrameConnection, frame: Frame) -> None:
        if frame.msg_id == m.MSG_SLAVE_LOGIN:
            expected = self.verify_code()
            got = m.decode_slave_login(frame.body)
            result = 0 if expected is not None and got == expected else 1
            if result:
                log.warning("jt809: slave login from %s with verify code %s, expected %s",
                            connection.peer, got, expected)  # fmt: skip
                self.logged_in.discard(connection)
            else:
                self.logged_in.add(connection)
            await connection.send(m.MSG_SLAVE_LOGIN_ANSWER, bytes([result]))
        elif frame.msg_id == m.MSG_SLAVE_HEARTBEAT:
            await connection.send(m.MSG_SLAVE_HEARTBEAT_ANSWER, b"")
        elif frame.msg_id == m.MSG_SLAVE_LOGOUT:
            self.logged_in.discard(connection)
            await connection.send(m.MSG_SLAVE_LOGOUT_ANSWER, b"")
        elif connection not in self.logged_in:
            # JT/T 809-2011 4.1.2: the superior logs in on the slave link (0x9001 with the
            # verify code of our 0x1002) before it sends requests; anything else is dropped,
            # so whoever reaches this port cannot inject 查岗, 督办 or warnings.
            self.stats.bad_frames["slave_not_logged_in"] += 1
            log.warning("jt809: slave link frame 0x%04x from %s before a valid 0x9001 login; "
                        "dropped", frame.msg_id, connection.peer)  # fmt: skip
        elif self.on_frame is not None:
            await self.on_frame(frame, connection.peer)
        else:
            self.stats.unhandled[frame.msg_id] += 1
            log.info("jt809: slave link message 0x%04x not handled", frame.msg_id)


def now_utc() -> datetime:
    return datetime.now(UTC)
