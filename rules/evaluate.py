"""``gps-monitor evaluate TRACK``: the rules engine offline over a track file, no services.

Prints one JSON object per alarm, ordered by start (then type, then key): ``type``,
``terminal_id``, ``started_at``, ``ended_at`` (ISO 8601 UTC, null while still open at the end of
the track), ``late``, ``details`` and the other :class:`~gps_monitor.models.Alarm` fields.
Deterministic: same file and options, same bytes. Exit 2 with a message on stderr for bad input.

The pipeline is the live one minus the services: quality verdicts (invalid, duplicate = same
fix time, drift judged with :func:`gps_monitor.quality.judge_drift`), then the engine with the
``fix`` clock (offline advances with the fix times). Formats without a speed column (tdrive,
geolife, bods) get their speed re-derived from the previous *good* fix, so a GPS jump does not
leave a false speed on the fix after it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gps_monitor.config import RulesSettings, Settings, describe_validation_error
from gps_monitor.errors import ConfigurationError, GeometryError, GpsMonitorError
from gps_monitor.geo import fast_distance_m
from gps_monitor.geofences import Geofence, Route, parse_geojson
from gps_monitor.models import Alarm, Position, Quality, VehicleClass
from gps_monitor.quality import DriftState, invalid_reason, judge_drift, max_plausible_speed_kmh
from gps_monitor.tracks import FORMATS, read_track
from rules.context import GeoContext, LocalClock, RuleContext, VehicleProfile
from rules.engine import Engine, VehicleState, merge_events

_NO_SPEED_FORMATS = ("tdrive", "geolife", "bods")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("track", help="track file")
    parser.add_argument("--format", default="csv", choices=FORMATS, help="track format (csv)")
    parser.add_argument(
        "--vehicle-class",
        default="freight",
        choices=[c.value for c in VehicleClass],
        help="vehicle class of every terminal in the file (freight)",
    )
    parser.add_argument("--speed-limit-kmh", type=float, default=None, help="vehicle limit")
    parser.add_argument("--geofences", action="append", default=[], help="GeoJSON file")
    parser.add_argument(
        "--routes", action="append", default=[], help="GeoJSON file of routes (assigned to all)"
    )
    parser.add_argument("--night-ban-exempt", action="store_true", help="exempt from 02-05 ban")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="RULE.KEY=VALUE",
        help="override a rules setting, e.g. overspeed.min_duration_s=20",
    )


def apply_overrides(base: RulesSettings, overrides: list[str]) -> RulesSettings:
    """``rule.key=value`` (or ``rule_key=value``) strings -> validated settings.

    Raises:
        ConfigurationError: unknown key or a value the field does not accept.
    """
    values: dict[str, Any] = base.model_dump()
    for item in overrides:
        key, sep, raw = item.partition("=")
        name = key.strip().replace(".", "_")
        if not sep or name not in RulesSettings.model_fields:
            raise ConfigurationError(
                f"--set {item!r}: expected RULE.KEY=VALUE with a rules setting such as "
                "overspeed.min_duration_s=20; known: "
                + ", ".join(sorted(RulesSettings.model_fields))
            )
        try:
            values[name] = json.loads(raw)
        except json.JSONDecodeError:
            values[name] = raw
    try:
        return RulesSettings.model_validate(values)
    except ValidationError as error:
        raise ConfigurationError(f"--set {describe_validation_error(error)}") from None


def load_geojson_files(paths: list[str]) -> tuple[list[Geofence], list[Route]]:
    """Geofences and routes of several GeoJSON files.

    Raises:
        GeometryError: unreadable file or invalid content (file named in the message).
    """
    fences: list[Geofence] = []
    routes: list[Route] = []
    for path in paths:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
            raise GeometryError(f"{path}: expected a readable GeoJSON file ({error})") from None
        try:
            more_fences, more_routes = parse_geojson(data)
        except GeometryError as error:
            raise GeometryError(f"{path}: {error}") from None
        fences += more_fences
        routes += more_routes
    return fences, routes


def prepare_track(
    positions: list[Position], fmt: str, settings: Settings, vehicle_class: str = "freight"
) -> list[Position]:
    """Quality verdicts for one terminal's sorted positions: invalid flagged (also a reported
    speed above the class's plausibility bound), duplicates (same fix time) dropped, drift
    judged; speeds re-derived from good fixes for speedless formats."""
    max_speed_kmh = max_plausible_speed_kmh(vehicle_class, settings.quality)
    out: list[Position] = []
    drift = DriftState()
    last_t: datetime | None = None
    previous_ok: Position | None = None
    for position in positions:
        if last_t is not None and position.fix_time == last_t:
            continue
        last_t = position.fix_time
        reason = invalid_reason(
            position, position.fix_time, settings.quality, max_speed_kmh=max_speed_kmh
        )
        if reason is not None:
            out.append(position.with_verdict(Quality.INVALID, reason))
            continue
        verdict = judge_drift(drift, position, settings.quality)
        drift = verdict.state
        if verdict.quality is Quality.DRIFT:
            out.append(position.with_verdict(Quality.DRIFT, "jump"))
            continue
        if fmt in _NO_SPEED_FORMATS and previous_ok is not None:
            dt_s = (position.fix_time - previous_ok.fix_time).total_seconds()
            moved_m = fast_distance_m(
                previous_ok.latitude, previous_ok.longitude, position.latitude, position.longitude
            )
            if dt_s > 0:
                position = replace(position, speed_kmh=moved_m / dt_s * 3.6)
        previous_ok = position
        out.append(position)
    return out


def evaluate_track(
    tracks: dict[str, list[Position]],
    settings: Settings,
    *,
    fmt: str = "csv",
    vehicle_class: str = "freight",
    speed_limit_kmh: float | None = None,
    geofences: list[Geofence] | None = None,
    routes: list[Route] | None = None,
    night_ban_exempt: bool = False,
) -> list[Alarm]:
    """Run the engine over every terminal's track; alarms merged per episode, by start."""
    geo = GeoContext(geofences or [], routes or [])
    engine = Engine()
    local = LocalClock(settings.rules.timezone)
    events: list[Alarm] = []
    for terminal_id in sorted(tracks):
        profile = VehicleProfile(
            vehicle_id=0,
            company_id=0,
            terminal_id=terminal_id,
            vehicle_class=vehicle_class,
            speed_limit_kmh=speed_limit_kmh,
            night_ban_exempt=night_ban_exempt,
            route_ids=tuple(r.id for r in routes or []),
        )
        ctx = RuleContext(
            vehicle=profile,
            settings=settings.rules,
            quality=settings.quality,
            geo=geo,
            local=local,
            levels=settings.alarms,
        )
        state = VehicleState()
        for position in prepare_track(tracks[terminal_id], fmt, settings, vehicle_class):
            state, alarms = engine.process(state, position, ctx)
            events += alarms
    return merge_events(events)


def alarm_json(alarm: Alarm) -> dict[str, Any]:
    """The output object of one alarm (``type`` first, then the Alarm fields)."""
    data = alarm.to_dict()
    data.pop("event", None)
    data.pop("id", None)
    data.pop("status", None)
    return {"type": data.pop("alarm_type"), **data}


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        rules = apply_overrides(settings.rules, args.overrides)
        settings = settings.model_copy(update={"rules": rules})
        fences, routes_a = load_geojson_files(args.geofences)
        more_fences, routes = load_geojson_files(args.routes)
        limit = args.speed_limit_kmh
        if limit is not None and not (math.isfinite(limit) and limit > 0):
            raise ConfigurationError(
                f"--speed-limit-kmh: expected a finite positive number, got {limit}"
            )
        tracks = read_track(args.track, args.format, quality=settings.quality)
    except GpsMonitorError as error:
        print(f"gps-monitor evaluate: {error}", file=sys.stderr)
        return 2
    alarms = evaluate_track(
        tracks,
        settings,
        fmt=args.format,
        vehicle_class=args.vehicle_class,
        speed_limit_kmh=args.speed_limit_kmh,
        geofences=fences + more_fences,
        routes=routes_a + routes,
        night_ban_exempt=args.night_ban_exempt,
    )
    try:
        for alarm in alarms:
            sys.stdout.write(json.dumps(alarm_json(alarm), ensure_ascii=False) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. piped into `head`: the reader has what it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 0


__all__ = ["add_arguments", "alarm_json", "apply_overrides", "evaluate_track", "run"]
