"""Issue 14 item 1: one terminal message must not stop the consumers. Ingest refuses absurd
nesting at the edge (``too_deep``); the rules worker (a real ``gps-monitor rules`` process) sets
aside any accepted-positions message it cannot handle, whatever it raises, acknowledges it and
goes on, so a restart does not meet it again."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from ingest_helpers import (
    count_probe,
    drop_session,
    position_json,
    publish_raw,
    running_worker,
    wait_for,
    worker_env,
)
from rules_factory import drive

from gps_monitor import topics
from gps_monitor.config import Settings
from gps_monitor.db.registry import ensure_company, ensure_vehicle
from gps_monitor.models import VehicleClass
from rules.worker import rules_client_id

TERMINAL = "013800000141"


def _nested(levels: int, leaf: str = "1") -> str:
    """JSON text of ``levels`` objects nested in each other (built as text: json.dumps itself
    recurses)."""
    return '{"a":' * levels + leaf + "}" * levels


def _deep_position(fix_time: str, extras_levels: int) -> str:
    return (
        f'{{"fix_time": "{fix_time}", "latitude": 29.56, "longitude": 106.55, '
        f'"speed_kmh": 30, "extras": {_nested(extras_levels)}}}'
    )


async def _vehicle(pool: asyncpg.Pool) -> tuple[int, int]:
    company = await ensure_company(pool, "Poison consumers Co")
    vehicle = await ensure_vehicle(
        pool,
        company_id=company.id,
        plate_number="渝A00141",
        terminal_id=TERMINAL,
        vehicle_class=VehicleClass.FREIGHT,
        speed_limit_kmh=60,
    )
    return company.id, vehicle.id


async def test_ingest_refuses_extras_nested_beyond_the_limit_with_a_reason(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    await _vehicle(pool)
    topic = f"gps/v1/{TERMINAL}/position"
    limit = settings.ingest.max_extras_depth
    audit = _deep_position("2026-01-26T08:00:01+08:00", 976)  # what the audit sent
    one_too_deep = _deep_position("2026-01-26T08:00:02+08:00", limit + 1)
    at_limit = _deep_position("2026-01-26T08:00:03+08:00", limit)
    batch = f"[{position_json('2026-01-26T08:00:04+08:00', 29.56, 106.55)}, {one_too_deep}]"
    good = position_json("2026-01-26T08:00:05+08:00", 29.56, 106.55)
    async with running_worker(settings):
        await publish_raw(
            settings,
            [(topic, audit), (topic, one_too_deep), (topic, at_limit),
             (f"gps/v1/{TERMINAL}/batch", batch), (topic, good)],
        )  # fmt: skip
        stored = await wait_for(
            count_probe(pool, "SELECT count(*) FROM positions"), lambda n: n >= 2
        )
        rejected = await wait_for(
            lambda: pool.fetch("SELECT reason, detail, payload FROM rejected_messages ORDER BY id"),
            lambda rows: len(rows) >= 3,
        )
    assert stored == 2  # the one at the limit and the good one
    assert [r["reason"] for r in rejected] == ["too_deep"] * 3
    assert f"at most {limit} levels" in rejected[0]["detail"]
    assert rejected[2]["detail"].startswith("[1].extras.a")  # names the element and the path
    assert bytes(rejected[0]["payload"]) == audit.encode()  # kept as received


def _spawn_rules(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = worker_env(settings) | {"GPS_MONITOR_RULES_OFFLINE_AFTER_S": "86400"}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gps_monitor.cli", "rules", "--no-upgrade"],
            env=env,
            stdout=out,
            stderr=out,
        )


async def _until_subscribed(proc: subprocess.Popen[bytes], log: Path, count: int) -> None:
    deadline = time.monotonic() + 30
    while log.read_bytes().count(b"rules worker consuming") < count:  # noqa: ASYNC240
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            tail = log.read_text()[-3000:]  # noqa: ASYNC240
            pytest.fail(f"rules worker did not subscribe:\n{tail}")
        await asyncio.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


# SOS on, and a driver certificate number with a NUL: the device alarm's details name the
# driver, and jsonb refuses \u0000 (SQLSTATE 22P05). Ingest refuses a NUL in any string
# (wrong_type), so only a message on the internal topic can carry one: the poison of these tests.
_UNSTORABLE: dict[str, Any] = {
    "alarm_flags": 1,
    "extras": {"driver": {"certificate_no": "A\x00B"}},
}


async def test_the_rules_process_sets_aside_poison_messages_and_survives_a_restart(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """The audit's message (976 levels of extras inside an accepted-positions array: json.loads
    raises RecursionError) and SOS fixes naming a driver whose certificate number holds a NUL
    (the alarm's details are refused by jsonb, SQLSTATE 22P05; until migration 0153 a NaN
    latitude in the vehicle state was the example, and the old worker retried such a batch
    forever) arrive before good fixes. The real process sets both
    aside with their reasons, raises the good overspeed alarm, and after a restart meets
    neither again."""
    company_id, vehicle_id = await _vehicle(pool)
    topic = topics.accepted_topic(0, settings.mqtt.topic_prefix)
    now = datetime.now(UTC)
    track = [
        p.evolve(vehicle_id=vehicle_id, company_id=company_id, terminal_id=TERMINAL,
                 received_at=now)
        for p in drive("2024-01-10 10:00:00", [(20, 50), (30, 75), (20, 50)])
    ]  # fmt: skip
    deep = (
        f'[{{"terminal_id": "{TERMINAL}", "fix_time": "2024-01-10T01:59:00+00:00", '
        f'"latitude": 29.5, "longitude": 106.5, "speed_kmh": 30, "vehicle_id": {vehicle_id}, '
        f'"company_id": {company_id}, "extras": {_nested(3000)}}}]'
    )
    other = await ensure_vehicle(  # its own vehicle: the good fixes would close its SOS alarm
        pool, company_id=company_id, plate_number="渝A00143", terminal_id="013800000143"
    )
    nul_driver = json.dumps(
        [p.evolve(vehicle_id=other.id, terminal_id="013800000143", **_UNSTORABLE).to_dict()
         for p in track[:5]]
    )  # fmt: skip
    assert "\\u0000" in nul_driver
    good = [json.dumps([p.to_dict() for p in track[i : i + 10]]) for i in range(0, len(track), 10)]
    log = tmp_path / "rules.log"
    proc = _spawn_rules(settings, log)
    try:
        await _until_subscribed(proc, log, 1)
        await publish_raw(
            settings,
            [(topic.removeprefix(settings.mqtt.topic_prefix), payload)
             for payload in [deep, nul_driver, *good]],
        )  # fmt: skip
        alarms = await wait_for(
            lambda: pool.fetch("SELECT alarm_type FROM alarms"),
            lambda rows: len(rows) >= 1,
        )
        rejected = await wait_for(
            lambda: pool.fetch("SELECT reason, detail, topic FROM rejected_messages ORDER BY id"),
            lambda rows: len(rows) >= 2,
        )

        async def settled() -> tuple[Any, int]:
            last = await pool.fetchval(
                "SELECT last_fix_time FROM rule_state WHERE vehicle_id = $1", vehicle_id
            )
            return last, await pool.fetchval("SELECT count(*) FROM alarm_outbox")

        # set aside and alarm committed is not acknowledged yet: a batch is acknowledged after
        # its alarms are published (their outbox rows deleted). Stopped before that, the
        # poison comes again after the restart and is set aside twice. So: every message
        # evaluated and every alarm published before the stop
        await wait_for(settled, lambda got: got == (track[-1].fix_time, 0))
        assert proc.poll() is None, log.read_text()[-3000:]
        proc.terminate()
        proc.wait(10)
        proc = _spawn_rules(settings, log)
        await _until_subscribed(proc, log, 2)
        await asyncio.sleep(1.5)  # anything redelivered would arrive now
        assert proc.poll() is None, log.read_text()[-3000:]
        rejected_after = await pool.fetchval("SELECT count(*) FROM rejected_messages")
    finally:
        _stop(proc)
        await drop_session(settings, rules_client_id(settings))
    assert [a["alarm_type"] for a in alarms] == ["overspeed"]
    assert sorted(r["reason"] for r in rejected) == ["too_deep", "unstorable"]
    assert all(r["topic"] == topic for r in rejected)
    assert rejected_after == 2  # acknowledged: not met again after the restart


async def test_an_accepted_message_mixing_a_poisoned_vehicle_with_a_good_one_keeps_the_good_one(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """positions/v2 carries one message per ingest batch, so one message holds many vehicles:
    a vehicle whose alarm cannot be stored (an SOS naming a driver whose certificate number
    holds a NUL, which jsonb refuses) is set aside alone, with only its positions as the
    payload; the other vehicle of the same message raises its overspeed alarm."""
    company_id, poisoned_id = await _vehicle(pool)
    good = await ensure_vehicle(
        pool,
        company_id=company_id,
        plate_number="渝A00142",
        terminal_id="013800000142",
        vehicle_class=VehicleClass.FREIGHT,
        speed_limit_kmh=60,
    )
    topic = topics.accepted_topic(0, settings.mqtt.topic_prefix)
    now = datetime.now(UTC)
    track = drive("2024-01-10 10:00:00", [(20, 50), (30, 75), (20, 50)])
    poisoned = [
        p.evolve(vehicle_id=poisoned_id, company_id=company_id, terminal_id=TERMINAL,
                 received_at=now, **_UNSTORABLE)
        for p in track[:5]
    ]  # fmt: skip
    speeding = [
        p.evolve(vehicle_id=good.id, company_id=company_id, terminal_id="013800000142",
                 received_at=now)
        for p in track
    ]  # fmt: skip
    mixed = json.dumps([p.to_dict() for p in [*poisoned, *speeding]])
    log = tmp_path / "rules.log"
    proc = _spawn_rules(settings, log)
    try:
        await _until_subscribed(proc, log, 1)
        await publish_raw(settings, [(topic.removeprefix(settings.mqtt.topic_prefix), mixed)])
        alarms = await wait_for(
            lambda: pool.fetch("SELECT vehicle_id, alarm_type FROM alarms"),
            lambda rows: len(rows) >= 1,
        )
        rejected = await wait_for(
            lambda: pool.fetch("SELECT reason, payload, detail FROM rejected_messages"),
            lambda rows: len(rows) >= 1,
        )
        assert proc.poll() is None, log.read_text()[-3000:]
    finally:
        _stop(proc)
        await drop_session(settings, rules_client_id(settings))
    assert [(a["vehicle_id"], a["alarm_type"]) for a in alarms] == [(good.id, "overspeed")]
    assert [r["reason"] for r in rejected] == ["unstorable"]
    assert "\\u0000" in rejected[0]["detail"]  # jsonb's refusal of the alarm's details
    kept = json.loads(rejected[0]["payload"])
    assert {p["vehicle_id"] for p in kept} == {poisoned_id} and len(kept) == len(poisoned)
