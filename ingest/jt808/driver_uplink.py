"""The gateway's side of driver identity (issue 12 item 7; codec in :mod:`ingest.jt808.driver`).

- 0x0702 from an authenticated terminal: kept as received in ``terminal_uploads`` (kind
  ``driver_identity``, with what was read or why it could not be). From a terminal bound to a
  vehicle, a card inserted and read opens a
  driver session on the vehicle (``drivers`` / ``driver_sessions``,
  :mod:`gps_monitor.db.drivers`; a 2011 report, which has no status, counts as inserted at its
  arrival); a card removed closes it; a failed read is logged and changes nothing (the card
  is not known). Answered 0x8001 result 0; a body that fits no layout result 2 (logged with
  its hex); a database failure result 1, so the terminal sends it again.
- Every position the gateway publishes from 0x0200 carries the vehicle's current driver in
  ``extras.driver`` (``certificate_no``, ``name``), as the gateway knows it when the position
  arrives: the card in the cab at that moment is the best evidence of who drives, and ingest
  stores extras with the position (the positions table is unchanged). The current driver is
  cached per terminal, read once from ``driver_sessions`` after a gateway start.
- ``query_driver`` (0x8702, empty body): the next 0x0702 of that terminal answers it, with the
  decoded identity as ``cmd_result.body`` (0x0702 carries no serial of the request).
"""

from __future__ import annotations

import logging
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import asyncpg

from gps_monitor import command_kinds as kinds
from gps_monitor.commands import Command
from gps_monitor.db import drivers as db
from ingest.jt808 import driver as d
from ingest.jt808 import messages as m
from ingest.jt808 import upload_store
from ingest.jt808.codec import Frame, FrameError

if TYPE_CHECKING:
    from ingest.jt808.server import Jt808Gateway, Session

log = logging.getLogger(__name__)

_UNKNOWN = object()


def encode_query_driver(command: Command, is_2019: bool) -> tuple[int, bytes]:
    kinds.QueryDriverBody.model_validate(command.body)
    return d.MSG_QUERY_DRIVER, b""


def install(gateway: Jt808Gateway) -> DriverMessages:
    """Register 0x0702, the position extras and the ``query_driver`` command with
    ``gateway``."""
    handlers = DriverMessages(gateway)
    gateway.register(d.MSG_DRIVER_IDENTITY, handlers.on_driver_identity)
    gateway.register_position_extras(handlers.position_extras)
    if gateway.downlink is not None:
        gateway.downlink.register_command(
            kinds.QUERY_DRIVER, encode_query_driver, d.MSG_QUERY_DRIVER
        )
        gateway.downlink.sent_listeners.append(handlers.on_command_sent)
    return handlers


class DriverMessages:
    def __init__(self, gateway: Jt808Gateway) -> None:
        self.gateway = gateway
        self._current: dict[str, dict[str, Any] | None] = {}  # terminal -> driver (None: none)
        self._queries: dict[str, deque[int]] = {}  # terminal -> serials of 0x8702 sent
        self.reports = 0
        self.store_failures = 0

    def on_command_sent(self, command: Command, serial: int) -> None:
        if command.name == kinds.QUERY_DRIVER:
            queue = self._queries.setdefault(command.terminal_id, deque(maxlen=16))
            queue.append(serial)

    async def position_extras(self, session: Session) -> dict[str, Any]:
        """``{"driver": {...}}`` for the session's terminal when a card is in, else ``{}``."""
        terminal_id = session.terminal_id
        if terminal_id is None or session.vehicle_id is None:
            return {}
        current = self._current.get(terminal_id, _UNKNOWN)
        if current is _UNKNOWN:
            try:
                row = await db.current_driver(self.gateway.authenticator.pool, session.vehicle_id)
            except (OSError, asyncpg.PostgresError) as error:
                log.warning("jt808 %s: current driver not read (%s)", session.peer, error)
                return {}
            current = _summary(row) if row else None
            self._current[terminal_id] = current
        return {"driver": current} if isinstance(current, dict) else {}

    async def on_driver_identity(self, session: Session, frame: Frame) -> bytes:
        gw = self.gateway
        refused = gw._refuse_unauthenticated(session, frame)
        if refused is not None:
            return refused
        terminal_id = frame.header.terminal_id
        pool = gw.authenticator.pool
        try:
            identity = d.decode_driver_identity(frame.body)
        except FrameError as error:
            gw.stats.frames_bad[error.reason] += 1
            log.warning("jt808 %s: 0x0702 refused (%s)", session.peer, error)
            if not await self._keep(session, frame, {"problem": str(error)}):
                return gw.general_reply(session, frame, m.RESULT_FAILURE)
            self._answer_query(terminal_id, m.RESULT_MESSAGE_ERROR, str(error)[:500], None)
            return gw.general_reply(session, frame, m.RESULT_MESSAGE_ERROR)
        if not await self._keep(session, frame, identity.as_json()):
            return gw.general_reply(session, frame, m.RESULT_FAILURE)
        self.reports += 1
        self._answer_query(terminal_id, m.RESULT_OK, "", identity.as_json())
        if session.vehicle_id is None:
            log.info("jt808 terminal %s: 0x0702 from a terminal without a vehicle", terminal_id)
            return gw.general_reply(session, frame, m.RESULT_OK)
        when = self._utc(identity.card_time_local, session.utc_offset_min)
        try:
            if identity.status == "removed":
                await db.card_removed(pool, vehicle_id=session.vehicle_id, card_out_at=when)
                self._current[terminal_id] = None
            elif identity.read_result not in (None, "ok") or not identity.certificate_no:
                log.info("jt808 terminal %s: IC card not read (%s); driver unchanged",
                         terminal_id, identity.read_result)  # fmt: skip
            else:
                await db.card_inserted(
                    pool,
                    vehicle_id=session.vehicle_id,
                    terminal_id=terminal_id,
                    certificate_no=identity.certificate_no,
                    name=identity.name,
                    issuing_authority=identity.issuing_authority,
                    valid_until=identity.valid_until,
                    id_card_no=identity.id_card_no,
                    card_in_at=when,
                    raw_hex=frame.body.hex(),
                )
                self._current[terminal_id] = {
                    "certificate_no": identity.certificate_no,
                    "name": identity.name,
                }
        except (OSError, asyncpg.PostgresError) as error:
            self.store_failures += 1
            self._current.pop(terminal_id, None)  # read again from the database
            log.warning("jt808 %s: 0x0702 not stored (%s); terminal told to resend",
                        session.peer, error)  # fmt: skip
            return gw.general_reply(session, frame, m.RESULT_FAILURE)
        return gw.general_reply(session, frame, m.RESULT_OK)

    async def _keep(self, session: Session, frame: Frame, decoded: dict[str, Any]) -> bool:
        kept = await upload_store.keep_upload(
            self.gateway, session, frame, "driver_identity", decoded
        )
        if not kept:
            self.store_failures += 1
        return kept

    @staticmethod
    def _utc(local: datetime | None, utc_offset_min: int) -> datetime:
        """The card time in UTC (the arrival time when the report has none)."""
        if local is None:
            return datetime.now(UTC)
        return (local - timedelta(minutes=utc_offset_min)).replace(tzinfo=UTC)

    def _answer_query(
        self, terminal_id: str, result: int, detail: str, body: dict[str, Any] | None
    ) -> None:
        queue = self._queries.get(terminal_id)
        downlink = self.gateway.downlink
        if queue and downlink is not None:
            downlink.answer_serial(terminal_id, queue.popleft(), result, detail, body)


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    return {"certificate_no": row["certificate_no"], "name": row["name"]}
