"""``gps-monitor jt809``: forwards accepted positions and alarms to the superior platform.

Inputs (:func:`input_transports`: on MQTT one persistent session ``jt809.client_id``, on NATS
a durable consumer ``jt809`` on each stream; manual acknowledgement):
``{prefix}positions/v2/+`` (what ingest accepted, one message per committed batch) and
``{prefix}alarms/v1/#`` (what the rules engine raised). Each message is acknowledged only once
its positions or alarm were written to the main link or stored in the outbox
(``jt809_outbox``), so a crash or restart loses nothing (the broker redelivers the rest).

Per position (``invalid`` and ``drift`` ones are not forwarded; a vehicle not in the registry
is skipped and counted):

- live (not ``late``, not ``reupload``) and the main link up: **0x1202** at once, unless
  thinning (``position_min_interval_s``) drops it because the vehicle's previous forwarded fix
  is closer in fix time;
- late or re-uploaded (补报), or the main link down: into the outbox, later sent as **0x1203**
  (up to 5 positions of one vehicle per message, oldest first, at ``reupload_rate_per_s``).

Per alarm (event ``opened`` only: one 0x1402 per episode): **0x1402** with our type mapped to
the 809 warn type (:func:`jt809.messages.warn_type_for`), or into the outbox while the link is
down. When a logged-in main link breaks, what was written to it in the last
``resend_after_cut_s`` is put back into the outbox (TCP may have lost it; the superior may see
it twice, never zero times).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from gps_monitor import mqtt, topics
from gps_monitor.bus.base import Delivery, Sink, Source, Transport, TransportError
from gps_monitor.bus.mqtt_transport import MqttTransport
from gps_monitor.bus.nats_durable import NatsDurableTransport
from gps_monitor.bus.nats_names import NatsNames
from gps_monitor.config import Settings
from gps_monitor.db import jt809 as outbox
from gps_monitor.db.jt809 import OutboxEntry
from gps_monitor.db.pool import create_pool
from gps_monitor.errors import ConfigurationError, PayloadError
from gps_monitor.models import Position, Quality
from jt809 import exchange as x
from jt809 import messages as m
from jt809.downward import Downward, answer_frame
from jt809.links import FrameConnection, LinkStats, MainLink, SlaveLinkServer, build_codec, now_utc

log = logging.getLogger(__name__)

NOT_FORWARDED = (Quality.INVALID, Quality.DRIFT)
DATABASE_DOWN = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
REPLAY_BATCH = 500
REPLAY_IDLE_S = 0.5
REPLAY_FLUSH_S = 1.0  # longest a sent outbox row stays (re-sent after a crash)


def check_settings(settings: Settings) -> None:
    """Raises ConfigurationError naming the setting when the service cannot start."""
    jt = settings.jt809
    if not jt.superior_host:
        raise ConfigurationError(
            "GPS_MONITOR_JT809_SUPERIOR_HOST is not set: expected the superior platform's "
            "main-link address"
        )
    if not jt.slave_advertised_ip and jt.slave_host in ("0.0.0.0", "::", ""):
        raise ConfigurationError(
            "GPS_MONITOR_JT809_SLAVE_ADVERTISED_IP is not set: expected the IP address the "
            f"superior reaches our slave link at (slave_host is {jt.slave_host!r})"
        )
    if not settings.database.url:
        raise ConfigurationError("GPS_MONITOR_DATABASE_URL is not set: the outbox needs it")
    mqtt.require_host(settings.mqtt)


def input_transports(settings: Settings) -> list[Transport]:
    """Where the service reads accepted positions and alarms: one MQTT persistent session
    (``jt809.client_id``) subscribed to both, or with ``bus.transport = nats`` a durable
    JetStream consumer ``jt809`` on each of the two streams (one jt809 deployment)."""
    prefix = settings.mqtt.topic_prefix
    if settings.bus.transport == "nats":
        names = NatsNames(prefix)
        sp = names.subject_prefix
        return [
            NatsDurableTransport(
                settings,
                durable="jt809",
                stream=names.positions_stream,
                filter_subjects=[f"{sp}positions.v2.*"],
            ),
            NatsDurableTransport(
                settings,
                durable="jt809",
                stream=names.alarms_stream,
                filter_subjects=[f"{sp}alarms.v1.>"],
            ),
        ]
    return [
        MqttTransport(
            settings.mqtt,
            client_id=settings.jt809.client_id,
            subscriptions=[topics.accepted_filter(prefix), topics.alarm_filter(prefix)],
        )
    ]


class Jt809Service:
    """The lower-platform service: both links, the bus consumer and the outbox replay."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self.settings = settings
        self.jt = settings.jt809
        self.pool = pool
        self.codec = build_codec(self.jt)
        self.stats = LinkStats()
        self.main = MainLink(self.jt, self.codec, self.stats, self._link_up, self._link_down)
        self.slave = SlaveLinkServer(self.jt, self.codec, self.stats, lambda: self.main.verify_code)
        self.downward = Downward(settings, pool, self._send_now)
        self.main.on_frame = self.downward.handle
        self.slave.on_frame = self.downward.handle
        self.ready = asyncio.Event()
        self.plates: dict[int, tuple[str, int]] = {}
        self.last_forwarded: dict[int, datetime] = {}
        self.recent: deque[tuple[float, OutboxEntry]] = deque()
        self.counts: dict[str, int] = {
            "positions_live": 0, "positions_buffered": 0, "positions_thinned": 0,
            "positions_skipped_quality": 0, "unknown_vehicle": 0, "alarms_live": 0,
            "alarms_buffered": 0, "reupload_messages": 0, "buffer_expired": 0,
            "bad_messages": 0, "answers_sent": 0, "registrations_sent": 0, "sent_on_slave": 0,
        }  # fmt: skip
        self._session_id: int | None = None
        self._send_lock = asyncio.Lock()
        self._consume_lock = asyncio.Lock()
        self._sessions = 0
        self.transports = input_transports(settings)

    # ------------------------------------------------------------------ links

    async def _link_up(self, connection: FrameConnection) -> None:
        self._session_id = await outbox.link_up(self.pool, now_utc())
        queued = await outbox.enqueue_registrations(self.pool)
        log.info("jt809: %d vehicle registration(s) (0x1201) queued at login", queued)
        await self._publish_status()

    async def _link_down(self, reason: str) -> None:
        cutoff = time.monotonic() - self.jt.resend_after_cut_s
        again = [
            OutboxEntry(e.kind, e.vehicle_id, e.fix_time, e.payload, "cut")
            for sent_at, e in self.recent
            if sent_at >= cutoff
        ]
        self.recent.clear()
        await outbox.enqueue(self.pool, again)
        if again:
            log.warning("jt809: main link down; %d item(s) written in the last %.0f s buffered "
                        "again", len(again), self.jt.resend_after_cut_s)  # fmt: skip
        if self._session_id is not None:
            await outbox.link_down(self.pool, self._session_id, now_utc(), reason[:200])
            self._session_id = None
        await self._publish_status()

    def _remember(self, entries: list[OutboxEntry]) -> None:
        now = time.monotonic()
        self.recent.extend((now, e) for e in entries)
        cutoff = now - self.jt.resend_after_cut_s
        while self.recent and self.recent[0][0] < cutoff:
            self.recent.popleft()

    def _uplink(self) -> FrameConnection | None:
        """The main link, or while it is down a logged-in slave link (``slave_fallback``)."""
        if self.main.connection is not None:
            return self.main.connection
        if self.jt.slave_fallback and self.slave.logged_in:
            return next(iter(self.slave.logged_in))
        return None

    async def _send(self, msg_id: int, body: bytes, entries: list[OutboxEntry]) -> int | None:
        """Write one frame on the main link (or the slave link while the main one is down,
        :meth:`_uplink`); returns its serial number, None when neither is up (nothing
        written)."""
        connection = self._uplink()
        if connection is None:
            return None
        async with self._send_lock:
            try:
                serial = await connection.send(msg_id, body)
            except OSError:
                return None
        if connection is not self.main.connection:
            self.counts["sent_on_slave"] += 1
        self._remember(entries)
        return serial

    async def _send_now(self, msg_id: int, body: bytes) -> bool:
        """An immediate answer to a request (0x1302, unserved requests)."""
        return await self._send(msg_id, body, []) is not None

    # ------------------------------------------------------------------ vehicles

    async def _plate(self, vehicle_id: int) -> tuple[str, int] | None:
        plate = self.plates.get(vehicle_id)
        if plate is None:
            found = await outbox.vehicle_plates(self.pool, [vehicle_id])
            plate = found.get(vehicle_id)
            if plate is not None:
                self.plates[vehicle_id] = plate
        return plate

    async def _vehicle_frame(
        self, vehicle_id: int, msg_id: int, data_type: int, data: bytes
    ) -> bytes | None:
        """The envelope of ``data`` for the vehicle (2019 0x1400 carries no vehicle: the 0x1402
        data names it)."""
        plate = await self._plate(vehicle_id)
        if plate is None:
            self.counts["unknown_vehicle"] += 1
            return None
        envelope = x.Envelope(data_type, data, plate[0], plate[1])
        return x.encode_envelope(msg_id, envelope, self.jt.version)

    # ------------------------------------------------------------------ positions

    def _thinned(self, position: Position) -> bool:
        interval = self.jt.position_min_interval_s
        assert position.vehicle_id is not None
        last = self.last_forwarded.get(position.vehicle_id)
        if interval and last is not None and position.fix_time - last < timedelta(seconds=interval):
            return True
        if last is None or position.fix_time > last:
            self.last_forwarded[position.vehicle_id] = position.fix_time
        return False

    async def handle_positions(self, positions: list[Position]) -> None:
        """Forward (0x1202) or buffer the accepted positions of one message."""
        buffered: list[OutboxEntry] = []
        for position in positions:
            if position.quality in NOT_FORWARDED or position.vehicle_id is None:
                self.counts["positions_skipped_quality"] += 1
                continue
            live = not (position.late or position.reupload)
            if live and self._thinned(position):
                self.counts["positions_thinned"] += 1
                continue
            entry = OutboxEntry(
                "position", position.vehicle_id, position.fix_time, position.to_dict(),
                "link_down" if live else "late",
            )  # fmt: skip
            if live and self._uplink() is not None:
                data = self._position_data(position)
                body = await self._vehicle_frame(
                    position.vehicle_id, m.MSG_VEHICLE_DYNAMIC, m.MSG_REALTIME_POSITION, data
                )
                if body is None:
                    continue
                if await self._send(m.MSG_VEHICLE_DYNAMIC, body, [entry]) is not None:
                    self.counts["positions_live"] += 1
                    continue
            buffered.append(entry)
        if buffered:
            await outbox.enqueue(self.pool, buffered)
            self.counts["positions_buffered"] += len(buffered)

    def _position_data(self, position: Position) -> bytes:
        """0x1202 data in the configured version's layout."""
        if self.jt.version == 2019:
            return m.encode_position_2019(position, self.jt.platform_id)
        return m.encode_gnss(m.gnss_from_position(position))

    # ------------------------------------------------------------------ alarms

    def _alarm_body(self, alarm: dict[str, Any], plate: tuple[str, int] | None = None) -> bytes:
        """0x1402 data: 2011 (source 2 platform, info id = our alarm id) or 2019 (this platform
        as the source, the vehicle, start and end = the episode so far, no destination)."""
        started = datetime.fromisoformat(alarm["started_at"])
        warn_type = m.warn_type_for(alarm["alarm_type"], alarm.get("details"))
        if self.jt.version == 2019:
            ended = alarm.get("ended_at")
            return x.encode_alarm_2019(
                x.Alarm2019(
                    source_platform_id=self.jt.platform_id,
                    warn_type=warn_type,
                    warn_time=started,
                    start_time=started,
                    end_time=datetime.fromisoformat(ended) if ended else started,
                    plate_number=plate[0] if plate else "",
                    plate_color=plate[1] if plate else 0,
                    destination_platform_id="",
                    drv_line_id=0,
                    info_content=f"{alarm['alarm_type']} #{alarm.get('id') or 0}",
                )
            )
        info = m.AlarmInfo(
            warn_src=m.WARN_SRC_PLATFORM,
            warn_type=warn_type,
            warn_time=started,
            info_id=int(alarm.get("id") or 0),
            info_content=alarm["alarm_type"],
        )
        return m.encode_alarm_info(info)

    async def handle_alarm(self, alarm: dict[str, Any]) -> None:
        """Forward (0x1402) or buffer one alarm event; only ``opened`` events go up."""
        if alarm.get("event", "opened") != "opened":
            return
        vehicle_id = int(alarm["vehicle_id"])
        entry = OutboxEntry(
            "alarm", vehicle_id, datetime.fromisoformat(alarm["started_at"]), alarm, "link_down"
        )
        if self._uplink() is not None:
            body = await self._vehicle_frame(
                vehicle_id, m.MSG_VEHICLE_ALARM, m.MSG_ALARM_INFO,
                self._alarm_body(alarm, await self._plate(vehicle_id)),
            )  # fmt: skip
            if body is None:
                return
            serial = await self._send(m.MSG_VEHICLE_ALARM, body, [entry])
            if serial is not None:
                self.counts["alarms_live"] += 1
                await self._alarm_reported(alarm, serial)
                return
        await outbox.enqueue(self.pool, [entry])
        self.counts["alarms_buffered"] += 1

    # ------------------------------------------------------------------ outbox replay

    async def replay_forever(self) -> None:
        """Send the outbox (0x1203 / 0x1402) whenever the main link is up, oldest first."""
        while True:
            try:
                await self._replay_once()
            except DATABASE_DOWN as error:
                log.warning("jt809: outbox unavailable (%s); retrying in 1 s", error)
                await asyncio.sleep(1.0)

    async def _replay_once(self) -> None:
        interval = 1.0 / self.jt.reupload_rate_per_s
        while True:
            await self._queue_text_answers()
            if self._uplink() is None:
                await asyncio.sleep(REPLAY_IDLE_S)
                continue
            cutoff = now_utc() - timedelta(seconds=self.jt.buffer_window_s)
            expired = await outbox.drop_older_than(self.pool, cutoff)
            if expired:
                self.counts["buffer_expired"] += expired
                log.warning("jt809: dropped %d item(s) buffered longer than the %.0f s window",
                            expired, self.jt.buffer_window_s)  # fmt: skip
            entries = await outbox.oldest(self.pool, REPLAY_BATCH)
            if not entries:
                await asyncio.sleep(REPLAY_IDLE_S)
                continue
            written: list[int] = []
            flushed_at = time.monotonic()
            try:
                for group in _replay_groups(entries):
                    if not await self._replay_group(group, written):
                        break
                    if time.monotonic() - flushed_at >= REPLAY_FLUSH_S:
                        await outbox.delete(self.pool, written)
                        written.clear()
                        flushed_at = time.monotonic()
                    await asyncio.sleep(interval)
            finally:
                # what was written leaves the outbox at least once a second: a crash (kill -9,
                # power) re-sends at most the last second of replay (the superior may see a
                # position twice, never zero times)
                await outbox.delete(self.pool, written)

    async def _replay_group(self, group: list[OutboxEntry], written: list[int]) -> bool:
        """Send one 0x1203 (positions of one vehicle) or 0x1402; their ids go to ``written``
        (deleted by the caller) once written to the link; False when no link took it."""
        first = group[0]
        if first.kind not in ("position", "alarm") or first.vehicle_id is None:
            return await self._replay_answer(first)
        if first.kind == "position":
            data = [self._position_data(Position.from_dict(e.payload)) for e in group]
            body = await self._vehicle_frame(
                first.vehicle_id, m.MSG_VEHICLE_DYNAMIC, m.MSG_REUPLOAD_POSITIONS,
                m.encode_reupload_data(data),
            )  # fmt: skip
            msg_id = m.MSG_VEHICLE_DYNAMIC
        else:
            body = await self._vehicle_frame(
                first.vehicle_id, m.MSG_VEHICLE_ALARM, m.MSG_ALARM_INFO,
                self._alarm_body(first.payload, await self._plate(first.vehicle_id)),
            )  # fmt: skip
            msg_id = m.MSG_VEHICLE_ALARM
        ids = [e.id for e in group if e.id is not None]
        if body is None:  # the vehicle left the registry: nobody to report it for
            written.extend(ids)
            return True
        serial = await self._send(msg_id, body, group)
        if serial is None:
            return False
        written.extend(ids)
        self.counts["reupload_messages"] += 1
        if first.kind == "alarm":
            await self._alarm_reported(first.payload, serial)
        return True

    async def _alarm_reported(self, alarm: dict[str, Any], serial: int) -> None:
        """Keep the serial of the 0x1402 frame that carried ``alarm``: its 2019 0x1412 quotes
        it (:func:`jt809.downward.answer_frame`)."""
        alarm_id = int(alarm.get("id") or 0)
        if alarm_id:
            await outbox.record_alarm_report(self.pool, alarm_id, m.MSG_ALARM_INFO, serial)

    async def _replay_answer(self, entry: OutboxEntry) -> bool:
        """Send one queued answer (0x1301/0x1401/0x1412/0x1503) or registration (0x1201)."""
        payload = dict(entry.payload)
        if entry.vehicle_id is not None:
            if entry.kind == "registration":
                info = await outbox.registration_info(self.pool, entry.vehicle_id)
                payload.update(info or {})
                if info:  # a changed plate: later positions use the new one
                    self.plates[entry.vehicle_id] = (info["plate_number"], info["plate_color"])
            plate = await self._plate(entry.vehicle_id)
            if plate is None or (entry.kind == "registration" and not payload):
                await outbox.delete(self.pool, [entry.id] if entry.id is not None else [])
                return True
            payload.setdefault("plate_number", plate[0])
            payload.setdefault("plate_color", plate[1])
        if entry.kind == "alarm_result" and not await self._alarm_result_source(payload):
            return True  # its 0x1402 is still in the outbox: answered after it went up
        sendable = OutboxEntry(entry.kind, entry.vehicle_id, entry.fix_time, payload,
                               entry.reason, entry.id)  # fmt: skip
        msg_id, body = answer_frame(sendable, self.jt.version, self.jt.platform_id)
        if await self._send(msg_id, body, []) is None:
            return False
        await outbox.delete(self.pool, [entry.id] if entry.id is not None else [])
        if entry.kind == "alarm_result":
            await outbox.forget_alarm_report(self.pool, int(payload["alarm_id"]))
        self.counts["registrations_sent" if entry.kind == "registration" else "answers_sent"] += 1
        return True

    async def _alarm_result_source(self, payload: dict[str, Any]) -> bool:
        """Put the frame that reported the alarm (``source_data_type``, ``source_msg_sn``)
        into a 0x1412 payload; False while that alarm's 0x1402 waits in the outbox (the
        0x1412 must follow it). An alarm never reported (a report older than this table)
        is answered with serial 0, and logged."""
        alarm_id = int(payload["alarm_id"])
        source = await outbox.alarm_report(self.pool, alarm_id)
        if source is None:
            if await outbox.alarm_waiting(self.pool, alarm_id):
                return False
            log.warning("jt809: alarm %d was never reported to the superior; its 0x1412 "
                        "quotes serial 0", alarm_id)  # fmt: skip
            source = (m.MSG_ALARM_INFO, 0)
        payload["source_data_type"], payload["source_msg_sn"] = source
        return True

    async def _queue_text_answers(self) -> None:
        """0x1503 for each relayed 0x9503 whose command is final (queued in the outbox)."""
        for relayed in await outbox.finished_relayed_texts(self.pool):
            await outbox.queue_text_answer(self.pool, relayed)

    async def _publish_status(self) -> None:
        """Link status and counters for the bureau page (``jt809_link_status``)."""
        counters = {
            **self.counts,
            **{f"downward_{k}": v for k, v in self.downward.counts.items()},
            "unsupported": {f"0x{k:04x}": v for k, v in self.downward.unsupported.items()},
            "bad_frames": dict(self.stats.bad_frames),
            "unhandled": {f"0x{k:04x}": v for k, v in self.stats.unhandled.items()},
            "login_refusals": {str(k): v for k, v in self.stats.login_refusals.items()},
        }
        with contextlib.suppress(*DATABASE_DOWN):
            await outbox.set_link_status(self.pool, "main", self.main.status, counters)
            await outbox.set_link_status(self.pool, "slave", self.slave.status, {})

    # ------------------------------------------------------------------ bus

    async def _consume(self, source: Source, sink: Sink) -> None:
        """Forward each delivery, then acknowledge it (one session of a transport)."""
        prefix = self.settings.mqtt.topic_prefix
        self._sessions += 1
        if self._sessions >= len(self.transports):
            self.ready.set()
        while True:
            for delivery in await source.next_batch(100, 0.0):
                async with self._consume_lock:  # one message at a time across transports
                    await self._forward(prefix, delivery)
                await source.ack([delivery])

    async def _forward(self, prefix: str, delivery: Delivery) -> None:
        topic = delivery.topic
        try:
            data = json.loads(delivery.payload)
            if topic.startswith(prefix + "positions/"):
                if not isinstance(data, list):
                    raise PayloadError("wrong_type", "expected a JSON array of positions")
                await self.handle_positions([Position.from_dict(item) for item in data])
            else:
                await self.handle_alarm(data)
        except (PayloadError, ValueError, KeyError, TypeError) as error:
            self.counts["bad_messages"] += 1
            log.warning("jt809: message on %s not forwarded: %s", topic, error)
        except DATABASE_DOWN as error:
            # Not acknowledged: the transport reconnects and the broker redelivers.
            raise TransportError(f"outbox unavailable ({error})") from error

    async def consume_forever(self) -> None:
        await asyncio.gather(*(transport.serve(self._consume) for transport in self.transports))

    async def status_forever(self) -> None:
        """Write the link status for the bureau page every second while it changes."""
        last = None
        while True:
            state = (self.main.status, self.slave.status, self.stats.summary(),
                     sorted(self.downward.counts.items()), sorted(self.counts.items()))  # fmt: skip
            if state != last:
                await self._publish_status()
                last = state
            await asyncio.sleep(1.0)

    async def log_stats_forever(self) -> None:
        while True:
            await asyncio.sleep(self.jt.stats_interval_s)
            log.info("jt809: main link %s; %s; %s; outbox %d", self.main.status, self.counts,
                     self.stats.summary(), await outbox.size(self.pool))  # fmt: skip

    async def run(self, *, slave_port: int | None = None) -> None:
        """Run everything until cancelled; ``ready`` is set once subscribed and listening."""
        with contextlib.suppress(*DATABASE_DOWN):  # every plate at once (else one query each)
            self.plates.update(await outbox.vehicle_plates(self.pool, None))
        await self.slave.start(port=slave_port)
        tasks = [
            asyncio.create_task(self.main.run()),
            asyncio.create_task(self.consume_forever()),
            asyncio.create_task(self.replay_forever()),
            asyncio.create_task(self.log_stats_forever()),
            asyncio.create_task(self.status_forever()),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            await self.main.logout()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.slave.stop()


def _replay_groups(entries: list[OutboxEntry]) -> list[list[OutboxEntry]]:
    """Oldest-first entries -> messages: alarms alone, positions of one vehicle by up to 5
    (a vehicle's positions keep their order; each group is sent when its oldest is due)."""
    groups: list[list[OutboxEntry]] = []
    open_groups: dict[int, list[OutboxEntry]] = {}
    for entry in entries:
        if entry.kind != "position" or entry.vehicle_id is None:
            groups.append([entry])
            continue
        group = open_groups.get(entry.vehicle_id)
        if group is None or len(group) >= m.REUPLOAD_MAX_POSITIONS:
            group = [entry]
            open_groups[entry.vehicle_id] = group
            groups.append(group)
        else:
            group.append(entry)
    return groups


async def serve(
    settings: Settings, ready: asyncio.Event | None = None, *, slave_port: int | None = None
) -> None:
    """Run the service until cancelled (the entry point of ``gps-monitor jt809``)."""
    check_settings(settings)
    pool = await create_pool(settings.database)
    try:
        service = Jt809Service(settings, pool)
        task = asyncio.create_task(service.run(slave_port=slave_port))
        if ready is not None:
            ready_wait = asyncio.create_task(service.ready.wait())
            await asyncio.wait({task, ready_wait}, return_when=asyncio.FIRST_COMPLETED)
            if service.ready.is_set():
                ready.set()
            ready_wait.cancel()
        await task
    finally:
        await pool.close()
