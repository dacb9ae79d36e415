"""Active safety (主动安全, T/JSATL 12-2017 "苏标", issue 12 item 8): what the ADAS, DSM, tyre and
blind-spot items of a location report mean, and the alarm number the platform gives an alarm.

The terminal reports each alarm as a 0x0200 additional item (0x64 ADAS, 0x65 DSM, 0x66 tyre
pressure, 0x67 blind spot) with the terminal's alarm id, a flag (0 instant event, 1 start, 2 end),
an alarm type, for ADAS/DSM a level (1 一级, 2 二级: 二级 is the graver, it asks for the
platform's intervention), the speed, position and time, and the *alarm identification* (terminal
id 7 bytes, BCD time 6, sequence u8, attachment count u8, reserved u8). The platform names each
alarm with a 32-character *alarm number* (报警编号) and sends it in 0x9208 with the attachment
server's address; the terminal uploads the alarm's photos and videos there, naming the number.

Two values, so that nobody outside can open the attachment server for a real alarm:

- the *alarm key* (:func:`alarm_key`) is derived from the terminal and the alarm identification,
  so a report resent by the terminal gets the same key and the rules engine (``details.alarm_key``)
  and the gateway agree on it without talking to each other. It is public (anyone knowing the
  phone number, alarm time and sequence can compute it): it only *links* files to the alarm.
- the *alarm number* (:func:`new_alarm_number`) is 128 random bits the gateway issues, stores in
  ``jsatl_alarm_numbers`` (with the key, the terminal and an expiry) before it sends 0x9208; the
  attachment server accepts a 0x1210 only for a stored, unexpired number issued to the terminal
  that names it, so an upload survives a gateway restart and a computed number opens nothing.

Our alarm type is ``active_safety`` with ``details["name"]`` such as ``adas_forward_collision``;
its level: ``alarms.levels`` ``active_safety.<name>`` if configured, else 二级 -> 2 (严重) and
一级 / no level -> 3 (一般) (:func:`default_level`).
"""

from __future__ import annotations

import hashlib
import secrets

ITEM_ADAS, ITEM_DSM, ITEM_TYRE, ITEM_BSD = 0x64, 0x65, 0x66, 0x67
ITEM_SOURCES: dict[int, str] = {
    ITEM_ADAS: "adas",
    ITEM_DSM: "dsm",
    ITEM_TYRE: "tyre",
    ITEM_BSD: "bsd",
}

#: T/JSATL 12-2017 table 4-15 (ADAS alarm/event type) -> our name and the Chinese name
ADAS_TYPES: dict[int, tuple[str, str]] = {
    0x01: ("forward_collision", "前向碰撞报警"),
    0x02: ("lane_departure", "车道偏离报警"),
    0x03: ("headway", "车距过近报警"),
    0x04: ("pedestrian_collision", "行人碰撞报警"),
    0x05: ("frequent_lane_change", "频繁变道报警"),
    0x06: ("road_sign_overspeed", "道路标识超限报警"),
    0x07: ("obstacle", "障碍物报警"),
    0x10: ("road_sign_recognition", "道路标志识别事件"),
    0x11: ("active_capture", "主动抓拍事件"),
}
#: table 4-17 (DSM alarm/event type)
DSM_TYPES: dict[int, tuple[str, str]] = {
    0x01: ("fatigue", "疲劳驾驶报警"),
    0x02: ("phone_call", "接打电话报警"),
    0x03: ("smoking", "抽烟报警"),
    0x04: ("distraction", "分神驾驶报警"),
    0x05: ("driver_abnormal", "驾驶员异常报警"),
    0x10: ("auto_capture", "自动抓拍事件"),
    0x11: ("driver_change", "驾驶员变更事件"),
}
#: table 4-20 (tyre alarm type, a bit field)
TYRE_BITS: dict[int, tuple[str, str]] = {
    0: ("pressure", "胎压报警"),
    1: ("pressure_high", "胎压过高报警"),
    2: ("pressure_low", "胎压过低报警"),
    3: ("temperature_high", "胎温过高报警"),
    4: ("sensor_abnormal", "传感器异常报警"),
    5: ("pressure_imbalance", "胎压不平衡报警"),
    6: ("slow_leak", "慢漏气报警"),
    7: ("battery_low", "电池电量低报警"),
}
#: table 4-22 (blind spot alarm type)
BSD_TYPES: dict[int, tuple[str, str]] = {
    0x01: ("rear_approach", "后方接近报警"),
    0x02: ("left_rear_approach", "左侧后方接近报警"),
    0x03: ("right_rear_approach", "右侧后方接近报警"),
}
FLAG_EVENT, FLAG_START, FLAG_END = 0, 1, 2
LEVEL_1, LEVEL_2 = 1, 2  # 一级, 二级


def type_name(source: str, alarm_type: int) -> tuple[str, str]:
    """(our name, Chinese name) of an alarm type of ``source`` (adas, dsm, tyre, bsd); an
    unknown code keeps its number: ``adas_type_0x0e``."""
    table = {"adas": ADAS_TYPES, "dsm": DSM_TYPES, "bsd": BSD_TYPES}.get(source, {})
    if source == "tyre":
        names = [TYRE_BITS[b] for b in sorted(TYRE_BITS) if alarm_type >> b & 1]
        if names:
            return f"tyre_{names[0][0]}", "、".join(n[1] for n in names)
    elif alarm_type in table:
        name, chinese = table[alarm_type]
        return f"{source}_{name}", chinese
    return f"{source}_type_0x{alarm_type:02x}", f"{source.upper()} 报警 0x{alarm_type:02x}"


def alarm_key(terminal_id: str, identification: bytes) -> str:
    """The public alarm key of one alarm (links its files to it; module docstring): the first
    128 bits of the SHA-256 of our terminal id and the 16-byte alarm identification, as 32
    uppercase hex characters. Not a secret: never accepted as an alarm number."""
    digest = hashlib.sha256(terminal_id.encode() + b"|" + identification).hexdigest()
    return digest[:32].upper()


def new_alarm_number() -> str:
    """A fresh alarm number for 0x9208: 128 random bits (:mod:`secrets`) as 32 uppercase hex
    characters (ASCII, the 32 bytes 0x9208 and 0x1210 carry)."""
    return secrets.token_hex(16).upper()


def default_level(jsatl_level: int | None) -> int:
    """Our level (1 紧急 .. 4 提示) of a JSATL level: 二级 -> 2 严重, 一级 or none -> 3 一般."""
    return 2 if jsatl_level == LEVEL_2 else 3
