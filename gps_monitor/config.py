"""One Settings object for every gps-monitor service.

Environment variables use the prefix ``GPS_MONITOR_`` and one ``_`` between the concern and the
field, e.g. ``GPS_MONITOR_DATABASE_URL``, ``GPS_MONITOR_MQTT_HOST``, ``GPS_MONITOR_MQTT_PORT``,
``GPS_MONITOR_QUALITY_DRIFT_SPEED_KMH``. Every threshold carries its unit in its name; the default
and its source (DOMAIN.md) are in the field description.

Later concerns (rules, web, reports, jt808) add their own nested model here, following the same
pattern: one ``BaseModel`` per concern, one field on :class:`Settings`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DatabaseSettings(BaseModel):
    """PostgreSQL / TimescaleDB connection and storage policy."""

    url: str | None = Field(
        default=None,
        description="postgresql:// URL. Unset: `gps-monitor demo` starts an embedded server; "
        "the other services refuse to start and say so.",
    )
    pool_min_size: int = Field(default=1, ge=0)
    pool_max_size: int = Field(default=8, ge=1)
    timescale: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="auto: use the timescaledb extension when the server offers it; "
        "on: fail if it does not; off: plain PostgreSQL.",
    )
    retention_months: int = Field(
        default=6, ge=1, description="Keep positions at least this long (DOMAIN.md: 6 months)."
    )
    compress_after_days: int = Field(default=7, ge=1, description="TimescaleDB compression age.")


class MqttSettings(BaseModel):
    """Broker connection. Topics: ``{topic_prefix}gps/v1/{terminal_id}/position|batch``."""

    host: str | None = Field(
        default=None,
        description="Broker host. Unset: `gps-monitor demo` starts an embedded broker; "
        "the other services refuse to start and say so.",
    )
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    tls: bool = False
    tls_ca_file: str | None = None
    client_id: str = Field(
        default="gps-monitor-ingest",
        description="Stable client id: the broker keeps the persistent session under it.",
    )
    keepalive_s: int = Field(default=30, ge=5)
    session_expiry_s: int = Field(
        default=7 * 24 * 3600,
        description="How long the broker keeps a persistent session (queued QoS 1 messages) "
        "while a worker is down.",
    )
    reconnect_delay_s: float = Field(default=1.0, gt=0)
    reconnect_delay_max_s: float = Field(default=30.0, gt=0)
    topic_prefix: str = Field(
        default="",
        description="Prepended to every topic (e.g. 'county-a/'), so several deployments or "
        "test runs can share one broker.",
    )


class IngestSettings(BaseModel):
    """Ingest worker batching and input limits."""

    batch_size: int = Field(default=2000, ge=1, description="Positions per COPY batch.")
    flush_interval_s: float = Field(
        default=0.2, gt=0, description="Longest time a received position waits for its batch."
    )
    max_payload_bytes: int = Field(
        default=256 * 1024, ge=256, description="Larger MQTT payloads are rejected."
    )
    max_batch_positions: int = Field(
        default=5000, ge=1, description="Largest JSON array accepted on a batch topic."
    )
    max_in_flight_messages: int = Field(
        default=20000,
        ge=1,
        description="Unacknowledged QoS 1 messages the worker accepts before it stops reading.",
    )


class QualitySettings(BaseModel):
    """Position quality thresholds (DOMAIN.md, Position quality)."""

    future_tolerance_s: float = Field(
        default=300.0, ge=0, description="A fix more than this ahead of arrival is invalid (5 min)."
    )
    drift_speed_kmh: float = Field(
        default=200.0,
        gt=0,
        description="Implied speed from a neighbour above this is a GPS jump (drift).",
    )
    drift_min_distance_m: float = Field(
        default=500.0,
        ge=0,
        description="Jumps shorter than this are never drift (guards against two fixes a second "
        "apart whose few metres of noise imply a silly speed).",
    )


class Settings(BaseSettings):
    """All settings. ``Settings()`` reads the environment; tests build one explicitly."""

    model_config = SettingsConfigDict(
        env_prefix="GPS_MONITOR_",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="ignore",
    )

    environment: Literal["development", "production"] = "development"
    log_level: str = "INFO"
    database: DatabaseSettings = DatabaseSettings()
    mqtt: MqttSettings = MqttSettings()
    ingest: IngestSettings = IngestSettings()
    quality: QualitySettings = QualitySettings()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings read once from the environment."""
    return Settings()
