"""Issue 12 item 2: the terminal's own alarm bits count in a report without a fix. An SOS sent
from a tunnel (0x0200 with the fix flag off, no coordinates) opens its alarm at the vehicle's
last good fix, marked as such; before, the invalid report stopped before every rule and the SOS
reached nobody."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import asyncpg
from ingest_helpers import drop_session, running_worker, wait_for
from jt808_helpers import add_vehicle, authenticated, location_report, running_gateway
from rules_factory import position

from gps_monitor.config import Settings
from gps_monitor.models import Quality
from ingest.jt808 import messages as m
from ingest.jt808.attachments_sim import adas_report
from ingest.jt808.sim import sim_plate
from rules.context import RuleContext, VehicleProfile
from rules.engine import Engine, VehicleState
from rules.worker import RulesWorker, rules_client_id

PHONE = "13900000012"
SOS = 1 << 0


@contextlib.asynccontextmanager
async def running_rules(settings: Settings) -> AsyncIterator[RulesWorker]:
    worker = RulesWorker(settings)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.ready.wait(), 15)
        yield worker
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await drop_session(settings, rules_client_id(settings))


async def test_a_no_fix_sos_through_gateway_ingest_and_rules_opens_at_the_last_good_fix(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    await add_vehicle(pool, PHONE, sim_plate(PHONE))
    good = location_report("260101080000")  # 29.563000, 106.551000 at 00:00:00 UTC
    tunnel = replace(
        location_report("260101080130"),
        alarm_flags=SOS,
        status_flags=m.STATUS_ACC_ON,  # positioned bit off
        latitude_e6=0,
        longitude_e6=0,
        speed_dkmh=0,
    )
    out = replace(location_report("260101080300"), latitude_e6=29_565_000)
    async with (
        running_worker(settings),
        running_rules(settings),
        running_gateway(settings, pool) as (_gateway, port),
    ):
        terminal = await authenticated(port, PHONE)
        assert await terminal.send_location(good) == m.RESULT_OK
        assert await terminal.send_location(tunnel) == m.RESULT_OK
        opened = await wait_for(
            lambda: pool.fetchrow("SELECT * FROM alarms WHERE alarm_type = 'device_alarm'"),
            lambda row: row is not None,
        )
        assert await terminal.send_location(out) == m.RESULT_OK  # SOS cleared, fix back
        closed = await wait_for(
            lambda: pool.fetchrow("SELECT * FROM alarms WHERE alarm_type = 'device_alarm'"),
            lambda row: row is not None and row["ended_at"] is not None,
        )
        await terminal.close()
    stored = await pool.fetchrow(
        "SELECT quality, quality_reason, alarm_flags FROM positions WHERE fix_time = $1",
        datetime(2026, 1, 1, 0, 1, 30, tzinfo=UTC),
    )
    assert dict(stored) == {"quality": "invalid", "quality_reason": "fix_not_valid",
                            "alarm_flags": SOS}  # fmt: skip
    assert opened is not None and closed is not None
    assert opened["started_at"] == datetime(2026, 1, 1, 0, 1, 30, tzinfo=UTC)
    assert opened["level"] == 1  # device_alarm.sos
    evidence = {
        "quality": "invalid",
        "quality_reason": "fix_not_valid",
        "report_fix_time": "2026-01-01T00:01:30+00:00",
        "position": {
            "source": "last_good_fix",
            "fix_time": "2026-01-01T00:00:00+00:00",
            "latitude": 29.563,
            "longitude": 106.551,
        },
    }

    def details(row: Any) -> dict[str, Any]:
        value = row["details"]
        return json.loads(value) if isinstance(value, str) else dict(value)

    assert details(opened) == {"bit": 0, "name": "sos", "without_fix": evidence}
    assert closed["ended_at"] == datetime(2026, 1, 1, 0, 3, tzinfo=UTC)
    assert details(closed)["without_fix"] == evidence  # the close keeps the marker


async def test_a_no_fix_adas_alarm_through_gateway_ingest_and_rules_is_raised_marked(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """An ADAS forward collision (item 0x64) in a 0x0200 with the fix flag off reaches the alarm
    table, at the last good fix and marked ``without_fix`` (before: nothing)."""
    await add_vehicle(pool, PHONE, sim_plate(PHONE))
    good = location_report("260101080000")
    adas = adas_report("T000012", 1, 0, datetime(2026, 1, 1, 0, 1, 30, tzinfo=UTC))
    tunnel = replace(adas, status_flags=m.STATUS_ACC_ON, latitude_e6=0, longitude_e6=0)
    async with (
        running_worker(settings),
        running_rules(settings),
        running_gateway(settings, pool) as (_gateway, port),
    ):
        terminal = await authenticated(port, PHONE)
        assert await terminal.send_location(good) == m.RESULT_OK
        assert await terminal.send_location(tunnel) == m.RESULT_OK
        row = await wait_for(
            lambda: pool.fetchrow("SELECT * FROM alarms WHERE alarm_type = 'active_safety'"),
            lambda row: row is not None,
        )
        await terminal.close()
    assert row["started_at"] == datetime(2026, 1, 1, 0, 1, 30, tzinfo=UTC)
    details = row["details"]
    details = json.loads(details) if isinstance(details, str) else dict(details)
    assert details["name"] == "adas_forward_collision" and row["level"] == 2
    assert details["without_fix"]["quality_reason"] == "fix_not_valid"
    assert details["without_fix"]["position"] == {
        "source": "last_good_fix",
        "fix_time": "2026-01-01T00:00:00+00:00",
        "latitude": 29.563,
        "longitude": 106.551,
    }


def _ctx() -> RuleContext:
    profile = VehicleProfile(vehicle_id=1, company_id=1, terminal_id="t1", vehicle_class="coach")
    settings = Settings()
    return RuleContext(profile, settings.rules, settings.quality, clock="wall")


def test_without_fix_rules_see_only_newer_reports_whose_time_is_trusted() -> None:
    engine, ctx = Engine(), _ctx()
    state = VehicleState()
    state, _ = engine.process(state, position("2026-01-10 10:00:00", speed_kmh=30), ctx)

    def no_fix(at: str, reason: str, flags: int = SOS) -> Any:
        return replace(
            position(at, alarm_flags=flags), quality=Quality.INVALID, quality_reason=reason
        )

    # a future time (a zone mistake) is no time to open an alarm at
    _, out = engine.process(state, no_fix("2026-01-10 18:00:10", "future_fix_time"), ctx)
    assert out == []
    # older than the last good fix: late data, re-evaluated elsewhere
    _, out = engine.process(state, no_fix("2026-01-10 09:59:00", "fix_not_valid"), ctx)
    assert out == []
    # a GPS jump with the SOS bit: the bit counts, the jump does not
    jump = replace(position("2026-01-10 10:00:10", alarm_flags=SOS), quality=Quality.DRIFT,
                   quality_reason="implausible_jump")  # fmt: skip
    state, out = engine.process(state, jump, ctx)
    assert [(a.alarm_type, a.details["without_fix"]["quality"]) for a in out] == [
        ("device_alarm", "drift")
    ]
    assert state.last is not None and state.last[0] < jump.fix_time.timestamp()  # not a fix
    # an older report without a fix than the one already stepped changes nothing
    _, out = engine.process(state, no_fix("2026-01-10 10:00:05", "zero_coordinates", 0), ctx)
    assert out == []


def test_an_active_safety_item_without_a_fix_opens_at_the_last_good_fix() -> None:
    """A DSM phone-call alarm (0x65) in a report with the fix flag off (a tunnel) is raised all
    the same, marked ``without_fix``; an episode it opens is closed by the next fix."""
    engine, ctx = Engine(), _ctx()
    state = VehicleState()
    state, _ = engine.process(state, position("2026-01-10 10:00:00", speed_kmh=30), ctx)
    call = {"source": "dsm", "type": 0x02, "flag": 1, "level": 2, "name": "dsm_phone_call"}
    tunnel = replace(
        position("2026-01-10 10:00:10", extras={"active_safety": [call]}),
        quality=Quality.INVALID,
        quality_reason="fix_not_valid",
    )
    state, out = engine.process(state, tunnel, ctx)
    [opened] = [a for a in out if a.alarm_type == "active_safety"]
    assert opened.event == "opened" and opened.level == 2
    assert opened.details["name"] == "dsm_phone_call"
    assert opened.details["without_fix"]["quality_reason"] == "fix_not_valid"
    assert opened.details["without_fix"]["position"]["source"] == "last_good_fix"
    assert opened.started_at == tunnel.fix_time
    end = position("2026-01-10 10:00:20", extras={"active_safety": [call | {"flag": 2}]})
    _, out = engine.process(state, end, ctx)
    [closed] = [a for a in out if a.alarm_type == "active_safety"]
    assert closed.event == "closed" and closed.started_at == tunnel.fix_time
    assert closed.details["without_fix"] == opened.details["without_fix"]
