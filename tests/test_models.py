"""Position, the value object every stage passes on: construction checks, copies, dict form."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from gps_monitor.errors import PayloadError
from gps_monitor.models import Alarm, AlarmStatus, Position, Quality
from gps_monitor.tracks import read_track

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


def _reference_from_dict(data: dict[str, Any]) -> Position:
    """from_dict as it was before it was made faster (the reference for results and errors)."""
    try:
        values = dict(data)
        for name in ("fix_time", "received_at"):
            if values.get(name) is not None:
                values[name] = datetime.fromisoformat(values[name])
        values["quality"] = Quality(values.get("quality", "ok"))
        return Position(**values)
    except (TypeError, ValueError, KeyError) as error:
        raise PayloadError("wrong_type", f"position dict: {error}") from error


def _outcome(parse: Any, data: Any) -> object:
    try:
        return parse(data)
    except PayloadError as error:
        return (error.reason, error.detail)


def _real_positions(shared_data: Path) -> list[Position]:
    out = []
    for name, fmt in (
        ("bods_liverpool_bus_route14_outbound.csv", "bods"),
        ("tdrive_beijing_taxi_1.txt", "tdrive"),
    ):
        for positions in read_track(shared_data / name, fmt).values():  # type: ignore[arg-type]
            out += positions
    return out


def test_to_dict_and_from_dict_of_the_real_tracks_are_what_they_were(shared_data: Path) -> None:
    verdicts = [
        {}, {"quality": Quality.DRIFT, "quality_reason": "implausible_jump", "late": True},
        {"quality": "invalid", "received_at": None}, {"vehicle_id": 3, "company_id": 1},
    ]  # fmt: skip
    positions = _real_positions(shared_data)
    assert len(positions) > 2000
    for i, p in enumerate(positions):
        p = p.evolve(**({"received_at": FIX} | verdicts[i % len(verdicts)]))
        d = p.to_dict()
        back = json.loads(json.dumps(d))
        assert (
            Position.from_dict(back)
            == _reference_from_dict(back)
            == p.evolve(quality=Quality(p.quality))
        )


@pytest.mark.parametrize(
    "change",
    [
        {"fix_time": None}, {"fix_time": 12}, {"fix_time": "yesterday"}, {"quality": "bad"},
        {"quality": ["ok"]}, {"quality": None}, {"received_at": "2026-01-26T08:00:00"},
        {"no_such_field": 1}, {"speed_kmh": -1}, {"terminal_id": ""},
        {"fix_time": "1999-01-01T00:00:00+00:00"}, {"quality": Quality.DRIFT},
    ],
)  # fmt: skip
def test_from_dict_refuses_what_it_refused_with_the_same_message(change: dict[str, Any]) -> None:
    data = _position(received_at=FIX).to_dict()
    data.update(change)
    if change == {"fix_time": None}:
        del data["fix_time"]
    assert _outcome(Position.from_dict, data) == _outcome(_reference_from_dict, data)


def test_from_dict_of_a_null_fix_time_says_so_rather_than_failing_on_it() -> None:
    """Before, a null fix time went into the constructor and failed there with an
    AttributeError, which no caller expects of a bad message."""
    data = _position(received_at=FIX).to_dict() | {"fix_time": None}
    with pytest.raises(PayloadError) as raised:
        Position.from_dict(data)
    assert raised.value.reason == "wrong_type"
    assert raised.value.detail == "position dict: fromisoformat: argument must be str"


def _alarm(**changes: Any) -> Alarm:
    alarm = Alarm(
        alarm_type="overspeed",
        dedup_key="7|overspeed|1704852000.25",
        vehicle_id=7,
        company_id=3,
        terminal_id="013800000007",
        started_at=datetime(2024, 1, 10, 2, 0, 0, 250000, tzinfo=UTC),
        ended_at=datetime(2024, 1, 10, 2, 1, tzinfo=UTC),
        details={
            "limit_kmh": 80.0,
            "source": "道路限速",
            "max_speed_kmh": 97.5,
            "fixes": [1, None],
        },
        first_fix_time=datetime(2024, 1, 10, 10, 0, tzinfo=timezone(timedelta(hours=8))),
        last_fix_time=None,
        status=AlarmStatus.ACKNOWLEDGED,
        id=41,
        event="closed",
        level=2,
    )
    return dataclasses.replace(alarm, **changes)


def test_alarm_to_json_is_the_document_of_to_dict_in_utf_8() -> None:
    alarm = _alarm()
    payload = alarm.to_json()
    assert json.loads(payload) == alarm.to_dict()
    assert "道路限速".encode() in payload  # UTF-8, not \\u escapes (as ensure_ascii=False)


def test_alarm_to_json_of_an_integer_orjson_refuses_goes_through_json() -> None:
    alarm = _alarm(details={"big": 2**70, "名": "x"})
    assert json.loads(alarm.to_json()) == alarm.to_dict()
