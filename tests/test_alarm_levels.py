"""Alarm levels (issue 9): the shipped policy, per-type and per-class overrides, the level a rule
puts on the alarm it raises, and the migration 0052 backfill agreeing with the policy."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError
from rules_factory import LAT0, LON0, Runner, context, drive, no_offline, offset
from shapely.geometry import Polygon

from gps_monitor.alarm_levels import ALARM_TYPES, DEFAULT_LEVELS, VEHICLE_CLASSES, level_for
from gps_monitor.config import AlarmsSettings, DatabaseSettings, Settings, describe_validation_error
from gps_monitor.db import migrate
from gps_monitor.db.pool import connect
from gps_monitor.db.registry import ensure_company, ensure_vehicle
from gps_monitor.geofences import Geofence, GeofenceKind
from gps_monitor.models import VehicleClass

DEFAULTS = AlarmsSettings()


@pytest.mark.parametrize(
    ("alarm_type", "vehicle_class", "details", "level"),
    [
        ("device_alarm", "coach", {"bit": 0, "name": "sos"}, 1),
        ("forbidden_area_entry", "hazmat", None, 1),
        ("offline_displacement", "hazmat", None, 1),
        ("overspeed", "coach", None, 2),
        ("fatigue_driving", "freight", None, 2),
        ("night_ban", "coach", None, 2),
        ("route_deviation", "hazmat", None, 2),
        ("forbidden_area_entry", "freight", None, 2),
        ("fatigue_warning", "coach", None, 3),
        ("geofence_enter", "freight", None, 3),
        ("geofence_exit", "hazmat", None, 3),
        ("device_alarm", "freight", {"bit": 19, "name": "overtime_parking"}, 3),
        ("offline", "freight", None, 4),
        ("offline", "hazmat", None, 3),
    ],
)
def test_shipped_levels_follow_the_readme_table(
    alarm_type: str, vehicle_class: str, details: dict[str, object] | None, level: int
) -> None:
    assert level_for(alarm_type, vehicle_class, DEFAULTS, details) == level


def test_a_type_nobody_configured_gets_the_default_level() -> None:
    assert level_for("adas_forward_collision", "coach", DEFAULTS) == 3
    assert level_for("adas_forward_collision", None, AlarmsSettings(default_level=2)) == 2


def test_overrides_per_type_and_per_class_the_most_specific_key_wins() -> None:
    levels = AlarmsSettings(
        levels={"overspeed": 3, "overspeed@hazmat": 1, "offline": 3, "device_alarm.sos": 2}
    )
    assert level_for("overspeed", "freight", levels) == 3
    assert level_for("overspeed", "hazmat", levels) == 1
    assert level_for("offline", "freight", levels) == 3
    # a shipped class-specific default is more specific than an override of the bare type
    assert (
        level_for(
            "forbidden_area_entry", "hazmat", AlarmsSettings(levels={"forbidden_area_entry": 3})
        )
        == 1
    )
    assert level_for("device_alarm", "coach", levels, {"name": "sos"}) == 2
    # untouched types keep their shipped level
    assert level_for("fatigue_driving", "coach", levels) == 2


def test_level_setting_read_from_the_environment_and_bad_keys_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GPS_MONITOR_ALARMS_LEVELS", '{"offline": 3, "overspeed@hazmat": 1}')
    assert Settings().alarms.levels == {"offline": 3, "overspeed@hazmat": 1}
    cases = {
        '{"overspead": 1}': "expected an alarm type among overspeed",
        '{"offline@bus": 1}': "expected a vehicle class among coach",
        '{"offline": 7}': "expected a level 1 (紧急) .. 4 (提示), got 7",
    }
    for value, message in cases.items():
        monkeypatch.setenv("GPS_MONITOR_ALARMS_LEVELS", value)
        with pytest.raises(ValidationError) as caught:
            Settings()
        text = describe_validation_error(caught.value, env_prefix="GPS_MONITOR_")
        assert text.startswith("GPS_MONITOR_ALARMS_LEVELS: ") and message in text, text


def test_every_shipped_key_names_a_known_type_and_class() -> None:
    assert AlarmsSettings(levels=DEFAULT_LEVELS).levels == DEFAULT_LEVELS


def test_a_rule_stores_the_level_of_its_vehicle_class_on_the_alarm() -> None:
    lat_s, lon_w = offset(LAT0, LON0, east_m=500, north_m=-500)
    lat_n, lon_e = offset(LAT0, LON0, east_m=1500, north_m=500)
    square = Polygon([(lon_w, lat_s), (lon_e, lat_s), (lon_e, lat_n), (lon_w, lat_n)])
    fence = Geofence(id="f", name="水源地", kind=GeofenceKind.FORBIDDEN, geometry=square)
    found = {}
    for vehicle_class in ("hazmat", "freight"):
        run = Runner(context(vehicle_class, rules=no_offline(), geofences=[fence]))
        run.feed(drive("2024-01-10 10:00:00", [(120, 60)], interval_s=5))
        found[vehicle_class] = [a.level for a in run.of("forbidden_area_entry")]
    assert found == {"hazmat": [1, 1], "freight": [2, 2]}
    assert run.of("forbidden_area_entry")[0].to_dict()["level"] == 2


async def test_migration_backfills_existing_alarms_with_the_shipped_levels(
    database_url: str,
) -> None:
    """Rows of every type on every class, the level column dropped and 0052 applied again:
    the SQL backfill gives what level_for gives."""
    conn = await connect(DatabaseSettings(url=database_url))
    try:
        company = await ensure_company(conn, "Levels Co")
        vehicles = {}
        for i, cls in enumerate(VEHICLE_CLASSES):
            v = await ensure_vehicle(
                conn,
                company_id=company.id,
                plate_number=f"渝L0000{i}",
                terminal_id=f"01390000010{i}",
                vehicle_class=VehicleClass(cls),
            )
            vehicles[cls] = v.id
        cases = [(t, c, None) for t in ALARM_TYPES for c in VEHICLE_CLASSES]
        cases += [("device_alarm", c, "sos") for c in VEHICLE_CLASSES]
        started = datetime(2024, 1, 10, tzinfo=UTC)
        for n, (alarm_type, cls, name) in enumerate(cases):
            details = {"name": name} if name else {}
            await conn.execute(
                "INSERT INTO alarms (vehicle_id, company_id, alarm_type, dedup_key, started_at, "
                "details) VALUES ($1, $2, $3, $4, $5, $6)",
                vehicles[cls], company.id, alarm_type, f"k{n}", started, details,
            )  # fmt: skip
        await conn.execute("ALTER TABLE alarms DROP COLUMN level")
        await conn.execute("DELETE FROM schema_migrations WHERE key = '0052_alarm_levels'")
        applied = await migrate.upgrade(conn, DatabaseSettings(url=database_url))
        assert applied == ["0052_alarm_levels"]
        rows = await conn.fetch(
            "SELECT a.alarm_type, v.vehicle_class, a.details, a.level FROM alarms a "
            "JOIN vehicles v ON v.id = a.vehicle_id"
        )
        assert len(rows) == len(cases)
        for r in rows:
            expected = level_for(r["alarm_type"], r["vehicle_class"], DEFAULTS, r["details"])
            assert r["level"] == expected, dict(r)
        assert {r["level"] for r in rows} == {1, 2, 3, 4}
    finally:
        await conn.close()
