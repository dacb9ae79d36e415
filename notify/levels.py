"""The level of an alarm message (1 紧急, 2 严重, 3 一般, 4 提示).

The rules engine decides the level when an alarm opens (:func:`gps_monitor.alarm_levels.level_for`)
and puts it on the ``alarms/v1`` message as ``level``; that is the level notify uses. A message
without a valid one (published by an older rules worker) is levelled here by the same policy and
settings (``alarms.levels``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gps_monitor.alarm_levels import LEVELS, level_for
from gps_monitor.config import AlarmsSettings

LEVEL_NAMES: dict[int, str] = LEVELS


def level_of(
    message: Mapping[str, Any], vehicle_class: str | None, settings: AlarmsSettings
) -> int:
    """The message's own ``level`` when it is 1..4, else the policy's level for its type."""
    level = message.get("level")
    if isinstance(level, int) and not isinstance(level, bool) and level in LEVEL_NAMES:
        return level
    details = message.get("details")
    return level_for(
        str(message.get("alarm_type")),
        vehicle_class,
        settings,
        details if isinstance(details, Mapping) else None,
    )
