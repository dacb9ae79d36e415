"""自动拍照 (automatic photo, issue 12 item 6): when a live alarm of level
``media.auto_photo_max_level`` or more urgent (1 紧急, 2 严重) opens, a ``take_photo`` command
goes to its terminal, so the photo is there when a person opens the alarm.

It runs in the command dispatcher (:mod:`ingest.commands`), the one consumer of ``alarms/v1``
that produces commands, in the same transaction as the batch of alarm messages it came with:
once per alarm (a redelivered alarm message adds nothing) and at most once per vehicle per
``media.auto_photo_min_interval_s`` (a vehicle raising alarm after alarm is photographed once in
that time; the photos that come are linked to the alarm that asked). Off with level 0.
"""

from __future__ import annotations

import json
import logging

import asyncpg

from gps_monitor.config import Settings
from gps_monitor.db import commands as commands_db
from gps_monitor.media import TakePhotoBody, build_take_photo

log = logging.getLogger(__name__)


def wanted(settings: Settings) -> bool:
    """Whether the dispatcher must read alarms for 自动拍照."""
    return settings.media.auto_photo_max_level > 0


async def auto_photo(conn: asyncpg.Connection, settings: Settings, payload: bytes) -> str | None:
    """Queue a photo for the alarm in ``payload`` (an ``alarms/v1`` message) when it qualifies;
    returns the terminal to wake once committed, or None (nothing queued)."""
    media = settings.media
    if media.auto_photo_max_level <= 0:
        return None
    try:
        alarm = json.loads(payload)
        if alarm.get("event") != "opened" or alarm.get("late"):
            return None
        level = int(alarm["level"])
        alarm_id, terminal_id = int(alarm["id"]), str(alarm["terminal_id"])
    except (ValueError, KeyError, TypeError) as error:
        log.info("alarm message not usable for an automatic photo: %r", error)
        return None
    if level > media.auto_photo_max_level or not terminal_id:
        return None
    command = build_take_photo(
        terminal_id, TakePhotoBody(channel=media.auto_photo_channel),
        expiry_s=settings.commands.expiry_s,
    )  # fmt: skip
    row = await commands_db.create_automatic(
        conn, command, alarm_id, media.auto_photo_min_interval_s
    )
    if row is None:
        return None
    log.info("automatic photo %s for alarm %d (level %d)", command.command_id, alarm_id, level)
    return terminal_id
