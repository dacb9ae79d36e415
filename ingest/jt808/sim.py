"""``gps-monitor jt808-sim FILE --format F``: simulated JT/T 808 terminals for tests and demos.

Each terminal of the track file opens its own TCP connection to the gateway, registers (0x0100),
authenticates (0x0102) with the code it got in 0x8100, sends its fixes in fix-time order as
0x0200 location reports (or, with ``--batch N``, as 0x0704 uploads of N fixes; ``--reupload``
marks them as blind-area re-uploads), waits for each 0x8001 reply, and disconnects (it does not
send 0x0003, which deregisters a terminal and withdraws its auth code); with ``--linger-s N`` it
stays connected N seconds longer, heartbeating.

Photos (0x8801, issue 12): answered 0x0805 and uploaded as 0x0801 in sub-packages while the
terminal is connected (``--linger-s``); ``--drop-packet N`` loses packet N of the first
transmission, so the gateway's 0x8800 / 0x8003 must bring it back (:mod:`ingest.jt808.media_sim`).

Text messages (0x8300) from the platform are answered at any time with a 0x0001 general response
(result ``--text-result``, default 0 ok) and printed on stdout, one line each:
``jt808-sim: terminal 13511221122 text [display,tts]: 您已超速行驶，请减速慢行``. Parameter
queries and settings, position queries, temporary tracking, terminal control and pass-through
are answered as :mod:`ingest.jt808.sim_commands` describes.

Terminal ids: the track's terminal id is used as the phone number when it is all digits (at
most 12, or 20 with ``--protocol 2019``); otherwise the phone is derived from the track's own
terminal id: ``--phone-base`` (default 990000000000, 12 digits starting with 99, a range no
Chinese mobile number and none of the README's examples uses) + a number in [0, 10^8) taken from
the SHA-256 of the terminal id. So the same track terminal gets the same phone on every run, and
the terminals of different track files (``tdrive-1``, ``bods-4716``...) get different phones
(collisions inside one run are resolved by taking the next free number).

``--register`` creates the company ``jt808 simulated fleet`` and one vehicle per terminal
(terminal id = the phone digits without leading zeros, plate ``测A`` + its last 5 digits,
yellow) in the database first. It only ever creates or updates the simulator's own vehicles:
when a terminal id or a plate is already held by a vehicle of another company (or a plate by
another simulated terminal), it refuses with :class:`TerminalTakenError` (exit 2) before
touching anything, naming the terminal id and the vehicle that holds it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import logging
import struct
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg

from gps_monitor.config import Settings
from gps_monitor.db import registry
from gps_monitor.db.pool import connect
from gps_monitor.errors import ConfigurationError, GpsMonitorError
from gps_monitor.models import PlateColor, Position, VehicleClass
from gps_monitor.tracks import FORMATS, read_track
from ingest.jt808 import driver, misc
from ingest.jt808 import messages as m
from ingest.jt808.codec import Frame, FrameError, FrameSplitter, decode_frame, encode_frame
from ingest.jt808.sim_commands import COMMAND_IDS, DEFAULT_PARAMETERS, SimCommands

log = logging.getLogger(__name__)

DEMO_COMPANY = "jt808 simulated fleet"
SIM_PLATE_PREFIX = "测A"
ITEM_SENT_AT = 0xE0  # vendor item: send time, u64 ns since the epoch (benchmark latency)
# Default phones: 99xxxxxxxxxx (12 digits), no Chinese mobile number (11 digits, 1xx) and none
# of the README's examples (13800000001, 13511221122...); + [0, PHONE_SPAN) from the track id.
PHONE_BASE = 990_000_000_000
PHONE_SPAN = 100_000_000


class TerminalError(GpsMonitorError):
    """The gateway refused or did not answer a simulated terminal."""


class SimCamera:
    """The simulated terminal's camera (issue 12 item 6): a 0x8801 is answered 0x0805 with new
    multimedia ids, and each photo (a real JPEG, :func:`ingest.jt808.media_sim.sim_photo`) is
    uploaded as 0x0801 in sub-packages of ``packet_bytes``; the packets in ``drop_packets`` are
    left out of the first transmission (a lossy link), and whatever 0x8800 / 0x8003 asks for is
    sent again. The gateway's answers are read by whoever reads the connection (``linger``).
    """

    def __init__(self, terminal: SimTerminal) -> None:
        self.terminal = terminal
        self.packet_bytes = 900
        self.drop_packets: set[int] = set()
        self.photo_bytes = 8000
        self.next_id = 1
        self.uploaded: list[int] = []  # multimedia ids the gateway answered complete
        # active safety: files uploaded on 0x9208 ({number} in a name becomes the alarm number)
        self.attachments: list[tuple[str, bytes]] = []
        self.drop_segments: set[int] = set()  # data frames left out of each file's first pass
        self.attachments_sent: list[str] = []  # alarm numbers whose files were all accepted
        self.attachments_refused: list[str] = []
        self._replies: asyncio.Queue[Frame] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()

    def take(self, frame: Frame) -> bool:
        """Whether ``frame`` was the camera's (0x8801 starts an upload in the background;
        0x8800 / 0x8003 go to the upload in progress)."""
        from ingest.jt808 import attachments_sim, jsatl, media_sim

        msg_id = frame.header.msg_id
        if msg_id == jsatl.MSG_ATTACHMENT_REQUEST:
            self._start(attachments_sim.upload_attachments(self, frame))
            return True
        if msg_id in (media_sim.MSG_MEDIA_UPLOAD_REPLY, media_sim.MSG_RESEND_REQUEST):
            self._replies.put_nowait(frame)
            return True
        if msg_id != media_sim.MSG_CAMERA:
            return False
        self._start(media_sim.shoot(self, frame))
        return True

    def _start(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reply(self, timeout_s: float) -> Frame:
        return await asyncio.wait_for(self._replies.get(), timeout_s)

    def take_replies(self) -> list[Frame]:
        """The 0x8800 / 0x8003 frames received and not yet taken by an upload."""
        out = []
        while not self._replies.empty():
            out.append(self._replies.get_nowait())
        return out


class TerminalTakenError(GpsMonitorError):
    """``--register`` would change a vehicle that is not one of the simulator's own."""


def report_from_position(
    position: Position, utc_offset_min: int = 480, *, sent_at_ns: int | None = None
) -> m.LocationReport:
    """A position as a 0x0200 body in wire units (GMT+8 BCD time by default).

    Adds items 0x01 mileage and 0x31 satellites when known, and with ``sent_at_ns`` a vendor
    item 0xE0 carrying the send time (u64 ns), which the benchmark reads back from MQTT.
    """
    status = (
        (m.STATUS_ACC_ON if position.acc_on else 0)
        | (m.STATUS_POSITIONED if position.fix_valid else 0)
        | (m.STATUS_SOUTH if position.latitude < 0 else 0)
        | (m.STATUS_WEST if position.longitude < 0 else 0)
    )
    items: dict[int, bytes] = {}
    if position.mileage_km is not None:
        items[0x01] = struct.pack(">I", round(position.mileage_km * 10))
    if position.satellites is not None:
        items[0x31] = bytes([min(position.satellites, 255)])
    if sent_at_ns is not None:
        items[ITEM_SENT_AT] = struct.pack(">Q", sent_at_ns)
    return m.LocationReport(
        alarm_flags=position.alarm_flags,
        status_flags=status,
        latitude_e6=round(abs(position.latitude) * 1e6),
        longitude_e6=round(abs(position.longitude) * 1e6),
        altitude_m=round(position.altitude_m or 0),
        speed_dkmh=round(position.speed_kmh * 10),
        heading_deg=round(position.heading_deg or 0) % 360,
        bcd_time=m.bcd_time_from_datetime(position.fix_time, utc_offset_min),
        items=items,
    )


@dataclass(slots=True)
class SimStats:
    sent: int = 0
    accepted: int = 0
    refused: int = 0


class SimTerminal:
    """One simulated terminal over one TCP connection.

    Args:
        phone: terminal phone number digits (BCD in the header).
        protocol: "2013" (6-byte phone) or "2019" (version flag, 10-byte phone).
        reply_timeout_s: how long to wait for the gateway's reply to each message.
    """

    def __init__(
        self,
        phone: str,
        *,
        protocol: str = "2013",
        reply_timeout_s: float = 30.0,
        text_result: int = m.RESULT_OK,
    ):
        self.phone = phone
        self.text_result = text_result
        self.texts: list[m.TextMessage] = []
        self.texts_received_at: list[float] = []  # epoch seconds, one per text (benchmarks)
        self.version = 1 if protocol == "2019" else None
        self.reply_timeout_s = reply_timeout_s
        self.serial = 0
        self.auth_code: str | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._splitter = FrameSplitter()
        self._pending: list[Frame] = []
        self.camera = SimCamera(self)
        self.parameters: dict[int, bytes] = dict(DEFAULT_PARAMETERS)  # id -> value bytes
        self.last_report: m.LocationReport | None = None
        self.commands = SimCommands(self)
        self.driver: driver.DriverIdentity | None = None  # the IC card in the reader

    def driver_report(self, removed_at: datetime | None = None) -> bytes:
        """0x0702 body: the card in the reader (2019 layout with a 2019 header), or a removal
        at ``removed_at`` (now when None) when there is none."""
        if self.driver is not None:
            return driver.encode_driver_identity(self.driver)
        when = removed_at or datetime.now(UTC) + timedelta(hours=8)
        return driver.encode_driver_identity(
            driver.DriverIdentity("2013", "removed", when.replace(tzinfo=None))
        )

    async def insert_card(
        self,
        certificate_no: str,
        name: str,
        when_local: datetime,
        authority: str = "",
        *,
        valid_until: date | None = None,
        id_card_no: str | None = None,
    ) -> int:
        """Insert a qualification-certificate IC card at ``when_local`` (terminal time,
        naive): 0x0702 inserted; returns the gateway's result."""
        self.driver = driver.DriverIdentity(
            "2019" if self.version else "2013", "inserted", when_local, "ok", name,
            certificate_no, authority or None, valid_until, id_card_no,
        )  # fmt: skip
        return await self.general(driver.MSG_DRIVER_IDENTITY, self.driver_report())

    async def remove_card(self, when_local: datetime) -> int:
        """Pull the card out at ``when_local``: 0x0702 removed; returns the gateway's result."""
        self.driver = None
        return await self.general(driver.MSG_DRIVER_IDENTITY, self.driver_report(when_local))

    async def connect(self, host: str, port: int) -> None:
        self._reader, self._writer = await asyncio.open_connection(host, port)

    async def close(self) -> None:
        self.commands.stop()
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self._writer.wait_closed()
            self._writer = None

    def frame(self, msg_id: int, body: bytes = b"") -> tuple[int, bytes]:
        """Encode one message with the next serial; returns (serial, wire bytes)."""
        serial = self.serial
        self.serial = (self.serial + 1) & 0xFFFF
        return serial, encode_frame(msg_id, self.phone, serial, body, version=self.version)

    async def send_raw(self, data: bytes) -> None:
        assert self._writer is not None, "connect() first"
        self._writer.write(data)
        await self._writer.drain()

    async def read_frame(self) -> Frame:
        """The next frame from the gateway.

        Raises:
            TerminalError: connection closed or no frame within ``reply_timeout_s``.
        """
        assert self._reader is not None, "connect() first"
        async with asyncio.timeout(self.reply_timeout_s):
            while not self._pending:
                data = await self._reader.read(4096)
                if not data:
                    raise TerminalError(f"terminal {self.phone}: gateway closed the connection")
                for content, wire in self._splitter.feed(data):
                    try:
                        frame = decode_frame(content, wire)
                    except FrameError as error:
                        raise TerminalError(f"terminal {self.phone}: bad reply {error}") from None
                    if frame.header.msg_id == m.MSG_TEXT:
                        await self._answer_text(frame)
                    elif frame.header.msg_id in COMMAND_IDS:
                        await self.commands.answer(frame)
                    elif not self.camera.take(frame):
                        self._pending.append(frame)
        return self._pending.pop(0)

    async def _answer_text(self, frame: Frame) -> None:
        """A 0x8300 from the platform: print it, keep it, answer 0x0001 (``text_result``)."""
        text = m.decode_text(frame.body, is_2019=frame.header.is_2019)
        self.texts_received_at.append(time.time())
        self.texts.append(text)
        shown = ",".join(
            name
            for name, on in (
                ("emergency", text.emergency),
                ("display", text.display),
                ("tts", text.tts),
            )
            if on
        )
        print(f"jt808-sim: terminal {self.phone} text [{shown}]: {text.text}", flush=True)
        _, wire = self.frame(
            m.MSG_TERMINAL_REPLY,
            m.encode_terminal_reply(frame.header.serial, m.MSG_TEXT, self.text_result),
        )
        await self.send_raw(wire)

    async def linger(self, duration_s: float, heartbeat_s: float = 30.0) -> None:
        """Stay connected ``duration_s`` seconds, heartbeating every ``heartbeat_s`` and
        answering text messages as they come."""
        deadline = asyncio.get_running_loop().time() + duration_s
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                async with asyncio.timeout(min(heartbeat_s, left)):
                    await self.read_frame()  # texts are answered inside; replies dropped
            except TimeoutError:
                if deadline - asyncio.get_running_loop().time() > 0:
                    await self.heartbeat()

    async def request(self, msg_id: int, body: bytes = b"") -> Frame:
        """Send a message and return the gateway's reply to it (matched by serial)."""
        serial, wire = self.frame(msg_id, body)
        await self.send_raw(wire)
        while True:
            reply = await self.read_frame()
            if reply.header.msg_id == m.MSG_PLATFORM_REPLY:
                answered, _, _ = m.decode_general_reply(reply.body)
            elif reply.header.msg_id == m.MSG_REGISTER_REPLY:
                answered, _, _ = m.decode_register_reply(reply.body)
            else:
                continue
            if answered == serial:
                return reply

    async def register(self, plate_number: str = "", plate_color: int = 0) -> str:
        """0x0100 -> the auth code from 0x8100.

        Raises:
            TerminalError: the gateway answered with a result other than 0.
        """
        request = m.RegisterRequest(
            province_id=50,
            city_id=100,
            maker_id="GPSM",
            model="SIM-808",
            device_id=self.phone[-7:],
            plate_color=plate_color,
            plate_number=plate_number,
            layout="2019" if self.version else "2013",
        )
        reply = await self.request(
            m.MSG_REGISTER, m.encode_register(request, is_2019=self.version is not None)
        )
        _, result, code = m.decode_register_reply(reply.body)
        if result != m.REGISTER_OK:
            raise TerminalError(f"terminal {self.phone}: registration refused, result {result}")
        self.auth_code = code
        return code

    async def general(self, msg_id: int, body: bytes = b"") -> int:
        """Send a message answered by 0x8001; return its result code."""
        reply = await self.request(msg_id, body)
        _, _, result = m.decode_general_reply(reply.body)
        return result

    async def authenticate(self, code: str | None = None) -> int:
        request = m.AuthRequest(code or self.auth_code or "", "860000000000000", "gpsm-sim-1")
        return await self.general(
            m.MSG_AUTHENTICATE, m.encode_auth(request, is_2019=self.version is not None)
        )

    async def heartbeat(self) -> int:
        return await self.general(m.MSG_HEARTBEAT)

    async def logout(self) -> int:
        return await self.general(m.MSG_LOGOUT)

    async def send_location(self, report: m.LocationReport) -> int:
        self.last_report = report
        return await self.general(m.MSG_LOCATION, m.encode_location(report))

    async def query_time(self) -> datetime:
        """0x0004 -> the platform's time from its 0x8004 (UTC)."""
        _, wire = self.frame(misc.MSG_QUERY_TIME)
        await self.send_raw(wire)
        while (reply := await self.read_frame()).header.msg_id != misc.MSG_TIME_ANSWER:
            continue
        return misc.decode_time_answer(reply.body)

    async def send_batch(self, reports: list[m.LocationReport], *, reupload: bool = False) -> int:
        if reports:
            self.last_report = reports[-1]
        batch_type = m.BATCH_TYPE_REUPLOAD if reupload else m.BATCH_TYPE_NORMAL
        return await self.general(m.MSG_BATCH, m.encode_batch(reports, batch_type))


def assign_phones(
    terminal_ids: Sequence[str], *, protocol: str, phone_base: int = PHONE_BASE
) -> dict[str, str]:
    """Track terminal id -> phone digits (see the module docstring).

    A digit-only id is kept; any other gets ``phone_base`` + (SHA-256 of the id mod
    :data:`PHONE_SPAN`), moved on to the next number while that phone or its plate (last 5
    digits) is already taken in this run.

    Raises:
        ConfigurationError: a phone would have more digits than ``protocol`` allows.
    """
    max_digits = 20 if protocol == "2019" else 12
    out: dict[str, str] = {}
    kept = sorted(t for t in terminal_ids if t.isdigit() and len(t) <= max_digits)
    for terminal_id in kept:
        out[terminal_id] = terminal_id
    phones = set(out.values())
    plates = {sim_plate(p) for p in phones}
    for terminal_id in sorted(set(terminal_ids) - set(kept)):
        digest = hashlib.sha256(terminal_id.encode("utf-8")).digest()
        offset = int.from_bytes(digest[:8], "big") % PHONE_SPAN
        while True:
            phone = str(phone_base + offset)
            if phone not in phones and sim_plate(phone) not in plates:
                break
            offset = (offset + 1) % PHONE_SPAN
        if len(phone) > max_digits:
            raise ConfigurationError(
                f"--phone-base {phone_base}: expected phones of at most {max_digits} digits "
                f"(--protocol {protocol}), got {phone} for terminal {terminal_id!r}"
            )
        out[terminal_id] = phone
        phones.add(phone)
        plates.add(sim_plate(phone))
    return out


def sim_plate(phone: str) -> str:
    """Demo plate of a simulated terminal: 测A + the phone's last 5 digits."""
    return SIM_PLATE_PREFIX + phone[-5:].rjust(5, "0")


async def run_terminal(
    phone: str,
    positions: list[Position],
    *,
    host: str,
    port: int,
    protocol: str = "2013",
    batch_size: int = 1,
    reupload: bool = False,
    speedup: float = 0.0,
    plate_number: str = "",
    plate_color: int = 0,
    stats: SimStats | None = None,
    linger_s: float = 0.0,
    text_result: int = m.RESULT_OK,
    photo_bytes: int = 8000,
    drop_packets: Sequence[int] = (),
    adas_alarms: int = 0,
    drivers: Sequence[tuple[str, str]] = (),
) -> SimStats:
    """Register, authenticate, send ``positions``, stay ``linger_s`` seconds (answering text
    messages), log out (0x0003: the gateway withdraws the code, so the next run registers
    afresh) and disconnect; returns the counts.

    Raises:
        TerminalError: registration or authentication refused, or the gateway went away.
    """
    stats = stats or SimStats()
    terminal = SimTerminal(phone, protocol=protocol, text_result=text_result)
    terminal.camera.photo_bytes = photo_bytes
    terminal.camera.drop_packets = set(drop_packets)
    await terminal.connect(host, port)
    try:
        await terminal.register(plate_number, plate_color)
        if await terminal.authenticate() != m.RESULT_OK:
            raise TerminalError(f"terminal {phone}: authentication refused")
        previous = None
        shifts = driver_shifts(len(positions), len(drivers))
        for start in range(0, len(positions), batch_size):
            chunk = positions[start : start + batch_size]
            if start in shifts:  # the next driver's IC card goes in (0x0702)
                certificate_no, name = drivers[shifts[start]]
                when = chunk[0].fix_time.astimezone(UTC) + timedelta(hours=8)
                await terminal.insert_card(certificate_no, name, when.replace(tzinfo=None))
            if speedup > 0 and previous is not None:
                wait_s = (chunk[0].fix_time - previous).total_seconds() / speedup
                await asyncio.sleep(max(wait_s, 0))
            previous = chunk[-1].fix_time
            reports = [report_from_position(p) for p in chunk]
            if batch_size == 1 and not reupload:
                result = await terminal.send_location(reports[0])
            else:
                result = await terminal.send_batch(reports, reupload=reupload)
            stats.sent += len(chunk)
            if result == m.RESULT_OK:
                stats.accepted += len(chunk)
            else:
                stats.refused += len(chunk)
        if drivers and positions:
            when = positions[-1].fix_time.astimezone(UTC) + timedelta(hours=8)
            await terminal.remove_card(when.replace(tzinfo=None))
        if adas_alarms:
            await send_adas_alarms(terminal, adas_alarms, photo_bytes)
        if linger_s > 0:
            await terminal.linger(linger_s)
        await terminal.logout()
    finally:
        await terminal.close()
    return stats


def driver_shifts(count: int, drivers: int) -> dict[int, int]:
    """Index of the position at which each driver's card goes in -> the driver's index: the
    track split in ``drivers`` equal parts (``--driver``)."""
    if drivers <= 0 or count <= 0:
        return {}
    return {count * i // drivers: i for i in range(drivers)}


async def send_adas_alarms(terminal: SimTerminal, count: int, photo_bytes: int) -> None:
    """Report ``count`` ADAS forward-collision alarms, each with a photo and a short "video"
    for the attachment server (uploaded when the gateway's 0x9208 comes, while lingering)."""
    from ingest.jt808.attachments_sim import adas_report
    from ingest.jt808.media_sim import sim_photo

    terminal.camera.attachments = [
        ("00_64_0101_0_{number}.jpg", sim_photo(photo_bytes, seed=7)),
        ("02_64_0101_1_{number}.mp4", sim_photo(photo_bytes * 3, seed=8)),
    ]
    for sequence in range(count):
        report = adas_report(terminal.phone[-7:], sequence, attachments=2)
        await terminal.send_location(report)
    print(f"jt808-sim: terminal {terminal.phone} reported {count} ADAS alarm(s)", flush=True)


async def foreign_holders(
    conn: asyncpg.Connection, company_id: int, phones: Sequence[str]
) -> list[str]:
    """Why registering ``phones`` under the simulator's company ``company_id`` would change
    vehicles that are not the simulator's own: one line per terminal id held by a vehicle of
    another company, and per simulated plate held by a vehicle with another terminal id."""
    terminal_ids = [sim_terminal_id(p) for p in phones]
    plates = {sim_plate(p): sim_terminal_id(p) for p in phones}
    rows = await conn.fetch(
        "SELECT v.terminal_id, v.plate_number, v.plate_color, c.name AS company "
        "FROM vehicles v JOIN companies c ON c.id = v.company_id "
        "WHERE (v.terminal_id = ANY($1::text[]) AND v.company_id <> $2) "
        "OR (v.plate_number = ANY($3::text[]) AND v.plate_color = $4 "
        "AND NOT v.terminal_id = ANY($1::text[])) ORDER BY v.terminal_id",
        terminal_ids,
        company_id,
        list(plates),
        int(PlateColor.YELLOW),
    )
    problems = []
    for r in rows:
        holder = (
            f"vehicle {r['plate_number']} (terminal {r['terminal_id']}, company {r['company']!r})"
        )
        if r["terminal_id"] in terminal_ids:
            problems.append(f"terminal {r['terminal_id']} is held by {holder}")
        else:
            wanted = plates[r["plate_number"]]
            problems.append(
                f"plate {r['plate_number']} of simulated terminal {wanted} is held by {holder}"
            )
    return problems


def sim_terminal_id(phone: str) -> str:
    """``vehicles.terminal_id`` of a simulated phone: its digits without leading zeros."""
    return phone.lstrip("0") or "0"


async def register_vehicles(settings: Settings, phones: Sequence[str]) -> None:
    """Create the simulator's company and one vehicle per phone (terminal id without leading
    zeros), or update the ones it created before.

    ``registry.ensure_vehicle`` upserts by terminal id, so this checks first, in the same
    transaction, that no phone or plate belongs to a vehicle that is not the simulator's own.

    Raises:
        TerminalTakenError: a terminal id or plate is held by another vehicle (nothing changed).
    """
    conn = await connect(settings.database)
    try:
        async with conn.transaction():
            company = await registry.ensure_company(conn, DEMO_COMPANY)
            problems = await foreign_holders(conn, company.id, phones)
            if problems:
                raise TerminalTakenError(
                    "--register: expected terminal ids and plates free or held by the "
                    f"simulator's own vehicles (company {DEMO_COMPANY!r}), got "
                    + "; ".join(problems)
                    + "; nothing was registered (choose another --phone-base, or run without "
                    "--register against vehicles registered by hand)"
                )
            for phone in phones:
                await registry.ensure_vehicle(
                    conn,
                    company_id=company.id,
                    plate_number=sim_plate(phone),
                    terminal_id=sim_terminal_id(phone),
                    vehicle_class=VehicleClass.FREIGHT,
                    plate_color=PlateColor.YELLOW,
                )
    finally:
        await conn.close()


async def registered_plates(
    settings: Settings, phones: Sequence[str]
) -> dict[str, tuple[str, int]]:
    """(plate, colour) of the vehicle carrying each phone's terminal id, read from the registry
    (the gateway checks 0x0100 against them); empty without a database URL."""
    if not settings.database.url:
        return {}
    conn = await connect(settings.database)
    try:
        rows = await conn.fetch(
            "SELECT terminal_id, plate_number, plate_color FROM vehicles "
            "WHERE terminal_id = ANY($1::text[])",
            [sim_terminal_id(p) for p in phones],
        )
    finally:
        await conn.close()
    by_id = {r["terminal_id"]: (r["plate_number"], int(r["plate_color"])) for r in rows}
    return {p: by_id[sim_terminal_id(p)] for p in phones if sim_terminal_id(p) in by_id}


async def simulate(args: argparse.Namespace, settings: Settings) -> SimStats:
    """Run every terminal of the track file concurrently."""
    tracks = read_track(args.file, args.format)
    phones = assign_phones(list(tracks), protocol=args.protocol, phone_base=args.phone_base)
    for terminal_id, phone in phones.items():
        log.info("terminal %s -> phone %s", terminal_id, phone)
    if args.register:
        await register_vehicles(settings, list(phones.values()))
    plates = await registered_plates(settings, list(phones.values()))
    stats = SimStats()
    started = time.monotonic()
    await asyncio.gather(
        *(
            run_terminal(
                phones[terminal_id],
                positions,
                host=args.host,
                port=args.port or settings.jt808.port,
                protocol=args.protocol,
                batch_size=args.batch,
                reupload=args.reupload,
                speedup=args.speedup,
                plate_number=plates.get(phones[terminal_id], ("", 0))[0],
                plate_color=plates.get(phones[terminal_id], ("", 0))[1],
                stats=stats,
                linger_s=args.linger_s,
                text_result=args.text_result,
                photo_bytes=getattr(args, "photo_bytes", 8000),  # options of issue 12: a
                drop_packets=getattr(args, "drop_packet", ()),  # Namespace built by hand
                adas_alarms=getattr(args, "adas_alarms", 0),  # may lack them
                drivers=[parse_driver(d) for d in getattr(args, "driver", ())],
            )
            for terminal_id, positions in tracks.items()
        )
    )
    print(
        f"jt808-sim: {len(tracks)} terminals, {stats.sent} positions sent, {stats.accepted} "
        f"acknowledged, {stats.refused} refused, {time.monotonic() - started:.1f} s"
    )
    return stats


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="track file")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--host", default="127.0.0.1", help="gateway host (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="gateway port (default jt808.port)")
    parser.add_argument("--protocol", choices=("2013", "2019"), default="2013")
    parser.add_argument("--batch", type=int, default=1, help="fixes per 0x0704 (1 = 0x0200)")
    parser.add_argument("--reupload", action="store_true", help="0x0704 type 1 (补报)")
    parser.add_argument(
        "--speedup", type=float, default=0.0, help="time compression; 0 = as fast as acknowledged"
    )
    parser.add_argument(
        "--linger-s",
        type=float,
        default=0.0,
        help="stay connected this long after the last fix, heartbeating and answering text "
        "messages (0x8300)",
    )
    parser.add_argument(
        "--text-result",
        type=int,
        choices=(0, 1, 2, 3),
        default=0,
        help="result of the 0x0001 answer to a text message: 0 ok, 1 failed, 2 bad message, "
        "3 unsupported",
    )
    parser.add_argument(
        "--photo-bytes",
        type=int,
        default=8000,
        help="about how large each photo taken on 0x8801 is (a JPEG; default 8000)",
    )
    parser.add_argument(
        "--drop-packet",
        type=int,
        action="append",
        default=[],
        metavar="INDEX",
        help="leave this 0x0801 packet out of a photo's first transmission (repeatable): the "
        "gateway must ask for it again (0x8800 / 0x8003)",
    )
    parser.add_argument(
        "--adas-alarms",
        type=int,
        default=0,
        metavar="N",
        help="after the track, report N ADAS forward-collision alarms (T/JSATL item 0x64) with "
        "two attachments each, uploaded to the attachment server the gateway names in 0x9208 "
        "(use --linger-s to stay connected for them)",
    )
    parser.add_argument(
        "--driver",
        action="append",
        default=[],
        metavar="CERTIFICATE:NAME",
        help="a driver's IC card (repeatable): the track is split in equal parts, one per "
        "driver; each part starts with that driver's card inserted (0x0702, card time = the "
        "part's first fix time), the card is removed after the track; the simulator answers "
        "0x8702 with the card in its reader",
    )
    parser.add_argument(
        "--phone-base",
        type=int,
        default=PHONE_BASE,
        help=f"phones of non-numeric track ids: this + a number < {PHONE_SPAN} derived from the "
        f"id (default {PHONE_BASE})",
    )
    parser.add_argument(
        "--register",
        action="store_true",
        help="create the simulator's company and its vehicles first (never changes another "
        "company's vehicle: exit 2)",
    )


def parse_driver(text: str) -> tuple[str, str]:
    """``CERTIFICATE:NAME`` -> (certificate number, name).

    Raises:
        ConfigurationError: no ``:`` or an empty certificate number.
    """
    certificate_no, sep, name = text.partition(":")
    if not sep or not certificate_no.strip():
        raise ConfigurationError(f"--driver: expected CERTIFICATE:NAME, got {text!r}")
    return certificate_no.strip(), name.strip()


def run(args: argparse.Namespace, settings: Settings) -> int:
    stats = asyncio.run(simulate(args, settings))
    return 0 if stats.refused == 0 else 1
