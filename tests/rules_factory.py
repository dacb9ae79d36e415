"""Tiny position factory and engine runner for the rules step tests.

``position("2024-01-10 22:30:00", speed_kmh=62)`` builds a fix at that *local* (Asia/Shanghai)
time; ``drive(start, [(duration_s, speed_kmh), ...], interval_s)`` builds a track moving east at
those speeds so positions and speeds agree (the overspeed cross-check sees real motion).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from gps_monitor.config import QualitySettings, RulesSettings
from gps_monitor.geofences import Geofence, Route
from gps_monitor.models import Alarm, Position
from rules.context import GeoContext, LocalClock, RuleContext, VehicleProfile
from rules.engine import Engine, VehicleState

SHANGHAI = ZoneInfo("Asia/Shanghai")
LAT0, LON0 = 39.9, 116.4
_M_PER_DEG_LAT = 111_195.0


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


def m_per_deg_lon(lat: float = LAT0) -> float:
    return _M_PER_DEG_LAT * math.cos(math.radians(lat))


def position(
    when: str | datetime,
    *,
    speed_kmh: float = 0.0,
    lat: float = LAT0,
    lon: float = LON0,
    terminal_id: str = "T1",
    **extra: Any,
) -> Position:
    fix_time = local(when) if isinstance(when, str) else when
    return Position(
        terminal_id=terminal_id,
        fix_time=fix_time,
        latitude=lat,
        longitude=lon,
        speed_kmh=speed_kmh,
        **extra,
    )


def offset(
    lat: float, lon: float, east_m: float = 0.0, north_m: float = 0.0
) -> tuple[float, float]:
    """(lat, lon) moved by metres east/north (small distances)."""
    return lat + north_m / _M_PER_DEG_LAT, lon + east_m / m_per_deg_lon(lat)


def drive(
    start: str | datetime,
    legs: Sequence[tuple[float, float]],
    interval_s: float = 1.0,
    *,
    lat: float = LAT0,
    lon: float = LON0,
    include_start: bool = True,
    **extra: Any,
) -> list[Position]:
    """Fixes every ``interval_s`` moving east; each leg is (duration_s, speed_kmh). The fix at
    the end of an interval carries that interval's speed."""
    t = local(start) if isinstance(start, str) else start
    out = [position(t, speed_kmh=legs[0][1], lat=lat, lon=lon, **extra)] if include_start else []
    for duration_s, speed_kmh in legs:
        steps = round(duration_s / interval_s)
        for _ in range(steps):
            t = t + timedelta(seconds=interval_s)
            lon += speed_kmh / 3.6 * interval_s / m_per_deg_lon(lat)
            out.append(position(t, speed_kmh=speed_kmh, lat=lat, lon=lon, **extra))
    return out


def settings(**changes: Any) -> RulesSettings:
    return RulesSettings(**changes)


def context(
    vehicle_class: str = "freight",
    *,
    rules: RulesSettings | None = None,
    speed_limit_kmh: float | None = None,
    geofences: list[Geofence] | None = None,
    routes: list[Route] | None = None,
    night_ban_exempt: bool = False,
    clock: str = "fix",
    vehicle_id: int = 1,
) -> RuleContext:
    rules = rules or RulesSettings()
    return RuleContext(
        vehicle=VehicleProfile(
            vehicle_id=vehicle_id,
            company_id=1,
            terminal_id="T1",
            vehicle_class=vehicle_class,
            speed_limit_kmh=speed_limit_kmh,
            night_ban_exempt=night_ban_exempt,
            route_ids=tuple(r.id for r in routes or []),
        ),
        settings=rules,
        quality=QualitySettings(),
        geo=GeoContext(geofences or [], routes or []),
        local=LocalClock(rules.timezone),
        clock=clock,
    )


class Runner:
    """Steps the engine position by position, keeping every alarm event with the fix that
    raised it."""

    def __init__(self, ctx: RuleContext, engine: Engine | None = None) -> None:
        self.ctx = ctx
        self.engine = engine or Engine()
        self.state = VehicleState()
        self.events: list[tuple[Position, Alarm]] = []

    def feed(self, positions: list[Position]) -> list[Alarm]:
        raised: list[Alarm] = []
        for p in positions:
            self.state, alarms = self.engine.process(self.state, p, self.ctx)
            raised += alarms
            self.events += [(p, a) for a in alarms]
        return raised

    def of(self, alarm_type: str, event: str | None = None) -> list[Alarm]:
        return [
            a
            for _, a in self.events
            if a.alarm_type == alarm_type and (event is None or a.event == event)
        ]

    def raised_at(self, alarm_type: str, event: str = "opened") -> list[datetime]:
        """Fix times (local) of the positions that raised events of that type."""
        return [
            p.fix_time.astimezone(SHANGHAI).replace(tzinfo=None)
            for p, a in self.events
            if a.alarm_type == alarm_type and a.event == event
        ]


def no_offline(**changes: Any) -> RulesSettings:
    """Settings with the offline threshold out of the way (for tests of other rules)."""
    return RulesSettings(**({"offline_after_s": 10 * 86400.0} | changes))


__all__ = ["replace"]
