"""Terminal messages kept as received (table ``terminal_uploads``,
:mod:`gps_monitor.db.terminal_uploads`): the one place the gateway's handlers write them
(0x0900, 0x0705, 0x0108 in :mod:`ingest.jt808.uplink`; 0x0702 in
:mod:`ingest.jt808.driver_uplink`)."""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING, Any

import asyncpg

from gps_monitor.db import terminal_uploads
from ingest.jt808.codec import Frame

if TYPE_CHECKING:
    from ingest.jt808.server import Jt808Gateway, Session

log = logging.getLogger(__name__)


async def keep_upload(
    gateway: Jt808Gateway, session: Session, frame: Frame, kind: str, decoded: dict[str, Any]
) -> bool:
    """Store a message as received in ``terminal_uploads`` (body, SHA-256 of the wire frame,
    what was read); False, logged, when the database refused or is away (the caller answers
    result 1 so the terminal sends again)."""
    try:
        await terminal_uploads.insert(
            gateway.authenticator.pool,
            terminal_id=frame.header.terminal_id,
            vehicle_id=session.vehicle_id,
            msg_id=frame.header.msg_id,
            kind=kind,
            body=frame.body,
            frame_sha256=hashlib.sha256(frame.wire).hexdigest(),
            decoded=decoded,
        )
    except (OSError, asyncpg.PostgresError) as error:
        log.warning("jt808 %s: 0x%04x not stored (%s); terminal told to resend",
                    session.peer, frame.header.msg_id, error)  # fmt: skip
        return False
    return True
