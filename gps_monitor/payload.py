"""The inbound MQTT position contract: one JSON object per fix (pydantic model <-> Position).

Published by terminals or a gateway on ``gps/v1/{terminal_id}/position`` (one object) or
``gps/v1/{terminal_id}/batch`` (a JSON array of them; ``reupload: true`` marks a blind-area
upload, 补报). Fields and units::

    fix_time      ISO 8601 with a UTC offset ("2026-01-26T15:57:02+00:00") or epoch ms (int)
    latitude      WGS-84 degrees, north positive          required
    longitude     WGS-84 degrees, east positive           required
    speed_kmh     km/h, [0, 6553.5]                       required
    heading_deg   degrees clockwise from north, [0, 360]  optional
    altitude_m    metres, [-32768, 65535]                 optional
    satellites    count, [0, 255]                         optional
    fix_valid     bool, JT/T 808 status bit 1             optional, default true
    acc_on        bool, JT/T 808 status bit 0             optional
    alarm_flags   JT/T 808 u32 alarm bit field            optional, default 0
    status_flags  JT/T 808 u32 status bit field           optional, default 0
    mileage_km    odometer, km, [0, 429496729.5]          optional
    reupload      bool, blind-area re-upload (0x0704 type 1)  optional, default false
    extras        JSON object of other additional items   optional

Unknown fields are ignored (a ``terminal_id`` field, as in JSON-lines track files, is allowed and
must match the topic's when both are present). Latitude/longitude are *not* range-checked here:
an out-of-range fix is stored and flagged ``invalid`` by :mod:`gps_monitor.quality`. Nor is a
speed judged here: one no vehicle drives is stored and flagged ``invalid`` (implausible_speed)
there too. The ranges of speed, altitude and mileage are only what JT/T 808 can carry at all
(:data:`JT808_BOUNDS`: speed a WORD in 1/10 km/h, altitude a WORD in metres, read signed or
unsigned, mileage a DWORD in 1/10 km); a value outside them (a negative speed, a 1e300 odometer
no ``real`` column holds) no terminal measured, so the message is rejected ``out_of_range``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from gps_monitor.errors import PayloadError
from gps_monitor.models import FIX_TIME_MAX, FIX_TIME_MIN, Position, fix_time_range_error

_U32 = 2**32 - 1
# a fix time of the wrong form: reported as wrong_type (payload_error), the message as written
_BAD_FIX_TIME = "fix_time_format"
# the supported fix times (2000-01-01 .. 2100-01-01) in epoch ms, the end excluded
_EPOCH_MS_MIN = int(FIX_TIME_MIN.timestamp()) * 1000
_EPOCH_MS_MAX = int(FIX_TIME_MAX.timestamp()) * 1000
# What JT/T 808 can carry (0x0200 location report and its additional item 0x01), per field:
# (lowest, highest, what the field holds). Checked by pydantic-core (Field ge/le, nothing per
# message in Python); a value outside is reported out_of_range by payload_error, saying these.
JT808_BOUNDS: dict[str, tuple[float, float, str]] = {
    "speed_kmh": (0, 0xFFFF / 10, "km/h (JT/T 808: a WORD in 1/10 km/h)"),
    # WORD, metres: the protocol's field is unsigned, the gateway reads it signed
    "altitude_m": (-0x8000, 0xFFFF, "metres (JT/T 808: a WORD in metres)"),
    "mileage_km": (0, 0xFFFFFFFF / 10, "km (JT/T 808: a DWORD in 1/10 km)"),
}
_BOUND_ERRORS = frozenset({"greater_than_equal", "less_than_equal"})


def _jt808_range(field: str) -> Any:
    low, high, _ = JT808_BOUNDS[field]
    return Field(ge=low, le=high)


class PositionPayload(BaseModel):
    """One position object of the MQTT contract (strict types: "12.5" is not a number)."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True, allow_inf_nan=False)

    fix_time: datetime
    latitude: float
    longitude: float
    speed_kmh: Annotated[float, _jt808_range("speed_kmh")]
    heading_deg: Annotated[float, Field(ge=0, le=360)] | None = None
    altitude_m: Annotated[float, _jt808_range("altitude_m")] | None = None
    satellites: Annotated[int, Field(ge=0, le=255)] | None = None
    fix_valid: bool = True
    acc_on: bool | None = None
    alarm_flags: Annotated[int, Field(ge=0, le=_U32)] = 0
    status_flags: Annotated[int, Field(ge=0, le=_U32)] = 0
    mileage_km: Annotated[float, _jt808_range("mileage_km")] | None = None
    reupload: bool = False
    extras: dict[str, Any] = Field(default_factory=dict)
    terminal_id: str | None = None

    @field_validator("fix_time", mode="before")
    @classmethod
    def _fix_time(cls, value: Any) -> datetime:
        """ISO 8601 with a UTC offset, or epoch milliseconds, within the supported fix times
        (``out_of_range`` outside them). The messages say what was expected; what came is
        added by :func:`payload_error`."""
        if isinstance(value, bool):
            raise PydanticCustomError(_BAD_FIX_TIME, "expected ISO 8601 with offset or epoch ms")
        if isinstance(value, int):
            if not _EPOCH_MS_MIN <= value < _EPOCH_MS_MAX:
                raise PydanticCustomError(
                    "out_of_range",
                    f"expected epoch milliseconds {_EPOCH_MS_MIN} .. {_EPOCH_MS_MAX} "
                    f"({FIX_TIME_MIN.date()} .. {FIX_TIME_MAX.date()} UTC), got {shown(value)}",
                )
            return datetime.fromtimestamp(value / 1000, tz=UTC)
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                raise PydanticCustomError(_BAD_FIX_TIME, "expected ISO 8601 with offset") from None
            if parsed.tzinfo is None:
                raise PydanticCustomError(
                    _BAD_FIX_TIME, "expected ISO 8601 with a UTC offset (this one has none)"
                )
            # checked before converting: year 1 or 9999 with an offset overflows astimezone()
            if (range_error := fix_time_range_error(parsed)) is not None:
                raise PydanticCustomError("out_of_range", range_error.removeprefix("fix_time: "))
            return parsed.astimezone(UTC)
        raise PydanticCustomError(_BAD_FIX_TIME, "expected ISO 8601 string or epoch ms integer")

    def to_position(
        self,
        terminal_id: str,
        received_at: datetime | None = None,
        vehicle_id: int | None = None,
        company_id: int | None = None,
    ) -> Position:
        """The :class:`Position` of this payload for the topic's terminal (and, when the caller
        knows it, the terminal's vehicle and company: ingest, which has looked them up).

        Raises:
            PayloadError(reason="wrong_type"): the payload names another terminal than the topic.
        """
        if self.terminal_id is not None and self.terminal_id != terminal_id:
            raise PayloadError(
                "wrong_type",
                f"terminal_id: expected {terminal_id!r} (the topic's), got {self.terminal_id!r}",
            )
        return Position(
            terminal_id=terminal_id,
            fix_time=self.fix_time,
            latitude=self.latitude,
            longitude=self.longitude,
            speed_kmh=self.speed_kmh,
            heading_deg=self.heading_deg,
            altitude_m=self.altitude_m,
            satellites=self.satellites,
            fix_valid=self.fix_valid,
            acc_on=self.acc_on,
            alarm_flags=self.alarm_flags,
            status_flags=self.status_flags,
            mileage_km=self.mileage_km,
            extras=dict(self.extras),
            reupload=self.reupload,
            received_at=received_at,
            vehicle_id=vehicle_id,
            company_id=company_id,
        )


def shown(value: Any, limit: int = 80) -> str:
    """What came, for an error detail, spelled as the message's JSON spells it (``null``,
    ``true``, ``"text"``, ``NaN``; ``repr`` for what JSON cannot hold), cut to ``limit``
    characters ("..." at the end). An integer too long to print is given by its size."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except TypeError:  # not a JSON value (a caller's own object)
        text = repr(value)
    except ValueError:  # an int too long to print (sys.get_int_max_str_digits)
        return f"an integer of {value.bit_length()} bits"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def payload_error(error: ValidationError, where: str = "") -> PayloadError:
    """A :class:`PayloadError` naming the first bad field, what was expected and what came.

    ``missing_field`` when a required field is absent, ``out_of_range`` for a fix time outside
    the supported years or a speed, altitude or mileage outside what JT/T 808 can carry
    (:data:`JT808_BOUNDS`), ``wrong_type`` otherwise.
    """
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "(object)"
    prefix = f"{where}{field}"
    if first["type"] == "missing":
        return PayloadError("missing_field", f"{prefix}: required field is missing")
    if first["type"] == "out_of_range":
        return PayloadError("out_of_range", f"{prefix}: {first['msg']}")
    name = first["loc"][-1] if first["loc"] else None
    if first["type"] in _BOUND_ERRORS and name in JT808_BOUNDS:
        low, high, what = JT808_BOUNDS[str(name)]
        return PayloadError(
            "out_of_range",
            f"{prefix}: expected {low:g} .. {high} {what}, got {shown(first['input'])}",
        )
    return PayloadError("wrong_type", f"{prefix}: {first['msg']}; got {shown(first.get('input'))}")


def parse_position(
    data: Any,
    terminal_id: str,
    received_at: datetime | None = None,
    where: str = "",
    vehicle_id: int | None = None,
    company_id: int | None = None,
) -> Position:
    """Validate one decoded JSON value as a position object of ``terminal_id`` (of
    ``vehicle_id`` and ``company_id`` when given).

    Raises:
        PayloadError: ``wrong_type`` (not an object, bad value), ``missing_field``.
    """
    if not isinstance(data, dict):
        raise PayloadError(
            "wrong_type", f"{where or 'payload'}: expected a JSON object, got {type(data).__name__}"
        )
    try:
        payload = PositionPayload.model_validate(data)
    except ValidationError as error:
        raise payload_error(error, where) from None
    return payload.to_position(terminal_id, received_at, vehicle_id, company_id)


def position_to_payload(position: Position) -> dict[str, Any]:
    """The contract JSON object (dict) of a position, as a terminal would publish it."""
    out: dict[str, Any] = {
        "fix_time": position.fix_time.isoformat(),
        "latitude": position.latitude,
        "longitude": position.longitude,
        "speed_kmh": round(position.speed_kmh, 2),
        "fix_valid": position.fix_valid,
        "alarm_flags": position.alarm_flags,
        "status_flags": position.status_flags,
    }
    optional = {
        "heading_deg": None if position.heading_deg is None else round(position.heading_deg, 1),
        "altitude_m": position.altitude_m,
        "satellites": position.satellites,
        "acc_on": position.acc_on,
        "mileage_km": position.mileage_km,
    }
    out.update({k: v for k, v in optional.items() if v is not None})
    if position.reupload:
        out["reupload"] = True
    if position.extras:
        out["extras"] = position.extras
    return out
