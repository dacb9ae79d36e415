"""A vehicle's track as GeoJSON, simplified server-side for long windows.

Simplification is Douglas-Peucker (shapely) in a local transverse Mercator projection centred on
the track (metres, not degrees): the tolerance starts at ``web.track_simplify_tolerance_m`` and
doubles until at most ``web.track_max_points`` vertices remain. Only original fixes are kept, so
every returned vertex keeps its fix time, speed and flags.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import shapely
from pyproj import Transformer


@dataclass(frozen=True, slots=True)
class TrackPoint:
    """One stored fix (WGS-84 degrees, km/h) and its quality flags."""

    fix_time: datetime
    latitude: float
    longitude: float
    speed_kmh: float
    heading_deg: float | None
    quality: str
    quality_reason: str | None
    late: bool


def simplify_indices(
    lats: Sequence[float], lons: Sequence[float], max_points: int, tolerance_m: float
) -> tuple[list[int], float]:
    """Indices of the vertices to keep (first and last always) and the tolerance used (m; 0 when
    nothing was removed). Inputs are WGS-84 degrees in track order."""
    n = len(lats)
    if n <= max_points:
        return list(range(n)), 0.0
    lon0 = float(np.mean(lons))
    lat0 = float(np.mean(lats))
    proj = Transformer.from_crs(
        "EPSG:4326",
        f"+proj=tmerc +lat_0={lat0:.6f} +lon_0={lon0:.6f} +k=1 +x_0=0 +y_0=0 +ellps=WGS84 +units=m",
        always_xy=True,
    )
    xs, ys = proj.transform(np.asarray(lons, dtype=float), np.asarray(lats, dtype=float))
    coords = np.column_stack([xs, ys])
    line = shapely.linestrings(coords)
    tolerance = tolerance_m
    while True:
        kept = shapely.get_coordinates(shapely.simplify(line, tolerance, preserve_topology=False))
        if len(kept) <= max_points or tolerance > 1e6:
            break
        tolerance *= 2
    # Douglas-Peucker keeps original vertices in order: walk both sequences to get indices.
    indices: list[int] = []
    j = 0
    for i in range(n):
        if j < len(kept) and coords[i, 0] == kept[j, 0] and coords[i, 1] == kept[j, 1]:
            indices.append(i)
            j += 1
    if indices and indices[-1] != n - 1:
        indices.append(n - 1)
    return indices, tolerance


def track_geojson(
    vehicle_id: int,
    points: Sequence[TrackPoint],
    overspeeds: Sequence[dict[str, Any]],
    *,
    max_points: int,
    tolerance_m: float,
) -> dict[str, Any]:
    """A GeoJSON FeatureCollection for a track window.

    Features:
        ``kind=track``: LineString of the ok fixes (simplified when long); parallel property
            arrays ``fix_times`` (ISO 8601 UTC), ``speeds_kmh``, ``headings_deg``, ``late``
            give each vertex its values; counts and the tolerance used say what was simplified.
        ``kind=flagged``: one Point per invalid or drift fix with ``quality``,
            ``quality_reason``, ``late``, ``fix_time`` (geometry null when out of range).
        ``kind=overspeed``: one LineString per overspeed alarm in the window (its ok fixes,
            unsimplified up to 500 vertices) with ``alarm_id``, ``started_at``, ``ended_at``,
            and the alarm's ``details``.
    """
    ok = [p for p in points if p.quality == "ok"]
    flagged = [p for p in points if p.quality != "ok"]
    keep, used_tolerance = simplify_indices(
        [p.latitude for p in ok], [p.longitude for p in ok], max_points, tolerance_m
    )
    kept = [ok[i] for i in keep]
    features: list[dict[str, Any]] = [
        {
            "type": "Feature",
            "geometry": {
                "type": "LineString",
                "coordinates": [[p.longitude, p.latitude] for p in kept],
            },
            "properties": {
                "kind": "track",
                "vehicle_id": vehicle_id,
                "points_total": len(points),
                "points_ok": len(ok),
                "points_flagged": len(flagged),
                "points_returned": len(kept),
                "simplified": len(kept) < len(ok),
                "tolerance_m": used_tolerance,
                "fix_times": [p.fix_time.isoformat() for p in kept],
                "speeds_kmh": [round(p.speed_kmh, 1) for p in kept],
                "headings_deg": [p.heading_deg for p in kept],
                "late": [p.late for p in kept],
            },
        }
    ]
    for p in flagged[:5000]:
        in_range = -90 <= p.latitude <= 90 and -180 <= p.longitude <= 180
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [p.longitude, p.latitude]}
                if in_range
                else None,
                "properties": {
                    "kind": "flagged",
                    "quality": p.quality,
                    "quality_reason": p.quality_reason,
                    "late": p.late,
                    "fix_time": p.fix_time.isoformat(),
                    "speed_kmh": p.speed_kmh,
                },
            }
        )
    for alarm in overspeeds:
        start, end = alarm["started_at"], alarm["ended_at"]
        stretch = [p for p in ok if p.fix_time >= start and (end is None or p.fix_time <= end)]
        if len(stretch) > 500:
            stretch = [*stretch[:: len(stretch) // 500 + 1], stretch[-1]]
        features.append(
            {
                "type": "Feature",
                "geometry": {
                    "type": "LineString",
                    "coordinates": [[p.longitude, p.latitude] for p in stretch],
                },
                "properties": {
                    "kind": "overspeed",
                    "alarm_id": alarm["id"],
                    "started_at": start.isoformat(),
                    "ended_at": end.isoformat() if end else None,
                    "details": alarm["details"],
                },
            }
        )
    return {"type": "FeatureCollection", "features": features}
