"""The accepted-positions payload: orjson writes what json.dumps over to_dict() writes, and
parse_positions reads it back."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from rules_factory import drive

from gps_monitor import accepted
from gps_monitor.errors import PayloadError
from gps_monitor.models import Quality


def _positions() -> list:  # type: ignore[type-arg]
    track = drive("2024-01-10 10:00:00", [(20, 50), (30, 75)])
    received = datetime(2024, 1, 10, 2, 0, 1, 250000, tzinfo=UTC)
    return [
        p.evolve(
            vehicle_id=7,
            company_id=3,
            received_at=received + timedelta(seconds=i),
            quality=Quality.DRIFT if i % 7 == 0 else Quality.OK,
            quality_reason="jump" if i % 7 == 0 else None,
            late=i % 5 == 0,
            extras={"plate": "渝A00001", "n": [1, 2.5, None, True], "deep": {"x": {"y": "z"}}},
        )
        for i, p in enumerate(track)
    ]


def test_encode_writes_the_same_document_as_json_over_to_dict() -> None:
    positions = _positions()
    positions[1] = positions[1].evolve(
        received_at=datetime(2024, 1, 10, 10, 0, tzinfo=timezone(timedelta(hours=8)))
    )
    assert json.loads(accepted.encode(positions)) == [p.to_dict() for p in positions]


def test_an_integer_orjson_refuses_goes_through_json() -> None:
    positions = [_positions()[0].evolve(extras={"big": 2**70})]
    payload = accepted.encode(positions)
    assert json.loads(payload) == [positions[0].to_dict()]
    assert accepted.parse_positions(payload) == positions


def test_parse_positions_reads_back_what_encode_wrote() -> None:
    positions = _positions()
    assert accepted.parse_positions(accepted.encode(positions)) == positions


def test_a_batch_too_large_for_one_message_is_split_in_order_within_the_limit() -> None:
    positions = _positions() * 40
    whole = accepted.encode(positions)
    parts = accepted.encode_messages(positions, max_bytes=len(whole) // 5)
    assert len(parts) > 1
    assert all(len(part) <= len(whole) // 5 for part in parts)
    assert [p for part in parts for p in accepted.parse_positions(part)] == positions
    small = _positions()
    assert accepted.encode_messages(small) == [accepted.encode(small)]  # within 512 KiB: one


def test_an_integer_json_loads_refuses_is_malformed_json() -> None:
    with pytest.raises(PayloadError) as caught:
        accepted.parse_positions(b"[" + b"9" * 5000 + b"]")
    assert caught.value.reason == "malformed_json"
