"""Place names of rounded positions (migration 0120): the reverse geocoder's shared cache."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True, slots=True)
class StoredPlace:
    """A stored answer: ``place`` None where the geocoder knows no address."""

    place: str | None


async def find(
    conn: asyncpg.Connection | asyncpg.Pool, lat: float, lon: float, max_age_days: int
) -> StoredPlace | None:
    """The stored answer for the rounded position (degrees), if looked up within
    ``max_age_days``; None when unknown or older."""
    row = await conn.fetchrow(
        "SELECT place FROM place_names WHERE latitude = $1 AND longitude = $2 "
        "AND looked_up_at > now() - make_interval(days => $3)",
        lat,
        lon,
        max_age_days,
    )
    return None if row is None else StoredPlace(row["place"])


async def store(
    conn: asyncpg.Connection | asyncpg.Pool, lat: float, lon: float, place: str | None
) -> None:
    """Keep (or refresh) the answer for the rounded position."""
    await conn.execute(
        "INSERT INTO place_names (latitude, longitude, place) VALUES ($1, $2, $3) "
        "ON CONFLICT (latitude, longitude) DO UPDATE "
        "SET place = EXCLUDED.place, looked_up_at = now()",
        lat,
        lon,
        place,
    )
