"""gps_monitor.fastjson.loads gives exactly what json.loads gives: the same value for every
document, the same exception type and message for every refused one (jiter's refusals go to
json.loads), on edge cases, on the real tracks as contract payloads and on random documents."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest

from gps_monitor import fastjson
from gps_monitor.payload import position_to_payload
from gps_monitor.tracks import read_track

EDGES = [
    b'{"a":1,"a":2}', b'{"a":NaN}', b'{"a":Infinity,"b":-Infinity}', b'{"a":"\\ud800"}',
    b'{"a":"\\udc00x"}', b'{"a":"\\ud83d\\ude00"}', b'{"a":1e400}', b'{"a":-1e400}', b'{"a":-0}',
    b'{"a":-0.0}', b'{"a":1E5}', b'{"a":"x\ty"}', b'{"a":"x\ny"}', b'{"a":"x\x00y"}',
    b'{"a":"x\x1fy"}', b'\xef\xbb\xbf{"a":1}', b'{"a":"\xed\xa0\x80"}', b'{"a":"\xff"}',
    b'{"a":123456789012345678901234567890}', b'{"a":0.1}', b'{"a":1.7976931348623157e308}',
    b'{"a":5e-324}', b'{"a":2.2250738585072011e-308}', b'{"a":01}', b'{"a":1.}', b'{"a":.5}',
    b'{"a":+1}', b"[1,]", b'{"a":1,}', b' {"a":1} ', b'{"a":1}\x00', b'{"a":"\\u0000"}',
    b'{"a":"\\/"}', b"{'a':1}", b'{"a":tru}', b'{"a":1} x', b'"x"', b"", b"  ", b"nul",
    b'{"a":1.0e+2}', b'{"a":1e-7}', b"[" * 300 + b"]" * 300, b"[" * 3000 + b"]" * 3000,
    b'{"a":"\\uD800\\u0041"}', b'{"\\ud800":1}', b'{"a":"\\x41"}', b'{"a":"\x7f"}',
    b'\x00{"a":1}', b'\n\t{"a":1}\r\n', b'{"a":\x0c1}', '{"a":"é"}'.encode("utf-16"),
    '{"a":"é"}'.encode("utf-32"), b'{"a":-}', b'{"a":1e}', b'{"a":9007199254740993}',
    b'{"a":9007199254740993.0}', b'{"a":1.0000000000000002}', '{"车":"渝A"}'.encode(),
    b'{"a":"\\u6e1dA"}', b"null", b"true", b"12", b"-", b"[]", b"{}",
]  # fmt: skip


def _outcome(parse: Any, document: bytes | str) -> tuple[str, str]:
    """("ok", repr of the value) or ("error", type and message): repr tells 1 from 1.0, -0.0
    from 0.0 and shows NaN equal to NaN."""
    try:
        return "ok", repr(parse(document))
    except Exception as error:
        return "error", f"{type(error).__name__}: {error}"


def _assert_same(document: bytes | str) -> None:
    assert _outcome(fastjson.loads, document) == _outcome(json.loads, document), document[:80]


@pytest.mark.parametrize("document", EDGES)
def test_edge_documents_parse_or_fail_exactly_as_json_loads(document: bytes) -> None:
    _assert_same(document)
    _assert_same(bytearray(document))


def test_text_documents_parse_as_json_loads() -> None:
    for document in EDGES:
        try:
            text = document.decode("utf-8")
        except UnicodeDecodeError:
            continue
        _assert_same(text)


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth < 4 and roll < 0.15:
        return {_random_text(rng): _random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    if depth < 4 and roll < 0.25:
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if roll < 0.5:
        exponent = rng.randint(-320, 308)
        return rng.choice([rng.uniform(-1, 1) * 10.0**exponent, rng.random(), -rng.random()])
    if roll < 0.6:
        return rng.choice([rng.randint(-(2**70), 2**70), rng.randint(-1000, 1000)])
    if roll < 0.85:
        return _random_text(rng)
    return rng.choice([None, True, False, math.nan, math.inf, -math.inf, -0.0])


def _random_text(rng: random.Random) -> str:
    alphabet = 'ab "\\/\b\f\n\r\t\x00\x1f\x7f é渝😀\ud800\udfff'
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))


def test_random_documents_parse_as_json_loads() -> None:
    rng = random.Random(13)
    for _ in range(3000):
        value = _random_value(rng)
        ascii_only = rng.random() < 0.5
        text = json.dumps(value, ensure_ascii=ascii_only)
        document = text.encode("utf-8", "surrogatepass")
        _assert_same(document)
        if rng.random() < 0.3:  # and damaged: a byte changed or the end cut off
            i = rng.randrange(len(document))
            _assert_same(document[:i] + bytes([rng.randrange(256)]) + document[i + 1 :])
            _assert_same(document[:i])


def test_contract_payloads_of_the_real_tracks_parse_as_json_loads(shared_data: Path) -> None:
    for name, fmt in (
        ("bods_liverpool_bus_route14_outbound.csv", "bods"),
        ("tdrive_beijing_taxi_1.txt", "tdrive"),
    ):
        track = read_track(shared_data / name, fmt)  # type: ignore[arg-type]
        payloads = [position_to_payload(p) for ps in track.values() for p in ps]
        assert payloads
        for payload in payloads:
            _assert_same(json.dumps(payload).encode())
        _assert_same(json.dumps(payloads).encode())
