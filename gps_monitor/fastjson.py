"""JSON parsing on the per-message paths: what :func:`json.loads` returns, about 3x faster.

pydantic-core's parser (jiter, already a dependency through pydantic) reads the message first.
Measured against ``json.loads`` (tests/test_fastjson.py): wherever jiter accepts a document it
gives the same value (NaN/Infinity, duplicate keys: the last wins, big integers, float
rounding), and it refuses everything ``json.loads`` refuses and a few documents ``json.loads``
accepts (lone UTF-16 surrogates, a UTF-8 byte-order mark, UTF-16/32 text, surrogates encoded in
UTF-8, nesting deeper than jiter's limit). Every refusal goes to ``json.loads``, so the result,
and any error with its message, is always exactly ``json.loads``'s.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic_core import from_json


def loads(data: bytes | bytearray | str) -> Any:
    """Parse a JSON document exactly as ``json.loads(data)`` does.

    Raises:
        json.JSONDecodeError, UnicodeDecodeError, RecursionError: as ``json.loads``; also a plain
            ValueError, as ``json.loads`` for an integer of more than 4,300 digits
            (``sys.get_int_max_str_digits``): catch ValueError for "not JSON we take".
    """
    try:
        return from_json(data, cache_strings="keys")
    except ValueError:
        return json.loads(data)
