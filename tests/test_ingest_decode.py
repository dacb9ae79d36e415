"""Decoding MQTT payloads of the contract into positions (no broker needed: pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from gps_monitor.config import IngestSettings
from gps_monitor.errors import PayloadError
from gps_monitor.payload import position_to_payload
from ingest.decode import decode_positions

SETTINGS = IngestSettings()
NOW = datetime(2026, 1, 26, 0, 5, tzinfo=UTC)


def _decode(payload: object, kind: str = "position") -> list:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return decode_positions(raw, kind, "013800000001", NOW, SETTINGS)  # type: ignore[arg-type]


def test_epoch_ms_and_iso_offset_give_the_same_utc_fix_time() -> None:
    a = _decode({"fix_time": 1769385600000, "latitude": 29.5, "longitude": 106.5, "speed_kmh": 0})
    b = _decode(
        {"fix_time": "2026-01-26T08:00:00+08:00", "latitude": 29.5, "longitude": 106.5,
         "speed_kmh": 0}
    )  # fmt: skip
    assert a[0].fix_time == b[0].fix_time == datetime(2026, 1, 26, tzinfo=UTC)
    assert a[0].received_at == NOW and a[0].terminal_id == "013800000001"


def test_the_vehicle_and_company_given_are_on_every_position_of_a_batch() -> None:
    fix = {"fix_time": 1769385600000, "latitude": 29.5, "longitude": 106.5, "speed_kmh": 0}
    raw = json.dumps([fix, {**fix, "fix_time": 1769385601000}]).encode()
    positions = decode_positions(raw, "batch", "013800000001", NOW, SETTINGS, 7, 3)
    assert [(p.vehicle_id, p.company_id) for p in positions] == [(7, 3), (7, 3)]
    assert _decode(fix)[0].vehicle_id is None  # not given: not known


def test_nan_in_a_batch_element_s_extras_is_refused_with_its_place_and_words_are_kept() -> None:
    fix = {"fix_time": 1769385600000, "latitude": 29.5, "longitude": 106.5, "speed_kmh": 0}
    with pytest.raises(PayloadError) as caught:
        _decode([fix, {**fix, "extras": {"x": float("inf")}}], "batch")
    assert caught.value.detail == "[1].extras.x: expected a finite number, got Infinity"
    (p,) = _decode({**fix, "extras": {"name": "NaNa", "note": "Infinity"}})
    assert p.extras == {"name": "NaNa", "note": "Infinity"}  # only numbers are refused


def test_nul_and_nan_nested_deep_are_refused_with_their_place_in_document_order() -> None:
    """The walk is iterative (a NUL 300 levels down used to be a recursion per level), reports
    the first offender as the document has it, and a deep place does not crowd out the rest
    of the detail (it used to be cut at 200 characters, place included)."""
    fix = {"fix_time": 1769385600000, "latitude": 29.5, "longitude": 106.5, "speed_kmh": 0}
    deep: object = "a\x00"
    for _ in range(300):
        deep = [deep]
    with pytest.raises(PayloadError) as caught:
        _decode({**fix, "extras": {"ok": "b", "deep": deep, "later": "c\x00"}})
    place = "extras.deep" + "[0]" * 300
    assert caught.value.detail == (
        f'{place[:50]}...{place[-50:]}: expected text without NUL characters, got "a\\u0000"'
    )  # the middle of a long place is cut, what was expected and what came are kept
    raw = json.dumps({**fix, "extras": {"a": [1, float("nan")], "b": float("inf")}}).encode()
    with pytest.raises(PayloadError) as caught:
        _decode(raw)
    assert caught.value.detail == "extras.a[1]: expected a finite number, got NaN"


def test_all_contract_fields_are_carried() -> None:
    payload = {
        "fix_time": "2026-01-26T08:00:00+08:00", "latitude": 29.5, "longitude": 106.5,
        "speed_kmh": 62.5, "heading_deg": 271, "altitude_m": 310, "satellites": 11,
        "fix_valid": True, "acc_on": True, "alarm_flags": 0b10, "status_flags": 0b11,
        "mileage_km": 12345.6, "extras": {"fuel_l": 80.5},
    }  # fmt: skip
    (p,) = _decode(payload)
    assert (p.speed_kmh, p.heading_deg, p.altitude_m, p.satellites) == (62.5, 271, 310, 11)
    assert (p.acc_on, p.alarm_flags, p.status_flags, p.mileage_km) == (True, 2, 3, 12345.6)
    assert p.extras == {"fuel_l": 80.5}
    # and back: the replay tool publishes what ingest reads
    assert position_to_payload(p)["heading_deg"] == 271


def test_a_blind_area_batch_keeps_every_position_and_its_reupload_flag() -> None:
    items = [
        {"fix_time": f"2026-01-26T08:00:0{i}+08:00", "latitude": 29.5, "longitude": 106.5,
         "speed_kmh": 10, "reupload": True}
        for i in range(3)
    ]  # fmt: skip
    positions = _decode(items, "batch")
    assert len(positions) == 3 and all(p.reupload for p in positions)


@pytest.mark.parametrize(
    ("payload", "reason", "detail"),
    [
        ({"fix_time": "2026-01-26T08:00:00+08:00", "latitude": 29.5, "longitude": 106.5,
          "speed_kmh": -3}, "out_of_range",
         "speed_kmh: expected 0 .. 6553.5 km/h (JT/T 808: a WORD in 1/10 km/h), got -3"),
        ({"fix_time": "2026-01-26T08:00:00+08:00", "latitude": 29.5, "longitude": 106.5,
          "speed_kmh": 3, "mileage_km": -0.1}, "out_of_range", "mileage_km: expected 0 .. "),
        ({"fix_time": "2026-01-26T08:00:00+08:00", "latitude": 29.5, "longitude": 106.5,
          "speed_kmh": 3, "alarm_flags": 2**32}, "wrong_type", "alarm_flags"),
        ({"fix_time": 12, "latitude": 29.5, "longitude": 106.5, "speed_kmh": 3},
         "out_of_range", "expected epoch milliseconds 946684800000 .. 4102444800000 "
         "(2000-01-01 .. 2100-01-01 UTC), got 12"),
        ({"fix_time": 4102444800000, "latitude": 29.5, "longitude": 106.5, "speed_kmh": 3},
         "out_of_range", "got 4102444800000"),
        ({"fix_time": "2026-01-26 08:00", "latitude": 29.5, "longitude": 106.5, "speed_kmh": 3},
         "wrong_type", 'with a UTC offset (this one has none); got "2026-01-26 08:00"'),
        ({"fix_time": "yesterday", "latitude": 29.5, "longitude": 106.5, "speed_kmh": 3},
         "wrong_type", 'expected ISO 8601 with offset; got "yesterday"'),
        ({"fix_time": 1769385600000.0, "latitude": 29.5, "longitude": 106.5, "speed_kmh": 3},
         "wrong_type", "epoch ms integer; got 1769385600000.0"),
        ({"fix_time": -1, "latitude": 29.5, "longitude": 106.5, "speed_kmh": 3},
         "out_of_range", "got -1"),
        ({"fix_time": None, "latitude": 29.5, "longitude": 106.5, "speed_kmh": 3},
         "wrong_type", "epoch ms integer; got null"),
        ({"fix_time": "", "latitude": 29.5, "longitude": 106.5, "speed_kmh": 3},
         "wrong_type", 'expected ISO 8601 with offset; got ""'),
        ({"fix_time": "2026-01-26T08:00:00+08:00", "latitude": 29.5, "longitude": 106.5,
          "speed_kmh": 3, "terminal_id": "013899999999"}, "wrong_type", "the topic's"),
        ({"fix_time": "2026-01-26T08:00:00+08:00", "latitude": True, "longitude": 106.5,
          "speed_kmh": 3}, "wrong_type", "latitude: Input should be a valid number; got true"),
        ({"fix_time": "2026-01-26T08:00:00+08:00", "latitude": float("nan"), "longitude": 106.5,
          "speed_kmh": 3}, "wrong_type", "finite number; got NaN"),
        ({"fix_time": "2026-01-26T08:00:00+08:00", "latitude": 29.5, "longitude": 106.5,
          "speed_kmh": 3, "extras": {"can": [1, {"fuel_l": float("nan")}]}},
         "wrong_type", "extras.can[1].fuel_l: expected a finite number, got NaN"),
        ({"fix_time": "2026-01-26T08:00:00+08:00", "latitude": 29.5, "longitude": 106.5,
          "speed_kmh": 3, "extras": {"t": float("-inf")}},
         "wrong_type", "extras.t: expected a finite number, got -Infinity"),
        ({"fix_time": "2026-12-07T10:00:00Z", "latitude": 53.4, "longitude": -2.98,
          "speed_kmh": 30, "mileage_km": 1e300}, "out_of_range",
         "mileage_km: expected 0 .. 429496729.5 km (JT/T 808: a DWORD in 1/10 km), got 1e+300"),
        ({"fix_time": "2026-12-07T10:00:00Z", "latitude": 53.4, "longitude": -2.98,
          "speed_kmh": 1e300}, "out_of_range",
         "speed_kmh: expected 0 .. 6553.5 km/h (JT/T 808: a WORD in 1/10 km/h), got 1e+300"),
        ({"fix_time": "2026-12-07T10:00:00Z", "latitude": 53.4, "longitude": -2.98,
          "speed_kmh": 6553.6}, "out_of_range", "got 6553.6"),
        ({"fix_time": "2026-12-07T10:00:00Z", "latitude": 53.4, "longitude": -2.98,
          "speed_kmh": 3, "altitude_m": -32769}, "out_of_range",
         "altitude_m: expected -32768 .. 65535 metres (JT/T 808: a WORD in metres), got -32769"),
        ({"fix_time": "2026-12-07T10:00:00Z", "latitude": 53.4, "longitude": -2.98,
          "speed_kmh": 3, "heading_deg": 1e300}, "wrong_type", "heading_deg"),
        ({"fix_time": "2026-12-07T10:00:00Z", "latitude": 53.4, "longitude": -2.98,
          "speed_kmh": 3, "satellites": 256}, "wrong_type", "satellites"),
    ],
)  # fmt: skip
def test_bad_values_are_rejected_with_the_field_named(
    payload: dict[str, object], reason: str, detail: str
) -> None:
    with pytest.raises(PayloadError) as caught:
        _decode(payload)
    assert caught.value.reason == reason
    assert detail in caught.value.detail
    assert caught.value.detail.count("got") <= 1  # what came is said once
    assert "Value error" not in caught.value.detail  # pydantic's wrapper, not ours


def test_out_of_range_coordinates_are_not_a_decoding_error() -> None:
    # stored and flagged invalid by the quality pipeline instead (DOMAIN.md)
    (p,) = _decode({"fix_time": 1769385600000, "latitude": 123.4, "longitude": 0, "speed_kmh": 0})
    assert p.latitude == 123.4


@pytest.mark.parametrize(
    "fix_time",
    ["0001-01-01T00:00:00+00:00", "0001-01-01T00:00:00+08:00", "9999-12-31T23:59:59-08:00",
     "1999-12-31T23:59:59+00:00", "2100-01-01T00:00:00+00:00"],
)  # fmt: skip
def test_a_fix_time_outside_the_supported_years_is_out_of_range(fix_time: str) -> None:
    with pytest.raises(PayloadError) as caught:
        _decode({"fix_time": fix_time, "latitude": 29.5, "longitude": 106.5, "speed_kmh": 0})
    assert caught.value.reason == "out_of_range"
    assert caught.value.detail == (
        f"fix_time: expected 2000-01-01 .. 2100-01-01 (UTC), got {fix_time}"
    )


def test_a_nul_character_is_refused_with_where_it_is() -> None:
    base = {"fix_time": "2026-01-26T08:00:00+08:00", "latitude": 29.5, "longitude": 106.5,
            "speed_kmh": 0}  # fmt: skip
    with pytest.raises(PayloadError) as in_value:
        _decode([base, {**base, "extras": {"io": [1, "a\u0000"]}}], "batch")
    with pytest.raises(PayloadError) as in_key:
        _decode({**base, "extras": {"k\u0000": 1}})
    assert in_value.value.reason == in_key.value.reason == "wrong_type"
    assert in_value.value.detail.startswith("[1].extras.io[1]: expected text without NUL")
    assert in_key.value.detail.startswith("extras: expected keys without NUL characters")
    assert _decode({**base, "extras": {"note": "a\\u0000"}})[0].extras == {"note": "a\\u0000"}


@pytest.mark.parametrize("kind", ["position", "batch"])
def test_nesting_up_to_the_limit_is_accepted_and_one_level_more_is_too_deep(kind: str) -> None:
    base = {"fix_time": "2026-01-26T08:00:00+08:00", "latitude": 29.5, "longitude": 106.5,
            "speed_kmh": 0}  # fmt: skip
    depth = SETTINGS.max_extras_depth

    def nested(levels: int) -> object:
        """``levels`` containers, objects and arrays in turn, the outermost an object."""
        value: object = 1
        for i in range(levels):
            value = {"k": value} if (levels - 1 - i) % 2 == 0 else [value]
        return value

    def message(levels: int) -> object:
        position = {**base, "extras": nested(levels)}
        return [base, position] if kind == "batch" else position

    (*_, deepest) = _decode(message(depth), kind)
    assert deepest.extras == nested(depth)
    with pytest.raises(PayloadError) as caught:
        _decode(message(depth + 1), kind)
    assert caught.value.reason == "too_deep"
    where = "[1]." if kind == "batch" else ""
    assert caught.value.detail.startswith(f"{where}extras")
    assert caught.value.detail.endswith(f"got level {depth + 1}")


def test_a_huge_integer_is_reported_short_and_an_unreadable_one_as_malformed_json() -> None:
    base = '"latitude": 29.5, "longitude": 106.5, "speed_kmh": 3'
    with pytest.raises(PayloadError) as caught:
        _decode(f'{{"fix_time": {"9" * 4000}, {base}}}'.encode())
    assert caught.value.reason == "out_of_range"
    assert len(caught.value.detail) < 200 and caught.value.detail.endswith("...")
    # json.loads refuses integers of more than 4,300 digits with a plain ValueError: the
    # message is not JSON we take, not a decoder failure (it was internal_error)
    with pytest.raises(PayloadError) as caught:
        _decode(f'{{"fix_time": {"9" * 5000}, {base}}}'.encode())
    assert caught.value.reason == "malformed_json"
    assert "4300" in caught.value.detail
