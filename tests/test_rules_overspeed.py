"""Overspeed step tests (DOMAIN.md, Overspeed): min duration 10 s, limit resolution, night 80 %,
hazmat 80/60, drift and GPS jumps, sparse data."""

from __future__ import annotations

from datetime import datetime

import pytest
from rules_factory import LAT0, LON0, Runner, context, drive, no_offline, offset, position
from shapely.geometry import LineString, Polygon

from gps_monitor.geofences import Geofence, GeofenceKind, Route
from gps_monitor.models import Quality


def test_overspeed_fires_at_min_duration_not_one_fix_before() -> None:
    run = Runner(context(rules=no_offline(), speed_limit_kmh=60))
    run.feed(drive("2024-01-10 10:00:00", [(5, 50)]))
    above = drive("2024-01-10 10:00:05", [(30, 75)], include_start=False)
    # first fix above the limit at 10:00:06; 10 s later (10:00:16) the episode opens
    run.feed(above[:10])  # 10:00:06 .. 10:00:15: 9 s measured above the limit
    assert run.of("overspeed") == []
    run.feed(above[10:11])  # 10:00:16: 10 s
    assert run.raised_at("overspeed") == [datetime(2024, 1, 10, 10, 0, 16)]
    run.feed(above[11:])
    assert len(run.of("overspeed", "opened")) == 1  # one alarm per episode, not per fix


def test_overspeed_episode_records_start_end_distance_speeds_and_limit_source() -> None:
    run = Runner(context(rules=no_offline(), speed_limit_kmh=60))
    track = drive("2024-01-10 10:00:00", [(10, 50), (20, 70), (10, 80), (10, 60)])
    run.feed(track)
    (closed,) = run.of("overspeed", "closed")
    assert closed.started_at == datetime.fromisoformat("2024-01-10T02:00:11+00:00")
    # ends at the first fix back at or below the limit (60 km/h counts as not above)
    assert closed.ended_at == datetime.fromisoformat("2024-01-10T02:00:41+00:00")
    d = closed.details
    assert d["limit_kmh"] == 60 and d["limit_source"] == "vehicle"
    assert d["max_speed_kmh"] == 80
    assert d["duration_s"] == 30
    # 19 s at 70 then 10 s at 80 between the first and last fix above: mean (19*70+10*80)/29
    assert abs(d["mean_speed_kmh"] - (19 * 70 + 10 * 80) / 29) < 0.01
    assert abs(d["distance_m"] - (19 * 70 + 10 * 80) / 3.6) < 2.0


def test_overspeed_rearms_only_after_speed_back_at_or_below_limit() -> None:
    run = Runner(context(rules=no_offline(), speed_limit_kmh=60))
    run.feed(drive("2024-01-10 10:00:00", [(15, 70), (1, 60.5), (15, 70)]))
    assert len(run.of("overspeed", "opened")) == 1  # 60.5 is still above: same episode
    run.feed(drive("2024-01-10 10:00:31", [(1, 60), (15, 70)], include_start=False))
    assert len(run.of("overspeed", "opened")) == 2
    assert len(run.of("overspeed", "closed")) == 1


def test_overspeed_min_duration_is_a_setting() -> None:
    run = Runner(context(rules=no_offline(overspeed_min_duration_s=20), speed_limit_kmh=60))
    run.feed(drive("2024-01-10 10:00:00", [(19, 70)]))
    assert run.of("overspeed") == []
    run.feed(drive("2024-01-10 10:00:19", [(1, 70)], include_start=False))
    assert len(run.of("overspeed")) == 1


def test_coach_night_limit_is_80_percent_of_day_limit() -> None:
    # coach class default 100 km/h; 22:00-06:00 local: 80 km/h
    day = Runner(context("coach", rules=no_offline()))
    day.feed(drive("2024-01-10 21:58:00", [(60, 90)]))
    assert day.of("overspeed") == []
    night = Runner(context("coach", rules=no_offline()))
    night.feed(drive("2024-01-10 22:00:00", [(60, 90)]))
    (opened,) = night.of("overspeed", "opened")
    assert (
        opened.details["limit_kmh"] == 80 and opened.details["limit_source"] == "class:coach+night"
    )
    morning = Runner(context("tour_bus", rules=no_offline()))
    morning.feed(drive("2024-01-11 06:00:00", [(60, 90)]))
    assert morning.of("overspeed") == []
    freight = Runner(context("freight", rules=no_offline()))
    freight.feed(drive("2024-01-10 23:00:00", [(60, 90)]))
    assert freight.of("overspeed") == []  # the night factor is for coaches and tour buses


def test_hazmat_default_80_and_60_in_other_road_speed_zone() -> None:
    run = Runner(context("hazmat", rules=no_offline()))
    run.feed(drive("2024-01-10 10:00:00", [(30, 79)]))
    assert run.of("overspeed") == []
    run.feed(drive("2024-01-10 10:00:30", [(30, 85)], include_start=False))
    (opened,) = run.of("overspeed", "opened")
    assert opened.details["limit_kmh"] == 80
    # a 70 km/h speed zone on an ordinary road: hazmat may do 60 there
    zone = Geofence(
        id="town",
        name="town",
        kind=GeofenceKind.SPEED_ZONE,
        speed_limit_kmh=70,
        geometry=Polygon([(116.3, 39.8), (116.6, 39.8), (116.6, 40.0), (116.3, 40.0)]),
    )
    run2 = Runner(context("hazmat", rules=no_offline(), geofences=[zone]))
    run2.feed(drive("2024-01-10 10:00:00", [(30, 65)]))
    (opened2,) = run2.of("overspeed", "opened")
    assert opened2.details["limit_kmh"] == 60 and opened2.details["limit_source"] == "geofence:town"


def test_limit_resolution_zone_over_route_over_vehicle_over_class() -> None:
    zone = Geofence(
        id="z",
        name="zone",
        kind=GeofenceKind.SPEED_ZONE,
        speed_limit_kmh=40,
        geometry=Polygon([(116.40, 39.899), (116.41, 39.899), (116.41, 39.901), (116.40, 39.901)]),
    )
    route = Route(
        id="r",
        name="route",
        line=LineString([(116.39, LAT0), (116.45, LAT0)]),
        corridor_m=50,
        speed_limit_kmh=50,
    )
    from rules.context import make_fix
    from rules.overspeed import resolve_limit

    def limit_at(lon: float, **kw: object) -> tuple[float, str]:
        ctx = context(**kw)  # type: ignore[arg-type]
        fix = make_fix(position("2024-01-10 10:00:00", lon=lon), None, ctx.local)
        return resolve_limit(fix, ctx)

    assert limit_at(116.405, geofences=[zone], routes=[route], speed_limit_kmh=70) == (
        40,
        "geofence:z",
    )
    assert limit_at(116.42, geofences=[zone], routes=[route], speed_limit_kmh=70) == (50, "route:r")
    assert limit_at(116.42, geofences=[zone], speed_limit_kmh=70) == (70, "vehicle")
    assert limit_at(116.42, geofences=[zone]) == (100, "class:freight")


def test_drift_positions_never_start_or_extend_an_episode() -> None:
    run = Runner(context(rules=no_offline(), speed_limit_kmh=60))
    track = drive("2024-01-10 10:00:00", [(30, 50)])
    flagged = [
        p.evolve(speed_kmh=120, quality=Quality.DRIFT) if 5 <= i < 25 else p
        for i, p in enumerate(track)
    ]
    run.feed(flagged)
    assert run.of("overspeed") == []


def test_gps_jump_is_not_speeding() -> None:
    # fixes alternating between the road and a point 2 km away one second apart imply
    # 7200 km/h: jumps, which neither start nor extend an episode (without the cross-check the
    # reported 70 km/h from 10:00:05 to 10:00:15 would open one)
    run = Runner(context(rules=no_offline(), speed_limit_kmh=60))
    track = drive("2024-01-10 10:00:00", [(5, 50), (11, 70), (5, 50)])
    for i in range(7, 16, 2):
        lat, lon = offset(track[i].latitude, track[i].longitude, east_m=2000)
        track[i] = track[i].evolve(latitude=lat, longitude=lon)
    run.feed(track)
    assert run.of("overspeed") == []
    # the same reported speeds on a clean track do open one
    clean = Runner(context(rules=no_offline(), speed_limit_kmh=60))
    clean.feed(drive("2024-01-10 10:00:00", [(5, 50), (11, 70), (5, 50)]))
    assert len(clean.of("overspeed", "opened")) == 1


def test_sparse_single_fix_above_limit_does_not_fire_two_consecutive_do() -> None:
    run = Runner(context(rules=no_offline(), speed_limit_kmh=60))
    # 600 s interval as in the T-Drive taxi: one fix above the limit has no measured duration
    run.feed(drive("2024-01-10 10:00:00", [(600, 50), (600, 70), (600, 50)], interval_s=600))
    assert run.of("overspeed") == []
    run.feed(
        drive(
            "2024-01-10 10:30:00",
            [(600, 70), (600, 70)],
            interval_s=600,
            include_start=False,
            lon=116.6,
        )
    )
    (opened,) = run.of("overspeed", "opened")
    assert opened.details["duration_s"] == 600


def test_gap_longer_than_max_fix_gap_ends_the_episode() -> None:
    run = Runner(context(rules=no_offline(), speed_limit_kmh=60))
    run.feed(drive("2024-01-10 10:00:00", [(20, 70)]))
    run.feed([position("2024-01-10 10:20:00", speed_kmh=70, lon=LON0 + 0.2)])
    (closed,) = run.of("overspeed", "closed")
    assert closed.ended_at == datetime.fromisoformat("2024-01-10T02:00:20+00:00")


@pytest.mark.parametrize(
    ("road_class", "limit_kmh"),
    [
        ("unsigned_urban_no_centre_line", 30),
        ("unsigned_rural_no_centre_line", 40),
        ("unsigned_urban_one_lane", 50),
        ("unsigned_rural_one_lane", 70),
    ],
)
def test_unsigned_road_zones_carry_their_statutory_limit(road_class: str, limit_kmh: int) -> None:
    zone = Geofence(
        id="lane",
        name="lane",
        kind=GeofenceKind.SPEED_ZONE,
        road_class=road_class,
        geometry=Polygon([(116.3, 39.8), (116.6, 39.8), (116.6, 40.0), (116.3, 40.0)]),
    )
    at = Runner(context(rules=no_offline(), geofences=[zone]))
    at.feed(drive("2024-01-10 10:00:00", [(30, limit_kmh)]))
    assert at.of("overspeed") == []
    above = Runner(context(rules=no_offline(), geofences=[zone]))
    above.feed(drive("2024-01-10 10:00:00", [(30, limit_kmh + 1)]))
    (opened,) = above.of("overspeed", "opened")
    assert opened.details["limit_kmh"] == limit_kmh
