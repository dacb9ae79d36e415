"""The bus settings read the environment names the README gives."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gps_monitor.config import Settings


def test_bus_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPS_MONITOR_BUS_TRANSPORT", "nats")
    monkeypatch.setenv("GPS_MONITOR_BUS_NATS_URL", "nats://n1:4222,nats://n2:4222")
    monkeypatch.setenv("GPS_MONITOR_BUS_PARTITIONS", "8")
    monkeypatch.setenv("GPS_MONITOR_BUS_STREAM_REPLICAS", "3")
    monkeypatch.setenv("GPS_MONITOR_BUS_OWNER_TIMEOUT_S", "4.5")
    monkeypatch.setenv("GPS_MONITOR_BUS_CLIENT_NAME", "rules-a")
    bus = Settings().bus
    assert (bus.transport, bus.nats_url, bus.partitions, bus.partition_count) == (
        "nats", "nats://n1:4222,nats://n2:4222", 8, 8,
    )  # fmt: skip
    assert (bus.stream_replicas, bus.owner_timeout_s, bus.client_name) == (3, 4.5, "rules-a")


def test_bus_defaults_to_one_mqtt_partition(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GPS_MONITOR_BUS_TRANSPORT", raising=False)
    bus = Settings().bus
    assert (bus.transport, bus.partitions, bus.partition_count) == ("mqtt", 32, 1)
    assert bus.client_name  # hostname-pid


def test_bus_refuses_an_unknown_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPS_MONITOR_BUS_TRANSPORT", "kafka")
    with pytest.raises(ValidationError, match="transport"):
        Settings()
