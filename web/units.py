"""Measured values as the API and the websocket send them.

Speeds and headings are stored as ``real`` (float32), so 7.73 km/h comes back as
7.730000019073486. Terminals report speed in 0.1 km/h (JT/T 808) and heading in whole degrees,
so nothing is lost by rounding at the edge: speeds and headings to 0.1, altitudes and distances
to 1 m. Coordinates (``double precision``, as received) are sent unchanged.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, TypeVar

Row = TypeVar("Row", bound=MutableMapping[str, Any])

DECIMALS: dict[str, int] = {
    "speed_kmh": 1,
    "max_speed_kmh": 1,
    "mean_speed_kmh": 1,
    "heading_deg": 1,
    "altitude_m": 0,
    "distance_m": 0,
}


def rounded(value: float | None, decimals: int) -> float | int | None:
    """``value`` rounded to ``decimals`` (whole numbers as int when ``decimals`` is 0)."""
    if value is None:
        return None
    return round(value) if decimals == 0 else round(value, decimals)


def round_measures(item: Row) -> Row:
    """Round, in place, the measured fields of one row (see :data:`DECIMALS`); returns it."""
    for key, decimals in DECIMALS.items():
        value = item.get(key)
        if isinstance(value, float):
            item[key] = rounded(value, decimals)
    return item
