"""Alarm levels (issue 9): how urgent an alarm is, decided once, when it opens.

Levels: 1 紧急 (critical), 2 严重 (major), 3 一般 (minor), 4 提示 (info). DOMAIN.md (The
monitoring centre's duty): SOS, a hazardous-goods vehicle in a forbidden area and hazmat offline
displacement are the most urgent; offline the least.

The policy is one pure function, :func:`level_for`. It looks a level up by *key*, most specific
first, in the settings' overrides (``alarms.levels``) and then in :data:`DEFAULT_LEVELS`:

1. ``"{type}@{vehicle_class}"``, e.g. ``forbidden_area_entry@hazmat``;
2. ``"{type}"``;
3. for ``device_alarm`` (JT/T 808 alarm flag bits, ``details["name"]`` such as ``sos``) the bit's
   own key first: ``device_alarm.sos@hazmat``, ``device_alarm.sos``, then 1-2; likewise
   ``active_safety.<name>`` (e.g. ``active_safety.dsm_fatigue``), then for a T/JSATL 二级 alarm
   ``active_safety.level2`` (2), then ``active_safety`` (3);
4. ``alarms.default_level`` (3) for a type nobody configured.

The rules engine stores the result on the alarm row (``alarms.level``, migration 0052), so a
later change of settings never relevels alarms already raised; the ``alarms/v1`` message and the
websocket carry it as ``level``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gps_monitor.config import AlarmsSettings

CRITICAL, MAJOR, MINOR, INFO = 1, 2, 3, 4
LEVELS: dict[int, str] = {CRITICAL: "紧急", MAJOR: "严重", MINOR: "一般", INFO: "提示"}
LEVEL_NAMES_EN: dict[int, str] = {
    CRITICAL: "critical",
    MAJOR: "major",
    MINOR: "minor",
    INFO: "info",
}

#: Every alarm type the rules engine raises (gps_monitor.models.Alarm), with its Chinese name as the
#: evidence report, the worklist and the push channels print it.
ALARM_TYPES: dict[str, str] = {
    "overspeed": "超速",
    "fatigue_driving": "疲劳驾驶",
    "fatigue_warning": "疲劳驾驶预警",
    "daily_driving_limit": "当日累计驾驶超时",
    "night_ban": "凌晨2-5时违规运行",
    "route_deviation": "偏离路线",
    "forbidden_area_entry": "驶入禁入区域",
    "keep_in_area_exit": "驶出限定区域",
    "geofence_enter": "进入围栏",
    "geofence_exit": "离开围栏",
    "offline": "离线",
    "offline_displacement": "离线位移",
    "device_alarm": "终端报警",
    # raised by the superior platform over JT/T 809 (jt809/downward.py), not by our rules
    "superior_warning": "上级平台报警预警",  # 0x9402
    "superior_alarm": "上级平台实时交换报警",  # 0x9403
    # T/JSATL 12-2017 ADAS / DSM / tyre / blind spot (rules/active_safety.py)
    "active_safety": "主动安全报警",
}
VEHICLE_CLASSES: tuple[str, ...] = ("coach", "tour_bus", "hazmat", "heavy_truck", "freight")

#: The shipped policy (README, Alarm levels). ``offline`` is 4 (提示): it is the commonest alarm
#: (a terminal powered off with the engine), not a violation by itself (not in the 处理率
#: violation types), and DOMAIN.md ranks it least urgent; the case that matters for dangerous
#: goods is raised separately as ``offline_displacement`` (1), and a hazmat terminal going silent
#: is raised one step (3).
DEFAULT_LEVELS: dict[str, int] = {
    "device_alarm.sos": CRITICAL,
    "forbidden_area_entry@hazmat": CRITICAL,
    "offline_displacement": CRITICAL,
    "overspeed": MAJOR,
    "fatigue_driving": MAJOR,
    "daily_driving_limit": MAJOR,
    "night_ban": MAJOR,
    "route_deviation": MAJOR,
    "forbidden_area_entry": MAJOR,
    "keep_in_area_exit": MAJOR,
    "fatigue_warning": MINOR,
    "geofence_enter": MINOR,
    "geofence_exit": MINOR,
    "device_alarm": MINOR,
    "offline@hazmat": MINOR,
    "offline": INFO,
    # T/JSATL 12-2017: 二级 asks for the platform's intervention, 一级 is a warning
    "active_safety.level2": MAJOR,
    "active_safety": MINOR,
}
#: alarm types whose ``details["name"]`` picks a more specific key ``type.name``
NAMED_TYPES: tuple[str, ...] = ("device_alarm", "active_safety")

_KEY = re.compile(r"^(?P<type>[a-z_]+(?:\.[a-z0-9_]+)?)(?:@(?P<cls>[a-z_]+))?$")


def check_level_key(key: str) -> str:
    """Validate one override key (``type``, ``type@class``, ``device_alarm.<bit name>[@class]``).

    Raises:
        ValueError: unknown alarm type or vehicle class, or not of that shape; the message says
            what was expected and what came.
    """
    match = _KEY.match(key)
    if match is None:
        raise ValueError(f"expected an alarm level key 'type' or 'type@vehicle_class', got {key!r}")
    alarm_type, cls = match["type"], match["cls"]
    base = alarm_type.split(".", 1)[0]
    if base not in ALARM_TYPES or ("." in alarm_type and base not in NAMED_TYPES):
        raise ValueError(
            f"expected an alarm type among {', '.join(ALARM_TYPES)} "
            f"(or device_alarm.<bit name>, active_safety.<name>), got {alarm_type!r} in {key!r}"
        )
    if cls is not None and cls not in VEHICLE_CLASSES:
        raise ValueError(
            f"expected a vehicle class among {', '.join(VEHICLE_CLASSES)}, got {cls!r} in {key!r}"
        )
    return key


def check_level(value: int) -> int:
    """Raises ValueError unless ``value`` is a level 1..4."""
    if isinstance(value, bool) or value not in LEVELS:
        raise ValueError(f"expected a level 1 (紧急) .. 4 (提示), got {value!r}")
    return value


def _keys(alarm_type: str, vehicle_class: str | None, details: Mapping[str, Any] | None):
    types = [alarm_type]
    if alarm_type in NAMED_TYPES and details and isinstance(details.get("name"), str):
        types.insert(0, f"{alarm_type}.{details['name']}")
    if alarm_type == "active_safety" and details and details.get("jsatl_level") == 2:
        types.insert(-1, "active_safety.level2")
    for name in types:
        if vehicle_class:
            yield f"{name}@{vehicle_class}"
        yield name


def level_for(
    alarm_type: str,
    vehicle_class: str | None,
    settings: AlarmsSettings,
    details: Mapping[str, Any] | None = None,
) -> int:
    """The level (1 紧急 .. 4 提示) of an alarm of ``alarm_type`` on a vehicle of
    ``vehicle_class`` (None when unknown), under the ``alarms`` settings.

    ``details``: the alarm's details; for ``device_alarm`` its ``name`` (the JT/T 808 bit name,
    e.g. ``sos``) picks the bit's own level. Pure: no I/O, never raises for an unknown type or
    class (they fall through to ``settings.default_level``).
    """
    overrides = settings.levels
    for key in _keys(alarm_type, vehicle_class, details):
        if key in overrides:
            return overrides[key]
        if key in DEFAULT_LEVELS:
            return DEFAULT_LEVELS[key]
    return settings.default_level
