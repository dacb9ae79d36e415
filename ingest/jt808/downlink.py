"""The gateway's downlink: commands from ``cmd/v1/{terminal_id}/{name}`` to JT/T 808 terminals,
their 0x0001 answers back on ``gps/v1/{terminal_id}/cmd_result``, and the terminals' presence on
``gps/v1/{terminal_id}/status`` (contract: :mod:`gps_monitor.commands`).

- ``text`` becomes 0x8300 in the terminal's own header version: flags (bit 0 emergency, bit 2
  display, bit 3 TTS), in 2019 the text type (1 notice), then the GBK text. The serial of the
  0x8300 frame is remembered; the terminal's 0x0001 naming that serial and 0x8300 becomes
  ``{"command_id", "result"}`` with the result as the terminal gave it.
- The terminal commands of :mod:`ingest.jt808.terminal_commands` (parameters, position query,
  temporary tracking, terminal control, pass-through) are registered the same way by
  :func:`ingest.jt808.uplink.install`; their answers with data (0x0104 parameter list, 0x0201
  position) are published with that data as ``cmd_result.body`` (:meth:`Downlink.answer_serial`).
- Any other command name is answered result 3 (unsupported); a text GBK cannot encode or longer
  than the 1023-byte body allows, result 2 (bad message); a malformed command message is logged
  and dropped (the dispatcher expires it).
- Presence: ``online: true`` when a terminal authenticates, ``false`` when it logs out or its
  connection ends. The command dispatcher sends a terminal's queued commands when it comes
  online, so a command normally arrives while its terminal is connected; one that arrives in the
  moment the terminal went away is held here (at most ``commands.gateway_hold_max`` per
  terminal, until its expiry) and sent when the terminal authenticates again. Held commands are
  in memory: a gateway restart loses them and the dispatcher expires them.

The gateway subscribes with its own persistent session (client id ``jt808.client_id`` +
``-commands``), so commands published while it is down are delivered when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import aiomqtt

from gps_monitor import mqtt, topics
from gps_monitor.commands import (
    TEXT,
    Command,
    CommandError,
    CommandResult,
    TextBody,
    answer_message,
    parse_command,
    presence_message,
    text_gbk,
)
from gps_monitor.config import Settings
from gps_monitor.errors import PayloadError
from ingest.jt808 import messages as m
from ingest.jt808.codec import MAX_BODY_BYTES, encode_frame

log = logging.getLogger(__name__)

MAX_AWAITING_PER_TERMINAL = 256  # 0x8300 frames awaiting their 0x0001 per terminal


class Publisher(Protocol):
    async def publish(self, topic: str, payload: bytes) -> None: ...


@dataclass(slots=True)
class _Link:
    """How to reach one authenticated terminal: its header fields and the connection's writer."""

    phone: str
    version: int | None
    write: Callable[[bytes], None]
    next_serial: Callable[[], int]


CommandEncoder = Callable[[Command, bool], tuple[int, bytes]]
"""A command name's encoder: (command, is_2019) -> (JT/T 808 message id, body); raises
CommandError or ValueError for a body it cannot send (answered result 2)."""


@dataclass(slots=True)
class DownlinkStats:
    commands_received: int = 0
    texts_sent: int = 0
    held: int = 0
    answers: int = 0
    refused: int = 0


class Downlink:
    """Commands in, 0x8300 out, 0x0001 answers and presence back on MQTT.

    The gateway calls :meth:`attach` when a terminal authenticates, :meth:`detach` when it logs
    out or its connection ends, and :meth:`on_terminal_reply` for each 0x0001; :meth:`run`
    subscribes to the commands (reconnecting forever).
    """

    def __init__(self, settings: Settings, publisher: Publisher) -> None:
        self.settings = settings
        self.prefix = settings.mqtt.topic_prefix
        self.publisher = publisher
        self.stats = DownlinkStats()
        self.ready = asyncio.Event()
        self._links: dict[str, _Link] = {}
        self._held: dict[str, deque[Command]] = {}
        self._awaiting: dict[str, dict[int, str]] = {}  # terminal -> frame serial -> command
        self._tasks: set[asyncio.Task[None]] = set()
        # command name -> encoder; the message ids whose 0x0001 answers a command
        self._encoders: dict[str, CommandEncoder] = {TEXT: _encode_text}
        self._answered_ids: set[int] = {m.MSG_TEXT}
        # called with (command, frame serial) as each command frame is written
        self.sent_listeners: list[Callable[[Command, int], None]] = []

    def register_command(self, name: str, encoder: CommandEncoder, msg_id: int) -> None:
        """Let ``cmd/v1/…/{name}`` through as the frame ``encoder`` builds; a 0x0001 naming a
        ``msg_id`` frame answers it (other answers: :meth:`answer_serial`)."""
        self._encoders[name] = encoder
        self._answered_ids.add(msg_id)

    # ---------------------------------------------------------------- terminal side (gateway)

    def attach(
        self,
        terminal_id: str,
        phone: str,
        version: int | None,
        write: Callable[[bytes], None],
        next_serial: Callable[[], int],
    ) -> None:
        """``terminal_id`` authenticated on a connection: publish ``online`` and send what is
        held for it."""
        self._links[terminal_id] = _Link(phone, version, write, next_serial)
        self._publish_later(topics.status_topic(terminal_id, self.prefix), presence_message(True))
        held = self._held.pop(terminal_id, None)
        now = datetime.now(UTC)
        for command in held or ():
            if command.expires_at > now:
                self._deliver(command)

    def detach(self, terminal_id: str, write: Callable[[bytes], None] | None = None) -> None:
        """``terminal_id`` is no longer reachable (on the connection whose writer is ``write``,
        when given: a terminal that already reconnected elsewhere stays attached)."""
        link = self._links.get(terminal_id)
        if link is None or (write is not None and link.write != write):
            return
        del self._links[terminal_id]
        self._awaiting.pop(terminal_id, None)
        self._publish_later(topics.status_topic(terminal_id, self.prefix), presence_message(False))

    def on_terminal_reply(self, terminal_id: str, body: bytes) -> None:
        """A 0x0001 from an authenticated terminal: publish the answer of the command whose
        frame (0x8300, or another registered command's) it names (other 0x0001s are ignored).

        Raises:
            FrameError: a body that is not 5 bytes.
        """
        serial, msg_id, result = m.decode_terminal_reply(body)
        if msg_id in self._answered_ids:
            self.answer_serial(terminal_id, serial, result)

    def answer_serial(
        self,
        terminal_id: str,
        serial: int,
        result: int,
        detail: str = "",
        body: dict[str, Any] | None = None,
    ) -> str | None:
        """The terminal answered the command frame it sent with ``serial`` (0x0001, or a
        command's own answer such as 0x0805, 0x0104, 0x0201): publish it, with ``body`` when
        the answer carries data (``cmd_result.body``); returns the command id, or None when no
        command awaits that serial."""
        command_id = self._awaiting.get(terminal_id, {}).pop(serial, None)
        if command_id is None:
            log.info("jt808 terminal %s: answer for unknown command serial %d", terminal_id, serial)
            return None
        self.stats.answers += 1
        self._answer(terminal_id, command_id, result, detail, body)
        return command_id

    # ------------------------------------------------------------------------ MQTT side

    async def run(self) -> None:
        """Subscribe to ``cmd/v1/+/+`` and handle commands until cancelled."""
        jt = self.settings.jt808

        async def session(client: aiomqtt.Client) -> None:
            await client.subscribe(topics.command_filter(self.prefix), qos=1)
            self.ready.set()
            async for message in client.messages:
                payload = message.payload if isinstance(message.payload, bytes) else b""
                self.on_command(message.topic.value, payload)

        try:
            await mqtt.run_with_reconnect(
                self.settings.mqtt, session, persistent=True, client_id=f"{jt.client_id}-commands"
            )
        finally:
            for task in list(self._tasks):
                task.cancel()

    def on_command(self, topic: str, payload: bytes) -> None:
        """One ``cmd/v1`` message: send it, hold it, or answer why not."""
        self.stats.commands_received += 1
        try:
            terminal_id, name = topics.parse_command_topic(topic, self.prefix)
            command = parse_command(terminal_id, name, payload)
        except PayloadError as error:
            log.warning("command on %s dropped: %s", topic, error)
            return
        if command.expires_at <= datetime.now(UTC):
            log.info("command %s to %s dropped: expired", command.command_id, terminal_id)
            return
        if name not in self._encoders:
            self._refuse(command, CommandResult.UNSUPPORTED, f"command {name!r} not supported")
            return
        if terminal_id in self._links:
            self._deliver(command)
            return
        held = self._held.setdefault(terminal_id, deque())
        held.append(command)
        self.stats.held += 1
        if len(held) > self.settings.commands.gateway_hold_max:
            oldest = held.popleft()
            self._refuse(oldest, CommandResult.FAILED, "terminal not connected, too many held")

    def _deliver(self, command: Command) -> None:
        link = self._links[command.terminal_id]
        try:
            msg_id, frame_body = self._encoders[command.name](command, link.version is not None)
        except (CommandError, ValueError) as error:
            self._refuse(command, CommandResult.BAD_MESSAGE, str(error)[:500])
            return
        serial = link.next_serial()
        awaiting = self._awaiting.setdefault(command.terminal_id, {})
        awaiting[serial] = command.command_id
        while len(awaiting) > MAX_AWAITING_PER_TERMINAL:
            awaiting.pop(next(iter(awaiting)))
        link.write(encode_frame(msg_id, link.phone, serial, frame_body, version=link.version))
        self.stats.texts_sent += 1
        for listener in self.sent_listeners:
            listener(command, serial)

    def _refuse(self, command: Command, result: CommandResult, detail: str) -> None:
        self.stats.refused += 1
        log.info("command %s to %s: result %d (%s)", command.command_id, command.terminal_id,
                 int(result), detail)  # fmt: skip
        self._answer(command.terminal_id, command.command_id, int(result), detail)

    def _answer(
        self,
        terminal_id: str,
        command_id: str,
        result: int,
        detail: str = "",
        body: dict[str, Any] | None = None,
    ) -> None:
        payload = answer_message(command_id, result, datetime.now(UTC), detail, body)
        self._publish_later(topics.cmd_result_topic(terminal_id, self.prefix), payload)

    def _publish_later(self, topic: str, payload: bytes) -> None:
        async def publish() -> None:
            try:
                await self.publisher.publish(topic, payload)
            except (aiomqtt.MqttError, PayloadError) as error:
                log.warning("jt808 downlink: %s not published: %s", topic, error)

        task = asyncio.get_running_loop().create_task(publish())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for the answers and presence messages still being published."""
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks)


def _encode_text(command: Command, is_2019: bool) -> tuple[int, bytes]:
    """``text`` -> 0x8300 (flags, in 2019 the text type, GBK text)."""
    body = TextBody.model_validate(command.body)
    raw = text_gbk(body.text, MAX_BODY_BYTES - 2)
    flags = m.text_flags(emergency=body.emergency, display=body.display, tts=body.tts)
    return m.MSG_TEXT, m.encode_text(flags, raw, is_2019=is_2019)
