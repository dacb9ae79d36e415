"""``gps-monitor jt809-sim``: a superior (provincial) platform simulator, for tests and demos.

A real TCP server speaking the superior's side of JT/T 809: it answers 0x1001 (result 0 and a
verify code when user id and password match, else ``refuse_with`` or 4 "password incorrect"),
then connects to the DOWN_LINK_IP/PORT the login named and logs in there with 0x9001 (the
slave link), answers 0x1005 with 0x1006 and 0x1003 with 0x1004, and decodes and records every
0x1202 (real-time position), 0x1203 (补报) and 0x1402 (alarm, either layout) it receives, on
the main link or (the lower platform's fallback) on the slave link, and the answers: 0x1201
registrations, 0x1301 (查岗), 0x1401 (督办), 0x1412, 0x1503, 0x1302 and the failure answers
0x1501/0x1502/0x1504/0x1505. Bad frames are counted. It keeps the slave link alive with 0x9005.

Requests (on the slave link, else the main link): :meth:`SuperiorSimulator.send_query` (查岗),
:meth:`send_supervision` (督办), :meth:`send_warning` (0x9402/0x9403), :meth:`send_vehicle_text`
(0x9503), :meth:`send_raw`; ``gps-monitor jt809-sim --query-every-s N --supervise-every-s N``
sends 查岗 / 督办 on a timer. :meth:`SuperiorSimulator.drop_main_links` cuts the main links
(outage tests).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from gps_monitor.config import Settings
from gps_monitor.service import run_until_signal
from jt809 import exchange as x
from jt809 import messages as m
from jt809.codec import Frame, FrameCodec, FrameError
from jt809.links import FrameConnection, LinkStats, build_codec

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReceivedPosition:
    """A position as the superior decoded it: which message brought it, the vehicle, the data."""

    msg_id: int  # 0x1202 or 0x1203
    plate_number: str
    plate_color: int
    gnss: m.GnssData


@dataclass
class SimRecord:
    """What the simulator saw."""

    logins: list[m.Login] = field(default_factory=list)
    login_results: list[int] = field(default_factory=list)
    slave_login_results: list[int] = field(default_factory=list)
    heartbeats: int = 0
    logouts: int = 0
    positions: list[ReceivedPosition] = field(default_factory=list)
    reupload_messages: int = 0
    alarms: list[tuple[str, m.AlarmInfo]] = field(default_factory=list)
    alarms_2019: list[x.Alarm2019] = field(default_factory=list)
    registrations: list[tuple[str, x.VehicleRegistration]] = field(default_factory=list)
    query_answers: list[x.QueryAnswer] = field(default_factory=list)
    supervision_answers: list[tuple[int, int]] = field(default_factory=list)
    alarm_results: list[tuple[str, int, int]] = field(default_factory=list)
    #: serial number of each 0x1402 frame received, in order (quoted by the 2019 0x1412)
    alarm_serials: list[int] = field(default_factory=list)
    #: 2019 0x1412 SOURCE_DATA_TYPE of each alarm result, in order
    alarm_result_types: list[int] = field(default_factory=list)
    text_answers: list[tuple[str, int, int]] = field(default_factory=list)
    other_answers: list[tuple[int, bytes]] = field(default_factory=list)
    on_slave_link: Counter[int] = field(default_factory=Counter)
    access_codes: Counter[int] = field(default_factory=Counter)


class SuperiorSimulator:
    """The superior platform's main-link server (and slave-link client)."""

    def __init__(
        self,
        codec: FrameCodec,
        *,
        user_id: int,
        password: str,
        verify_code: int = 0x5A5B5D5E,
        refuse_with: int | None = None,
    ) -> None:
        self.codec = codec
        self.user_id = user_id
        self.password = password
        self.verify_code = verify_code
        self.refuse_with = refuse_with
        self.record = SimRecord()
        self.stats = LinkStats()
        self.main_links: set[FrameConnection] = set()
        self.slave_links: set[FrameConnection] = set()
        self._serials = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None
        self.heartbeat_interval_s = 1.0
        self._info_ids = itertools.count(1001)
        self.sent_queries: list[tuple[int, int]] = []  # (info id, frame serial)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen for main links; returns the bound port."""
        self.server = await asyncio.start_server(self._main_link, host, port)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        await self.drop_main_links()
        for connection in list(self.slave_links):
            await connection.close()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def drop_main_links(self) -> None:
        """Close every main link at once (as a network cut would, from this side)."""
        for connection in list(self.main_links):
            await connection.close()

    def stop_listening(self) -> None:
        """Refuse new main links until :meth:`start` is called again (the server is down)."""
        if self.server is not None:
            self.server.close()

    def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Any:
        return FrameConnection(reader, writer, self.codec, self.stats, 1 << 20, self._serials)

    async def _main_link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = self._connection(reader, writer)
        self.main_links.add(connection)
        try:
            while (frame := await connection.receive()) is not None:
                self.record.access_codes[frame.header.access_code] += 1
                try:
                    await self._on_main_frame(
                        connection, frame.msg_id, frame.body, frame.header.msg_sn
                    )
                except FrameError as error:  # a body this side cannot read: counted, kept
                    self.stats.bad_frames["body"] += 1
                    log.warning("jt809-sim: frame 0x%04x: %s", frame.msg_id, error)
        except (OSError, ValueError) as error:
            log.info("jt809-sim: main link from %s ended (%s)", connection.peer, error)
        finally:
            self.main_links.discard(connection)
            await connection.close()

    async def _on_main_frame(
        self, connection: FrameConnection, msg_id: int, body: bytes, msg_sn: int = 0
    ) -> None:
        if msg_id == m.MSG_LOGIN:
            login = m.decode_login(body, self.codec.version)
            self.record.logins.append(login)
            ok = login.user_id == self.user_id and login.password == self.password
            result = 0 if ok and self.refuse_with is None else (self.refuse_with or 4)
            self.record.login_results.append(result)
            await connection.send(
                m.MSG_LOGIN_ANSWER, m.encode_login_answer(result, self.verify_code)
            )
            if result == 0:
                task = asyncio.create_task(self._slave_login(login))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        elif msg_id == m.MSG_HEARTBEAT:
            self.record.heartbeats += 1
            await connection.send(m.MSG_HEARTBEAT_ANSWER, b"")
        elif msg_id == m.MSG_LOGOUT:
            self.record.logouts += 1
            await connection.send(m.MSG_LOGOUT_ANSWER, b"")
        else:
            self._on_upward(msg_id, body, msg_sn)

    def _on_upward(self, msg_id: int, body: bytes, msg_sn: int) -> None:
        """Business messages, on either link (``msg_sn``: the frame's serial number)."""
        version = self.codec.version
        if msg_id == m.MSG_VEHICLE_DYNAMIC:
            vehicle = m.decode_vehicle_message(body)
            if vehicle.data_type == x.MSG_VEHICLE_REGISTRATION:
                reg = x.decode_registration(vehicle.data, version)
                self.record.registrations.append((vehicle.plate_number, reg))
            else:
                self._on_vehicle_dynamic(vehicle)
        elif msg_id == m.MSG_VEHICLE_ALARM:
            env = x.decode_envelope(msg_id, body, version)
            if env.data_type == m.MSG_ALARM_INFO and version == 2019:
                alarm = x.decode_alarm_2019(env.data)
                self.record.alarms_2019.append(alarm)
                self.record.alarm_serials.append(msg_sn)
            elif env.data_type == m.MSG_ALARM_INFO:
                self.record.alarms.append((env.plate_number, m.decode_alarm_info(env.data)))
                self.record.alarm_serials.append(msg_sn)
            elif env.data_type == x.MSG_SUPERVISION_ANSWER:
                self.record.supervision_answers.append(x.decode_supervision_answer(env.data))
            elif env.data_type == x.MSG_ALARM_RESULT:
                info, result = x.decode_alarm_result(env.data, version)
                self.record.alarm_results.append((env.plate_number, info, result))
                if version == 2019:
                    self.record.alarm_result_types.append(int.from_bytes(env.data[:2], "big"))
            else:
                self.stats.unhandled[env.data_type] += 1
        elif msg_id == x.MSG_PLATFORM_UP:
            env = x.decode_envelope(msg_id, body, version)
            if env.data_type == x.MSG_QUERY_ANSWER:
                self.record.query_answers.append(x.decode_query_answer(env.data, version))
            else:
                self.record.other_answers.append((env.data_type, env.data))
        elif msg_id == x.MSG_CONTROL_UP:
            env = x.decode_envelope(msg_id, body, version)
            if env.data_type == x.MSG_VEHICLE_TEXT_ANSWER:
                ref, result = x.decode_vehicle_text_answer(env.data, version)
                self.record.text_answers.append((env.plate_number, ref, result))
            else:
                self.record.other_answers.append((env.data_type, env.data))
        else:
            self.stats.unhandled[msg_id] += 1

    def _on_vehicle_dynamic(self, vehicle: m.VehicleMessage) -> None:
        if vehicle.data_type not in (m.MSG_REALTIME_POSITION, m.MSG_REUPLOAD_POSITIONS):
            self.stats.unhandled[vehicle.data_type] += 1
            return
        is_2019 = self.codec.version == 2019
        gnss = m.decode_positions(vehicle.data_type, vehicle.data, is_2019=is_2019)
        if vehicle.data_type == m.MSG_REUPLOAD_POSITIONS:
            self.record.reupload_messages += 1
        self.record.positions.extend(
            ReceivedPosition(vehicle.data_type, vehicle.plate_number, vehicle.plate_color, g)
            for g in gnss
        )

    async def _slave_login(self, login: m.Login) -> None:
        """Open the slave link to the lower platform and log in with the verify code."""
        try:
            reader, writer = await asyncio.open_connection(login.down_link_ip, login.down_link_port)
        except OSError as error:
            log.warning("jt809-sim: slave link to %s:%s failed: %s", login.down_link_ip,
                        login.down_link_port, error)  # fmt: skip
            return
        connection = self._connection(reader, writer)
        self.slave_links.add(connection)
        heartbeat = asyncio.create_task(self._slave_heartbeat(connection))
        try:
            await connection.send(m.MSG_SLAVE_LOGIN, m.encode_slave_login(self.verify_code))
            while (frame := await connection.receive()) is not None:
                await self._on_slave_frame(frame)
        except OSError:
            pass
        finally:
            heartbeat.cancel()
            self.slave_links.discard(connection)
            await connection.close()

    async def _on_slave_frame(self, frame: Frame) -> None:
        if frame.msg_id == m.MSG_SLAVE_LOGIN_ANSWER and frame.body:
            self.record.slave_login_results.append(frame.body[0])
        elif frame.msg_id in (m.MSG_SLAVE_HEARTBEAT_ANSWER, m.MSG_SLAVE_LOGOUT_ANSWER):
            return
        else:
            self.record.on_slave_link[frame.msg_id] += 1
            try:
                self._on_upward(frame.msg_id, frame.body, frame.header.msg_sn)
            except FrameError as error:
                self.stats.bad_frames["body"] += 1
                log.warning("jt809-sim: slave link frame 0x%04x: %s", frame.msg_id, error)

    async def _slave_heartbeat(self, connection: FrameConnection) -> None:
        with contextlib.suppress(OSError):
            while True:
                await asyncio.sleep(self.heartbeat_interval_s)
                await connection.send(m.MSG_SLAVE_HEARTBEAT, b"")

    # ------------------------------------------------------------------ requests

    async def send_raw(self, msg_id: int, body: bytes) -> int:
        """Send a request on a slave link (else a main link); returns the frame's serial.

        Raises:
            ConnectionError: no link to the lower platform.
        """
        links = list(self.slave_links) or list(self.main_links)
        if not links:
            raise ConnectionError("jt809-sim: no link to the lower platform")
        serial = next(self._serials)
        frame = self.codec.encode(msg_id, body, serial)
        links[0].writer.write(frame)
        await links[0].writer.drain()
        return serial

    async def send_query(
        self,
        question: str,
        *,
        object_type: int = x.QUERY_OBJECT_PLATFORM,
        object_id: str = "",
        info_id: int | None = None,
        answer_time_min: int = 0,
    ) -> int:
        """A 0x9301 查岗; returns its info id."""
        info_id = next(self._info_ids) if info_id is None else info_id
        query = x.PlatformQuery(object_type, object_id, info_id, question, answer_time_min)
        version = self.codec.version
        envelope = x.Envelope(x.MSG_QUERY, x.encode_query(query, version))
        body = x.encode_envelope(x.MSG_PLATFORM_DOWN, envelope, version)
        self.sent_queries.append((info_id, await self.send_raw(x.MSG_PLATFORM_DOWN, body)))
        return info_id

    async def send_supervision(
        self,
        plate_number: str,
        plate_color: int,
        *,
        supervision_id: int | None = None,
        warn_type: int = m.WARN_OVERSPEED,
        deadline: datetime | None = None,
    ) -> int:
        """A 0x9401 督办 of an alarm of the vehicle; returns its supervision id."""
        now = datetime.now(UTC).replace(microsecond=0)
        sid = next(self._info_ids) if supervision_id is None else supervision_id
        request = x.SupervisionRequest(
            1, warn_type, now, sid, deadline or now + timedelta(minutes=30), 1, "省平台值班员",
            "02388886666", "duty@example.gov.cn",
        )  # fmt: skip
        envelope = x.Envelope(
            x.MSG_SUPERVISION, x.encode_supervision(request), plate_number, plate_color
        )
        version = self.codec.version
        await self.send_raw(
            x.MSG_ALARM_DOWN, x.encode_envelope(x.MSG_ALARM_DOWN, envelope, version)
        )
        return sid

    async def send_warning(
        self, plate_number: str, plate_color: int, data_type: int, warn_type: int, content: str
    ) -> int:
        """A 0x9402 报警预警 or 0x9403 实时交换报警 about the vehicle; returns the frame serial
        (the 2019 0x1412 quotes it)."""
        now = datetime.now(UTC).replace(microsecond=0)
        warning = x.SuperiorWarning(warn_type, now, content, 2, plate_number, plate_color)
        version = self.codec.version
        envelope = x.Envelope(
            data_type, x.encode_warning(warning, version), plate_number, plate_color
        )
        return await self.send_raw(
            x.MSG_ALARM_DOWN, x.encode_envelope(x.MSG_ALARM_DOWN, envelope, version)
        )

    async def send_vehicle_text(
        self, plate_number: str, plate_color: int, text: str, msg_sequence: int
    ) -> int:
        """A 0x9503 下发车辆报文; returns the frame serial (the 2019 0x1503 quotes it)."""
        data = x.encode_vehicle_text(x.VehicleText(msg_sequence, 1, text))
        envelope = x.Envelope(x.MSG_VEHICLE_TEXT, data, plate_number, plate_color)
        version = self.codec.version
        return await self.send_raw(
            x.MSG_CONTROL_DOWN, x.encode_envelope(x.MSG_CONTROL_DOWN, envelope, version)
        )

    def summary(self) -> str:
        r = self.record
        live = sum(1 for p in r.positions if p.msg_id == m.MSG_REALTIME_POSITION)
        return (
            f"logins {len(r.logins)} (results {r.login_results}), slave logins "
            f"{r.slave_login_results}, heartbeats {r.heartbeats}, 0x1202 {live}, 0x1203 "
            f"{r.reupload_messages} messages / {len(r.positions) - live} positions, 0x1402 "
            f"{len(r.alarms) + len(r.alarms_2019)}, 0x1201 {len(r.registrations)}, 查岗 sent "
            f"{len(self.sent_queries)} answered {len(r.query_answers)}, 0x1401 "
            f"{len(r.supervision_answers)}, bad frames {dict(self.stats.bad_frames)}"
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="listen address (127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=None, help="listen port (default jt809.superior_port)"
    )
    parser.add_argument("--refuse-with", type=int, default=None, help="answer 0x1001 with this")
    parser.add_argument("--report-interval-s", type=float, default=10.0)
    parser.add_argument(
        "--query-every-s", type=float, default=0, help="send a 查岗 (0x9301) this often (0: never)"
    )
    parser.add_argument(
        "--supervise-every-s",
        type=float,
        default=0,
        help="send a 督办 (0x9401) on a registered vehicle this often (0: never)",
    )
    parser.add_argument("--supervise-plate", default="", help="plate of the 督办 (colour 2)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Serve as the superior with the jt809 settings' user id, password, 接入码 and keys."""
    jt = settings.jt809
    sim = SuperiorSimulator(
        build_codec(jt), user_id=jt.user_id, password=jt.password, refuse_with=args.refuse_with
    )

    async def timer(every_s: float, send: Any) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await send()
            except ConnectionError as error:
                print(f"jt809-sim: {error}", flush=True)

    async def query() -> None:
        info_id = await sim.send_query("请报告当前值班人员姓名及在岗情况", answer_time_min=10)
        print(f"jt809-sim: sent 查岗 0x9301 info id {info_id}", flush=True)

    async def supervise() -> None:
        sid = await sim.send_supervision(args.supervise_plate, 2)
        print(f"jt809-sim: sent 督办 0x9401 {sid} on {args.supervise_plate}", flush=True)

    async def main() -> None:
        port = await sim.start(args.host, args.port or jt.superior_port)
        print(f"jt809-sim: superior platform listening on {args.host}:{port}", flush=True)
        timers = []
        if args.query_every_s > 0:
            timers.append(asyncio.create_task(timer(args.query_every_s, query)))
        if args.supervise_every_s > 0 and args.supervise_plate:
            timers.append(asyncio.create_task(timer(args.supervise_every_s, supervise)))
        try:
            while True:
                await asyncio.sleep(args.report_interval_s)
                print(f"jt809-sim: {sim.summary()}", flush=True)
        finally:
            for task in timers:
                task.cancel()
            await sim.stop()

    return run_until_signal(main())
