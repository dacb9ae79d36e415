"""KPI values on a small constructed fleet equal values computed by hand."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import date, datetime, timedelta

import asyncpg
import pytest
from openpyxl import load_workbook
from test_reports_support import BEIJING, Fix, insert_alarm, store_fixes

from gps_monitor.config import Settings
from gps_monitor.db import registry
from gps_monitor.models import Quality
from web.reports import kpi, service

FIRST, LAST = date(2026, 3, 1), date(2026, 3, 4)  # four local days


def day_track(
    day: date, *, skip: range = range(0), drift_at: int | None = None, quality: Quality = Quality.OK
) -> list[Fix]:
    """11 fixes 09:00-09:10 local, one a minute, 500 m apart (stored distance_m/interval_s set
    explicitly, so the hand computation is exact); the first fix of a day stands where the
    previous day ended (0 m after the overnight stop). ``skip``: minutes left out (a gap);
    ``drift_at``: minute whose fix is drift."""
    fixes: list[Fix] = []
    last_ok_minute: int | None = None
    for minute in range(11):
        if minute in skip:
            continue
        t = datetime(day.year, day.month, day.day, 9, minute, tzinfo=BEIJING)
        lat, lon = 30.0 + minute * 0.0045, 104.0
        if minute == drift_at:
            fixes.append(Fix(t, lat + 0.5, lon, 60.0, quality=Quality.DRIFT))
            continue
        if last_ok_minute is None:
            dist, interval = 0.0, 86_400.0 - 600.0
        else:
            steps = minute - last_ok_minute
            dist, interval = 500.0 * steps, 60.0 * steps
        fixes.append(Fix(t, lat, lon, 30.0, quality=quality, distance_m=dist, interval_s=interval))
        last_ok_minute = minute
    return fixes


def days(*numbers: int) -> list[date]:
    return [FIRST + timedelta(days=n - 1) for n in numbers]


@pytest.fixture
async def fleet(pool: asyncpg.Pool) -> dict[str, int]:
    a = await registry.ensure_company(pool, "甲运输公司")
    b = await registry.ensure_company(pool, "乙运输公司")
    ids: dict[str, int] = {"A": a.id, "B": b.id}
    plan: dict[str, tuple[int, list[Fix]]] = {
        # V1: online every day, clean
        "V1": (a.id, [f for d in days(1, 2, 3, 4) for f in day_track(d)]),
        # V2: offline half the period (days 3 and 4)
        "V2": (a.id, [f for d in days(1, 2) for f in day_track(d)]),
        # V3: one drift fix on day 3
        "V3": (a.id, [f for d in days(1, 2, 3, 4)
                      for f in day_track(d, drift_at=5 if d == days(3)[0] else None)]),
        "V4": (a.id, []),  # never connected
        # V5: day 1 gap 09:05-09:09 missing: 09:04 -> 09:10 is 360 s and 3 km: incomplete
        "V5": (b.id, [f for d in days(1, 2, 3, 4)
                      for f in day_track(d, skip=range(5, 10) if d == days(1)[0] else range(0))]),
        "V6": (b.id, []),  # never connected
        "V7": (b.id, [f for d in days(1, 2, 3, 4) for f in day_track(d)]),  # not must_connect
        "V8": (b.id, day_track(days(1)[0], quality=Quality.INVALID)),  # only invalid records
    }  # fmt: skip
    for n, (name, (company_id, fixes)) in enumerate(plan.items()):
        vehicle = await registry.ensure_vehicle(
            pool, company_id=company_id, plate_number=f"川A0000{n}", terminal_id=f"0199000000{n}",
            must_connect=name != "V7",
        )  # fmt: skip
        ids[name] = vehicle.id
        if fixes:
            await store_fixes(pool, vehicle.id, company_id, vehicle.terminal_id, fixes)
    if "V5" in ids:  # the gap really is stored as one 360 s / 3 km stretch
        row = await pool.fetchrow(
            "SELECT distance_m, interval_s FROM positions WHERE vehicle_id = $1 AND fix_time = $2",
            ids["V5"],
            datetime(2026, 3, 1, 9, 10, tzinfo=BEIJING),
        )
        assert (row["distance_m"], row["interval_s"]) == (3000.0, 360.0)
    enforcer = await pool.fetchval(
        "INSERT INTO users (username, password_hash, role) VALUES ('law', 'x', 'enforcement') "
        "RETURNING id"
    )

    def at(day: int, hour: int, minute: int = 0) -> datetime:
        return datetime(2026, 3, day, hour, minute, tzinfo=BEIJING)

    alarm = insert_alarm
    await alarm(
        pool,
        vehicle_id=ids["V1"],
        company_id=a.id,
        alarm_type="overspeed",
        started_at=at(1, 9, 2),
        ended_at=at(1, 9, 4),
        status="handled",
    )
    await alarm(
        pool,
        vehicle_id=ids["V1"],
        company_id=a.id,
        alarm_type="overspeed",
        started_at=at(2, 9, 2),
        ended_at=at(2, 9, 4),
        status="open",
    )
    penalised = await alarm(
        pool,
        vehicle_id=ids["V3"],
        company_id=a.id,
        alarm_type="overspeed",
        started_at=at(3, 9, 1),
        ended_at=at(3, 9, 3),
        status="acknowledged",
    )
    await pool.execute(
        "INSERT INTO alarm_penalties (alarm_id, decision, fine_yuan, recorded_by) "
        "VALUES ($1, '罚款', 200, $2)",
        penalised,
        enforcer,
    )
    # fatigue: V5 1.5 h on day 2, handled (note recorded); V1 from 23:00 on the last day to
    # 01:00 the next: 1 h inside the period
    fatigue = await alarm(
        pool,
        vehicle_id=ids["V5"],
        company_id=b.id,
        alarm_type="fatigue_driving",
        started_at=at(2, 10),
        ended_at=at(2, 11, 30),
        status="acknowledged",
    )
    await pool.execute(
        "UPDATE alarms SET handled_at = now(), handling_note = '已电话提醒司机' WHERE id = $1",
        fatigue,
    )
    await alarm(
        pool,
        vehicle_id=ids["V1"],
        company_id=a.id,
        alarm_type="fatigue_driving",
        started_at=at(4, 23),
        ended_at=at(4, 23) + timedelta(hours=2),
        status="open",
    )
    # outside the period / not a must-connect vehicle / not a violation: not counted
    await alarm(
        pool,
        vehicle_id=ids["V1"],
        company_id=a.id,
        alarm_type="overspeed",
        started_at=datetime(2026, 2, 27, 9, tzinfo=BEIJING),
        ended_at=datetime(2026, 2, 27, 9, 5, tzinfo=BEIJING),
    )
    await alarm(
        pool,
        vehicle_id=ids["V7"],
        company_id=b.id,
        alarm_type="overspeed",
        started_at=at(2, 9, 3),
        ended_at=at(2, 9, 5),
    )
    await alarm(
        pool,
        vehicle_id=ids["V1"],
        company_id=a.id,
        alarm_type="geofence_enter",
        started_at=at(2, 9, 6),
        ended_at=at(2, 9, 7),
    )
    return ids


async def test_kpis_on_constructed_fleet_equal_hand_computed_values(
    pool: asyncpg.Pool, settings: Settings, fleet: dict[str, int]
) -> None:
    report = await kpi.compute_kpis(pool, FIRST, LAST, settings.reports)
    county = report.county.period.kpis()
    # must-connect: V1 V2 V3 V4 V5 V6 V8 = 7; connected (a valid record): V1 V2 V3 V5 = 4
    assert county["connection_rate"] == round(100 * 4 / 7, 2)
    # vehicle-days: 4 connected x 4 days = 16; online: V1 4 + V2 2 + V3 4 + V5 4 = 14
    assert county["online_rate"] == round(100 * 14 / 16, 2)
    # mileage: V1 20 km + V2 10 + V3 20 (drift excluded; the step over it is 1 km) + V5 20 = 70;
    # incomplete: V5's 3 km gap (360 s > 300 s and 3 km > 1 km); overnight 0 m stretches are not
    assert county["track_completeness"] == round(100 * 67 / 70, 2)
    # records: V1 44 + V2 22 + V3 44 + V5 39 + V8 11 = 160; valid 44 + 22 + 43 + 39 + 0 = 148
    assert county["data_quality"] == round(100 * 148 / 160, 2)
    # drift: V3 of 4 online
    assert county["drift_rate"] == 25.0
    # overspeed alarms in the period: V1 x2, V3 x1 over 4 online vehicles
    assert county["overspeed_per_vehicle"] == 0.75
    # fatigue: 1.5 h (V5) + 1 h inside the period (V1) over 4 online vehicles
    assert county["fatigue_hours_per_vehicle"] == round(2.5 / 4, 3)
    # violations: 3 overspeed + 2 fatigue; handled: status handled, penalty, handled_at = 3
    assert county["handling_rate"] == 60.0

    by_name = {u.name: u.period.kpis() for u in report.companies}
    a, b = by_name["甲运输公司"], by_name["乙运输公司"]
    assert a["connection_rate"] == 75.0  # V1 V2 V3 of V1..V4
    assert a["online_rate"] == round(100 * 10 / 12, 2)
    assert a["track_completeness"] == 100.0
    assert a["data_quality"] == round(100 * 109 / 110, 2)
    assert a["drift_rate"] == round(100 / 3, 2)
    assert a["overspeed_per_vehicle"] == 1.0
    assert a["fatigue_hours_per_vehicle"] == round(1 / 3, 3)
    assert a["handling_rate"] == 50.0  # 2 of 4 (3 overspeed + V1 fatigue)
    assert b["connection_rate"] == round(100 / 3, 2)  # V5 of V5 V6 V8
    assert b["online_rate"] == 100.0
    assert b["track_completeness"] == 85.0  # 17 of 20 km
    assert b["data_quality"] == round(100 * 39 / 50, 2)
    assert b["drift_rate"] == 0.0
    assert b["overspeed_per_vehicle"] == 0.0
    assert b["fatigue_hours_per_vehicle"] == 1.5
    assert b["handling_rate"] == 100.0

    # the daily trend: day 3 has V2 offline (3 of 4 online) and V3's drift
    trend = {d: c.kpis() for d, c in report.county.days.items()}
    assert trend[days(2)[0]]["online_rate"] == 100.0
    assert trend[days(3)[0]]["online_rate"] == 75.0
    assert trend[days(3)[0]]["drift_rate"] == round(100 / 3, 2)
    # day 1: V1 V2 V3 V5 5 km each = 20 km, 3 km of it incomplete
    assert trend[days(1)[0]]["track_completeness"] == 85.0

    # one company only: the same values as that company in the county report
    only_a = await kpi.compute_kpis(pool, FIRST, LAST, settings.reports, company_id=fleet["A"])
    assert only_a.county.period.kpis() == a


async def test_kpi_gap_thresholds_are_settings(
    pool: asyncpg.Pool, settings: Settings, fleet: dict[str, int]
) -> None:
    strict = settings.reports.model_copy(update={"kpi_gap_m": 5000.0})  # 3 km gap now complete
    report = await kpi.compute_kpis(pool, FIRST, LAST, strict)
    assert report.county.period.kpis()["track_completeness"] == 100.0


async def test_kpi_report_json_and_xlsx_are_logged(
    pool: asyncpg.Pool, settings: Settings, fleet: dict[str, int]
) -> None:
    body, data = await service.kpi_report(
        pool, settings.reports, "json", FIRST, LAST, generated_by="bureau"
    )
    assert json.loads(data)["county"]["kpis"]["handling_rate"] == 60.0
    assert len(body["county"]["days"]) == 4
    _, xlsx = await service.kpi_report(
        pool, settings.reports, "xlsx", FIRST, LAST, generated_by="bureau"
    )
    wb = load_workbook(io.BytesIO(xlsx))
    rows = list(wb["汇总"].iter_rows(values_only=True))
    county_row = next(r for r in rows if r[0] == "全县 County")
    assert county_row[1] == round(100 * 4 / 7, 2)
    logged = await pool.fetch("SELECT kind, format FROM report_log ORDER BY id")
    assert [(r["kind"], r["format"]) for r in logged] == [("kpi", "json"), ("kpi", "xlsx")]


async def _online_today(pool: asyncpg.Pool, plate: str, *later: Fix) -> date:
    """A vehicle with one fix a minute ago (and ``later`` fixes); returns today (Beijing). Run
    clear of local midnight, so the report computes the same today."""
    now = datetime.now(BEIJING)
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), BEIJING)
    if midnight - now < timedelta(seconds=5):
        await asyncio.sleep((midnight - now).total_seconds() + 0.1)
        now = datetime.now(BEIJING)
    company = await registry.ensure_company(pool, f"{plate}运输公司")
    vehicle = await registry.ensure_vehicle(
        pool, company_id=company.id, plate_number=plate, terminal_id=f"0139{plate[-5:]:0>8}"
    )
    start_of_day = datetime.combine(now.date(), datetime.min.time(), BEIJING)
    fixes = [Fix(max(now - timedelta(minutes=1), start_of_day), 29.5, 106.5, 30.0), *later]
    await store_fixes(pool, vehicle.id, company.id, vehicle.terminal_id, fixes)
    return now.date()


async def test_a_period_running_past_today_is_assessed_up_to_today(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    """Found by a walkthrough: "this month" on the dashboard counted the days still to come as
    days offline (上线率 4 % for a fleet online every day so far, 0 % for a future period)."""
    today = await _online_today(pool, "渝C00001")
    report = await kpi.compute_kpis(
        pool, today - timedelta(days=1), today + timedelta(days=9), settings.reports
    )
    county = report.county.period
    # connected today, online today: 1 vehicle-day of 1 (the 9 days to come are not counted)
    assert (county.connected_vehicle_days, county.online_vehicle_days) == (1, 1)
    assert county.kpis()["online_rate"] == 100.0
    trend = {d: c.kpis()["online_rate"] for d, c in report.county.days.items()}
    assert trend[today] == 100.0
    assert all(trend[today + timedelta(days=k)] is None for k in range(1, 10)), trend
    # wholly in the future: no figure rather than 0 %
    later = await kpi.compute_kpis(
        pool, today + timedelta(days=20), today + timedelta(days=30), settings.reports
    )
    assert later.county.period.kpis()["online_rate"] is None


async def test_a_record_dated_after_today_is_no_day_online(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    """A terminal whose clock runs 8 h ahead (local time sent as UTC, flagged future_fix_time
    but stored) has records on tomorrow's local day from 16:00 on: tomorrow is no vehicle-day
    of 上线率, so its record must not count as a day online either (counted, "this month"
    read 200 % on the 1st)."""
    tomorrow = datetime.combine(
        datetime.now(BEIJING).date() + timedelta(days=1), datetime.min.time(), BEIJING
    )
    ahead = Fix(tomorrow + timedelta(hours=1), 29.5, 106.5, 30.0, quality=Quality.INVALID)
    today = await _online_today(pool, "渝D00001", ahead)
    for from_positions in (False, True):
        report = await kpi.compute_kpis(
            pool, today, today + timedelta(days=9), settings.reports, from_positions=from_positions
        )
        county = report.county.period
        assert (county.connected_vehicle_days, county.online_vehicle_days) == (1, 1)
        assert county.kpis()["online_rate"] == 100.0
        day = report.county.days[today + timedelta(days=1)]
        assert (day.connected_vehicle_days, day.online_vehicle_days) == (0, 0)
        assert day.kpis()["online_rate"] is None
