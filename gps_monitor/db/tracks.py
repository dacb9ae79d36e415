"""A vehicle's track window as the playback reads it: its ``ok`` fixes as columns, the fixes
flagged by the quality checks, and the alarms of the vehicle that overlap the window.

Shapes only; drawing (simplification, GeoJSON) is :mod:`web.track`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

# at most this many flagged fixes / alarms per window (a month of a broken terminal would
# otherwise fill the page)
MAX_FLAGGED = 5000
MAX_ALARMS = 1000


@dataclass(frozen=True, slots=True)
class TrackPoint:
    """One stored fix that is not ``ok`` (invalid or drift), with its flags (WGS-84, km/h)."""

    fix_time: datetime
    latitude: float
    longitude: float
    speed_kmh: float
    heading_deg: float | None
    quality: str
    quality_reason: str | None
    late: bool


@dataclass(frozen=True, slots=True)
class OkFixes:
    """The ``ok`` fixes of a window as parallel columns in fix-time order: ``epoch_s`` (UTC
    seconds), ``latitude``/``longitude`` (WGS-84 degrees), ``speed_kmh``, ``heading_deg``
    (None when unknown), ``late``. Columns keep a month of fixes cheap to load and simplify."""

    epoch_s: list[float]
    latitude: list[float]
    longitude: list[float]
    speed_kmh: list[float]
    heading_deg: list[float | None]
    late: list[bool]

    def __len__(self) -> int:
        return len(self.epoch_s)


@dataclass(frozen=True, slots=True)
class TrackWindow:
    """What :func:`load_track` returns: ``ok`` fixes, ``flagged`` fixes (at most
    :data:`MAX_FLAGGED`, by fix time) and ``alarms`` (dicts with ``id``, ``alarm_type``,
    ``level``, ``status``, ``started_at``, ``ended_at`` (UTC, None while open), ``details``;
    at most :data:`MAX_ALARMS`, by start)."""

    ok: OkFixes
    flagged: list[TrackPoint]
    alarms: list[dict[str, Any]]


_OK_COLUMNS = (
    "SELECT coalesce(array_agg(extract(epoch FROM fix_time)::float8 ORDER BY fix_time), '{}'),"
    " coalesce(array_agg(latitude ORDER BY fix_time), '{}'),"
    " coalesce(array_agg(longitude ORDER BY fix_time), '{}'),"
    " coalesce(array_agg(speed_kmh::float8 ORDER BY fix_time), '{}'),"
    " coalesce(array_agg(heading_deg::float8 ORDER BY fix_time), '{}'),"
    " coalesce(array_agg(late ORDER BY fix_time), '{}') "
    "FROM positions WHERE vehicle_id = $1 AND fix_time >= $2 AND fix_time < $3 "
    "AND quality = 'ok'"
)
_FLAGGED = (
    "SELECT fix_time, latitude, longitude, speed_kmh, heading_deg, quality, quality_reason, late "
    "FROM positions WHERE vehicle_id = $1 AND fix_time >= $2 AND fix_time < $3 "
    f"AND quality <> 'ok' ORDER BY fix_time LIMIT {MAX_FLAGGED}"
)
_ALARMS = (
    "SELECT id, alarm_type, level, status, started_at, ended_at, details FROM alarms "
    "WHERE vehicle_id = $1 AND started_at < $3 AND (ended_at IS NULL OR ended_at >= $2) "
    f"ORDER BY started_at, id LIMIT {MAX_ALARMS}"
)


async def load_track(
    conn: asyncpg.Connection | asyncpg.Pool, vehicle_id: int, start: datetime, end: datetime
) -> TrackWindow:
    """The fixes of ``vehicle_id`` in ``[start, end)`` and its alarms overlapping it (aware
    datetimes). The caller checks the window and that the user may see the vehicle."""
    columns = await conn.fetchrow(_OK_COLUMNS, vehicle_id, start, end)
    assert columns is not None  # an aggregate always returns a row
    flagged = [TrackPoint(*r) for r in await conn.fetch(_FLAGGED, vehicle_id, start, end)]
    alarms = [dict(r) for r in await conn.fetch(_ALARMS, vehicle_id, start, end)]
    return TrackWindow(OkFixes(*(list(c) for c in columns)), flagged, alarms)
