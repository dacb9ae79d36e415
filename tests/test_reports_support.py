"""Helpers shared by the tests/test_reports_*.py files (no tests here): storing tracks the way
ingest stores them (raw MQTT message + position rows through gps_monitor.db.positions), and
inserting alarms."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg

from gps_monitor.db.positions import PositionRow, RawMessage, WriteBatch, write_batch
from gps_monitor.geo import bearing_deg, distance_m, implied_speed_kmh
from gps_monitor.models import Position, Quality

BEIJING = timezone(timedelta(hours=8))


@dataclass(frozen=True, slots=True)
class Fix:
    """One fix to store: time, place, speed, quality and the stored distance/interval from the
    previous ok fix (None = computed geodesically)."""

    fix_time: datetime
    latitude: float
    longitude: float
    speed_kmh: float
    heading_deg: float | None = None
    quality: Quality = Quality.OK
    distance_m: float | None = None
    interval_s: float | None = None
    satellites: int | None = 9


def read_tdrive(path: Path) -> list[Fix]:
    """The T-Drive file (taxi_id,local time,lon,lat), duplicates dropped, speed and heading
    derived from the previous fix."""
    seen: dict[str, tuple[float, float]] = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        _, when, lon, lat = line.split(",")
        seen.setdefault(when, (float(lon), float(lat)))
    fixes: list[Fix] = []
    previous: tuple[datetime, float, float] | None = None
    for when in sorted(seen):
        lon, lat = seen[when]
        t = datetime.fromisoformat(when).replace(tzinfo=BEIJING)
        speed, heading = 0.0, None
        if previous is not None:
            speed = implied_speed_kmh(previous[1], previous[2], previous[0], lat, lon, t)
            if (previous[1], previous[2]) != (lat, lon):
                heading = bearing_deg(previous[1], previous[2], lat, lon)
        fixes.append(Fix(t, lat, lon, round(speed, 1), heading))
        previous = (t, lat, lon)
    return fixes


async def store_fixes(
    pool: asyncpg.Pool, vehicle_id: int, company_id: int, terminal_id: str, fixes: Sequence[Fix]
) -> None:
    """Store fixes as ingest does: one raw MQTT JSON message per fix (the MQTT contract), the
    position referencing it, distance_m/interval_s from the previous ok fix."""
    batch = WriteBatch()
    previous_ok: Fix | None = None
    for fix in sorted(fixes, key=lambda f: f.fix_time):
        payload = {
            "fix_time": fix.fix_time.isoformat(),
            "latitude": fix.latitude,
            "longitude": fix.longitude,
            "speed_kmh": fix.speed_kmh,
            "heading_deg": fix.heading_deg,
            "satellites": fix.satellites,
            "fix_valid": fix.quality != Quality.INVALID,
        }
        received = fix.fix_time + timedelta(seconds=2)
        batch.raw.append(
            RawMessage(
                topic=f"gps/v1/{terminal_id}/position",
                payload=json.dumps(payload, separators=(",", ":")).encode(),
                received_at=received,
            )
        )
        dist = interval = None
        if fix.quality == Quality.OK and previous_ok is not None:
            dist = fix.distance_m
            if dist is None:
                dist = distance_m(
                    previous_ok.latitude, previous_ok.longitude, fix.latitude, fix.longitude
                )
            interval = fix.interval_s
            if interval is None:
                interval = (fix.fix_time - previous_ok.fix_time).total_seconds()
        if fix.quality == Quality.OK:
            previous_ok = fix
        position = Position(
            terminal_id=terminal_id,
            fix_time=fix.fix_time,
            latitude=fix.latitude,
            longitude=fix.longitude,
            speed_kmh=fix.speed_kmh,
            heading_deg=fix.heading_deg,
            satellites=fix.satellites,
            fix_valid=fix.quality != Quality.INVALID,
            vehicle_id=vehicle_id,
            company_id=company_id,
            quality=fix.quality,
            received_at=received,
        )
        batch.positions.append(PositionRow(position, len(batch.raw) - 1, dist, interval))
    async with pool.acquire() as conn:
        for start in range(0, len(batch.positions), 500):
            chunk = WriteBatch(
                raw=batch.raw[start : start + 500],
                positions=[
                    PositionRow(r.position, r.raw_index - start, r.distance_m, r.interval_s)
                    for r in batch.positions[start : start + 500]
                ],
            )
            await write_batch(conn, chunk)


async def insert_alarm(
    pool: asyncpg.Pool,
    *,
    vehicle_id: int,
    company_id: int,
    alarm_type: str,
    started_at: datetime,
    ended_at: datetime | None,
    details: dict[str, Any] | None = None,
    status: str = "closed",
    first_fix_time: datetime | None = None,
    last_fix_time: datetime | None = None,
) -> int:
    """One alarm row as the rules engine writes it; returns its id."""
    return int(
        await pool.fetchval(
            "INSERT INTO alarms (vehicle_id, company_id, alarm_type, dedup_key, started_at, "
            "ended_at, status, details, first_fix_time, last_fix_time) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
            vehicle_id,
            company_id,
            alarm_type,
            f"{vehicle_id}:{alarm_type}:{started_at.isoformat()}",
            started_at,
            ended_at,
            status,
            details or {},
            first_fix_time or started_at,
            last_fix_time or ended_at,
        )
    )
