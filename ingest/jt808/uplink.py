"""Gateway handlers for the terminal messages of issue 12 items 4, 5 and 9, and the downlink
encoders of the matching commands (both registered by :func:`install`).

- 0x0104 parameter answer and 0x0201 position answer: the answer (with its body) of the command
  whose 0x8104/0x8106 or 0x8201 serial they name
  (:meth:`ingest.jt808.downlink.Downlink.answer_serial`).
  A 0x0201 is also a position: published on ``gps/v1/{terminal_id}/position`` like a 0x0200
  (evidence ``raw_frame_hex``, ``extras.jt808_msg_id`` = ``0x0201``), before the answer. A 0x0104
  whose count lies is refused (0x8001 result 2) and its command answered result 2 with the
  reason and the body's hex: nothing is lost, nothing half-read is shown as parameters.
- 0x0004 query server time: answered 0x8004 with the gateway's UTC time (any connection: a
  terminal may set its clock before it authenticates).
- 0x0900 pass-through, 0x0705 CAN data, 0x0108 upgrade result: stored as received in
  ``terminal_uploads`` (:mod:`gps_monitor.db.terminal_uploads`), then answered 0x8001 result 0;
  a database failure answers result 1 so the terminal sends again. A 0x0705 whose count does
  not match its bytes is stored all the same, with the reason, and answered result 2. 0x0108 is
  also logged.

Only a connection authenticated as the frame's terminal is heard (else 0x8001 result 1, as for
0x0200), 0x0004 excepted.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gps_monitor import topics
from ingest.jt808 import driver_uplink, misc, query, upload_store
from ingest.jt808 import messages as m
from ingest.jt808 import params as p
from ingest.jt808.codec import Frame, FrameError
from ingest.jt808.terminal_commands import ENCODERS, SENT_IDS

if TYPE_CHECKING:
    from ingest.jt808.server import Jt808Gateway, Session

log = logging.getLogger(__name__)


def install(gateway: Jt808Gateway) -> None:
    """Register this module's handlers with ``gateway`` and the terminal commands' encoders
    with its downlink (when it has one)."""
    handlers = TerminalMessages(gateway)
    gateway.register(p.MSG_PARAMS_ANSWER, handlers.on_params_answer)
    gateway.register(query.MSG_POSITION_ANSWER, handlers.on_position_answer)
    gateway.register(misc.MSG_QUERY_TIME, handlers.on_query_time)
    gateway.register(misc.MSG_PASS_THROUGH_UP, handlers.on_pass_through)
    gateway.register(misc.MSG_CAN_DATA, handlers.on_can_data)
    gateway.register(misc.MSG_UPGRADE_RESULT, handlers.on_upgrade_result)
    driver_uplink.install(gateway)  # issue 12 item 7: 0x0702, current driver, query_driver
    if gateway.downlink is not None:
        for name, encoder in ENCODERS.items():
            for msg_id in SENT_IDS[name]:
                gateway.downlink.register_command(name, encoder, msg_id)


def position_summary(position: dict[str, Any]) -> dict[str, Any]:
    """The ``cmd_result`` body of a 0x0201: the position's main fields (contract units)."""
    keys = (
        "fix_time", "latitude", "longitude", "speed_kmh", "heading_deg", "altitude_m",
        "fix_valid", "acc_on", "alarm_flags", "status_flags", "mileage_km",
    )  # fmt: skip
    return {k: position.get(k) for k in keys}


class TerminalMessages:
    """The handlers, bound to one gateway (its replies, publisher, downlink and pool)."""

    def __init__(self, gateway: Jt808Gateway) -> None:
        self.gateway = gateway
        self.stored = 0  # rows written to terminal_uploads
        self.store_failures = 0  # database refused or away: the terminal was told to resend

    # ----------------------------------------------------------------------- answers

    async def on_params_answer(self, session: Session, frame: Frame) -> bytes:
        gw = self.gateway
        refused = gw._refuse_unauthenticated(session, frame)
        if refused is not None:
            return refused
        terminal_id = frame.header.terminal_id
        try:
            answer = p.decode_answer(frame.body)
        except FrameError as error:
            gw.stats.frames_bad[error.reason] += 1
            log.info("jt808 %s: 0x0104 refused (%s): %s", session.peer, error, frame.wire.hex())
            if gw.downlink is not None and len(frame.body) >= 2:
                serial = int.from_bytes(frame.body[:2], "big")
                gw.downlink.answer_serial(
                    terminal_id, serial, m.RESULT_MESSAGE_ERROR, str(error),
                    {"raw_hex": frame.body.hex()},
                )  # fmt: skip
            return gw.general_reply(session, frame, m.RESULT_MESSAGE_ERROR)
        if gw.downlink is not None:
            gw.downlink.answer_serial(
                terminal_id, answer.answer_serial, m.RESULT_OK, "", p.answer_body(answer)
            )
        return gw.general_reply(session, frame, m.RESULT_OK)

    async def on_position_answer(self, session: Session, frame: Frame) -> bytes:
        gw = self.gateway
        refused = gw._refuse_unauthenticated(session, frame)
        if refused is not None:
            return refused
        answer = query.decode_position_answer(frame.body)
        evidence = {**m.location_evidence(frame), "jt808_msg_id": "0x0201"}
        position = m.to_contract(
            answer.report, utc_offset_min=session.utc_offset_min, evidence=evidence
        )
        terminal_id = frame.header.terminal_id
        topic = topics.position_topic(terminal_id, gw.prefix)
        payload = json.dumps(position, separators=(",", ":"), ensure_ascii=False).encode()
        reply = await gw._publish_then_reply(session, frame, [(topic, payload, 1)])
        if gw.downlink is not None:
            gw.downlink.answer_serial(
                terminal_id, answer.answer_serial, m.RESULT_OK, "", position_summary(position)
            )
        return reply

    # --------------------------------------------------------------------- time query

    async def on_query_time(self, session: Session, frame: Frame) -> bytes:
        body = misc.encode_time_answer(datetime.now(UTC))
        return self.gateway.reply(session, frame, misc.MSG_TIME_ANSWER, body)

    # ----------------------------------------------------------- stored as received

    async def on_pass_through(self, session: Session, frame: Frame) -> bytes:
        data = misc.decode_pass_through(frame.body)
        decoded = {"pass_type": data.pass_type, "content_bytes": len(data.content)}
        return await self._store(session, frame, "pass_through", decoded, m.RESULT_OK)

    async def on_can_data(self, session: Session, frame: Frame) -> bytes:
        decoded: dict[str, Any]
        result = m.RESULT_OK
        try:
            can = misc.decode_can_data(frame.body)
            decoded = {
                "first_received_bcd": can.first_received_bcd,
                "first_received": can.first_received,
                "item_count": len(can.items),
                "items": [i.as_json() for i in can.items],
            }
        except FrameError as error:
            decoded, result = {"problem": str(error)}, m.RESULT_MESSAGE_ERROR
        return await self._store(session, frame, "can_data", decoded, result)

    async def on_upgrade_result(self, session: Session, frame: Frame) -> bytes:
        decoded = misc.decode_upgrade_result(frame.body)
        log.info(
            "jt808 terminal %s: upgrade of %s: %s",
            frame.header.terminal_id, decoded["upgrade_type"], decoded["result"],
        )  # fmt: skip
        return await self._store(session, frame, "upgrade_result", decoded, m.RESULT_OK)

    async def _store(
        self, session: Session, frame: Frame, kind: str, decoded: dict[str, Any], result: int
    ) -> bytes:
        gw = self.gateway
        refused = gw._refuse_unauthenticated(session, frame)
        if refused is not None:
            return refused
        if not await upload_store.keep_upload(gw, session, frame, kind, decoded):
            self.store_failures += 1
            return gw.general_reply(session, frame, m.RESULT_FAILURE)
        self.stored += 1
        return gw.general_reply(session, frame, result)
