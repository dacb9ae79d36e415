"""Every kind of bad input is rejected with its reason and raw bytes; the worker goes on."""

from __future__ import annotations

import asyncio
import json

import asyncpg
from ingest_helpers import count_probe, position_json, publish_raw, running_worker, wait_for

from gps_monitor.config import IngestSettings, Settings
from gps_monitor.db import registry


async def _register(pool: asyncpg.Pool, terminal_id: str) -> int:
    company = await registry.ensure_company(pool, "Reject test company")
    vehicle = await registry.ensure_vehicle(
        pool, company_id=company.id, plate_number=f"渝A{terminal_id[-5:]}", terminal_id=terminal_id
    )
    return vehicle.id


def _obj(**fields: object) -> bytes:
    return json.dumps(fields).encode()


async def test_each_kind_of_bad_input_is_rejected_and_the_next_good_message_is_stored(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    settings = settings.model_copy(
        update={"ingest": IngestSettings(max_payload_bytes=1024, max_batch_positions=3)}
    )
    await _register(pool, "013800000001")
    good = position_json("2026-01-26T08:00:00+08:00", 29.56, 106.55)
    pos, batch = "gps/v1/013800000001/position", "gps/v1/013800000001/batch"
    t = "2026-01-26T08:00:0{}+08:00"
    cases = [
        ("gps/v1/099999999999/position", good.encode(), "unknown_terminal"),
        (pos, b'{"fix_time": "2026-01-26T08:00:00+08:00", "lat', "malformed_json"),
        (pos, b"\xff\xfe\x00garbage", "malformed_json"),
        (pos, position_json(t.format(1), "29.5", 106.5).encode(), "wrong_type"),
        (pos, b'["not", "an", "object"]', "wrong_type"),
        (pos, _obj(fix_time="2026-01-26T08:00:02", latitude=29.5, longitude=106.5, speed_kmh=1),
         "wrong_type"),
        (pos, _obj(fix_time=t.format(3), longitude=106.5, speed_kmh=1), "missing_field"),
        (pos, _obj(fix_time=t.format(4), latitude=29.5, longitude=106.5, speed_kmh=1,
                   extras={"pad": "x" * 2000}), "oversize"),
        (batch, ("[" + ",".join([good] * 4) + "]").encode(), "oversize"),
        (batch, good.encode(), "wrong_type"),
        ("gps/v1/013800000001/telemetry", good.encode(), "bad_topic"),
    ]  # fmt: skip
    async with running_worker(settings) as worker:
        await publish_raw(settings, [(topic, payload) for topic, payload, _ in cases])
        await publish_raw(settings, [("gps/v1/013800000001/position", good)])
        stored = await wait_for(
            count_probe(pool, "SELECT count(*) FROM positions"), lambda n: n >= 1
        )
        rejected = await pool.fetch(
            "SELECT topic, payload, reason, detail, terminal_id FROM rejected_messages ORDER BY id"
        )
    assert stored == 1
    assert [r["reason"] for r in rejected] == [reason for _, _, reason in cases]
    for row, (topic, payload, _) in zip(rejected, cases, strict=True):
        assert row["topic"] == settings.mqtt.topic_prefix + topic
        assert bytes(row["payload"]) == payload  # raw bytes kept as received
        assert row["detail"]  # what was expected and what came
    details = {r["reason"] + ":" + r["detail"] for r in rejected}
    assert any("latitude" in d and '"29.5"' in d for d in details)
    assert any("missing_field:latitude" in d for d in details)
    assert any("expected a registered vehicle" in d for d in details)
    assert worker.stats["rejected"] == len(cases)
    assert await pool.fetchval("SELECT count(*) FROM raw_messages") == 1


async def test_a_terminal_registered_while_running_is_accepted_after_the_retry_delay(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    settings = settings.model_copy(update={"ingest": IngestSettings(unknown_terminal_retry_s=0.5)})
    first = position_json("2026-01-26T08:00:00+08:00", 29.56, 106.55)
    second = position_json("2026-01-26T08:00:10+08:00", 29.5601, 106.5501)
    async with running_worker(settings):
        await publish_raw(settings, [("gps/v1/013800000002/position", first)])
        rejected = await wait_for(
            count_probe(pool, "SELECT count(*) FROM rejected_messages"), lambda n: n >= 1
        )
        await _register(pool, "013800000002")
        await asyncio.sleep(0.6)  # the negative cache entry expires
        await publish_raw(settings, [("gps/v1/013800000002/position", second)])
        stored = await wait_for(
            count_probe(pool, "SELECT count(*) FROM positions"), lambda n: n >= 1
        )
    assert rejected == 1
    assert stored == 1


async def test_numbers_no_column_or_protocol_can_carry_are_rejected_as_out_of_range(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """A 1e300 odometer was stored as a good fix (and printed as 301 digits in the evidence
    CSV); a 1e300 speed or altitude failed only in the database as ``unstorable``. Each is now
    set aside on decoding, saying what the field can hold and what came. The largest values
    JT/T 808 can carry are stored, an implausible speed flagged invalid as before."""
    await _register(pool, "013800000003")
    topic = "gps/v1/013800000003/position"
    t = "2026-01-26T08:00:{:02d}+08:00"
    bad = {
        "mileage_km": position_json(t.format(1), 53.4, -2.98, mileage_km=1e300),
        "speed_kmh": position_json(t.format(2), 53.4, -2.98, speed_kmh=1e300),
        "altitude_m": position_json(t.format(3), 53.4, -2.98, altitude_m=1e300),
        "altitude_m ": position_json(t.format(4), 53.4, -2.98, altitude_m=-1e300),
    }
    largest = position_json(
        t.format(5), 53.4, -2.98, speed_kmh=6553.5, mileage_km=429496729.5, altitude_m=65535
    )
    lowest = position_json(t.format(6), 53.4001, -2.9801, altitude_m=-32768, mileage_km=0)
    async with running_worker(settings):
        await publish_raw(settings, [(topic, p) for p in [*bad.values(), largest, lowest]])
        stored = await wait_for(
            count_probe(pool, "SELECT count(*) FROM positions"), lambda n: n >= 2
        )
        rejected = await wait_for(
            lambda: pool.fetch("SELECT payload, reason, detail FROM rejected_messages"),
            lambda rows: len(rows) >= len(bad),
        )
    assert stored == 2
    by_payload = {bytes(r["payload"]).decode(): (r["reason"], r["detail"]) for r in rejected}
    assert len(by_payload) == len(bad)
    for field, payload in bad.items():
        reason, detail = by_payload[payload]
        assert reason == "out_of_range", (field, reason, detail)
        assert detail.startswith(field.strip() + ": expected "), detail
        assert detail.endswith("got 1e+300") or detail.endswith("got -1e+300"), detail
    assert "429496729.5" in by_payload[bad["mileage_km"]][1]
    assert "6553.5" in by_payload[bad["speed_kmh"]][1]
    rows = await pool.fetch(
        "SELECT speed_kmh, mileage_km, altitude_m, quality, quality_reason FROM positions"
        " ORDER BY fix_time"
    )
    assert [tuple(r) for r in rows] == [
        (6553.5, 429496729.5, 65535.0, "invalid", "implausible_speed"),
        (30.0, 0.0, -32768.0, "ok", None),
    ]
