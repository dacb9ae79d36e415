"""Metric geometry: local projected zones, distances, validation, the zoned STRtree index."""

from __future__ import annotations

import random

import pytest
import shapely
from shapely.geometry import LineString, Point, Polygon

from gps_monitor import geo
from gps_monitor.errors import GeometryError


def test_zone_is_cgcs2000_gauss_kruger_in_china_and_utm_elsewhere() -> None:
    beijing = geo.projection_for(116.4, 39.9)
    assert beijing.crs.to_epsg() == 4548  # CGCS2000 / 3-degree Gauss-Kruger CM 117E
    assert geo.projection_for(106.5, 29.5).crs.to_epsg() == 4545  # Chongqing, CM 105E
    assert geo.projection_for(-2.98, 53.4).crs.to_epsg() == 32630  # Liverpool, UTM 30N
    assert geo.projection_for(151.2, -33.9).crs.to_epsg() == 32756  # Sydney, UTM 56S
    assert geo.projection_for(116.4, 39.9) is beijing  # cached: one transformer per zone


def test_projected_distances_match_geodesic_within_a_metre_per_km() -> None:
    proj = geo.projection_for(116.4, 39.9)
    x1, y1 = proj.xy(116.40, 39.90)
    x2, y2 = proj.xy(116.45, 39.93)
    projected = ((x2 - x1) ** 2 + (y2 - y1) ** 2) ** 0.5
    geodesic = geo.distance_m(39.90, 116.40, 39.93, 116.45)
    assert abs(projected - geodesic) < geodesic / 1000
    lon, lat = proj.lonlat(x2, y2)
    assert abs(lon - 116.45) < 1e-9 and abs(lat - 39.93) < 1e-9


def test_fast_distance_agrees_with_geodesic() -> None:
    rng = random.Random(1)
    for _ in range(200):
        lat, lon = rng.uniform(20, 50), rng.uniform(75, 130)
        lat2, lon2 = lat + rng.uniform(-0.05, 0.05), lon + rng.uniform(-0.05, 0.05)
        exact = geo.distance_m(lat, lon, lat2, lon2)
        assert abs(geo.fast_distance_m(lat, lon, lat2, lon2) - exact) <= exact * 0.005 + 0.01
    far = geo.fast_distance_m(39.9, 116.4, 31.2, 121.5)  # Beijing - Shanghai: geodesic path
    assert far == pytest.approx(geo.distance_m(39.9, 116.4, 31.2, 121.5))


def test_check_geometry_rejects_swapped_coordinates_and_self_intersections() -> None:
    with pytest.raises(GeometryError, match=r"latitude in \[-90, 90\], got 116.4.*swapped"):
        geo.check_geometry(LineString([(39.9, 116.4), (39.95, 116.5)]), "route r")
    with pytest.raises(GeometryError, match="Self-intersection"):
        geo.check_geometry(Polygon([(0, 0), (1, 1), (1, 0), (0, 1)]), "fence f")
    with pytest.raises(GeometryError, match="longitude"):
        geo.check_geometry(Point(181.0, 10.0), "fence g")
    geo.check_geometry(Polygon([(116, 39), (117, 39), (117, 40), (116, 40)]), "ok")


def test_zoned_index_candidates_match_brute_force() -> None:
    rng = random.Random(3)
    shapes = []
    buffers = []
    for _ in range(300):
        lon, lat = 116.2 + rng.random() * 0.4, 39.7 + rng.random() * 0.4
        if rng.random() < 0.5:
            d = rng.uniform(0.002, 0.02)
            shapes.append(Polygon([(lon, lat), (lon + d, lat), (lon + d, lat + d), (lon, lat + d)]))
            buffers.append(0.0)
        else:
            shapes.append(Point(lon, lat))
            buffers.append(rng.uniform(50, 800))
    index = geo.ZonedIndex(shapes, buffers)
    zone = index.zone(geo.zone_key(116.4, 39.9))
    for _ in range(500):
        lon, lat = 116.2 + rng.random() * 0.4, 39.7 + rng.random() * 0.4
        x, y = zone.projection.xy(lon, lat)
        inside = {i for i in zone.candidates(x, y) if zone.contains(i, x, y)}
        brute = {i for i, g in enumerate(zone.geometries) if shapely.contains_xy(g, x, y)}
        assert inside == brute
        x2, y2 = zone.projection.xy(lon + 0.01, lat + 0.005)
        segment = LineString([(x, y), (x2, y2)])
        crossed = set(zone.crossed(x, y, x2, y2))
        assert crossed == {i for i, g in enumerate(zone.geometries) if g.intersects(segment)}


def test_signed_distance_is_negative_inside_positive_outside() -> None:
    index = geo.ZonedIndex([Point(116.4, 39.9)], [100.0])
    zone = index.zone(geo.zone_key(116.4, 39.9))
    x, y = zone.projection.xy(116.4, 39.9)
    assert zone.signed_distance_m(0, x, y) == pytest.approx(-100, abs=0.5)
    assert zone.signed_distance_m(0, x + 150, y) == pytest.approx(50, abs=0.5)
