"""``gps-monitor jt809-sim``: a superior (provincial) platform simulator, for tests and demos.

A real TCP server speaking the superior's side of JT/T 809: it answers 0x1001 (result 0 and a
verify code when user id and password match, else ``refuse_with`` or 4 "password incorrect"),
then connects to the DOWN_LINK_IP/PORT the login named and logs in there with 0x9001 (the
slave link), answers 0x1005 with 0x1006 and 0x1003 with 0x1004, and decodes and records every
0x1202 (real-time position), 0x1203 (补报) and 0x1402 (alarm) it receives. Bad frames are
counted. :meth:`SuperiorSimulator.drop_main_links` cuts the main links (outage tests).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from gps_monitor.config import Settings
from gps_monitor.service import run_until_signal
from jt809 import messages as m
from jt809.codec import FrameCodec
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
                await self._on_main_frame(connection, frame.msg_id, frame.body)
        except (OSError, ValueError) as error:
            log.info("jt809-sim: main link from %s ended (%s)", connection.peer, error)
        finally:
            self.main_links.discard(connection)
            await connection.close()

    async def _on_main_frame(self, connection: FrameConnection, msg_id: int, body: bytes) -> None:
        if msg_id == m.MSG_LOGIN:
            login = m.decode_login(body)
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
        elif msg_id == m.MSG_VEHICLE_DYNAMIC:
            self._on_vehicle_dynamic(m.decode_vehicle_message(body))
        elif msg_id == m.MSG_VEHICLE_ALARM:
            vehicle = m.decode_vehicle_message(body)
            if vehicle.data_type == m.MSG_ALARM_INFO:
                self.record.alarms.append((vehicle.plate_number, m.decode_alarm_info(vehicle.data)))
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
        try:
            await connection.send(m.MSG_SLAVE_LOGIN, m.encode_slave_login(self.verify_code))
            while (frame := await connection.receive()) is not None:
                if frame.msg_id == m.MSG_SLAVE_LOGIN_ANSWER and frame.body:
                    self.record.slave_login_results.append(frame.body[0])
                    await connection.send(m.MSG_SLAVE_HEARTBEAT, b"")
        except OSError:
            pass
        finally:
            self.slave_links.discard(connection)
            await connection.close()

    def summary(self) -> str:
        r = self.record
        live = sum(1 for p in r.positions if p.msg_id == m.MSG_REALTIME_POSITION)
        return (
            f"logins {len(r.logins)} (results {r.login_results}), slave logins "
            f"{r.slave_login_results}, heartbeats {r.heartbeats}, 0x1202 {live}, 0x1203 "
            f"{r.reupload_messages} messages / {len(r.positions) - live} positions, 0x1402 "
            f"{len(r.alarms)}, bad frames {dict(self.stats.bad_frames)}"
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="listen address (127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=None, help="listen port (default jt809.superior_port)"
    )
    parser.add_argument("--refuse-with", type=int, default=None, help="answer 0x1001 with this")
    parser.add_argument("--report-interval-s", type=float, default=10.0)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Serve as the superior with the jt809 settings' user id, password, 接入码 and keys."""
    jt = settings.jt809
    sim = SuperiorSimulator(
        build_codec(jt), user_id=jt.user_id, password=jt.password, refuse_with=args.refuse_with
    )

    async def main() -> None:
        port = await sim.start(args.host, args.port or jt.superior_port)
        print(f"jt809-sim: superior platform listening on {args.host}:{port}", flush=True)
        try:
            while True:
                await asyncio.sleep(args.report_interval_s)
                print(f"jt809-sim: {sim.summary()}", flush=True)
        finally:
            await sim.stop()

    return run_until_signal(main())
