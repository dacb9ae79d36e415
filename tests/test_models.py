"""Position, the value object every stage passes on: construction checks, copies, dict form."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pytest

from gps_monitor.errors import PayloadError
from gps_monitor.models import Position, Quality

FIX = datetime(2026, 1, 26, 8, 0, tzinfo=UTC)


def _position(**changes: object) -> Position:
    values: dict[str, object] = {
        "terminal_id": "013800000001", "fix_time": FIX, "latitude": 29.5, "longitude": 106.5,
        "speed_kmh": 40.0, "extras": {"fuel_l": 80.5}, "received_at": FIX + timedelta(seconds=2),
    }  # fmt: skip
    values.update(changes)
    return Position(**values)  # type: ignore[arg-type]


def test_a_fix_time_with_an_offset_is_stored_in_utc_and_a_naive_one_is_refused() -> None:
    p = _position(fix_time=datetime(2026, 1, 26, 16, 0, tzinfo=timezone(timedelta(hours=8))))
    assert p.fix_time == FIX and p.fix_time.tzinfo is UTC
    with pytest.raises(PayloadError, match="fix_time: expected a timezone-aware datetime"):
        _position(fix_time=datetime(2026, 1, 26, 8, 0))
    with pytest.raises(PayloadError, match="received_at: expected a timezone-aware datetime"):
        _position(received_at=datetime(2026, 1, 26, 8, 0))
    with pytest.raises(PayloadError) as caught:
        _position(fix_time=datetime(1999, 12, 31, 23, 59, tzinfo=UTC))
    assert caught.value.reason == "out_of_range"
    assert caught.value.detail == (
        "fix_time: expected 2000-01-01 .. 2100-01-01 (UTC), got 1999-12-31T23:59:00+00:00"
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"vehicle_id": 7, "company_id": 3},
        {"quality": Quality.DRIFT, "quality_reason": "implausible_jump", "late": True},
        {"quality": "invalid"},  # kept as given, as dataclasses.replace keeps it
        {"extras": {}, "reupload": True, "heading_deg": 90.0, "acc_on": None},
        {"latitude": 123.4},  # out of range is a quality verdict, not an error
    ],
)
def test_evolve_gives_what_dataclasses_replace_gives(changes: dict[str, object]) -> None:
    p = _position()
    copy = p.evolve(**changes)
    expected = dataclasses.replace(p, **changes)
    assert copy == expected and copy is not p
    assert [type(getattr(copy, f.name)) for f in dataclasses.fields(Position)] == [
        type(getattr(expected, f.name)) for f in dataclasses.fields(Position)
    ]
    assert p == _position()  # the original is unchanged


def test_evolve_to_the_values_held_already_is_the_position_itself() -> None:
    p = _position(vehicle_id=7)
    assert p.evolve(quality=Quality.OK, quality_reason=None, late=False) is p
    assert p.with_verdict(Quality.OK) is p
    assert p.with_verdict(Quality.DRIFT, "jump").quality is Quality.DRIFT


def test_evolve_checks_again_the_fields_the_constructor_checks() -> None:
    p = _position()
    with pytest.raises(PayloadError) as caught:
        p.evolve(speed_kmh=-1.0)
    assert caught.value.reason == "out_of_range"
    with pytest.raises(PayloadError):
        p.evolve(fix_time=datetime(2100, 1, 1, tzinfo=UTC))
    with pytest.raises(PayloadError):
        p.evolve(alarm_flags=2**32)
    with pytest.raises(PayloadError):
        p.evolve(terminal_id="")
    moved = p.evolve(fix_time=datetime(2026, 1, 26, 9, 0, tzinfo=timezone(timedelta(hours=1))))
    assert moved.fix_time == FIX and moved.fix_time.tzinfo is UTC
    with pytest.raises(TypeError):
        p.evolve(no_such_field=1)
