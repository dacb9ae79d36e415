"""What a notification says: an ``alarms/v1`` message plus the vehicle's plate and company,
rendered as a title, Markdown (robots), plain text (飞书 text, SMS, e-mail) and JSON (webhook).

Times are shown in local time (``notify.timezone``, Asia/Shanghai), to the second.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from gps_monitor.alarm_levels import ALARM_TYPES
from gps_monitor.errors import PayloadError
from notify.levels import LEVEL_NAMES

EVENTS = ("opened", "closed")
EVENT_NAMES = {"opened": "报警开始", "closed": "报警结束"}


@dataclass(frozen=True, slots=True)
class VehicleInfo:
    """What a message needs to know of a vehicle."""

    plate_number: str
    vehicle_class: str
    company_name: str


@dataclass(frozen=True, slots=True)
class Notification:
    """One alarm event to push (``event`` opened or closed), with the raw message kept for the
    webhook body and the delivery log."""

    alarm_id: int | None
    dedup_key: str
    event: str
    alarm_type: str
    level: int
    company_id: int
    vehicle_id: int
    terminal_id: str
    started_at: datetime
    ended_at: datetime | None
    late: bool
    plate_number: str
    company_name: str
    details: dict[str, Any] = field(default_factory=dict)
    message: dict[str, Any] = field(default_factory=dict)

    # --- rendering -------------------------------------------------------------------------

    @property
    def type_name(self) -> str:
        return ALARM_TYPES.get(self.alarm_type, self.alarm_type)

    @property
    def level_name(self) -> str:
        return LEVEL_NAMES.get(self.level, str(self.level))

    def title(self) -> str:
        """``【紧急】超速 渝A12345 报警开始``."""
        return (
            f"【{self.level_name}】{self.type_name} {self.plate_number} {EVENT_NAMES[self.event]}"
        )

    def facts(self, zone: ZoneInfo) -> list[tuple[str, str]]:
        """(label, value) lines shared by every rendering."""
        lines = [
            ("车辆", self.plate_number),
            ("企业", self.company_name),
            ("报警", f"{self.type_name}（{self.level_name}）"),
            ("开始", _local(self.started_at, zone)),
        ]
        if self.ended_at is not None:
            lines.append(("结束", _local(self.ended_at, zone)))
        figure = key_figure(self.alarm_type, self.details)
        if figure:
            lines.append(("情况", figure))
        lat, lon = self.details.get("latitude"), self.details.get("longitude")
        if isinstance(lat, int | float) and isinstance(lon, int | float):
            lines.append(("位置", f"{lat:.6f}, {lon:.6f}"))
        return lines

    def markdown(self, zone: ZoneInfo) -> str:
        """Markdown for the 企业微信 and 钉钉 robots (headings, bold, plain lines only: the
        subset both render)."""
        body = "\n".join(f"> **{k}**：{v}" for k, v in self.facts(zone))
        return f"### {self.title()}\n{body}"

    def text(self, zone: ZoneInfo) -> str:
        """Plain text (飞书 text message, e-mail body)."""
        return self.title() + "\n" + "\n".join(f"{k}：{v}" for k, v in self.facts(zone))

    def short_text(self, zone: ZoneInfo) -> str:
        """One line for SMS."""
        return self.title() + "，" + "，".join(f"{k}{v}" for k, v in self.facts(zone)[2:])

    def to_json(self, zone: ZoneInfo) -> dict[str, Any]:
        """The generic webhook body (README, Notifications)."""
        return {
            "event": f"alarm.{self.event}",
            "level": self.level,
            "level_name": self.level_name,
            "title": self.title(),
            "text": self.text(zone),
            "plate_number": self.plate_number,
            "company_name": self.company_name,
            "alarm": self.message,
        }


def _local(value: datetime, zone: ZoneInfo) -> str:
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def _hours(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "?"
    minutes = round(seconds / 60)
    return f"{minutes // 60}小时{minutes % 60:02d}分"


def key_figure(alarm_type: str, details: Mapping[str, Any]) -> str:
    """The one figure that says how bad it is (speed and limit, driving time, distance off
    route), or '' when the type has none."""
    if alarm_type in ("overspeed", "night_ban") and "max_speed_kmh" in details:
        limit = details.get("limit_kmh")
        text = f"最高 {details['max_speed_kmh']:.1f} km/h"
        return text + (f"，限速 {limit:.0f} km/h" if isinstance(limit, int | float) else "")
    if alarm_type in ("fatigue_driving", "fatigue_warning") and "continuous_driving_s" in details:
        return (
            f"连续驾驶 {_hours(details['continuous_driving_s'])}"
            f"（限 {_hours(details.get('limit_s'))}）"
        )
    if alarm_type == "daily_driving_limit" and "driving_s" in details:
        return f"当日驾驶 {_hours(details['driving_s'])}（限 {_hours(details.get('limit_s'))}）"
    if alarm_type == "route_deviation" and "max_offset_m" in details:
        return f"偏离路线最远 {details['max_offset_m']:.0f} m"
    if isinstance(details.get("name"), str) and alarm_type == "device_alarm":
        return f"终端报警 {details['name']}"
    return ""


def parse_alarm_message(payload: bytes | bytearray | str) -> dict[str, Any]:
    """An ``alarms/v1`` payload (:meth:`gps_monitor.models.Alarm.to_dict`) as a dict, checked for
    the fields a notification needs.

    Raises:
        PayloadError: not JSON, not an object, or a field missing or of the wrong type.
    """
    import json

    try:
        data = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PayloadError("malformed_json", f"expected a JSON object ({error})") from None
    if not isinstance(data, dict):
        raise PayloadError("wrong_type", f"expected a JSON object, got {type(data).__name__}")
    for name, kind in (
        ("alarm_type", str),
        ("dedup_key", str),
        ("vehicle_id", int),
        ("company_id", int),
        ("started_at", str),
    ):
        if not isinstance(data.get(name), kind) or isinstance(data.get(name), bool):
            raise PayloadError(
                "wrong_type" if name in data else "missing_field",
                f"{name}: expected {kind.__name__}, got {data.get(name)!r}",
            )
    for name in ("started_at", "ended_at"):
        if data.get(name) is not None:
            try:
                when = datetime.fromisoformat(data[name])
            except (TypeError, ValueError):
                raise PayloadError(
                    "wrong_type", f"{name}: expected an ISO 8601 time, got {data[name]!r}"
                ) from None
            if when.tzinfo is None:
                raise PayloadError("wrong_type", f"{name}: expected a zone, got {data[name]!r}")
    if not isinstance(data.get("details", {}), dict):
        raise PayloadError("wrong_type", f"details: expected an object, got {data['details']!r}")
    return data


def notification(data: Mapping[str, Any], vehicle: VehicleInfo | None, level: int) -> Notification:
    """A :class:`Notification` of a checked message (:func:`parse_alarm_message`); an unknown
    vehicle is named by its terminal id."""
    ended = data.get("ended_at")
    alarm_id = data.get("id")
    return Notification(
        alarm_id=alarm_id if isinstance(alarm_id, int) else None,
        dedup_key=data["dedup_key"],
        event=str(data.get("event", "opened")),
        alarm_type=data["alarm_type"],
        level=level,
        company_id=data["company_id"],
        vehicle_id=data["vehicle_id"],
        terminal_id=str(data.get("terminal_id", "")),
        started_at=datetime.fromisoformat(data["started_at"]),
        ended_at=datetime.fromisoformat(ended) if ended else None,
        late=bool(data.get("late", False)),
        plate_number=vehicle.plate_number if vehicle else f"终端{data.get('terminal_id', '?')}",
        company_name=vehicle.company_name if vehicle else f"企业{data['company_id']}",
        details=dict(data.get("details") or {}),
        message=dict(data),
    )
