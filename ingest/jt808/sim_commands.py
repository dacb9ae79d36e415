"""What a simulated terminal (``jt808-sim``, :class:`ingest.jt808.sim.SimTerminal`) does with the
platform's terminal commands, as a real terminal would:

- 0x8104 / 0x8106: answers 0x0104 from its own parameter table (:data:`DEFAULT_PARAMETERS`,
  including a vendor id 0xF000 the platform does not know) - all of it, or the ids asked for
  that it has;
- 0x8103: applies the values to its table and answers 0x0001 result 0;
- 0x8201: answers 0x0201 with its last location report (its current time when it never sent one:
  then the fix flag is off);
- 0x8202: answers 0x0001 and then sends a 0x0200 every ``interval_s`` for ``duration_s``
  (the last report with the current time); interval 0 stops a tracking in progress;
- 0x8105 and 0x8900: answers 0x0001 result 0 (a simulator does not reset);
- 0x8702: answers 0x0702 with the card in its reader (inserted, read ok), or a removal when
  none is in (:attr:`SimTerminal.driver`);
- each printed on stdout, one line: ``jt808-sim: terminal 13511221122 0x8103 set
  overspeed_limit_kmh=80``.

The terminal side of 0x0004 (query the server's time) and the uploads (0x0900, 0x0705, 0x0108)
are methods of :class:`SimTerminal` built on :func:`upload`.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from gps_monitor.active_safety import ITEM_SOURCES
from gps_monitor.terminal_params import BY_NAME
from ingest.jt808 import driver, misc, query
from ingest.jt808 import messages as m
from ingest.jt808 import params as p
from ingest.jt808.codec import Frame

if TYPE_CHECKING:
    from ingest.jt808.sim import SimTerminal

VENDOR_PARAM_ID = 0xF000  # a maker's own parameter: the platform keeps it raw


def _dword(value: int) -> bytes:
    return struct.pack(">I", value)


DEFAULT_PARAMETERS: dict[int, bytes] = {
    0x0001: _dword(30),  # heartbeat_interval_s
    0x0002: _dword(10),  # tcp_reply_timeout_s
    0x0003: _dword(3),  # tcp_retransmissions
    0x0013: b"127.0.0.1",  # main_server_address
    0x0020: _dword(0),  # report_strategy: timed
    0x0021: _dword(0),  # report_scheme: by ACC
    0x0027: _dword(300),  # report_interval_sleep_s
    0x0028: _dword(5),  # report_interval_emergency_s
    0x0029: _dword(30),  # report_interval_default_s
    0x002C: _dword(500),  # report_distance_default_m
    0x0055: _dword(100),  # overspeed_limit_kmh
    0x0056: _dword(10),  # overspeed_duration_s
    0x0057: _dword(4 * 3600),  # continuous_driving_limit_s
    0x0058: _dword(8 * 3600),  # daily_driving_limit_s
    0x0059: _dword(20 * 60),  # min_rest_s
    0x005A: _dword(0),  # max_parking_s
    0x005B: struct.pack(">H", 50),  # overspeed_warning_diff_kmh: 5.0 km/h
    0x005C: struct.pack(">H", 1800),  # fatigue_warning_diff_s
    VENDOR_PARAM_ID: bytes.fromhex("0102030405"),
}

COMMAND_IDS = frozenset(
    {
        p.MSG_QUERY_PARAMS,
        p.MSG_QUERY_SOME_PARAMS,
        p.MSG_SET_PARAMS,
        query.MSG_QUERY_POSITION,
        query.MSG_TRACK,
        misc.MSG_TERMINAL_CONTROL,
        misc.MSG_PASS_THROUGH_DOWN,
        driver.MSG_QUERY_DRIVER,
    }
)


def param_value(terminal: SimTerminal, name: str) -> int | float | str | None:
    """The simulated terminal's current value of a parameter, in our unit (tests)."""
    parameter = BY_NAME[name]
    raw = terminal.parameters.get(parameter.param_id)
    return None if raw is None else p.read_item(p.ParamItem(parameter.param_id, raw)).get("value")


class SimCommands:
    """The command side of one simulated terminal: its parameters and its tracking."""

    def __init__(self, terminal: SimTerminal) -> None:
        self.terminal = terminal
        self.tracking: asyncio.Task[None] | None = None
        self.tracked_reports = 0

    async def answer(self, frame: Frame) -> None:
        """Answer one platform command (a message id in :data:`COMMAND_IDS`)."""
        msg_id, serial = frame.header.msg_id, frame.header.serial
        t = self.terminal
        if msg_id in (p.MSG_QUERY_PARAMS, p.MSG_QUERY_SOME_PARAMS):
            wanted = p.decode_query_some(frame.body) if msg_id == p.MSG_QUERY_SOME_PARAMS else None
            items = [
                p.ParamItem(i, v) for i, v in t.parameters.items() if wanted is None or i in wanted
            ]
            self._print(msg_id, f"answered {len(items)} parameters")
            await self._send(p.MSG_PARAMS_ANSWER, p.encode_answer(serial, items))
            return
        if msg_id == query.MSG_QUERY_POSITION:
            self._print(msg_id, "position query")
            body = query.encode_position_answer(serial, self.current_report())
            await self._send(query.MSG_POSITION_ANSWER, body)
            return
        if msg_id == driver.MSG_QUERY_DRIVER:
            self._print(msg_id, "driver identity request")
            await self._send(driver.MSG_DRIVER_IDENTITY, t.driver_report())
            return
        if msg_id == p.MSG_SET_PARAMS:
            settings = p.decode_set(frame.body)
            for item in settings:
                t.parameters[item.param_id] = item.value
            shown = " ".join(_shown(i) for i in settings)
            self._print(msg_id, f"set {shown}")
        elif msg_id == query.MSG_TRACK:
            interval_s, duration_s = query.decode_track(frame.body)
            self._print(msg_id, f"track every {interval_s} s for {duration_s} s")
            self.start_tracking(interval_s, duration_s)
        elif msg_id == misc.MSG_TERMINAL_CONTROL:
            word, _ = misc.decode_terminal_control(frame.body)
            self._print(msg_id, f"terminal control {word}")
        else:
            self._print(msg_id, f"pass-through {frame.body.hex()}")
        await self._send(m.MSG_TERMINAL_REPLY, m.encode_terminal_reply(serial, msg_id, 0))

    def current_report(self) -> m.LocationReport:
        """The last report sent, timed now (the terminal's zone, GMT+8), without its
        active-safety items (0x64-0x67: an alarm is reported once, not in every answer)."""
        now = m.bcd_time_from_datetime(datetime.now(UTC))
        last = self.terminal.last_report
        if last is None:
            return m.LocationReport(0, 0, 0, 0, 0, 0, 0, now)
        return m.LocationReport(
            last.alarm_flags, last.status_flags, last.latitude_e6, last.longitude_e6,
            last.altitude_m, last.speed_dkmh, last.heading_deg, now,
            {k: v for k, v in last.items.items() if k not in ITEM_SOURCES},
        )  # fmt: skip

    def start_tracking(self, interval_s: int, duration_s: int) -> None:
        if self.tracking is not None:
            self.tracking.cancel()
            self.tracking = None
        if interval_s > 0 and duration_s > 0:
            self.tracking = asyncio.get_running_loop().create_task(
                self._track(interval_s, duration_s)
            )

    async def _track(self, interval_s: int, duration_s: int) -> None:
        """One report at each whole interval within the duration (duration // interval)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        with contextlib.suppress(ConnectionError, OSError):
            for i in range(1, duration_s // interval_s + 1):
                await asyncio.sleep(max(0.0, start + i * interval_s - loop.time()))
                await self._send(m.MSG_LOCATION, m.encode_location(self.current_report()))
                self.tracked_reports += 1

    def stop(self) -> None:
        if self.tracking is not None:
            self.tracking.cancel()

    async def _send(self, msg_id: int, body: bytes) -> None:
        _, wire = self.terminal.frame(msg_id, body)
        await self.terminal.send_raw(wire)

    def _print(self, msg_id: int, what: str) -> None:
        print(f"jt808-sim: terminal {self.terminal.phone} 0x{msg_id:04x} {what}", flush=True)


def _shown(item: p.ParamItem) -> str:
    read = p.read_item(item)
    name = read.get("name") or read["id"]
    return f"{name}={read.get('value', read.get('raw_hex'))}"
