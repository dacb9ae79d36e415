"""The per-vehicle daily KPI figures (vehicle_day_kpi, migration 0110) equal the aggregation of
raw positions, in plain mode where statement triggers maintain them: on the real T-Drive track
and on generated fleets, including late positions stored after their day was aggregated, drift
suspects cleared to ok, and retention deleting old positions. The TimescaleDB continuous
aggregate is compared in tests/test_timescale_storage.py."""

from __future__ import annotations

import dataclasses
import random
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from test_reports_support import BEIJING, Fix, read_tdrive, store_fixes

from gps_monitor.config import ReportsSettings, Settings
from gps_monitor.db import registry, retention
from gps_monitor.db.positions import WriteBatch, write_batch
from gps_monitor.models import Position, Quality
from web.reports import kpi


async def figures(
    pool: asyncpg.Pool, first: date, last: date, *, from_positions: bool
) -> list[dict[str, Any]]:
    settings = ReportsSettings()
    tz = kpi.ZoneInfo(settings.display_timezone)
    start, _ = kpi.local_day_bounds(first, tz)
    _, end = kpi.local_day_bounds(last, tz)
    ids = [r["id"] for r in await pool.fetch("SELECT id FROM vehicles")]
    async with pool.acquire() as conn:
        rows = await kpi.vehicle_days(
            conn, settings, start, end, ids, from_positions=from_positions
        )
    return sorted((dict(r) for r in rows), key=lambda r: (r["vehicle_id"], r["day"]))


async def assert_same(pool: asyncpg.Pool, first: date, last: date) -> list[dict[str, Any]]:
    """Daily table == raw aggregation per vehicle-day (counts exact, metres to float rounding),
    and the whole KPI report built either way is identical."""
    daily = await figures(pool, first, last, from_positions=False)
    raw = await figures(pool, first, last, from_positions=True)
    assert [(r["vehicle_id"], r["day"], r["n"], r["n_ok"], r["n_drift"]) for r in daily] == [
        (r["vehicle_id"], r["day"], r["n"], r["n_ok"], r["n_drift"]) for r in raw
    ]
    for d, r in zip(daily, raw, strict=True):
        assert d["dist"] == pytest.approx(r["dist"], rel=1e-12, abs=1e-6)
        assert d["dist_gap"] == pytest.approx(r["dist_gap"], rel=1e-12, abs=1e-6)
    settings = ReportsSettings()
    a = (await kpi.compute_kpis(pool, first, last, settings)).to_dict()
    b = (await kpi.compute_kpis(pool, first, last, settings, from_positions=True)).to_dict()
    for report in (a, b):
        report.pop("generated_at")
    assert a["county"]["counts"]["records"] > 0
    assert rounded(a) == rounded(b)
    return daily


def rounded(value: Any) -> Any:
    """The report with unrounded metre sums to the micrometre (summing the same float64
    distances per vehicle-day in another order differs in the last bits); every published
    figure (KPIs to 0.01 %, kilometres to the metre) is compared exactly."""
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


async def add_vehicle(pool: asyncpg.Pool, company_id: int, n: int) -> int:
    vehicle = await registry.ensure_vehicle(
        pool, company_id=company_id, plate_number=f"川A{n:05d}", terminal_id=terminal(n)
    )
    return vehicle.id


def terminal(n: int) -> str:
    return f"0199{n:08d}"


async def test_daily_figures_equal_raw_on_tdrive_with_late_data(
    pool: asyncpg.Pool, shared_data: Path
) -> None:
    fixes = read_tdrive(shared_data / "tdrive_beijing_taxi_1.txt")
    # every 40th fix a drift suspect, every third fix of 3-5 Feb held back and stored late
    fixes = [
        dataclasses.replace(f, quality=Quality.DRIFT) if i % 40 == 7 else f
        for i, f in enumerate(fixes)
    ]
    held_days = (date(2008, 2, 3), date(2008, 2, 4), date(2008, 2, 5))
    late = [f for i, f in enumerate(fixes) if i % 3 == 0 and f.fix_time.date() in held_days]
    first_pass = [f for f in fixes if f not in late]
    company = await registry.ensure_company(pool, "北京出租")
    vehicle = await add_vehicle(pool, company.id, 1)
    await store_fixes(pool, vehicle, company.id, terminal(1), first_pass)
    first, last = date(2008, 2, 2), date(2008, 2, 8)
    before = await assert_same(pool, first, last)
    assert len(before) == 7 and sum(r["n_drift"] for r in before) > 0
    assert sum(r["dist_gap"] for r in before) > 0  # the real track has gaps > 5 min and > 1 km

    # late positions into days already aggregated (own batch, as a blind-area upload)
    await store_fixes(pool, vehicle, company.id, terminal(1), late)
    after = await assert_same(pool, first, last)
    assert sum(r["n"] for r in after) == sum(r["n"] for r in before) + len(late)

    # a later fix clears drift suspects: their quality becomes ok in the same transaction
    drifted = await pool.fetch(
        "SELECT fix_time FROM positions WHERE vehicle_id = $1 AND quality = 'drift' "
        "ORDER BY fix_time LIMIT 3",
        vehicle,
    )
    cleared = [
        Position(
            terminal_id=terminal(1), fix_time=r["fix_time"], latitude=39.9, longitude=116.4,
            speed_kmh=0.0, fix_valid=True, vehicle_id=vehicle, company_id=company.id,
            quality=Quality.OK, received_at=r["fix_time"],
        )
        for r in drifted
    ]  # fmt: skip
    async with pool.acquire() as conn:
        await write_batch(conn, WriteBatch(cleared=cleared))
    cleared_days = await assert_same(pool, first, last)
    assert sum(r["n_drift"] for r in cleared_days) == sum(r["n_drift"] for r in after) - 3


async def test_daily_figures_equal_raw_on_generated_fleet(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    rng = random.Random(13)
    companies = [(await registry.ensure_company(pool, f"企业{i}")).id for i in range(3)]
    first = date(2026, 3, 1)
    vehicles: list[tuple[int, int, str]] = []
    for n in range(12):
        company = companies[n % 3]
        vehicles.append((await add_vehicle(pool, company, 100 + n), company, terminal(100 + n)))
    held_back: dict[int, list[Fix]] = {}
    for vid, company, term in vehicles:
        fixes: list[Fix] = []
        for d in range(4):
            if rng.random() < 0.2:
                continue  # offline that day
            # fixes across local midnight too (23:30 .. 00:30 next day)
            t = datetime(2026, 3, 1 + d, 23, 30, tzinfo=BEIJING) - timedelta(
                hours=rng.randrange(20)
            )
            for _ in range(rng.randrange(5, 60)):
                t += timedelta(seconds=rng.choice([30, 60, 60, 60, 400, 900]))
                quality = rng.choices(
                    [Quality.OK, Quality.DRIFT, Quality.INVALID], [0.9, 0.05, 0.05]
                )[0]
                fixes.append(
                    Fix(t, 30.0 + rng.random(), 104.0, 40.0, quality=quality,
                        distance_m=rng.choice([200.0, 800.0, 1500.0, 4000.0]),
                        interval_s=None)
                )  # fmt: skip
        late = [f for f in fixes if rng.random() < 0.25]
        held_back[vid] = late
        await store_fixes(pool, vid, company, term, [f for f in fixes if f not in late])
    last = first + timedelta(days=4)
    await assert_same(pool, first, last)
    for vid, company, term in vehicles:
        await store_fixes(pool, vid, company, term, held_back[vid])
    stored = await assert_same(pool, first, last)
    assert sum(r["n"] for r in stored) == await pool.fetchval("SELECT count(*) FROM positions")

    # retention deletes the oldest positions: their figures go with them
    cutoff = datetime(2026, 3, 3, 12, 0, tzinfo=BEIJING)
    async with pool.acquire() as conn:
        result = await retention.run_retention(conn, cutoff=cutoff)
    assert result.positions_deleted > 0
    remaining = await assert_same(pool, first, last)
    assert sum(r["n"] for r in remaining) == await pool.fetchval("SELECT count(*) FROM positions")
    assert await pool.fetchval("SELECT count(*) FROM vehicle_day_kpi WHERE positions <= 0") == 0


def test_daily_thresholds_are_the_setting_defaults() -> None:
    """vehicle_day_kpi bakes in the default gap thresholds and zone: with the defaults the
    report reads it; a changed threshold falls back to raw positions."""
    assert kpi.uses_daily_figures(ReportsSettings())
    assert not kpi.uses_daily_figures(ReportsSettings(kpi_gap_s=600.0))
    assert not kpi.uses_daily_figures(ReportsSettings(display_timezone="Asia/Urumqi"))
