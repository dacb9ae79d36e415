"""The figures the county's KPI report (考核报表, :mod:`web.reports.kpi`) reads: the vehicles
that must be connected, and each vehicle's daily record counts and distances, from the
``vehicle_day_kpi`` table (migration 0110, kept up to date as positions arrive) or aggregated
from raw ``positions`` when the report's gap thresholds or day zone differ from the table's.

Both sources give, per vehicle and local day: ``n``, ``n_ok``, ``n_drift`` (records) and
``dist``, ``dist_gap`` (metres of ok fixes; of those, stretches longer than the gap thresholds
in both seconds and metres).
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

_DAYS_FROM_POSITIONS = (
    "SELECT vehicle_id, (fix_time AT TIME ZONE $3)::date AS day, count(*) AS n, "
    " count(*) FILTER (WHERE quality = 'ok') AS n_ok, "
    " count(*) FILTER (WHERE quality = 'drift') AS n_drift, "
    " coalesce(sum(distance_m) FILTER (WHERE quality = 'ok'), 0) AS dist, "
    " coalesce(sum(distance_m) FILTER (WHERE quality = 'ok' AND interval_s > $4 "
    "   AND distance_m > $5), 0) AS dist_gap "
    "FROM positions WHERE fix_time >= $1 AND fix_time < $2 "
    "AND vehicle_id = ANY($6::bigint[]) GROUP BY 1, 2"
)
_DAYS_FROM_DAILY = (
    "SELECT vehicle_id, (day AT TIME ZONE $3)::date AS day, positions AS n, "
    " ok_positions AS n_ok, drift_positions AS n_drift, distance_m AS dist, "
    " gap_distance_m AS dist_gap "
    "FROM vehicle_day_kpi WHERE day >= $1 AND day < $2 AND positions > 0 "
    "AND vehicle_id = ANY($4::bigint[])"
)


def _days(
    period_start: datetime,
    period_end: datetime,
    timezone: str,
    vehicle_ids: list[int],
    gap: tuple[float, float] | None,
) -> tuple[str, list[object]]:
    if gap is None:
        return _DAYS_FROM_DAILY, [period_start, period_end, timezone, vehicle_ids]
    return _DAYS_FROM_POSITIONS, [period_start, period_end, timezone, *gap, vehicle_ids]


async def must_connect_vehicles(
    conn: asyncpg.Connection | asyncpg.Pool, company_id: int | None, period_end: datetime
) -> list[asyncpg.Record]:
    """The vehicles that must be connected (``must_connect``), of ``company_id`` or of every
    company (None), by id: ``id``, ``company_id``, ``company_name``, ``first_ok`` (the fix time
    of its first ok position before ``period_end``, None without one)."""
    return await conn.fetch(
        "SELECT v.id, v.company_id, c.name AS company_name, "
        " (SELECT p.fix_time FROM positions p WHERE p.vehicle_id = v.id AND p.quality = 'ok' "
        "  AND p.fix_time < $2 ORDER BY p.fix_time LIMIT 1) AS first_ok "
        "FROM vehicles v JOIN companies c ON c.id = v.company_id "
        "WHERE v.must_connect AND ($1::bigint IS NULL OR v.company_id = $1) ORDER BY v.id",
        company_id,
        period_end,
    )


async def vehicle_days(
    conn: asyncpg.Connection | asyncpg.Pool,
    period_start: datetime,
    period_end: datetime,
    timezone: str,
    vehicle_ids: list[int],
    gap: tuple[float, float] | None,
) -> list[asyncpg.Record]:
    """Per vehicle and local day (``timezone``) of [period_start, period_end) with at least one
    record: ``vehicle_id``, ``day`` (date) and the figures of the module docstring. ``gap``
    None: from ``vehicle_day_kpi``; ``(gap_s, gap_m)``: aggregated from raw positions."""
    sql, args = _days(period_start, period_end, timezone, vehicle_ids, gap)
    return await conn.fetch(sql, *args)


async def company_days(
    conn: asyncpg.Connection | asyncpg.Pool,
    period_start: datetime,
    period_end: datetime,
    timezone: str,
    vehicles: list[tuple[int, int, bool]],
    gap: tuple[float, float] | None,
) -> list[asyncpg.Record]:
    """:func:`vehicle_days` summed per company and day (``day`` a date) and per company over
    the period (``day`` None), for ``vehicles`` given as (vehicle id, company id, connected by
    the period end): ``n``, ``n_ok``, ``dist``, ``dist_gap``; ``online`` = connected vehicles
    with a record, ``drift`` = those of them with a drift record."""
    inner, args = _days(period_start, period_end, timezone, [v[0] for v in vehicles], gap)
    n = len(args)
    sql = (
        f"WITH d AS ({inner}), "
        f"v AS (SELECT * FROM unnest(${n}::bigint[], ${n + 1}::bigint[], ${n + 2}::bool[]) "
        "       AS v(vehicle_id, company_id, connected)) "
        "SELECT v.company_id, d.day, sum(d.n)::bigint AS n, sum(d.n_ok)::bigint AS n_ok, "
        " sum(d.dist) AS dist, sum(d.dist_gap) AS dist_gap, "
        " count(DISTINCT d.vehicle_id) FILTER (WHERE v.connected) AS online, "
        " count(DISTINCT d.vehicle_id) FILTER (WHERE v.connected AND d.n_drift > 0) AS drift "
        "FROM d JOIN v ON v.vehicle_id = d.vehicle_id "
        "GROUP BY GROUPING SETS ((v.company_id, d.day), (v.company_id))"
    )
    return await conn.fetch(sql, *args, [v[1] for v in vehicles], [v[2] for v in vehicles])
