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

Answers and status messages are taken in batches (what the client already holds, up to
``commands.batch_max_messages``, waiting at most ``commands.batch_wait_s``), recorded in one
transaction (all answers in one UPDATE) and acknowledged to the broker, in arrival order, only after
it is committed; a malformed one is kept in ``rejected_messages`` with its reason and acknowledged.

自动提醒 (automatic reminder): with ``commands.auto_remind_alarm_types`` set, the dispatcher also
consumes ``alarms/v1/#``; a live (not late) alarm of such a type (or ``device_alarm.<bit name>``)
that opens gets its 提醒驾驶员 template as a ``text`` command at once, kept as the alarm's
reminder, at most once per vehicle per ``commands.auto_remind_min_interval_s`` and once per alarm
(a redelivered alarm message adds nothing). The alarm stays unhandled: a person still handles it.
自动拍照 (:mod:`ingest.auto_photo`) reads the same alarm messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

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
from gps_monitor.service import wait_until_set
from ingest import auto_photo

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
                receive_maximum=min(65535, 2 * self.settings.commands.batch_max_messages),
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
        if self.settings.commands.auto_remind_alarm_types or auto_photo.wanted(self.settings):
            await client.subscribe(topics.alarm_filter(self.prefix), qos=1)
        self._wake_all = True
        self._wake.set()
        scanner = asyncio.create_task(self._scan_forever(tracker))
        self.ready.set()
        limit = self.settings.commands.batch_max_messages
        wait_s = self.settings.commands.batch_wait_s
        try:
            while True:
                batch = await mqtt.next_batch(client.messages, limit, wait_s)
                await self._consume(batch)
                for message in batch:  # after the commit, in arrival order
                    mqtt.ack(client, message)
                if scanner.done():
                    scanner.result()  # a database outage: raise, reconnect, redeliver
        finally:
            scanner.cancel()
            tracker.fail_all("connection to the MQTT broker lost")
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError, PayloadError):
                await scanner

    async def _consume(self, batch: list[aiomqtt.Message]) -> None:
        """Record a batch of answer, status and alarm messages in one transaction (committed
        before any of them is acknowledged). Status messages only change ``presence``; the
        terminals they bring online are woken once the batch is committed."""
        assert self._pool is not None
        answers: list[commands_db.Answer] = []
        rejects: list[tuple[str, bytes, PayloadError]] = []
        alarms: list[bytes] = []
        wake: set[str] = set()
        for message in batch:
            topic = message.topic.value
            payload = message.payload if isinstance(message.payload, bytes) else b""
            if topic.startswith(f"{self.prefix}alarms/v1/"):
                alarms.append(payload)
                continue
            try:
                parsed = topics.parse_inbound(topic, self.prefix)
                if parsed.kind == "status":
                    online = parse_presence(payload).online
                    self.presence[parsed.terminal_id] = online
                    if online:
                        wake.add(parsed.terminal_id)
                    else:
                        wake.discard(parsed.terminal_id)
                    continue
                answer = parse_answer(payload)
            except PayloadError as error:
                log.info("command answer on %s set aside: %s", topic, error)
                rejects.append((topic, payload, error))
                continue
            answers.append(
                commands_db.Answer(
                    answer.command_id,
                    parsed.terminal_id,
                    int(answer.result),
                    answer.answered_at or datetime.now(UTC),
                    answer.detail,
                    answer.body,
                )
            )
        rows: list[dict[str, Any] | None] = []
        if answers or rejects or alarms:
            async with self._pool.acquire() as conn, conn.transaction():
                for topic, payload, problem in rejects:
                    await commands_db.reject(
                        conn, topic, payload, None, problem.reason, problem.detail
                    )
                if answers:
                    rows = await commands_db.record_answers(conn, answers)
                for payload in alarms:
                    for woken in (
                        await self._auto_remind(conn, payload),
                        await auto_photo.auto_photo(conn, self.settings, payload),
                    ):
                        if woken is not None:
                            wake.add(woken)
        for recorded, row in zip(answers, rows, strict=True):
            self._log_answer(recorded, row)
        if wake:
            self._wake_terminals.update(wake)
            self._wake.set()

    def _log_answer(self, answer: commands_db.Answer, row: dict[str, Any] | None) -> None:
        if row is None:
            log.info(
                "answer %s from terminal %s to command %s ignored: unknown, another terminal's "
                "or already answered",
                answer.result,
                answer.terminal_id,
                answer.command_id,
            )
            return
        self.answered += 1
        log.info(
            "command %s to terminal %s: %s (result %d)",
            answer.command_id,
            answer.terminal_id,
            row["state"],
            answer.result,
        )

    async def _auto_remind(self, conn: asyncpg.Connection, payload: bytes) -> str | None:
        """自动提醒 for an alarm that opened (see the module docstring), in the batch's
        transaction; returns the terminal to wake once committed, or None (nothing queued)."""
        c = self.settings.commands
        try:
            alarm = json.loads(payload)
            alarm_type, name = alarm["alarm_type"], (alarm.get("details") or {}).get("name")
            wanted = alarm_type in c.auto_remind_alarm_types or (
                name is not None and f"{alarm_type}.{name}" in c.auto_remind_alarm_types
            )
            if not wanted or alarm.get("event") != "opened" or alarm.get("late"):
                return None
            alarm_id, terminal_id = int(alarm["id"]), str(alarm["terminal_id"])
        except (ValueError, KeyError, TypeError) as error:
            log.info("alarm message not usable for an automatic reminder: %r", error)
            return None
        text = remind_text(c.remind_templates, c.remind_default_text, alarm_type, name)
        try:
            command = build_text(
                terminal_id, TextBody(text=text), text_max_bytes=c.text_max_bytes,
                expiry_s=c.expiry_s,
            )  # fmt: skip
        except CommandError as error:
            log.warning("automatic reminder for alarm %d not sent: template %s", alarm_id, error)
            return None
        row = await commands_db.create_automatic(
            conn, command, alarm_id, c.auto_remind_min_interval_s
        )
        if row is None:
            return None
        log.info("automatic reminder %s for alarm %d", command.command_id, alarm_id)
        return terminal_id

    async def _scan_forever(self, tracker: mqtt.PubackTracker) -> None:
        """Dispatch the woken terminals' queues as wakes come; the full scan (every queue, and
        expiry) at least every ``scan_interval_s``, however many wakes come meanwhile."""
        interval_s = self.settings.commands.scan_interval_s
        loop = asyncio.get_running_loop()
        scanned_at = float("-inf")
        while True:
            await wait_until_set(self._wake, max(0.0, scanned_at + interval_s - loop.time()))
            self._wake.clear()
            wake_all = self._wake_all or loop.time() - scanned_at >= interval_s
            self._wake_all = False
            only, self._wake_terminals = self._wake_terminals, set()
            if wake_all:
                scanned_at = loop.time()
            await self.dispatch(tracker, None if wake_all else sorted(only))

    async def _online(self, conn: asyncpg.Connection, terminal_ids: list[str]) -> list[str]:
        unknown = [t for t in terminal_ids if t not in self.presence]
        heard: set[str] = set()
        if unknown:
            window = timedelta(seconds=self.settings.commands.online_window_s)
            heard = await commands_db.recently_heard(conn, unknown, datetime.now(UTC) - window)
        return [t for t in terminal_ids if self.presence.get(t, t in heard)]

    async def dispatch(self, tracker: mqtt.PubackTracker, terminal_ids: list[str] | None) -> int:
        """Publish the queued commands of the online terminals among ``terminal_ids`` and mark
        them sent (one UPDATE for all) once the broker has them; None: the full scan, which
        first expires what is due and then takes every terminal with a queued command. Returns
        the number sent."""
        assert self._pool is not None
        now = datetime.now(UTC)
        async with self._pool.acquire() as conn:
            if terminal_ids is None:
                expired = await commands_db.expire_due(conn, now)
                if expired:
                    self.expired += expired
                    log.info("%d command(s) expired unanswered", expired)
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
