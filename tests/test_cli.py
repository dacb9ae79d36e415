"""`gps-monitor` itself: a broken environment is a user mistake (exit 2, one clear line), not a
traceback. Real PostgreSQL and Mosquitto addresses, some deliberately wrong."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest
from conftest import ADMIN_URL, SHARED_DATA

from gps_monitor.cli import main
from gps_monitor.config import DatabaseSettings, MqttSettings, Settings, get_settings


@pytest.fixture
def fresh_settings_cache() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_invalid_setting_in_environment_exits_2_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fresh_settings_cache: None,
) -> None:
    monkeypatch.setenv("GPS_MONITOR_MQTT_PORT", "abc")
    assert main(["db", "status"]) == 2
    err = capsys.readouterr().err
    assert "GPS_MONITOR_MQTT_PORT" in err and "expected a valid integer" in err
    assert "'abc'" in err and "Traceback" not in err


@pytest.mark.parametrize("action", ["status", "upgrade"])
def test_db_command_on_a_missing_database_exits_2(
    action: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base, _, _ = ADMIN_URL.rpartition("/")
    settings = Settings(database=DatabaseSettings(url=f"{base}/gpsm_no_such_database"))
    assert main(["db", action], settings=settings) == 2
    err = capsys.readouterr().err
    assert "gpsm_no_such_database" in err and "expected a reachable, existing database" in err


@pytest.mark.parametrize("action", ["status", "upgrade"])
def test_db_command_with_the_server_unreachable_exits_2(
    action: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"postgresql://postgres:secret@127.0.0.1:{_free_port()}/gps_monitor"
    assert main(["db", action], settings=Settings(database=DatabaseSettings(url=url))) == 2
    err = capsys.readouterr().err
    assert "expected a reachable PostgreSQL server" in err and "refused" in err
    assert "secret" not in err  # the password is not printed


async def test_replay_with_the_broker_unreachable_exits_2(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    if not (SHARED_DATA / "tdrive_beijing_taxi_1.txt").exists():
        pytest.skip("real data folder not found")
    port = _free_port()
    broken = settings.model_copy(update={"mqtt": MqttSettings(host="127.0.0.1", port=port)})
    argv = ["replay", "--format", "tdrive", "--speedup", "0", "--no-progress",
            str(SHARED_DATA / "tdrive_beijing_taxi_1.txt")]  # fmt: skip
    assert await asyncio.to_thread(main, argv, broken) == 2
    err = capsys.readouterr().err
    assert f"MQTT broker 127.0.0.1:{port}: expected a reachable broker" in err
