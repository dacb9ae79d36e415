"""GCJ-02 conversion against the published pairs of the eviltransform test suite
(github.com/googollee/eviltransform, python/test.py: wgsLat, wgsLng, gcjLat, gcjLng)."""

from __future__ import annotations

import pytest

from web.coords import gcj02_to_wgs84, geojson_gcj02_to_wgs84, wgs84_to_gcj02

PUBLISHED = [
    (31.1774276, 121.5272106, 31.17530398364597, 121.531541859215),  # Shanghai
    (22.543847, 113.912316, 22.540796131694766, 113.9171764808363),  # Shenzhen
    (39.911954, 116.377817, 39.91334545536069, 116.38404722455657),  # Beijing
]


@pytest.mark.parametrize(("wgs_lat", "wgs_lon", "gcj_lat", "gcj_lon"), PUBLISHED)
def test_wgs84_to_gcj02_matches_published_pairs(wgs_lat, wgs_lon, gcj_lat, gcj_lon) -> None:
    lat, lon = wgs84_to_gcj02(wgs_lat, wgs_lon)
    assert lat == pytest.approx(gcj_lat, abs=1e-9)
    assert lon == pytest.approx(gcj_lon, abs=1e-9)


@pytest.mark.parametrize(("wgs_lat", "wgs_lon", "gcj_lat", "gcj_lon"), PUBLISHED)
def test_gcj02_to_wgs84_inverts_to_below_a_millimetre(wgs_lat, wgs_lon, gcj_lat, gcj_lon) -> None:
    lat, lon = gcj02_to_wgs84(gcj_lat, gcj_lon)
    assert lat == pytest.approx(wgs_lat, abs=1e-8)  # 1e-8 deg ~ 1 mm
    assert lon == pytest.approx(wgs_lon, abs=1e-8)


def test_outside_china_is_identity_and_geojson_polygons_convert() -> None:
    assert wgs84_to_gcj02(53.4, -2.98) == (53.4, -2.98)  # Liverpool
    gcj = [
        list(reversed(wgs84_to_gcj02(lat, lon)))
        for lat, lon in ((29.5, 106.5), (29.5, 106.6), (29.6, 106.6), (29.5, 106.5))
    ]
    back = geojson_gcj02_to_wgs84({"type": "Polygon", "coordinates": [gcj]})
    expected = [[106.5, 29.5], [106.6, 29.5], [106.6, 29.6], [106.5, 29.5]]
    for (lon, lat), (elon, elat) in zip(back["coordinates"][0], expected, strict=True):
        assert lon == pytest.approx(elon, abs=1e-8) and lat == pytest.approx(elat, abs=1e-8)
