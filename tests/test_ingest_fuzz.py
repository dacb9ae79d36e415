"""Fuzzing the MQTT inputs (issue 14, tests): positions of the real Liverpool bus track, mutated
field by field and byte by byte with a fixed seed and a bounded number of cases, so a run is
repeatable and takes seconds.

- decoding (``ingest.decode.decode_positions``) raises nothing but ``PayloadError`` with a known
  reason, and whatever it accepts the rules worker can read back from the accepted topic;
- a running ingest worker on the real Mosquitto and PostgreSQL files every fuzzed message once,
  either in ``raw_messages`` (accepted) or in ``rejected_messages`` with a reason and a detail,
  and keeps going;
- a running rules worker fed mutated accepted-positions messages sets aside what it cannot
  handle, with a reason, and keeps evaluating.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import random
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from ingest_helpers import drop_session, position_json, publish_raw, wait_for

from gps_monitor.accepted import parse_positions
from gps_monitor.config import Settings
from gps_monitor.db.registry import ensure_company, ensure_vehicle
from gps_monitor.errors import PayloadError
from gps_monitor.payload import position_to_payload
from gps_monitor.tracks import read_track
from ingest.decode import decode_positions
from ingest.worker import IngestWorker
from rules.worker import RulesWorker, rules_client_id

SEED = 14
TERMINAL = "013800000140"
STRANGER = "013899999999"  # not registered
REASONS = {
    "malformed_json", "wrong_type", "missing_field", "out_of_range", "oversize", "too_deep",
    "unknown_terminal", "bad_topic", "internal_error", "unstorable",
}  # fmt: skip
FIELDS = (
    "fix_time", "latitude", "longitude", "speed_kmh", "heading_deg", "altitude_m", "satellites",
    "fix_valid", "acc_on", "alarm_flags", "status_flags", "mileage_km", "reupload", "extras",
    "terminal_id",
)  # fmt: skip


def _nest(rng: random.Random, levels: int) -> Any:
    value: Any = rng.choice([1, "x", None, 2.5])
    for _ in range(levels):
        value = {"k": value} if rng.random() < 0.5 else [value]
    return value


def _odd_value(rng: random.Random) -> Any:
    return rng.choice(
        [
            None, True, False, 0, -1, 2**31, 2**64, -(2**70), 1e308, -1e308, float("nan"),
            float("inf"), 0.1, "", "12.5", "\u0000", "a\u0000b", "😀" * 50, "x" * 2000, [], {},
            [1, 2, 3], {"a": None}, "2026-01-26T08:00:00", "2026-01-26T08:00:00+08:00",
            "0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59+00:00", 946684799999,
            1769385600000, 4102444800001, _nest(rng, rng.randint(1, 40)),
        ]
    )  # fmt: skip


def _mutate_object(rng: random.Random, obj: dict[str, Any]) -> dict[str, Any]:
    out = dict(obj)
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        if op < 0.2 and out:
            out.pop(rng.choice(sorted(out)))
        elif op < 0.7:
            out[rng.choice(FIELDS)] = _odd_value(rng)
        elif op < 0.85:
            out["extras"] = {"deep": _nest(rng, rng.randint(0, 30)), "n": _odd_value(rng)}
        else:
            out[f"unknown_{rng.randint(0, 9)}"] = _odd_value(rng)
    return out


def _mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    op = rng.random()
    if op < 0.25 and data:
        return data[: rng.randrange(len(data))]
    if op < 0.5 and data:
        i = rng.randrange(len(data))
        return data[:i] + bytes([rng.randrange(256)]) + data[i + 1 :]
    if op < 0.65:
        return b"\xef\xbb\xbf" + data  # a UTF-8 byte order mark
    if op < 0.8:
        return data.replace(b'"', b"\xff", 1)
    if op < 0.9:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
    return b"[" * 3000 + b"]" * 3000


def fuzz_messages(
    rng: random.Random, base: list[dict[str, Any]], count: int
) -> list[tuple[str, str, bytes]]:
    """``count`` (terminal or topic tail, kind, payload) cases: a quarter kept valid, the rest
    mutated as objects, as bytes, in batches, or sent to odd topics."""

    def one() -> dict[str, Any]:
        return dict(rng.choice(base))

    def encode(value: Any) -> bytes:
        return json.dumps(value).encode()

    cases: list[tuple[str, str, bytes]] = []
    for _ in range(count):
        roll = rng.random()
        terminal, kind = TERMINAL, "position"
        if roll < 0.25:
            payload = encode(one())
        elif roll < 0.55:
            payload = encode(_mutate_object(rng, one()))
        elif roll < 0.7:
            payload = _mutate_bytes(rng, encode(one()))
        elif roll < 0.85:
            kind = "batch"
            items: list[Any] = [
                _mutate_object(rng, one()) if rng.random() < 0.3 else one()
                for _ in range(rng.randint(0, 6))
            ]
            payload = encode(rng.choice([items, items, items[0] if items else {}, {"a": items}]))
        elif roll < 0.9:
            terminal = STRANGER
            payload = encode(one())
        elif roll < 0.95:
            # a kind outside the contract ("status" and "cmd_result" are the command
            # dispatcher's since the downlink channel, not ingest's to file)
            kind = rng.choice(["telemetry", "position/extra", ""])
            payload = encode(one())
        else:
            payload = b" " * 300_000 if rng.random() < 0.2 else encode(one())
            terminal = rng.choice([TERMINAL, "bad id!", "x" * 40])
        cases.append((terminal, kind, payload))
    return cases


@pytest.fixture
def base_positions(shared_data: Path) -> list[dict[str, Any]]:
    track = read_track(shared_data / "bods_liverpool_bus_route14_outbound.csv", "bods")
    positions = sorted((p for ps in track.values() for p in ps), key=lambda p: p.fix_time)
    return [position_to_payload(p) for p in positions[:300]]


def test_decoding_fuzzed_payloads_raises_only_payload_errors_and_rules_reads_what_it_accepts(
    settings: Settings, base_positions: list[dict[str, Any]]
) -> None:
    rng = random.Random(SEED)
    received_at = datetime(2026, 1, 27, tzinfo=UTC)
    outcomes: collections.Counter[str] = collections.Counter()
    for terminal, kind, payload in fuzz_messages(rng, base_positions, 3000):
        if kind not in ("position", "batch"):
            continue  # the topic check comes first in the worker (tested end to end below)
        try:
            positions = decode_positions(payload, kind, terminal, received_at, settings.ingest)
        except PayloadError as error:
            assert error.reason in REASONS, error
            assert error.detail
            outcomes[error.reason] += 1
            continue
        outcomes["accepted"] += 1
        accepted = [
            p.evolve(vehicle_id=1, company_id=1, received_at=received_at).to_dict()
            for p in positions
        ]
        assert len(parse_positions(json.dumps(accepted))) == len(positions)
    # the generator reaches the interesting outcomes (a check that the fuzzing fuzzes)
    assert {"accepted", "malformed_json", "wrong_type", "missing_field", "too_deep"} <= set(
        outcomes
    ), outcomes


def _decode_outcome(payload: bytes, kind: str, terminal: str, received_at: datetime) -> Any:
    """The positions (as dicts, repr'd: NaN-safe, 1 told from 1.0) or the (reason, detail)."""
    try:
        positions = decode_positions(payload, kind, terminal, received_at, Settings().ingest)  # type: ignore[arg-type]
    except PayloadError as error:
        return error.reason, error.detail
    return [repr(p.to_dict()) for p in positions]


def test_fast_decoding_accepts_and_rejects_exactly_as_the_json_loads_decoding(
    base_positions: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """decode_positions parses with gps_monitor.fastjson; with the standard library's parser in
    its place it gives the same positions and the same rejection reasons and details, on the
    real track's payloads, the fuzzed ones and the track as one batch."""
    rng = random.Random(SEED + 7)
    received_at = datetime(2026, 1, 27, tzinfo=UTC)
    cases = [(TERMINAL, "position", json.dumps(p).encode()) for p in base_positions]
    cases.append((TERMINAL, "batch", json.dumps(base_positions).encode()))
    cases += [c for c in fuzz_messages(rng, base_positions, 3000) if c[1] in ("position", "batch")]
    fast = [_decode_outcome(p, kind, terminal, received_at) for terminal, kind, p in cases]
    monkeypatch.setattr("gps_monitor.fastjson.loads", json.loads)
    slow = [_decode_outcome(p, kind, terminal, received_at) for terminal, kind, p in cases]
    for case, a, b in zip(cases, fast, slow, strict=True):
        assert a == b, case[2][:200]
    assert sum(isinstance(o, list) for o in fast) > 300  # the real payloads were accepted


@contextlib.asynccontextmanager
async def _task(worker: IngestWorker | RulesWorker) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.ready.wait(), 15)
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_the_ingest_worker_files_every_fuzzed_message_once_and_keeps_going(
    settings: Settings, pool: asyncpg.Pool, base_positions: list[dict[str, Any]]
) -> None:
    company = await ensure_company(pool, "Fuzz Co")
    await ensure_vehicle(pool, company_id=company.id, plate_number="渝A00140", terminal_id=TERMINAL)
    rng = random.Random(SEED + 1)
    cases = fuzz_messages(rng, base_positions, 300)
    sentinel = position_json("2026-01-27T08:00:00+08:00", 29.56, 106.55)
    published = [(f"gps/v1/{t}/{k}" if k else f"gps/v1/{t}", p) for t, k, p in cases]
    published.append((f"gps/v1/{TERMINAL}/position", sentinel.encode()))
    # what the subscription gps/v1/+/+ receives (gps/v1/T and gps/v1/T/a/b never reach it)
    delivered = [(t, p) for t, p in published if t.count("/") == 3]
    prefix = settings.mqtt.topic_prefix

    def filed() -> Callable[[], Any]:
        async def count() -> int:
            raw = await pool.fetchval("SELECT count(*) FROM raw_messages")
            rejected = await pool.fetchval("SELECT count(*) FROM rejected_messages")
            return int(raw + rejected)

        return count

    try:
        async with _task(IngestWorker(settings)) as task:
            await publish_raw(settings, [(t, p) for t, p in published])
            total = await wait_for(filed(), lambda n: n >= len(delivered), timeout_s=90)
            await asyncio.sleep(0.5)  # nothing more arrives
            alive = not task.done()
    finally:
        await drop_session(settings)
    raw = await pool.fetch("SELECT topic, payload FROM raw_messages")
    rejected = await pool.fetch("SELECT topic, payload, reason, detail FROM rejected_messages")
    assert alive
    assert len(published) - len(delivered) < 20 and total == len(delivered)
    filed_messages = collections.Counter(
        (r["topic"].removeprefix(prefix), bytes(r["payload"])) for r in [*raw, *rejected]
    )
    assert filed_messages == collections.Counter(delivered)  # each once, nothing lost
    assert all(r["reason"] in REASONS and r["detail"] for r in rejected)
    assert (f"gps/v1/{TERMINAL}/position", sentinel.encode()) in {
        (r["topic"].removeprefix(prefix), bytes(r["payload"])) for r in raw
    }


async def test_the_rules_worker_sets_aside_fuzzed_accepted_messages_and_keeps_evaluating(
    settings: Settings, pool: asyncpg.Pool, base_positions: list[dict[str, Any]]
) -> None:
    company = await ensure_company(pool, "Fuzz Co")
    vehicle = await ensure_vehicle(
        pool, company_id=company.id, plate_number="渝A00140", terminal_id=TERMINAL
    )
    rng = random.Random(SEED + 2)
    start = datetime(2026, 1, 26, 8, tzinfo=UTC)

    def accepted(i: int, payload: dict[str, Any]) -> dict[str, Any]:
        return payload | {
            "terminal_id": TERMINAL, "vehicle_id": vehicle.id, "company_id": company.id,
            "fix_time": (start + timedelta(seconds=i)).isoformat(),
            "received_at": (start + timedelta(seconds=i)).isoformat(), "quality": "ok",
        }  # fmt: skip

    topic = "positions/v2/0"
    messages: list[tuple[str, bytes]] = []
    for i in range(150):
        item = accepted(i, rng.choice(base_positions))
        roll = rng.random()
        if roll < 0.5:
            payload = json.dumps([_mutate_object(rng, item)]).encode()
        elif roll < 0.7:
            payload = _mutate_bytes(rng, json.dumps([item]).encode())
        elif roll < 0.8:
            payload = json.dumps(item).encode()  # not an array
        else:
            payload = json.dumps([item]).encode()
        where = rng.choice([topic, topic, topic, "positions/v2/x", topic + "/9"])
        messages.append((where, payload))
    sentinel_time = start + timedelta(hours=1)
    sentinel = accepted(0, base_positions[0]) | {"fix_time": sentinel_time.isoformat()}
    messages.append((topic, json.dumps([sentinel]).encode()))
    rules = settings.rules.model_copy(update={"offline_after_s": 86400.0})
    settings = settings.model_copy(update={"rules": rules})
    try:
        async with _task(RulesWorker(settings)) as task:
            await publish_raw(settings, messages)
            last = await wait_for(
                lambda: pool.fetchval("SELECT last_fix_time FROM rule_state"),
                lambda t: t == sentinel_time,
                timeout_s=60,
            )
            alive = not task.done()
    finally:
        await drop_session(settings, rules_client_id(settings))
    rejected = await pool.fetch("SELECT topic, reason, detail FROM rejected_messages")
    assert alive and last == sentinel_time
    assert 0 < len(rejected) < len(messages)
    assert all(r["reason"] in REASONS and r["detail"] for r in rejected)
