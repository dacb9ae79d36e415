"""A vehicle's track as GeoJSON, simplified server-side for long windows.

Simplification is Douglas-Peucker (shapely) in a local transverse Mercator projection centred on
the track (metres, not degrees): the tolerance starts at ``web.track_simplify_tolerance_m`` and
doubles until at most ``web.track_max_points`` vertices remain. Only original fixes are kept, so
every returned vertex keeps its fix time, speed and flags.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import shapely
from pyproj import Transformer

from gps_monitor.db.tracks import OkFixes, TrackPoint
from web.units import rounded


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat()


def simplify_indices(
    lats: Sequence[float], lons: Sequence[float], max_points: int, tolerance_m: float
) -> tuple[list[int], float]:
    """Indices of the vertices to keep (first and last always) and the tolerance used (m; 0 when
    nothing was removed). Inputs are WGS-84 degrees in track order."""
    n = len(lats)
    if n <= max_points:
        return list(range(n)), 0.0
    lon_arr = np.asarray(lons, dtype=float)
    lat_arr = np.asarray(lats, dtype=float)
    proj = Transformer.from_crs(
        "EPSG:4326",
        f"+proj=tmerc +lat_0={float(lat_arr.mean()):.6f} +lon_0={float(lon_arr.mean()):.6f} "
        "+k=1 +x_0=0 +y_0=0 +ellps=WGS84 +units=m",
        always_xy=True,
    )
    xs, ys = proj.transform(lon_arr, lat_arr)
    line = shapely.linestrings(np.column_stack([xs, ys]))
    tolerance = tolerance_m
    while True:
        kept = shapely.get_coordinates(shapely.simplify(line, tolerance, preserve_topology=False))
        if len(kept) <= max_points or tolerance > 1e6:
            break
        tolerance *= 2
    # Douglas-Peucker keeps original vertices in order: walk both sequences to get indices.
    indices: list[int] = []
    kx, ky = kept[:, 0].tolist(), kept[:, 1].tolist()
    j, m = 0, len(kx)
    for i, (x, y) in enumerate(zip(xs.tolist(), ys.tolist(), strict=True)):
        if j < m and x == kx[j] and y == ky[j]:
            indices.append(i)
            j += 1
    if indices and indices[-1] != n - 1:
        indices.append(n - 1)
    return indices, tolerance


def track_geojson(
    vehicle_id: int,
    ok: OkFixes,
    flagged: Sequence[TrackPoint],
    alarms: Sequence[dict[str, Any]],
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

    Foreign member ``alarms`` (RFC 7946 §6.1): every alarm of the vehicle overlapping the
    window (``id``, ``alarm_type``, ``level``, ``status``, ``started_at``, ``ended_at`` ISO 8601
    UTC or null while open), for the playback timeline.
    """
    keep, used_tolerance = simplify_indices(ok.latitude, ok.longitude, max_points, tolerance_m)
    features: list[dict[str, Any]] = [
        {
            "type": "Feature",
            "geometry": {
                "type": "LineString",
                "coordinates": [[ok.longitude[i], ok.latitude[i]] for i in keep],
            },
            "properties": {
                "kind": "track",
                "vehicle_id": vehicle_id,
                "points_total": len(ok) + len(flagged),
                "points_ok": len(ok),
                "points_flagged": len(flagged),
                "points_returned": len(keep),
                "simplified": len(keep) < len(ok),
                "tolerance_m": used_tolerance,
                "fix_times": [_iso(ok.epoch_s[i]) for i in keep],
                "speeds_kmh": [round(ok.speed_kmh[i], 1) for i in keep],
                "headings_deg": [rounded(ok.heading_deg[i], 1) for i in keep],
                "late": [ok.late[i] for i in keep],
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
                    "speed_kmh": rounded(p.speed_kmh, 1),
                },
            }
        )
    for alarm in (a for a in alarms if a["alarm_type"] == "overspeed"):
        start, end = alarm["started_at"], alarm["ended_at"]
        lo = bisect.bisect_left(ok.epoch_s, start.timestamp())
        hi = len(ok) if end is None else bisect.bisect_right(ok.epoch_s, end.timestamp())
        stretch = list(range(lo, hi))
        if len(stretch) > 500:
            stretch = [*stretch[:: len(stretch) // 500 + 1], stretch[-1]]
        features.append(
            {
                "type": "Feature",
                "geometry": {
                    "type": "LineString",
                    "coordinates": [[ok.longitude[i], ok.latitude[i]] for i in stretch],
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
    timeline = [
        {
            "id": a["id"],
            "alarm_type": a["alarm_type"],
            "level": a["level"],
            "status": a["status"],
            "started_at": a["started_at"].isoformat(),
            "ended_at": a["ended_at"].isoformat() if a["ended_at"] else None,
        }
        for a in alarms
    ]
    return {"type": "FeatureCollection", "features": features, "alarms": timeline}
