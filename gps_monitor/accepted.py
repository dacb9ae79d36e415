"""The accepted-positions payload (``{prefix}positions/v2/{partition}``, see
:mod:`gps_monitor.topics`): a JSON array of :meth:`Position.to_dict` objects, in one place for
the producer (ingest) and the consumers (rules; web and jt809 read the same dicts).

:func:`encode` writes it with orjson straight from the dataclasses (same keys, same ISO 8601
datetimes and enum values as ``to_dict``; about 5x faster than ``json.dumps`` over ``to_dict``,
benchmarks/pipeline.py profiles); what orjson refuses (an integer beyond 64 bits in ``extras``)
goes through ``json.dumps``. A stored position never holds NaN or infinity (PostgreSQL's jsonb
refuses them, so ingest sets such a message aside), the one value the two would write
differently.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import orjson

from gps_monitor import fastjson
from gps_monitor.errors import PayloadError
from gps_monitor.models import Position

MAX_MESSAGE_BYTES = 512 * 1024
"""Largest accepted message :func:`encode_messages` writes: half of deploy/mosquitto's
``max_packet_size`` (1 MiB) and of NATS's default ``max_payload`` (1 MB); a broker refuses a
larger packet (Mosquitto drops the connection), which would redeliver the batch forever."""


def encode_messages(
    positions: Sequence[Position], max_bytes: int = MAX_MESSAGE_BYTES
) -> list[bytes]:
    """``positions`` as one payload (:func:`encode`), or, when that would exceed
    ``max_bytes``, as consecutive payloads of consecutive positions each within it (a single
    position larger than ``max_bytes`` goes alone: ingest caps messages at 256 KiB)."""
    payload = encode(positions)
    if len(payload) <= max_bytes or len(positions) <= 1:
        return [payload]
    parts = len(payload) // max_bytes + 1
    step = -(-len(positions) // parts)
    return [
        chunk
        for i in range(0, len(positions), step)
        for chunk in encode_messages(positions[i : i + step], max_bytes)
    ]


def encode(positions: Sequence[Position]) -> bytes:
    """``positions`` -> the JSON array of their ``to_dict()`` (UTF-8 bytes)."""
    try:
        return orjson.dumps(list(positions))
    except TypeError:  # orjson.JSONEncodeError: e.g. an int beyond 64 bits in extras
        return json.dumps([p.to_dict() for p in positions]).encode()


def parse_positions(payload: bytes | bytearray | str) -> list[Position]:
    """A JSON array of ``Position.to_dict()`` objects -> positions.

    Raises:
        PayloadError: not JSON, nested too deep to parse (``too_deep``), not an array, or an
            element that is not a position.
    """
    try:
        data = fastjson.loads(payload)
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError, an over-long integer
        raise PayloadError("malformed_json", f"expected a JSON array ({error})") from None
    except RecursionError:
        raise PayloadError(
            "too_deep", "expected a JSON array of positions, got nesting too deep to parse"
        ) from None
    if not isinstance(data, list):
        raise PayloadError("wrong_type", f"expected a JSON array, got {type(data).__name__}")
    return [Position.from_dict(item) for item in data]
