"""Track file readers: real GPS tracks -> positions per terminal, sorted by fix time.

Formats (``FORMATS``):

- ``csv``: header ``terminal_id,fix_time,latitude,longitude,speed_kmh,heading_deg,acc_on,fix_valid``
  (columns after ``longitude`` optional; ``fix_time`` ISO 8601 with offset; empty cell = unknown).
- ``jsonl``: one MQTT-contract position object per line (:mod:`gps_monitor.payload`) with a
  ``terminal_id`` field.
- ``tdrive``: Microsoft T-Drive, ``taxi_id,YYYY-MM-DD HH:MM:SS,longitude,latitude`` (longitude
  first), Beijing local time (UTC+8). Terminal id ``tdrive-{taxi_id}``.
- ``geolife``: Microsoft GeoLife ``.plt``: 6 header lines, then
  ``latitude,longitude,0,altitude_ft,days,YYYY-MM-DD,HH:MM:SS`` in UTC (altitude -777 = unknown).
  Terminal id ``geolife-{file stem}`` unless given (made valid by :func:`derived_terminal_id`).
- ``bods``: UK Bus Open Data Service CSV (``id,vehicle_id,trip_id,timestamp,latitude,longitude,
  bearing,...``), timestamps UTC, bearing empty while stationary. Terminal id
  ``bods-{vehicle_id}``.

Derived terminal ids (tdrive, geolife, bods) go through :func:`derived_terminal_id`, so a long
file name (GeoLife) or an odd vehicle id still gives a registrable id.

Where a file has no speed (tdrive, geolife, bods) it is derived from the previous fix of the
same terminal that ingest will judge good (geodesic distance / time, km/h), never from a GPS jump:
the fixes are stepped through the same verdicts ingest applies (:func:`gps_monitor.quality.
invalid_reason`, :func:`gps_monitor.quality.judge_drift`), a fix judged drift keeps the last
derived speed and heading (what a terminal reports while its position jumps), and the fix after a
one-fix jump gets its speed from the last good fix before it. Where it has no heading, the bearing
from that same good fix is used (the previous heading is kept while the vehicle does not move).
Rows with the same fix time are kept (replay publishes the file as it is; ingest stores them once).
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from gps_monitor.config import QualitySettings
from gps_monitor.db.registry import TERMINAL_ID_MAX, check_terminal_id
from gps_monitor.errors import GpsMonitorError, PayloadError
from gps_monitor.geo import bearing_deg, distance_m
from gps_monitor.models import Position, Quality
from gps_monitor.payload import parse_position
from gps_monitor.quality import DriftState, invalid_reason, judge_drift

FORMATS: tuple[str, ...] = ("csv", "jsonl", "tdrive", "geolife", "bods")
BEIJING = timezone(timedelta(hours=8))
_CSV_COLUMNS = (
    "terminal_id",
    "fix_time",
    "latitude",
    "longitude",
    "speed_kmh",
    "heading_deg",
    "acc_on",
    "fix_valid",
)
# Below this displacement between fixes (m) the heading is not re-derived (GPS noise at rest).
_HEADING_MIN_MOVE_M = 3.0
_NOT_IN_TERMINAL_ID = re.compile(r"[^A-Za-z0-9._-]+")
_HASH_HEX = 8


def derived_terminal_id(prefix: str, name: str) -> str:
    """A registrable terminal id (1-32 of letters, digits, '-', '_', '.') for ``name`` (a file
    stem or a vehicle id) under ``prefix`` (``geolife``, ``tdrive``, ``bods``).

    ``{prefix}-{name}`` when that is valid; otherwise characters outside the set become '-' and,
    when still too long, the name is cut and ``-`` + the first 8 hex digits of its SHA-256 are
    appended, so the same name always gives the same id and two long names sharing a beginning
    do not collide: ``20081023025304_user_000_trajectory.plt`` ->
    ``geolife-20081023025304_-e92aac5e``.

    Raises:
        TerminalIdError: never for the formats' prefixes (kept as a guard for other prefixes).
    """
    plain = f"{prefix}-{name}"
    if len(plain) <= TERMINAL_ID_MAX and not _NOT_IN_TERMINAL_ID.search(plain):
        return plain
    cleaned = _NOT_IN_TERMINAL_ID.sub("-", name).strip("-") or "track"
    candidate = f"{prefix}-{cleaned}"
    if len(candidate) > TERMINAL_ID_MAX or cleaned != name:
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:_HASH_HEX]
        room = TERMINAL_ID_MAX - len(prefix) - 2 - _HASH_HEX
        candidate = f"{prefix}-{cleaned[:room].rstrip('-')}-{digest}"
    return check_terminal_id(candidate)


@dataclass(slots=True)
class _Row:
    terminal_id: str
    fix_time: datetime
    latitude: float
    longitude: float
    speed_kmh: float | None = None
    heading_deg: float | None = None
    acc_on: bool | None = None
    fix_valid: bool = True
    altitude_m: float | None = None
    extras: dict[str, Any] | None = None
    position: Position | None = None  # jsonl: already a full position


def read_track(
    path: str | Path,
    fmt: str,
    *,
    terminal_id: str | None = None,
    quality: QualitySettings | None = None,
) -> dict[str, list[Position]]:
    """Read a track file into positions per terminal id, each list sorted by fix time.

    Args:
        path: the file.
        fmt: one of :data:`FORMATS`.
        terminal_id: for ``geolife`` (one track per file): the terminal id to use.
        quality: the verdicts that decide which fixes speeds are derived from (default
            :class:`QualitySettings`; pass the ingest worker's to match it exactly).

    Returns:
        ``{terminal_id: [Position, ...]}``; positions carry derived ``speed_kmh`` (km/h) and
        ``heading_deg`` where the file has none.

    Raises:
        GpsMonitorError: unknown format, unreadable file or empty track.
        PayloadError(reason="bad_track"): a line does not follow the format (the message gives
            file, line number, what was expected and what came).
    """
    if fmt not in FORMATS:
        raise GpsMonitorError(f"track format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise GpsMonitorError(f"track file {file}: cannot read it ({error})") from error
    lines = text.splitlines()
    readers = {
        "csv": _read_csv,
        "jsonl": _read_jsonl,
        "tdrive": _read_tdrive,
        "geolife": lambda f, ls: _read_geolife(
            f, ls, terminal_id or derived_terminal_id("geolife", f.stem)
        ),
        "bods": _read_bods,
    }
    rows = list(readers[fmt](file, lines))
    if not rows:
        raise GpsMonitorError(f"track file {file}: expected at least one fix, found none")
    return _to_positions(rows, quality or QualitySettings())


def replay_order(tracks: dict[str, list[Position]]) -> list[Position]:
    """All positions of all terminals in fix-time order (stable: file order within a time)."""
    merged = [p for positions in tracks.values() for p in positions]
    merged.sort(key=lambda p: p.fix_time)
    return merged


def _bad(file: Path, line_no: int, expected: str, got: str) -> PayloadError:
    shown = got if len(got) <= 120 else got[:117] + "..."
    return PayloadError(
        "bad_track", f"{file.name} line {line_no}: expected {expected}, got {shown!r}"
    )


def _float(file: Path, line_no: int, name: str, value: str | None) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise _bad(file, line_no, f"{name} as a number", str(value)) from None


def _opt_float(file: Path, line_no: int, name: str, value: str | None) -> float | None:
    if value is None or value.strip() == "":
        return None
    return _float(file, line_no, name, value)


def _opt_bool(file: Path, line_no: int, name: str, value: str | None) -> bool | None:
    if value is None or value.strip() == "":
        return None
    lowered = value.strip().lower()
    if lowered in ("1", "true", "t", "yes", "y"):
        return True
    if lowered in ("0", "false", "f", "no", "n"):
        return False
    raise _bad(file, line_no, f"{name} as true/false/1/0", value)


def _read_csv(file: Path, lines: list[str]) -> Iterator[_Row]:
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None or [h.strip() for h in header[:4]] != list(_CSV_COLUMNS[:4]):
        raise _bad(
            file,
            1,
            "header " + ",".join(_CSV_COLUMNS) + " (after longitude optional)",
            ",".join(header or []),
        )
    names = [h.strip() for h in header]
    for line_no, cells in enumerate(reader, start=2):
        if not cells or all(not c.strip() for c in cells):
            continue
        if len(cells) != len(names):
            raise _bad(file, line_no, f"{len(names)} columns", ",".join(cells))
        row = dict(zip(names, cells, strict=True))
        try:
            fix_time = datetime.fromisoformat(row["fix_time"].strip())
        except ValueError:
            raise _bad(file, line_no, "fix_time as ISO 8601 with offset", row["fix_time"]) from None
        if fix_time.tzinfo is None:
            raise _bad(file, line_no, "fix_time with a UTC offset", row["fix_time"])
        if not row["terminal_id"].strip():
            raise _bad(file, line_no, "a terminal_id", row["terminal_id"])
        fix_valid = _opt_bool(file, line_no, "fix_valid", row.get("fix_valid"))
        yield _Row(
            terminal_id=row["terminal_id"].strip(),
            fix_time=fix_time.astimezone(UTC),
            latitude=_float(file, line_no, "latitude", row["latitude"]),
            longitude=_float(file, line_no, "longitude", row["longitude"]),
            speed_kmh=_opt_float(file, line_no, "speed_kmh", row.get("speed_kmh")),
            heading_deg=_opt_float(file, line_no, "heading_deg", row.get("heading_deg")),
            acc_on=_opt_bool(file, line_no, "acc_on", row.get("acc_on")),
            fix_valid=True if fix_valid is None else fix_valid,
        )


def _read_jsonl(file: Path, lines: list[str]) -> Iterator[_Row]:
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data: Any = json.loads(line)
        except json.JSONDecodeError as error:
            raise _bad(file, line_no, f"one JSON object per line ({error.msg})", line) from None
        if not isinstance(data, dict) or not isinstance(data.get("terminal_id"), str):
            raise _bad(file, line_no, "a JSON object with a terminal_id string", line)
        try:
            position = parse_position(data, data["terminal_id"])
        except PayloadError as error:
            raise _bad(file, line_no, f"an MQTT-contract position ({error.detail})", line) from None
        yield _Row(
            terminal_id=position.terminal_id,
            fix_time=position.fix_time,
            latitude=position.latitude,
            longitude=position.longitude,
            position=position,
        )


def _parse_local(
    file: Path, line_no: int, text: str, fmt: str, tz: timezone, what: str
) -> datetime:
    try:
        return datetime.strptime(text.strip(), fmt).replace(tzinfo=tz).astimezone(UTC)
    except ValueError:
        raise _bad(file, line_no, what, text) from None


def _read_tdrive(file: Path, lines: list[str]) -> Iterator[_Row]:
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        cells = line.split(",")
        if len(cells) != 4:
            raise _bad(file, line_no, "taxi_id,YYYY-MM-DD HH:MM:SS,longitude,latitude", line)
        yield _Row(
            terminal_id=derived_terminal_id("tdrive", cells[0].strip()),
            fix_time=_parse_local(
                file,
                line_no,
                cells[1],
                "%Y-%m-%d %H:%M:%S",
                BEIJING,
                "time as YYYY-MM-DD HH:MM:SS (Beijing time)",
            ),
            longitude=_float(file, line_no, "longitude", cells[2]),
            latitude=_float(file, line_no, "latitude", cells[3]),
        )


def _read_geolife(file: Path, lines: list[str], terminal_id: str) -> Iterator[_Row]:
    if len(lines) < 6:
        raise _bad(file, len(lines), "6 GeoLife header lines", "\n".join(lines))
    for line_no, line in enumerate(lines[6:], start=7):
        if not line.strip():
            continue
        cells = line.split(",")
        if len(cells) != 7:
            raise _bad(file, line_no, "lat,lon,0,altitude_ft,days,YYYY-MM-DD,HH:MM:SS", line)
        altitude_ft = _float(file, line_no, "altitude_ft", cells[3])
        yield _Row(
            terminal_id=terminal_id,
            fix_time=_parse_local(
                file,
                line_no,
                f"{cells[5]} {cells[6]}",
                "%Y-%m-%d %H:%M:%S",
                UTC,
                "date,time as YYYY-MM-DD,HH:MM:SS (UTC)",
            ),
            latitude=_float(file, line_no, "latitude", cells[0]),
            longitude=_float(file, line_no, "longitude", cells[1]),
            altitude_m=None if altitude_ft == -777 else altitude_ft * 0.3048,
        )


def _read_bods(file: Path, lines: list[str]) -> Iterator[_Row]:
    reader = csv.DictReader(lines)
    required = {"vehicle_id", "timestamp", "latitude", "longitude"}
    if reader.fieldnames is None or not required <= set(reader.fieldnames):
        raise _bad(
            file,
            1,
            "a BODS header with " + ",".join(sorted(required)),
            ",".join(reader.fieldnames or []),
        )
    for row in reader:
        line_no = reader.line_num
        vehicle = (row["vehicle_id"] or "").strip()
        if not vehicle:
            raise _bad(file, line_no, "a vehicle_id", str(row["vehicle_id"]))
        yield _Row(
            terminal_id=derived_terminal_id("bods", vehicle),
            fix_time=_parse_local(
                file,
                line_no,
                row["timestamp"] or "",
                "%Y-%m-%d %H:%M:%S",
                UTC,
                "timestamp as YYYY-MM-DD HH:MM:SS (UTC)",
            ),
            latitude=_float(file, line_no, "latitude", row["latitude"]),
            longitude=_float(file, line_no, "longitude", row["longitude"]),
            heading_deg=_opt_float(file, line_no, "bearing", row.get("bearing")),
            extras={k: row[k] for k in ("trip_id", "route_name") if row.get(k)},
        )


def _to_positions(rows: Iterable[_Row], quality: QualitySettings) -> dict[str, list[Position]]:
    grouped: dict[str, list[_Row]] = {}
    for row in rows:
        grouped.setdefault(row.terminal_id, []).append(row)
    tracks: dict[str, list[Position]] = {}
    for terminal_id, group in grouped.items():
        group.sort(key=lambda r: r.fix_time)  # stable: file order within one fix time
        tracks[terminal_id] = list(_derive(group, quality))
    return tracks


def _derive(rows: list[_Row], quality: QualitySettings) -> Iterator[Position]:
    """Positions with speed (km/h) and heading (deg) derived, where missing, from the last fix
    the quality verdicts judge good (module docstring)."""
    drift = DriftState()
    last_speed_kmh = 0.0
    last_heading: float | None = None
    for row in rows:
        if row.position is not None:
            yield row.position
            continue
        position = Position(
            terminal_id=row.terminal_id,
            fix_time=row.fix_time,
            latitude=row.latitude,
            longitude=row.longitude,
            speed_kmh=row.speed_kmh if row.speed_kmh is not None else last_speed_kmh,
            heading_deg=row.heading_deg,
            altitude_m=row.altitude_m,
            fix_valid=row.fix_valid,
            acc_on=row.acc_on,
            extras=row.extras or {},
        )
        previous_good: Position | None = None
        if invalid_reason(position, row.fix_time, quality) is None:
            verdict = judge_drift(drift, position, quality)
            if verdict.quality is Quality.OK:
                previous_good = verdict.cleared or drift.anchor
            drift = verdict.state
        speed_kmh, heading = row.speed_kmh, row.heading_deg
        if previous_good is not None:
            moved_m = distance_m(
                previous_good.latitude, previous_good.longitude, row.latitude, row.longitude
            )
            dt_s = (row.fix_time - previous_good.fix_time).total_seconds()
            if speed_kmh is None and dt_s > 0:
                speed_kmh = moved_m / dt_s * 3.6
            if heading is None and moved_m >= _HEADING_MIN_MOVE_M:
                heading = bearing_deg(
                    previous_good.latitude, previous_good.longitude, row.latitude, row.longitude
                )
        if speed_kmh is None:  # first fix, same fix time again, a jump or an invalid fix
            speed_kmh = last_speed_kmh
        if heading is None:
            heading = last_heading
        last_speed_kmh, last_heading = speed_kmh, heading
        yield position.evolve(speed_kmh=speed_kmh, heading_deg=heading)
