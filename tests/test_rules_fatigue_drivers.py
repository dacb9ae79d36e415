"""Fatigue is the driver's (issue 12 item 7; DOMAIN.md, Drivers and Fatigue driving): a change
of driver with the vehicle stopped starts a fresh continuous-driving count, a swap while moving
does not, a pulled card is no fresh driver, and the daily limit adds up a driver's driving on
every vehicle of the day. Without card data the counts stay the vehicle's (test_rules_fatigue)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from rules_factory import Runner, context, drive, no_offline, position

from gps_monitor.models import Position
from rules.driver_days import DriverDays, key
from rules.engine import VehicleState

A = "500101198001011234"
B = "500101198502022345"


def card(certificate_no: str | None) -> dict[str, Any]:
    if certificate_no is None:
        return {}
    return {"extras": {"driver": {"certificate_no": certificate_no, "name": "x"}}}


def stop(after: Position, minutes: int, driver: str | None) -> list[Position]:
    return [
        position(
            after.fix_time + timedelta(minutes=m), lat=after.latitude, lon=after.longitude,
            **card(driver),
        )
        for m in range(1, minutes + 1)
    ]  # fmt: skip


def drive_on(after: Position, hours: float, driver: str | None) -> list[Position]:
    return drive(
        after.fix_time, [(hours * 3600, 60)], interval_s=60, lat=after.latitude,
        lon=after.longitude, include_start=False, **card(driver),
    )  # fmt: skip


def relay(first: str | None, second: str | None, stop_min: int = 5) -> Runner:
    """3 h 50 min by ``first``, a stop of ``stop_min``: its first fix still ``first``'s, then
    ``second``'s card in, and 2 h more by ``second``."""
    run = Runner(context("coach", rules=no_offline()))
    leg = drive("2024-01-10 07:00:00", [(3 * 3600 + 50 * 60, 60)], interval_s=60, **card(first))
    halted = stop(leg[-1], 1, first)
    stopped = halted + stop(halted[-1], stop_min - 1, second)
    run.feed(leg + stopped + drive_on(stopped[-1], 2, second))
    return run


def test_a_new_driver_after_a_short_stop_starts_a_fresh_count() -> None:
    run = relay(A, B)
    assert run.of("fatigue_driving") == []
    # A's warning (at 3 h 30 min) closes at the change, naming A; nothing for B in 2 h
    (warned,) = run.of("fatigue_warning", "opened")
    assert warned.details["driver_certificate_no"] == A
    (closed,) = run.of("fatigue_warning", "closed")
    assert closed.details["reason"] == "driver change"


def test_the_same_driver_or_no_card_after_a_short_stop_goes_on_counting() -> None:
    same = relay(A, A)
    assert same.raised_at("fatigue_driving") == [datetime(2024, 1, 10, 11, 5)]
    assert same.of("fatigue_driving")[0].details["driver_certificate_no"] == A
    vehicle = relay(None, None)
    assert vehicle.raised_at("fatigue_driving") == [datetime(2024, 1, 10, 11, 5)]
    assert "driver_certificate_no" not in vehicle.of("fatigue_driving")[0].details
    # A pulls his card and nobody puts one in: still A's count
    pulled = relay(A, None)
    assert pulled.raised_at("fatigue_driving") == [datetime(2024, 1, 10, 11, 5)]


def test_a_card_swapped_while_moving_is_no_rest() -> None:
    run = Runner(context("coach", rules=no_offline()))
    leg = drive("2024-01-10 07:00:00", [(3 * 3600 + 50 * 60, 60)], interval_s=60, **card(A))
    run.feed(leg + drive_on(leg[-1], 1, B))
    assert run.raised_at("fatigue_driving") == [datetime(2024, 1, 10, 11, 0)]
    assert run.of("fatigue_driving")[0].details["driver_certificate_no"] == B


def test_the_daily_limit_counts_a_driver_across_vehicles() -> None:
    ledger = DriverDays()
    one = Runner(context(rules=no_offline(), vehicle_id=1))
    two = Runner(context(rules=no_offline(), vehicle_id=2))
    one.ctx.driver_days = two.ctx.driver_days = ledger
    # A drives vehicle 1 for 3 h 50, rests 30 min, 1 h 50 more (5 h 40), then leaves it
    leg = drive("2024-01-10 06:00:00", [(3 * 3600 + 50 * 60, 60)], interval_s=60, **card(A))
    rested = stop(leg[-1], 30, A)
    more = drive_on(rested[-1], 1 + 50 / 60, A)
    one.feed(leg + rested + more)
    assert one.of("daily_driving_limit") == []
    # then vehicle 2 from 13:00: the limit (8 h) is reached after 2 h 20 min there, at 15:20
    two.feed(drive("2024-01-10 13:00:00", [(3 * 3600, 60)], interval_s=60, **card(A)))
    (alarm,) = two.of("daily_driving_limit", "opened")
    assert alarm.started_at == datetime.fromisoformat("2024-01-10T07:20:00+00:00")
    assert alarm.details["driver_certificate_no"] == A
    # as at the fix that raised it (15:21)
    assert alarm.details["driving_s_by_vehicle"] == {"1": 20400.0, "2": 8460.0}
    # another driver on vehicle 2 the same day has his own total
    three = Runner(context(rules=no_offline(), vehicle_id=3))
    three.ctx.driver_days = ledger
    three.feed(drive("2024-01-10 13:00:00", [(3 * 3600, 60)], interval_s=60, **card(B)))
    assert three.of("daily_driving_limit") == []


def test_the_ledger_is_rebuilt_from_stored_states_and_set_not_added() -> None:
    ctx = context(rules=no_offline(), vehicle_id=7)
    run = Runner(ctx)
    run.feed(drive("2024-01-10 06:00:00", [(3600, 60)], interval_s=60, **card(A)))
    stored = VehicleState.from_json(run.state.to_json())
    days = stored.rules["fatigue"].driver_days
    assert list(days.values()) == [3600.0]
    rebuilt = DriverDays()
    rebuilt.restore([(7, days), (7, days)])
    day = run.state.rules["fatigue"].day
    assert rebuilt.others(A, day, 8) == 3600.0
    # restoring another vehicle (a partition gained later) keeps vehicle 7's figures
    rebuilt.restore([(9, {key(A, day): 1800.0})])
    assert rebuilt.vehicles(A, day) == {7: 3600.0, 9: 1800.0}
    rebuilt.restore([(7, {key(A, day): 600.0})])  # a vehicle's stored figures replace its own
    assert rebuilt.vehicles(A, day) == {7: 600.0, 9: 1800.0}
    rebuilt.forget([7])  # its partition moved to another process
    assert rebuilt.vehicles(A, day) == {9: 1800.0}


def test_other_alarms_raised_at_a_position_with_a_card_name_its_driver() -> None:
    run = Runner(context(rules=no_offline(), speed_limit_kmh=50))
    run.feed(drive("2024-01-10 06:00:00", [(600, 90)], interval_s=10, **card(A)))
    run.feed(drive("2024-01-10 07:00:00", [(600, 90)], interval_s=10))
    with_card, without = run.of("overspeed", "opened")
    assert with_card.details["driver_certificate_no"] == A
    assert "driver_certificate_no" not in without.details


def test_an_alarm_names_a_numeric_certificate_as_text_as_the_fatigue_rule_does() -> None:
    run = Runner(context(rules=no_offline(), speed_limit_kmh=50))
    numeric = {"extras": {"driver": {"certificate_no": 510000198001011234, "name": "x"}}}
    run.feed(drive("2024-01-10 06:00:00", [(600, 90)], interval_s=10, **numeric))
    (alarm,) = run.of("overspeed", "opened")
    assert alarm.details["driver_certificate_no"] == "510000198001011234"
