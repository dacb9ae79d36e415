"""The assessment KPIs (联网联控考核, DOMAIN.md "KPIs the authorities assess") per company and for
the whole county over a period of local days, with a per-day trend.

Only vehicles with ``vehicles.must_connect`` count (the monitored set). Days are local days in
``reports.display_timezone`` (Asia/Shanghai). Definitions (each a ratio; ``None`` when its
denominator is 0; rates in percent, 2 decimals):

- 入网率 connection_rate = must-connect vehicles with at least one valid (quality ok) record
  before the period end / must-connect vehicles.
- 上线率 online_rate = sum over the period's days of connected vehicles with at least one record
  that day / sum over the days of vehicles connected by the end of that day (vehicle-days, the
  usual daily-average method: a vehicle offline half the period counts half). Days after today
  are not counted (a period running past today, e.g. this month, is assessed up to today; those
  days' trend points have no 上线率), nor are records dated on them (a terminal clock ahead).
- 轨迹完整率 track_completeness = mileage covered by a complete track / total mileage. Mileage is
  the sum of ``positions.distance_m`` of ok fixes (geodesic from the previous ok fix) in the
  period; a stretch whose ``interval_s`` > ``reports.kpi_gap_s`` (300 s) AND ``distance_m`` >
  ``reports.kpi_gap_m`` (1 km) is incomplete.
- 数据合格率 data_quality = ok records / all records in the period.
- 漂移车辆率 drift_rate = vehicles with at least one drift record / online vehicles (connected
  vehicles with at least one record in the period).
- overspeed_per_vehicle = alarms of ``reports.kpi_overspeed_alarm_types`` started in the period
  / online vehicles.
- fatigue_hours_per_vehicle = hours of ``reports.kpi_fatigue_alarm_types`` episodes inside the
  period (an open episode, not ended yet, runs up to now: a driver still driving tired counts
  today) / online vehicles.
- 处理率 handling_rate = violations (``reports.kpi_violation_alarm_types``, started in the
  period) with a recorded handling (status handled/closed or ``handled_at``) or a penalty
  decision (``alarm_penalties``) / violations.
- 督办处理率 supervision_rate = 督办 orders (``supervisions``, issued in the period, by the day
  they were issued) answered by their deadline / orders issued.
- 平台查岗响应率 platform_query_rate = 查岗 of the superior platform (JT/T 809 0x9301,
  ``jt809_platform_queries``, by local day of receipt) answered by their deadline / received
  (one unanswered and still inside its deadline is not counted until it is answered or its
  deadline passes); unanswered ones are in the counts (``platform_queries_unanswered``).
  Platform-wide: in the county figures (and a company's when the 查岗 named it).
- 平台连通率 platform_connectivity = seconds the JT/T 809 main link was up
  (``jt809_link_sessions``) / seconds of the period, counted from the first session ever (a
  platform never linked has no figure), the current day up to now. County only.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from gps_monitor.config import ReportsSettings
from gps_monitor.db import alarms, migrate, registry
from gps_monitor.db import kpi as kpi_db

KPI_LABELS: dict[str, str] = {
    "connection_rate": "入网率 %",
    "online_rate": "上线率 %",
    "track_completeness": "轨迹完整率 %",
    "data_quality": "数据合格率 %",
    "drift_rate": "漂移车辆率 %",
    "overspeed_per_vehicle": "超速报警 次/车",
    "fatigue_hours_per_vehicle": "疲劳驾驶 小时/车",
    "handling_rate": "处理率 %",
    "supervision_rate": "督办处理率 %",
    "platform_query_rate": "平台查岗响应率 %",
    "platform_connectivity": "平台连通率 %",
}
DEFINITIONS: dict[str, str] = {
    "connection_rate": "发送过至少一条有效定位的应入网车辆 / 应入网车辆",
    "online_rate": "Σ每日上线车辆 / Σ每日已入网车辆 (车·日)",
    "track_completeness": "完整轨迹里程 / 总里程; "
    "相邻有效点间隔 > 阈值时长且距离 > 阈值距离视为不完整",
    "data_quality": "有效定位记录 / 全部定位记录",
    "drift_rate": "有漂移记录的车辆 / 上线车辆",
    "overspeed_per_vehicle": "期间开始的超速报警数 / 上线车辆",
    "fatigue_hours_per_vehicle": "期间内疲劳驾驶时长 (小时) / 上线车辆",
    "handling_rate": "有处理记录或处罚决定的违法报警 / 违法报警",
    "supervision_rate": "期限内答复的督办 / 下发的督办",
    "platform_query_rate": "时限内应答的上级平台查岗 / 收到的查岗",
    "platform_connectivity": "809 主链路连通时长 / 统计时长",
}


def _pct(numerator: float, denominator: float) -> float | None:
    return None if denominator == 0 else round(100.0 * numerator / denominator, 2)


def _per(numerator: float, denominator: float) -> float | None:
    return None if denominator == 0 else round(numerator / denominator, 3)


@dataclass(slots=True)
class Counts:
    """Raw counts behind the KPIs of one unit (company or county) over a period or a day."""

    must_connect: int = 0
    connected: int = 0
    connected_vehicle_days: int = 0
    online_vehicle_days: int = 0
    online_vehicles: int = 0
    drift_vehicles: int = 0
    records: int = 0
    valid_records: int = 0
    distance_m: float = 0.0
    incomplete_distance_m: float = 0.0
    overspeed_alarms: int = 0
    fatigue_s: float = 0.0
    violations: int = 0
    handled_violations: int = 0
    supervisions: int = 0
    supervisions_in_time: int = 0
    platform_queries: int = 0
    platform_queries_in_time: int = 0
    platform_queries_unanswered: int = 0
    link_up_s: float = 0.0
    link_period_s: float = 0.0

    def kpis(self) -> dict[str, float | None]:
        """The KPI values (see the module docstring)."""
        return {
            "connection_rate": _pct(self.connected, self.must_connect),
            "online_rate": _pct(self.online_vehicle_days, self.connected_vehicle_days),
            "track_completeness": _pct(
                self.distance_m - self.incomplete_distance_m, self.distance_m
            ),
            "data_quality": _pct(self.valid_records, self.records),
            "drift_rate": _pct(self.drift_vehicles, self.online_vehicles),
            "overspeed_per_vehicle": _per(self.overspeed_alarms, self.online_vehicles),
            "fatigue_hours_per_vehicle": _per(self.fatigue_s / 3600.0, self.online_vehicles),
            "handling_rate": _pct(self.handled_violations, self.violations),
            "supervision_rate": _pct(self.supervisions_in_time, self.supervisions),
            "platform_query_rate": _pct(self.platform_queries_in_time, self.platform_queries),
            "platform_connectivity": (
                None
                if self.link_period_s <= 0
                else min(100.0, _pct(self.link_up_s, self.link_period_s) or 0.0)
            ),
        }

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__slots__}
        out["distance_km"] = round(self.distance_m / 1000, 3)
        out["complete_distance_km"] = round(
            (self.distance_m - self.incomplete_distance_m) / 1000, 3
        )
        out["fatigue_hours"] = round(self.fatigue_s / 3600, 3)
        return out


COUNTY_NAME = "全县 County"


@dataclass(slots=True)
class Unit:
    """KPIs of one company (id, name) or of the county (id None): the period and each day."""

    id: int | None
    name: str
    period: Counts = field(default_factory=Counts)
    days: dict[date, Counts] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "kpis": self.period.kpis(),
            "counts": self.period.to_dict(),
            "days": [
                {"day": d.isoformat(), "kpis": c.kpis(), "counts": c.to_dict()}
                for d, c in sorted(self.days.items())
            ],
        }


@dataclass(slots=True)
class KpiReport:
    """The KPI report: county and per-company units over [first_day, last_day] local."""

    report_number: str
    generated_at: datetime
    generated_by: str
    first_day: date
    last_day: date
    timezone: str
    thresholds: dict[str, Any]
    county: Unit
    companies: list[Unit]

    def to_dict(self) -> dict[str, Any]:
        return {
            "report_number": self.report_number,
            "generated_at": self.generated_at.isoformat(),
            "generated_by": self.generated_by,
            "period": {
                "from_local": self.first_day.isoformat(),
                "to_local": self.last_day.isoformat(),
                "timezone": self.timezone,
                "days": (self.last_day - self.first_day).days + 1,
            },
            "thresholds": self.thresholds,
            "definitions": DEFINITIONS,
            "labels": KPI_LABELS,
            "county": self.county.to_dict(),
            "companies": [c.to_dict() for c in self.companies],
            # "company": the report covers one company (asked for, or an operator's own), so its
            # first unit is that company's total, not the county's
            "scope": "county" if self.county.name == COUNTY_NAME else "company",
        }


def local_day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) of a local day, as UTC datetimes."""
    start = datetime.combine(day, time(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def _overlap_by_day(
    start: datetime, end: datetime, days: list[date], tz: ZoneInfo
) -> dict[date, float]:
    """Seconds of [start, end) falling in each local day of ``days``."""
    out: dict[date, float] = {}
    for day in days:
        lo, hi = local_day_bounds(day, tz)
        seconds = (min(end, hi) - max(start, lo)).total_seconds()
        if seconds > 0:
            out[day] = seconds
    return out


# the days a period may name: from before any JT/T 808 terminal reported to a year ahead (a
# period may run past today, as "this year" does); beyond, a date's day bounds do not exist
EARLIEST_DAY = date(2000, 1, 1)
MAX_DAYS_AHEAD = 366
MAX_PERIOD_DAYS = 366  # a leap year, both ends included


def check_period(first_day: date, last_day: date, timezone: str) -> None:
    """Raise ValueError unless first_day..last_day is a period a KPI report can cover: in order,
    at most :data:`MAX_PERIOD_DAYS` days, from :data:`EARLIEST_DAY` to :data:`MAX_DAYS_AHEAD`
    days after today in ``timezone``."""
    if last_day < first_day:
        raise ValueError(f"period: expected to >= from, got {first_day} .. {last_day}")
    if (days := (last_day - first_day).days + 1) > MAX_PERIOD_DAYS:
        raise ValueError(f"period: expected at most {MAX_PERIOD_DAYS} days, got {days}")
    latest = datetime.now(ZoneInfo(timezone)).date() + timedelta(days=MAX_DAYS_AHEAD)
    if first_day < EARLIEST_DAY or last_day > latest:
        raise ValueError(
            f"period: expected days from {EARLIEST_DAY} to {latest} (a year ahead at most), "
            f"got {first_day} .. {last_day}"
        )


async def compute_kpis(
    conn: asyncpg.Connection | asyncpg.Pool,
    first_day: date,
    last_day: date,
    settings: ReportsSettings,
    *,
    company_id: int | None = None,
    generated_by: str = "system",
    report_number: str = "",
    from_positions: bool = False,
) -> KpiReport:
    """KPIs for local days first_day..last_day inclusive, for one company or all (see module doc).

    The per-vehicle daily record figures come from ``vehicle_day_kpi`` when the settings allow
    it (:func:`vehicle_days`); ``from_positions`` forces the raw-position aggregation (the same
    figures, slower: benchmarks and consistency tests).

    Raises:
        ValueError: a period :func:`check_period` refuses.
    """
    check_period(first_day, last_day, settings.display_timezone)
    tz = ZoneInfo(settings.display_timezone)
    days = [first_day + timedelta(days=i) for i in range((last_day - first_day).days + 1)]
    period_start, _ = local_day_bounds(first_day, tz)
    _, period_end = local_day_bounds(last_day, tz)

    vehicles = await kpi_db.must_connect_vehicles(conn, company_id, period_end)
    names: dict[int, str | None]
    if company_id is not None:
        names = {company_id: await registry.company_name(conn, company_id)}
    else:
        names = {r["id"]: r["name"] for r in await registry.list_companies(conn)}
    county = Unit(None, COUNTY_NAME if company_id is None else "合计 Total")
    units: dict[int, Unit] = {cid: Unit(cid, str(name)) for cid, name in names.items()}
    company_of = {r["id"]: r["company_id"] for r in vehicles}
    first_ok = {r["id"]: r["first_ok"] for r in vehicles}

    def targets(vehicle_id: int) -> tuple[Unit, Unit]:
        return county, units[company_of[vehicle_id]]

    def day_counts(unit: Unit, day: date) -> Counts:
        counts = unit.days.get(day)
        if counts is None:
            counts = unit.days[day] = Counts()
        return counts

    for unit in (county, *units.values()):
        for day in days:
            day_counts(unit, day)
    # connected on a day = first valid fix before that day's end: per unit, how many vehicles
    # connect first on each day of the period (or before it), summed up day by day
    day_ends = [local_day_bounds(day, tz)[1] for day in days]
    first_connected: dict[int | None, list[int]] = {
        unit.id: [0] * len(days) for unit in (county, *units.values())
    }
    must_connect: dict[int | None, int] = dict.fromkeys(first_connected, 0)
    connected: dict[int | None, int] = dict.fromkeys(first_connected, 0)
    for vid, company in company_of.items():
        for key in (None, company):
            must_connect[key] += 1
            if first_ok[vid] is not None:
                connected[key] += 1
                index = bisect.bisect_right(day_ends, first_ok[vid])
                if index < len(days):
                    first_connected[key][index] += 1
    # a day after today (local) has not happened: its vehicles cannot have been online, so it
    # is no vehicle-day of 上线率 (counted, every future day read as a day offline)
    today = datetime.now(tz).date()
    for unit in (county, *units.values()):
        unit.period.must_connect = must_connect[unit.id]
        unit.period.connected = connected[unit.id]
        running = 0
        for day, newly in zip(days, first_connected[unit.id], strict=True):
            running += newly
            counts = day_counts(unit, day)
            counts.must_connect = must_connect[unit.id]
            counts.connected = running
            if day <= today:
                counts.connected_vehicle_days = running
                unit.period.connected_vehicle_days += running

    rows = await _company_days(
        conn,
        settings,
        period_start,
        period_end,
        [(vid, company_of[vid], first_ok[vid] is not None) for vid in company_of],
        from_positions=from_positions,
    )
    for row in rows:
        company_unit = units[row["company_id"]]
        for unit in (county, company_unit):
            counts = unit.period if row["day"] is None else day_counts(unit, row["day"])
            counts.records += row["n"]
            counts.valid_records += row["n_ok"]
            counts.distance_m += row["dist"]
            counts.incomplete_distance_m += row["dist_gap"]
            # online = a connected vehicle with a record (that day / in the period)
            counts.online_vehicles += row["online"]
            counts.drift_vehicles += row["drift"]
            # a record on a day after today (a terminal clock ahead: flagged future_fix_time,
            # stored) is no day online: that day is no vehicle-day (above)
            if row["day"] is not None and row["day"] <= today:
                counts.online_vehicle_days += row["online"]
                unit.period.online_vehicle_days += row["online"]

    await _add_alarms(
        conn, settings, tz, days, period_start, period_end, company_of, targets, day_counts
    )
    await _add_supervisions(
        conn, settings, period_start, period_end, company_id, county, units, day_counts
    )
    await _add_platform(conn, settings, tz, days, company_id, county, units, day_counts)
    return KpiReport(
        report_number=report_number,
        generated_at=datetime.now(UTC),
        generated_by=generated_by,
        first_day=first_day,
        last_day=last_day,
        timezone=settings.display_timezone,
        thresholds={"kpi_gap_s": settings.kpi_gap_s, "kpi_gap_m": settings.kpi_gap_m},
        county=county,
        companies=sorted(units.values(), key=lambda u: u.name),
    )


# The thresholds and day zone baked into ``vehicle_day_kpi`` (migration 0110): the report reads
# the per-vehicle daily figures when its settings equal these, raw positions otherwise.
DAILY_GAP_S = 300.0
DAILY_GAP_M = 1000.0
DAILY_TIMEZONE = "Asia/Shanghai"


def uses_daily_figures(settings: ReportsSettings) -> bool:
    """True when the report can read ``vehicle_day_kpi`` (its gap thresholds and day zone are
    the ones baked into the table), False when it must aggregate raw positions."""
    return (
        settings.kpi_gap_s == DAILY_GAP_S
        and settings.kpi_gap_m == DAILY_GAP_M
        and settings.display_timezone == DAILY_TIMEZONE
    )


def _gap(settings: ReportsSettings, from_positions: bool) -> tuple[float, float] | None:
    """The gap thresholds (s, m) to aggregate raw positions with, or None to read the daily
    figures (``vehicle_day_kpi``)."""
    if from_positions or not uses_daily_figures(settings):
        return (settings.kpi_gap_s, settings.kpi_gap_m)
    return None


async def vehicle_days(
    conn: asyncpg.Connection | asyncpg.Pool,
    settings: ReportsSettings,
    period_start: datetime,
    period_end: datetime,
    vehicle_ids: list[int],
    *,
    from_positions: bool = False,
) -> list[asyncpg.Record]:
    """Per vehicle and local day of [period_start, period_end) with at least one record:
    vehicle_id, day (date), n, n_ok, n_drift (records), dist, dist_gap (metres of ok fixes;
    of those, stretches > kpi_gap_s AND > kpi_gap_m). From ``vehicle_day_kpi`` (kept up to
    date as positions arrive, migration 0110) when :func:`uses_daily_figures`, else, or with
    ``from_positions``, aggregated from raw positions; both give the same figures."""
    return await kpi_db.vehicle_days(
        conn,
        period_start,
        period_end,
        settings.display_timezone,
        vehicle_ids,
        _gap(settings, from_positions),
    )


async def _company_days(
    conn: asyncpg.Connection | asyncpg.Pool,
    settings: ReportsSettings,
    period_start: datetime,
    period_end: datetime,
    vehicles: list[tuple[int, int, bool]],
    *,
    from_positions: bool,
) -> list[asyncpg.Record]:
    """:func:`vehicle_days` summed per company and day (``day`` a date) and per company over
    the period (``day`` None), for ``vehicles`` given as (vehicle id, company id, connected by
    the period end): n, n_ok, dist, dist_gap as there; online = connected vehicles with a
    record, drift = those of them with a drift record."""
    return await kpi_db.company_days(
        conn,
        period_start,
        period_end,
        settings.display_timezone,
        vehicles,
        _gap(settings, from_positions),
    )


async def _add_supervisions(
    conn: asyncpg.Connection | asyncpg.Pool,
    settings: ReportsSettings,
    period_start: datetime,
    period_end: datetime,
    company_id: int | None,
    county: Unit,
    units: dict[int, Unit],
    day_counts: Any,
) -> None:
    """督办: orders issued in the period and those answered by their deadline, per company."""
    if not await migrate.table_exists(conn, "supervisions"):
        return
    from gps_monitor.db import supervisions

    rows = await supervisions.counts_by_company(
        conn,
        period_start,
        period_end,
        settings.display_timezone,
        None if company_id is None else [company_id],
    )
    for row in rows:
        unit = units.get(row["company_id"])
        for target in (county, unit) if unit is not None else (county,):
            for counts in (target.period, day_counts(target, row["day"])):
                counts.supervisions += row["issued"]
                counts.supervisions_in_time += row["in_time"]


async def _add_platform(
    conn: asyncpg.Connection | asyncpg.Pool,
    settings: ReportsSettings,
    tz: ZoneInfo,
    days: list[date],
    company_id: int | None,
    county: Unit,
    units: dict[int, Unit],
    day_counts: Any,
) -> None:
    """平台查岗响应率 and 平台连通率 (JT/T 809, migrations 0100/0101) per local day."""
    if not await migrate.table_exists(conn, "jt809_platform_queries"):
        return
    from gps_monitor.db import jt809 as jt809_db

    start, _ = local_day_bounds(days[0], tz)
    _, end = local_day_bounds(days[-1], tz)
    decided = await jt809_db.query_counts_by_day(
        conn, start, end, settings.display_timezone, decided_only=True
    )
    for row in decided:
        unit = units.get(row["company_id"]) if row["company_id"] is not None else None
        targets = ((unit,) if unit is not None else ()) + (() if company_id else (county,))
        for target in targets:
            for counts in (target.period, day_counts(target, row["day"])):
                counts.platform_queries += row["received"]
                counts.platform_queries_in_time += row["in_time"]
                counts.platform_queries_unanswered += row["unanswered"]
    if company_id is not None:
        return
    first_up = await jt809_db.first_link_up(conn)
    if first_up is None:
        return
    up_by_day = await jt809_db.link_up_seconds_by_day(conn, start, end, settings.display_timezone)
    now = datetime.now(UTC)
    for day in days:
        lo, hi = local_day_bounds(day, tz)
        lo, hi = max(lo, first_up), min(hi, now)
        if hi <= lo:
            continue
        up_s = min(up_by_day.get(day, 0.0), (hi - lo).total_seconds())
        for counts in (day_counts(county, day), county.period):
            counts.link_up_s += up_s
            counts.link_period_s += (hi - lo).total_seconds()


async def _add_alarms(
    conn: asyncpg.Connection | asyncpg.Pool,
    settings: ReportsSettings,
    tz: ZoneInfo,
    days: list[date],
    period_start: datetime,
    period_end: datetime,
    company_of: dict[int, int],
    targets: Any,
    day_counts: Any,
) -> None:
    types = sorted(
        set(settings.kpi_overspeed_alarm_types)
        | set(settings.kpi_fatigue_alarm_types)
        | set(settings.kpi_violation_alarm_types)
    )
    rows = await alarms.kpi_episodes(
        conn, types, list(company_of), period_start, period_end, now=datetime.now(UTC)
    )
    for row in rows:
        vid = row["vehicle_id"]
        kind = row["alarm_type"]
        started_in_period = period_start <= row["started_at"] < period_end
        start_day = row["started_at"].astimezone(tz).date()
        for unit in targets(vid):
            if started_in_period and kind in settings.kpi_overspeed_alarm_types:
                unit.period.overspeed_alarms += 1
                day_counts(unit, start_day).overspeed_alarms += 1
            if started_in_period and kind in settings.kpi_violation_alarm_types:
                unit.period.violations += 1
                day_counts(unit, start_day).violations += 1
                if row["handled"]:
                    unit.period.handled_violations += 1
                    day_counts(unit, start_day).handled_violations += 1
            if kind in settings.kpi_fatigue_alarm_types:
                for day, seconds in _overlap_by_day(
                    row["started_at"], row["until"], days, tz
                ).items():
                    unit.period.fatigue_s += seconds
                    day_counts(unit, day).fatigue_s += seconds
