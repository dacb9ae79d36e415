"""One poisonous message (a date PostgreSQL or Python cannot hold, a NUL character, a value the
database refuses) is rejected with its reason; the worker carries on and the rest of its batch
is stored."""

from __future__ import annotations

import json

import asyncpg
from ingest_helpers import count_probe, position_json, publish_raw, running_worker, wait_for

from gps_monitor.config import Settings
from gps_monitor.db import registry

TERMINAL = "013800000077"
TOPIC = f"gps/v1/{TERMINAL}/position"


async def _register(pool: asyncpg.Pool) -> None:
    company = await registry.ensure_company(pool, "Poison test company")
    await registry.ensure_vehicle(
        pool, company_id=company.id, plate_number="渝A00077", terminal_id=TERMINAL
    )


async def _rejected(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT reason, detail, payload FROM rejected_messages ORDER BY id")


async def test_a_year_one_fix_time_is_rejected_and_the_worker_goes_on(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    await _register(pool)
    year_one = json.dumps(
        {"fix_time": "0001-01-01T00:00:00+00:00", "latitude": 29.57, "longitude": 106.56,
         "speed_kmh": 30}
    )  # fmt: skip
    year_one_local = position_json("0001-01-01T00:00:00+08:00", 29.57, 106.56)
    good = position_json("2026-01-26T08:00:00+08:00", 29.56, 106.55)
    async with running_worker(settings):
        await publish_raw(settings, [(TOPIC, year_one), (TOPIC, year_one_local), (TOPIC, good)])
        stored = await wait_for(
            count_probe(pool, "SELECT count(*) FROM positions"), lambda n: n >= 1
        )
        rejected = await wait_for(lambda: _rejected(pool), lambda rows: len(rows) >= 2)
    assert stored == 1
    assert [r["reason"] for r in rejected] == ["out_of_range", "out_of_range"]
    assert all("fix_time" in r["detail"] and "0001-01-01" in r["detail"] for r in rejected)


async def test_a_nul_character_anywhere_is_rejected_and_later_positions_are_stored(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    await _register(pool)
    t = "2026-01-26T08:00:0{}+08:00"
    in_value = position_json(t.format(1), 29.56, 106.55, extras={"note": "a\u0000b"})
    in_key = position_json(t.format(2), 29.56, 106.55, extras={"k\u0000": 1})
    assert "\\u0000" in in_value and "\\u0000" in in_key
    good = position_json(t.format(3), 29.56, 106.55)
    async with running_worker(settings):
        await publish_raw(settings, [(TOPIC, in_value), (TOPIC, in_key), (TOPIC, good)])
        stored = await wait_for(
            count_probe(pool, "SELECT count(*) FROM positions"), lambda n: n >= 1
        )
        rejected = await wait_for(lambda: _rejected(pool), lambda rows: len(rows) >= 2)
    assert stored == 1
    assert [r["reason"] for r in rejected] == ["wrong_type", "wrong_type"]
    assert "extras.note" in rejected[0]["detail"] and "NUL" in rejected[0]["detail"]
    assert "extras" in rejected[1]["detail"] and "NUL" in rejected[1]["detail"]
    assert bytes(rejected[0]["payload"]) == in_value.encode()


async def test_a_message_the_database_refuses_is_rejected_and_its_batch_is_stored(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """A lone surrogate in extras passes decoding (JSON's \\ud800 escape, which Python's json
    reads) but PostgreSQL's jsonb refuses it (SQLSTATE 22P02). It is published between good
    messages so it lands in one batch with them. (NaN in extras, the first example here, and an
    altitude beyond float32, the second, are now refused when decoded: the altitude as
    ``out_of_range``, a JT/T 808 altitude being a 16-bit word.)"""
    await _register(pool)
    t = "2026-01-26T08:00:{:02d}+08:00"
    bad_extras = position_json(t.format(5), 29.5605, 106.5505, extras={"note": "\ud800"})
    huge_altitude = position_json(t.format(10), 29.561, 106.551, altitude_m=1e300)
    items = [(TOPIC, position_json(t.format(s), 29.56 + s / 1e5, 106.55 + s / 1e5))
             for s in (0, 15, 20)]  # fmt: skip
    items[1:1] = [(TOPIC, bad_extras), (TOPIC, huge_altitude)]
    async with running_worker(settings) as worker:
        await publish_raw(settings, items)
        stored = await wait_for(
            count_probe(pool, "SELECT count(*) FROM positions"), lambda n: n >= 3
        )
        rejected = await wait_for(lambda: _rejected(pool), lambda rows: len(rows) >= 2)
        await publish_raw(settings, [(TOPIC, position_json(t.format(30), 29.5603, 106.5503))])
        stored_after = await wait_for(
            count_probe(pool, "SELECT count(*) FROM positions"), lambda n: n >= 4
        )
    assert stored == 3
    assert stored_after == 4
    assert sorted(r["reason"] for r in rejected) == ["out_of_range", "unstorable"]
    by_payload = {bytes(r["payload"]): r["detail"] for r in rejected}
    assert "surrogate" in by_payload[bad_extras.encode()]  # PostgreSQL's own message
    assert by_payload[huge_altitude.encode()].startswith("altitude_m: expected -32768 .. 65535")
    assert worker.stats["rejected:unstorable"] == 1
    assert await pool.fetchval("SELECT count(*) FROM raw_messages") == 4
