"""Domain value objects: small, frozen, validated at construction.

Units are in field names; datetimes are timezone-aware UTC. Converting from wire units
(1/10 km/h, degrees x 1e6, GMT+8 BCD) happens once, at the edge that decodes them.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from gps_monitor.errors import PayloadError


class VehicleClass(enum.StrEnum):
    """Vehicle classes that decide default limits (DOMAIN.md, Vehicles)."""

    COACH = "coach"  # 客运班车, scheduled long-distance coach
    TOUR_BUS = "tour_bus"  # 旅游包车
    HAZMAT = "hazmat"  # 危险货物运输车
    HEAVY_TRUCK = "heavy_truck"  # 重型载货汽车 / 半挂牵引车
    FREIGHT = "freight"  # ordinary freight


class PlateColor(enum.IntEnum):
    """JT/T 808 plate colour codes."""

    BLUE = 1
    YELLOW = 2
    BLACK = 3
    WHITE = 4
    YELLOW_GREEN = 5  # 黄绿色 (new-energy heavy vehicles); JT/T 808-2019 uses 5 for it in practice
    OTHER = 9


class Quality(enum.StrEnum):
    """Position quality verdict (DOMAIN.md, Position quality). Duplicates are not stored."""

    OK = "ok"
    INVALID = "invalid"
    DRIFT = "drift"


# JT/T 808 status bits
STATUS_ACC_ON = 1 << 0
STATUS_POSITIONED = 1 << 1
STATUS_SOUTH = 1 << 2
STATUS_WEST = 1 << 3


def _json_dict(obj: Any) -> dict[str, Any]:
    """Slots dataclass -> dict with ISO 8601 datetimes and enum values."""
    out: dict[str, Any] = {}
    for name in obj.__slots__:
        value = getattr(obj, name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, enum.Enum):
            value = value.value
        out[name] = value
    return out


# Supported fix times, [min, max): what a JT/T 808 BCD date (YY) can say, and safely inside what
# Python, asyncpg and PostgreSQL can convert and round-trip (year 1 is asyncpg's -infinity).
FIX_TIME_MIN = datetime(2000, 1, 1, tzinfo=UTC)
FIX_TIME_MAX = datetime(2100, 1, 1, tzinfo=UTC)


def _require_utc(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise PayloadError("wrong_type", f"{name}: expected a timezone-aware datetime, got naive")


def fix_time_range_error(value: datetime) -> str | None:
    """Why an aware ``value`` is outside the supported fix times, or None when it is inside."""
    if FIX_TIME_MIN <= value < FIX_TIME_MAX:
        return None
    return (
        f"fix_time: expected {FIX_TIME_MIN.date()} .. {FIX_TIME_MAX.date()} (UTC), "
        f"got {value.isoformat()}"
    )


@dataclass(frozen=True, slots=True)
class Position:
    """One fix of one terminal.

    Attributes:
        terminal_id: terminal phone number (终端手机号) or gateway id; the topic's id.
        fix_time: GPS fix time, timezone-aware (normalised to UTC).
        latitude, longitude: WGS-84 / CGCS2000 degrees.
        speed_kmh: reported speed, km/h (>= 0).
        heading_deg: 0-359.x, clockwise from north; None when unknown.
        altitude_m, satellites, mileage_km: optional terminal readings.
        fix_valid: JT/T 808 status bit 1 (positioned).
        acc_on: ignition (status bit 0); None when the source has no such signal.
        alarm_flags, status_flags: JT/T 808 32-bit fields as sent.
        extras: other additional items, JSON-serialisable.
        vehicle_id, company_id: filled by ingest once the terminal is resolved.
        quality, quality_reason: verdict of :mod:`gps_monitor.quality`.
        late: older than the vehicle's newest fix when it arrived (blind-area upload).
        reupload: the sender marked it as a blind-area re-upload (补报).
        received_at: arrival time at the platform (UTC).

    Raises:
        PayloadError: a value is out of its physical range, a datetime is naive, or the fix
            time is outside [``FIX_TIME_MIN``, ``FIX_TIME_MAX``) (``out_of_range``). Coordinates
            out of range are *not* an error here: they are a quality verdict (stored, flagged).
    """

    terminal_id: str
    fix_time: datetime
    latitude: float
    longitude: float
    speed_kmh: float
    heading_deg: float | None = None
    altitude_m: float | None = None
    satellites: int | None = None
    fix_valid: bool = True
    acc_on: bool | None = None
    alarm_flags: int = 0
    status_flags: int = 0
    mileage_km: float | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    vehicle_id: int | None = None
    company_id: int | None = None
    quality: Quality = Quality.OK
    quality_reason: str | None = None
    late: bool = False
    reupload: bool = False
    received_at: datetime | None = None

    def __post_init__(self) -> None:
        # tzinfo UTC (what every decoder produces) needs neither the aware check nor converting
        if self.fix_time.tzinfo is not UTC:
            _require_utc("fix_time", self.fix_time)
        if not FIX_TIME_MIN <= self.fix_time < FIX_TIME_MAX:
            raise PayloadError("out_of_range", fix_time_range_error(self.fix_time) or "")
        if self.fix_time.tzinfo is not UTC and self.fix_time.utcoffset() != UTC.utcoffset(None):
            object.__setattr__(self, "fix_time", self.fix_time.astimezone(UTC))
        if self.received_at is not None and self.received_at.tzinfo is not UTC:
            _require_utc("received_at", self.received_at)
        if not self.terminal_id:
            raise PayloadError("missing_field", "terminal_id: expected a non-empty string")
        if self.speed_kmh < 0:
            raise PayloadError("out_of_range", f"speed_kmh: expected >= 0, got {self.speed_kmh}")
        if not (0 <= self.alarm_flags < 2**32 and 0 <= self.status_flags < 2**32):
            raise PayloadError(
                "out_of_range",
                f"alarm_flags/status_flags: expected 32-bit unsigned, got "
                f"{self.alarm_flags}/{self.status_flags}",
            )

    def with_verdict(self, quality: Quality, reason: str | None = None) -> Position:
        """A copy with another quality verdict (this position when it has that one)."""
        return self.evolve(quality=quality, quality_reason=reason)

    def evolve(self, **changes: Any) -> Position:
        """A copy with some fields changed, validated again when a field that
        ``__post_init__`` checks changes. Changing only other fields (vehicle, verdict, flags:
        what ingest's quality judgement sets on every position) copies without a check, and
        returns this very position when every value given is the one it holds already.

        Raises:
            PayloadError: as the constructor, for a changed checked field.
            TypeError: a name that is not a field.
        """
        if not changes.keys() <= _UNCHECKED_FIELDS:
            return replace(self, **changes)
        if all(getattr(self, name) is value for name, value in changes.items()):
            return self
        copy = _new_object(Position)
        for name in _POSITION_FIELDS:
            _set_field(copy, name, changes[name] if name in changes else getattr(self, name))
        return copy

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: every field, datetimes as ISO 8601 UTC, enums as their value.

        The shape of each element of the internal ``positions/v2/{partition}`` topic (ingest
        writes it with orjson straight from the dataclass, :mod:`gps_monitor.accepted`, which
        falls back to this).
        """
        return _json_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Position:
        """Inverse of :meth:`to_dict`.

        Raises:
            PayloadError: a field is missing or of the wrong type.
        """
        try:
            if type(data) is dict and data.keys() == _POSITION_FIELD_SET:
                # every field, as to_dict and the accepted topic write them: set them as evolve
                # does and run the same checks, without the frozen __init__'s keyword call and
                # its setattr per field (11.6 -> 3.6 us a position; rules parses every position)
                position = _new_object(cls)
                for name in _POSITION_FIELDS:
                    _set_field(position, name, data[name])
                _set_field(position, "fix_time", _from_iso(data["fix_time"]))
                if (received_at := data["received_at"]) is not None:
                    _set_field(position, "received_at", _from_iso(received_at))
                _set_field(position, "quality", _quality(data["quality"]))
                position.__post_init__()
                return position
            values = dict(data)
            if (fix_time := values.get("fix_time")) is not None:
                values["fix_time"] = _from_iso(fix_time)
            if (received_at := values.get("received_at")) is not None:
                values["received_at"] = _from_iso(received_at)
            values["quality"] = _quality(values.get("quality", "ok"))
            return cls(**values)
        except (TypeError, ValueError, KeyError) as error:
            raise PayloadError("wrong_type", f"position dict: {error}") from error


_POSITION_FIELDS = tuple(f.name for f in fields(Position))
_POSITION_FIELD_SET = frozenset(_POSITION_FIELDS)
_QUALITY_OF: dict[Any, Quality] = {q.value: q for q in Quality}


def _quality(value: Any) -> Quality:
    """A verdict as written (its value, the usual case, looked up) or a Quality.

    Raises:
        ValueError: not a verdict."""
    if type(value) is str and value in _QUALITY_OF:
        return _QUALITY_OF[value]
    return Quality(value)


_from_iso = datetime.fromisoformat
# fields Position.__post_init__ does not look at: changing them cannot make a valid position invalid
_UNCHECKED_FIELDS = frozenset(_POSITION_FIELDS) - {
    "terminal_id", "fix_time", "received_at", "speed_kmh", "alarm_flags", "status_flags",
}  # fmt: skip
_new_object = object.__new__
_set_field = object.__setattr__


@dataclass(frozen=True, slots=True)
class Company:
    """A transport company (运输企业)."""

    id: int
    name: str


@dataclass(frozen=True, slots=True)
class Vehicle:
    """A monitored vehicle: plate number + plate colour, one company, one terminal."""

    id: int
    company_id: int
    plate_number: str
    plate_color: PlateColor
    vehicle_class: VehicleClass
    terminal_id: str
    speed_limit_kmh: float | None = None
    utc_offset_min: int = 480


class AlarmStatus(enum.StrEnum):
    """Handling status of an alarm (operators acknowledge and handle; closed = done)."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    HANDLED = "handled"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Alarm:
    """One alarm episode raised by a rule (table ``alarms``; MQTT ``alarms/v1/...``).

    Attributes:
        alarm_type: overspeed, fatigue_driving, fatigue_warning, daily_driving_limit, night_ban,
            route_deviation, forbidden_area_entry, keep_in_area_exit, geofence_enter,
            geofence_exit, offline, offline_displacement, device_alarm.
        dedup_key: stable identity of the episode (vehicle, type, start, discriminator):
            reprocessing the same positions yields the same key, so alarms are never duplicated.
        started_at, ended_at: fix times (UTC); ended_at None while the episode is open.
        late: raised from late (blind-area) data: stored, never pushed as live.
        details: rule evidence, JSON-serialisable (limit applied and its source, max speed...).
        level: 1 紧急, 2 严重, 3 一般, 4 提示 (:func:`gps_monitor.alarm_levels.level_for`),
            decided when the alarm opens and stored with it.
        event: on the MQTT topic, ``opened`` or ``closed`` (``updated`` for open-episode changes).
    """

    alarm_type: str
    dedup_key: str
    vehicle_id: int
    company_id: int
    terminal_id: str
    started_at: datetime
    ended_at: datetime | None = None
    late: bool = False
    details: dict[str, Any] = field(default_factory=dict)
    first_fix_time: datetime | None = None
    last_fix_time: datetime | None = None
    status: AlarmStatus = AlarmStatus.OPEN
    id: int | None = None
    event: str = "opened"
    level: int = 3

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (ISO 8601 datetimes): the payload of ``alarms/v1/...`` messages."""
        return _json_dict(self)

    def to_json(self) -> bytes:
        """The JSON of :meth:`to_dict` as UTF-8 bytes (the ``alarms/v1/...`` payload), written
        by orjson straight from the dataclass: the same keys and values (ISO 8601 datetimes,
        enum values, non-ASCII as UTF-8) with no spaces, about 7x faster than ``json.dumps``
        over :meth:`to_dict`, which a burst of thousands of alarm events pays for each. What
        orjson refuses (an integer beyond 64 bits in ``details``) goes through ``json.dumps``."""
        try:
            return orjson.dumps(self)
        except TypeError:  # orjson.JSONEncodeError
            return json.dumps(self.to_dict(), ensure_ascii=False).encode()
