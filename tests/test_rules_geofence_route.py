"""Geofence and route-deviation step tests (DOMAIN.md, Geofences; Route deviation): hysteresis,
dwell, segment test between sparse fixes, keep-in, watch, windows, classes; route deviation 60 s,
75 % hysteresis, join/leave at the ends; invalid geometry rejected at save."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from rules_factory import LAT0, LON0, Runner, context, drive, no_offline, offset, position
from shapely.geometry import LineString, Point, Polygon

from gps_monitor.errors import GeometryError
from gps_monitor.geofences import Geofence, GeofenceKind, Route, TimeWindow, parse_geojson
from gps_monitor.models import Position


def _square() -> Polygon:
    """A 1 km x 1 km square whose west edge is 500 m east of the origin."""
    lat_s, lon_w = offset(LAT0, LON0, east_m=500, north_m=-500)
    lat_n, lon_e = offset(LAT0, LON0, east_m=1500, north_m=500)
    return Polygon([(lon_w, lat_s), (lon_e, lat_s), (lon_e, lat_n), (lon_w, lat_n)])


def fence(kind: GeofenceKind, **kw: object) -> Geofence:
    return Geofence(id=f"f-{kind}", name=str(kind), kind=kind, geometry=_square(), **kw)  # type: ignore[arg-type]


def test_forbidden_area_entry_opens_inside_and_closes_on_exit() -> None:
    run = Runner(context(rules=no_offline(), geofences=[fence(GeofenceKind.FORBIDDEN)]))
    run.feed(drive("2024-01-10 10:00:00", [(120, 60)], interval_s=5))  # 0 -> 2000 m east
    (opened,) = run.of("forbidden_area_entry", "opened")
    (closed,) = run.of("forbidden_area_entry", "closed")
    # in at > 530 m (boundary 500 m + 30 m hysteresis): 60 km/h = 16.7 m/s -> fix at 35 s (583 m)
    assert run.raised_at("forbidden_area_entry") == [datetime(2024, 1, 10, 10, 0, 35)]
    # out at > 1530 m: fix at 95 s (1583 m)
    assert closed.ended_at == datetime.fromisoformat("2024-01-10T02:01:35+00:00")
    assert opened.details["geofence_id"] == "f-forbidden"


def test_parked_vehicle_drifting_across_the_boundary_raises_nothing() -> None:
    run = Runner(context(rules=no_offline(), geofences=[fence(GeofenceKind.WATCH)]))
    start = datetime.fromisoformat("2024-01-10T10:00:00+08:00")
    fixes = []
    for i in range(200):  # parked on the west edge, GPS wandering +/- 20 m across it
        east = 500 + (20 if i % 2 else -20)
        lat, lon = offset(LAT0, LON0, east_m=east)
        fixes.append(position(start + timedelta(seconds=10 * i), lat=lat, lon=lon))
    run.feed(fixes)
    assert run.of("geofence_enter") == [] and run.of("geofence_exit") == []
    # without hysteresis and exit minimums it would flap on every fix
    unguarded = no_offline(
        geofence_hysteresis_m=0, geofence_exit_min_duration_s=0, geofence_exit_min_distance_m=0
    )
    flappy = Runner(context(rules=unguarded, geofences=[fence(GeofenceKind.WATCH)]))
    flappy.feed(fixes)
    assert len(flappy.of("geofence_enter")) > 50
    # the exit minimums alone (30 s AND 100 m beyond the boundary) already stop it
    no_band = no_offline(geofence_hysteresis_m=0)
    steady = Runner(context(rules=no_band, geofences=[fence(GeofenceKind.WATCH)]))
    steady.feed(fixes)
    assert len(steady.of("geofence_enter")) == 1 and steady.of("geofence_exit") == []


def test_dwell_requires_the_new_state_to_last() -> None:
    rules = no_offline(geofence_dwell_s=60)
    run = Runner(context(rules=rules, geofences=[fence(GeofenceKind.WATCH)]))
    inside_lat, inside_lon = offset(LAT0, LON0, east_m=1000)
    start = datetime.fromisoformat("2024-01-10T10:00:00+08:00")
    run.feed([position(start, speed_kmh=0)])
    run.feed(
        [
            position(start + timedelta(seconds=s), lat=inside_lat, lon=inside_lon)
            for s in (10, 40, 69)
        ]
    )
    assert run.of("geofence_enter") == []
    run.feed([position(start + timedelta(seconds=70), lat=inside_lat, lon=inside_lon)])
    (enter,) = run.of("geofence_enter")
    assert enter.started_at == (start + timedelta(seconds=10)).astimezone(enter.started_at.tzinfo)


def test_segment_between_sparse_fixes_crossing_a_forbidden_area_is_reported() -> None:
    run = Runner(context(rules=no_offline(), geofences=[fence(GeofenceKind.FORBIDDEN)]))
    # two fixes 10 min apart, both outside (0 m and 2 km east): the straight line crosses it
    run.feed(drive("2024-01-10 10:00:00", [(600, 12)], interval_s=600))
    (alarm,) = run.of("forbidden_area_entry")
    assert alarm.details["inferred_from_segment"] is True
    # entry interpolated at ~530 m of 2000 m, exit at ~1470 m
    start = datetime.fromisoformat("2024-01-10T02:00:00+00:00")
    assert abs((alarm.started_at - start).total_seconds() - 600 * 530 / 2000) < 5
    assert alarm.ended_at is not None
    assert abs((alarm.ended_at - start).total_seconds() - 600 * 1470 / 2000) < 5


def test_keep_in_exit_and_return() -> None:
    run = Runner(context(rules=no_offline(), geofences=[fence(GeofenceKind.KEEP_IN)]))
    lat, lon = offset(LAT0, LON0, east_m=1000)
    run.feed(
        drive("2024-01-10 10:00:00", [(60, 60)], interval_s=5, lat=lat, lon=lon)
    )  # inside -> 2000
    run.feed(
        drive(
            "2024-01-10 10:01:00",
            [(60, 0.0)],
            interval_s=5,
            lat=lat,
            lon=lon + 0.012,
            include_start=False,
        )
    )
    (opened,) = run.of("keep_in_area_exit", "opened")
    assert opened.details["kind"] == "keep_in"
    run.feed([position("2024-01-10 10:03:00", lat=lat, lon=lon)])
    assert len(run.of("keep_in_area_exit", "closed")) == 1


def test_keep_in_exit_needs_30_s_and_100_m_outside() -> None:
    # issue 14 item 12: edging 60 m out of the yard for two minutes, or one fix thrown 400 m
    # out, is no exit; leaving for real is, with the thresholds in the evidence
    run = Runner(context(rules=no_offline(), geofences=[fence(GeofenceKind.KEEP_IN)]))
    start = datetime.fromisoformat("2024-01-10T10:00:00+08:00")

    def at(seconds: int, east_m: float) -> Position:
        lat, lon = offset(LAT0, LON0, east_m=east_m)
        return position(start + timedelta(seconds=seconds), lat=lat, lon=lon, speed_kmh=5)

    run.feed([at(s, 1000) for s in range(0, 60, 10)])  # inside
    run.feed([at(s, 1560) for s in range(60, 180, 10)])  # 60 m beyond the east edge
    run.feed([at(180, 1400), at(190, 1900), at(200, 1400)])  # one fix 400 m out
    assert run.of("keep_in_area_exit") == []
    run.feed([at(s, 1400 + (s - 200) * 10) for s in range(210, 300, 10)])  # leaves for real
    (opened,) = run.of("keep_in_area_exit", "opened")
    assert opened.started_at == at(220, 0).fix_time  # 1600 m: the first fix beyond the band
    assert opened.details["min_duration_s"] == 30.0
    assert opened.details["min_distance_m"] == 100.0
    assert opened.details["outside_duration_s"] == 30.0
    assert opened.details["outside_depth_m"] == pytest.approx(400, abs=1)


def test_watch_enter_exit_time_window_and_vehicle_classes() -> None:
    night_only = fence(GeofenceKind.WATCH, active_hours=TimeWindow.parse("22:00-06:00"))
    day = Runner(context(rules=no_offline(), geofences=[night_only]))
    day.feed(drive("2024-01-10 10:00:00", [(120, 60)], interval_s=5))
    assert day.of("geofence_enter") == []
    night = Runner(context(rules=no_offline(), geofences=[night_only]))
    # through the square (500-1500 m east) and on for 30 s beyond it: exit once 30 s and 100 m out
    night.feed(drive("2024-01-10 23:00:00", [(130, 60)], interval_s=5))
    assert len(night.of("geofence_enter")) == 1 and len(night.of("geofence_exit")) == 1
    hazmat_only = fence(GeofenceKind.WATCH, vehicle_classes=("hazmat",))
    freight = Runner(context("freight", rules=no_offline(), geofences=[hazmat_only]))
    freight.feed(drive("2024-01-10 10:00:00", [(120, 60)], interval_s=5))
    assert freight.of("geofence_enter") == []


def test_circle_geofence_uses_metres() -> None:
    lat, lon = offset(LAT0, LON0, east_m=1000)
    circle = Geofence(
        id="c", name="c", kind=GeofenceKind.FORBIDDEN, geometry=Point(lon, lat), radius_m=200
    )
    run = Runner(context(rules=no_offline(), geofences=[circle]))
    run.feed(drive("2024-01-10 10:00:00", [(120, 60)], interval_s=1))
    (closed,) = run.of("forbidden_area_entry", "closed")
    # in once 30 m inside the 200 m radius (east > 830 m), out once 30 m outside (> 1230 m):
    # 400 m at 16.67 m/s = 24 s
    assert closed.ended_at is not None
    assert abs((closed.ended_at - closed.started_at).total_seconds() - 400 / (60 / 3.6)) < 1.5


def test_self_intersecting_polygon_is_rejected() -> None:
    bowtie = Polygon([(116.0, 39.0), (116.1, 39.1), (116.1, 39.0), (116.0, 39.1)])
    with pytest.raises(GeometryError, match="Self-intersection"):
        Geofence(id="bad", name="bad", kind=GeofenceKind.FORBIDDEN, geometry=bowtie)


def test_route_with_swapped_lat_lon_is_rejected() -> None:
    data = {
        "type": "Feature",
        "properties": {"id": "r", "kind": "route", "corridor_m": 50},
        "geometry": {"type": "LineString", "coordinates": [[39.9, 116.4], [39.95, 116.5]]},
    }
    with pytest.raises(GeometryError, match="swapped"):
        parse_geojson(data)


def test_geojson_errors_say_what_was_expected() -> None:
    with pytest.raises(GeometryError, match="kind"):
        parse_geojson(
            {
                "type": "Feature",
                "properties": {"kind": "nope"},
                "geometry": {"type": "Point", "coordinates": [116.4, 39.9]},
            }
        )
    with pytest.raises(GeometryError, match="radius_m"):
        parse_geojson(
            {
                "type": "Feature",
                "properties": {"kind": "watch"},
                "geometry": {"type": "Point", "coordinates": [116.4, 39.9]},
            }
        )


# --- route deviation -------------------------------------------------------------------------


def _route(corridor_m: float = 100) -> Route:
    _, lon_end = offset(LAT0, LON0, east_m=10_000)
    return Route(
        id="r1", name="r1", line=LineString([(LON0, LAT0), (lon_end, LAT0)]), corridor_m=corridor_m
    )


def _at(seconds: int, east_m: float, north_m: float) -> Position:
    lat, lon = offset(LAT0, LON0, east_m=east_m, north_m=north_m)
    start = datetime.fromisoformat("2024-01-10T10:00:00+08:00")
    return position(start + timedelta(seconds=seconds), lat=lat, lon=lon, speed_kmh=30)


def test_route_deviation_after_60_s_outside_not_one_fix_before() -> None:
    run = Runner(context(rules=no_offline(), routes=[_route()]))
    run.feed([_at(s, 100 + s * 8, 0) for s in range(0, 60, 10)])  # on route, joined
    run.feed([_at(s, 100 + s * 8, 150) for s in range(60, 120, 10)])  # 150 m off from 60 s
    assert run.of("route_deviation") == []  # 60..110: 50 s outside
    run.feed([_at(120, 1060, 150)])
    (opened,) = run.of("route_deviation", "opened")
    assert opened.started_at == _at(60, 0, 0).fix_time
    # the evidence names the thresholds applied and what was reached
    assert opened.details["min_duration_s"] == 60.0
    assert opened.details["min_distance_m"] == 200.0
    assert opened.details["outside_duration_s"] == 60.0
    assert opened.details["outside_distance_m"] == pytest.approx(480, abs=1)


def test_route_deviation_needs_distance_driven_outside_too() -> None:
    # issue 14 item 12: standing at the corridor's edge (GPS 150 m off a 100 m corridor) for
    # five minutes is not a deviation; driving on from there is
    run = Runner(context(rules=no_offline(), routes=[_route()]))
    run.feed([_at(s, 100 + s * 8, 0) for s in range(0, 60, 10)])
    run.feed([_at(s, 560 + (s % 20) / 10, 150) for s in range(60, 360, 10)])  # 2 m jitter
    assert run.of("route_deviation") == []
    run.feed([_at(s, 560 + (s - 350) * 8, 150) for s in range(360, 400, 10)])  # drives 400 m
    (opened,) = run.of("route_deviation", "opened")
    assert opened.started_at == _at(60, 0, 0).fix_time
    assert opened.details["outside_distance_m"] >= 200


def test_route_back_on_route_only_well_inside_75_percent() -> None:
    run = Runner(context(rules=no_offline(), routes=[_route()]))
    run.feed([_at(s, 100 + s * 8, 0) for s in range(0, 60, 10)])
    run.feed([_at(s, 100 + s * 8, 150) for s in range(60, 200, 10)])
    run.feed([_at(s, 100 + s * 8, 80) for s in range(200, 260, 10)])  # 80 % of 100 m
    assert run.of("route_deviation", "closed") == []
    run.feed([_at(260, 2180, 70)])  # 70 %: back
    assert len(run.of("route_deviation", "closed")) == 1


def test_no_deviation_before_joining_or_after_leaving_at_the_end() -> None:
    run = Runner(context(rules=no_offline(), routes=[_route()]))
    run.feed([_at(s, -3000 + s * 10, 500) for s in range(0, 300, 10)])  # depot, not joined
    assert run.of("route_deviation") == []
    run.feed([_at(300 + s, 9000 + s * 10, 0) for s in range(0, 100, 10)])  # joins near the end
    run.feed([_at(400 + s, 9900, 200 + s * 10) for s in range(0, 300, 10)])  # leaves at the end
    assert run.of("route_deviation") == []


def test_watch_fence_raises_nothing_at_a_vehicles_first_fix_inside() -> None:
    run = Runner(context(rules=no_offline(), geofences=[fence(GeofenceKind.WATCH)]))
    lat, lon = offset(LAT0, LON0, east_m=1000)
    run.feed([position("2024-01-10 10:00:00", lat=lat, lon=lon)])
    assert run.of("geofence_enter") == []
    run.feed(drive("2024-01-10 10:00:10", [(90, 60)], lat=lat, lon=lon, include_start=False))
    assert len(run.of("geofence_exit")) == 1
