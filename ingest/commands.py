"""The command dispatcher: the one process that moves downlink commands (table ``commands``)
from ``queued`` to the terminal and records what the terminal answered.

It runs inside ``gps-monitor ingest`` beside the position worker, on its own MQTT session
(client id ``mqtt.client_id`` with ``ingest`` replaced by ``commands``; persistent, manual
acknowledgements) and its own database connections. Data flows one way:

    web (POST: row ``queued`` + NOTIFY gps_commands, one transaction)
      -> dispatcher: ``cmd/v1/{terminal_id}/{name}`` (QoS 1; ``sent`` once the broker has it)
      -> terminal or JT/T 808 gateway (0x8300) -> ``gps/v1/{terminal_id}/cmd_result``
      -> dispatcher: ``acknowledged`` / ``failed`` -> web reads the table.

When is a command sent: only while its terminal is online, so a command for a terminal that is
offline stays ``queued`` and goes out when the terminal next connects, within its expiry.
Online = the last ``gps/v1/{terminal_id}/status`` message said ``online: true`` (the gateway
publishes it as a terminal authenticates, ``false`` as its connection ends); a terminal that never
sent a status counts as online while its last message (``latest_positions.last_message_at``) is
younger than ``commands.online_window_s``. A status ``true`` dispatches that terminal's queue at
once; a NOTIFY from web does the same for a new command; every ``commands.scan_interval_s`` the
dispatcher also scans all queues and expires what is past ``expires_at`` (queued or sent and
unanswered -> ``expired``).

Answers and status messages are acknowledged to the broker only after their effect is committed;
a malformed one is kept in ``rejected_messages`` with its reason and acknowledged.

自动提醒 (automatic reminder): with ``commands.auto_remind_alarm_types`` set, the dispatcher also
consumes ``alarms/v1/#``; a live (not late) alarm of such a type (or ``device_alarm.<bit name>``)
that opens gets its 提醒驾驶员 template as a ``text`` command at once, kept as the alarm's
reminder, at most once per vehicle per ``commands.auto_remind_min_interval_s`` and once per alarm
(a redelivered alarm message adds nothing). The alarm stays unhandled: a person still handles it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime, timedelta

import aiomqtt
import asyncpg

from gps_monitor import mqtt, topics
from gps_monitor.commands import (
    CommandError,
    TextBody,
    build_text,
    parse_answer,
    parse_presence,
    remind_text,
)
from gps_monitor.config import Settings
from gps_monitor.db import commands as commands_db
from gps_monitor.db.pool import connect, create_pool
from gps_monitor.errors import PayloadError

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 10.0


def commands_client_id(settings: Settings) -> str:
    """The dispatcher's MQTT client id (stable: the broker keeps its session under it)."""
    base = settings.mqtt.client_id
    return base.replace("ingest", "commands") if "ingest" in base else f"{base}-commands"


class CommandDispatcher:
    """Publish queued commands of online terminals, record answers, expire the rest.

    Use :meth:`run` (reconnects forever; the service) or, in tests, the same.
    ``ready`` is set once subscribed and listening.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.prefix = settings.mqtt.topic_prefix
        self.ready = asyncio.Event()
        self.presence: dict[str, bool] = {}
        self._wake = asyncio.Event()
        self._wake_terminals: set[str] = set()
        self._wake_all = True
        self._pool: asyncpg.Pool | None = None
        self.sent = 0
        self.answered = 0
        self.expired = 0

    async def run(self) -> None:
        """Run until cancelled."""
        self._pool = await create_pool(self.settings.database, min_size=1, max_size=3)
        listener = await connect(self.settings.database)
        try:
            await listener.add_listener(commands_db.NOTIFY_CHANNEL, self._on_notify)
            await mqtt.run_with_reconnect(
                self.settings.mqtt,
                self._session,
                persistent=True,
                manual_ack=True,
                client_id=commands_client_id(self.settings),
                max_inflight_messages=0,
            )
        finally:
            with contextlib.suppress(Exception):
                await listener.close()
            await self._pool.close()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, terminal_id: str) -> None:
        self._wake_terminals.add(terminal_id)
        self._wake.set()

    async def _session(self, client: aiomqtt.Client) -> None:
        tracker = mqtt.PubackTracker(client)
        for topic_filter in topics.command_answer_filters(self.prefix):
            await client.subscribe(topic_filter, qos=1)
        if self.settings.commands.auto_remind_alarm_types:
            await client.subscribe(topics.alarm_filter(self.prefix), qos=1)
        self._wake_all = True
        self._wake.set()
        scanner = asyncio.create_task(self._scan_forever(tracker))
        self.ready.set()
        try:
            async for message in client.messages:
                await self._consume(message)
                mqtt.ack(client, message)
                if scanner.done():
                    scanner.result()  # a database outage: raise, reconnect, redeliver
        finally:
            scanner.cancel()
            tracker.fail_all("connection to the MQTT broker lost")
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError, PayloadError):
                await scanner

    async def _consume(self, message: aiomqtt.Message) -> None:
        """Record one answer or status message (committed before it is acknowledged)."""
        assert self._pool is not None
        topic = message.topic.value
        payload = message.payload if isinstance(message.payload, bytes) else b""
        if topic.startswith(f"{self.prefix}alarms/v1/"):
            await self._auto_remind(payload)
            return
        try:
            parsed = topics.parse_inbound(topic, self.prefix)
            if parsed.kind == "status":
                online = parse_presence(payload).online
                self.presence[parsed.terminal_id] = online
                if online:
                    self._wake_terminals.add(parsed.terminal_id)
                    self._wake.set()
                return
            answer = parse_answer(payload)
        except PayloadError as error:
            log.info("command answer on %s set aside: %s", topic, error)
            async with self._pool.acquire() as conn:
                await commands_db.reject(conn, topic, payload, None, error.reason, error.detail)
            return
        terminal_id = parsed.terminal_id
        async with self._pool.acquire() as conn:
            row = await commands_db.record_answer(
                conn,
                answer.command_id,
                terminal_id,
                int(answer.result),
                answer.answered_at or datetime.now(UTC),
                answer.detail,
            )
        if row is None:
            log.info(
                "answer %s from terminal %s to command %s ignored: unknown, another terminal's "
                "or already answered",
                int(answer.result),
                terminal_id,
                answer.command_id,
            )
            return
        self.answered += 1
        log.info(
            "command %s to terminal %s: %s (result %d)",
            answer.command_id,
            terminal_id,
            row["state"],
            int(answer.result),
        )

    async def _auto_remind(self, payload: bytes) -> None:
        """自动提醒 for an alarm that opened (see the module docstring)."""
        assert self._pool is not None
        c = self.settings.commands
        try:
            alarm = json.loads(payload)
            alarm_type, name = alarm["alarm_type"], (alarm.get("details") or {}).get("name")
            wanted = alarm_type in c.auto_remind_alarm_types or (
                name is not None and f"{alarm_type}.{name}" in c.auto_remind_alarm_types
            )
            if not wanted or alarm.get("event") != "opened" or alarm.get("late"):
                return
            alarm_id, terminal_id = int(alarm["id"]), str(alarm["terminal_id"])
        except (ValueError, KeyError, TypeError) as error:
            log.info("alarm message not usable for an automatic reminder: %r", error)
            return
        text = remind_text(c.remind_templates, c.remind_default_text, alarm_type, name)
        try:
            command = build_text(
                terminal_id, TextBody(text=text), text_max_bytes=c.text_max_bytes,
                expiry_s=c.expiry_s,
            )  # fmt: skip
        except CommandError as error:
            log.warning("automatic reminder for alarm %d not sent: template %s", alarm_id, error)
            return
        async with self._pool.acquire() as conn:
            row = await commands_db.create_automatic(
                conn, command, alarm_id, c.auto_remind_min_interval_s
            )
        if row is not None:
            log.info("automatic reminder %s for alarm %d", command.command_id, alarm_id)
            self._wake_terminals.add(terminal_id)
            self._wake.set()

    async def _scan_forever(self, tracker: mqtt.PubackTracker) -> None:
        interval_s = self.settings.commands.scan_interval_s
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_s):
                    await self._wake.wait()
            self._wake.clear()
            wake_all, self._wake_all = self._wake_all or not self._wake_terminals, False
            only, self._wake_terminals = self._wake_terminals, set()
            await self.dispatch(tracker, None if wake_all else sorted(only))

    async def _online(self, conn: asyncpg.Connection, terminal_ids: list[str]) -> list[str]:
        unknown = [t for t in terminal_ids if t not in self.presence]
        heard: set[str] = set()
        if unknown:
            window = timedelta(seconds=self.settings.commands.online_window_s)
            heard = await commands_db.recently_heard(conn, unknown, datetime.now(UTC) - window)
        return [t for t in terminal_ids if self.presence.get(t, t in heard)]

    async def dispatch(self, tracker: mqtt.PubackTracker, terminal_ids: list[str] | None) -> int:
        """Expire what is due, then publish the queued commands of the online terminals among
        ``terminal_ids`` (None: all) and mark them sent once the broker has them. Returns the
        number sent."""
        assert self._pool is not None
        now = datetime.now(UTC)
        async with self._pool.acquire() as conn:
            expired = await commands_db.expire_due(conn, now)
            if expired:
                self.expired += expired
                log.info("%d command(s) expired unanswered", expired)
            if terminal_ids is None:
                terminal_ids = await commands_db.queued_terminals(conn, now)
            if not terminal_ids:
                return 0
            online = await self._online(conn, terminal_ids)
            if not online:
                return 0
            rows = await commands_db.due(conn, now, online)
        commands = [commands_db.as_command(r) for r in rows]
        results = await asyncio.gather(
            *(
                tracker.publish(
                    topics.command_topic(c.terminal_id, c.name, self.prefix),
                    c.to_message(),
                    timeout_s=PUBLISH_TIMEOUT_S,
                )
                for c in commands
            ),
            return_exceptions=True,
        )
        sent = [r["id"] for r, outcome in zip(rows, results, strict=True) if outcome is None]
        for row, outcome in zip(rows, results, strict=True):
            if outcome is not None:
                log.warning("command %s not published: %s", row["command_id"], outcome)
        if sent:
            async with self._pool.acquire() as conn:
                await commands_db.mark_sent(conn, sent, datetime.now(UTC))
            self.sent += len(sent)
        return len(sent)


async def serve(settings: Settings, ready: asyncio.Event | None = None) -> None:
    """Run the dispatcher until cancelled (started by ``gps-monitor ingest``)."""
    from gps_monitor.service import relay_ready

    mqtt.require_host(settings.mqtt)
    dispatcher = CommandDispatcher(settings)
    async with relay_ready(dispatcher.ready, ready):
        await dispatcher.run()
