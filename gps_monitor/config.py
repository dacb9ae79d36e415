"""One Settings object for every gps-monitor service.

Environment variables use the prefix ``GPS_MONITOR_`` and one ``_`` between the concern and the
field, e.g. ``GPS_MONITOR_DATABASE_URL``, ``GPS_MONITOR_MQTT_HOST``, ``GPS_MONITOR_MQTT_PORT``,
``GPS_MONITOR_QUALITY_DRIFT_SPEED_KMH``. Every threshold carries its unit in its name; the default
and its source (DOMAIN.md) are in the field description.

Later concerns (rules, web, reports, jt808) add their own nested model here, following the same
pattern: one ``BaseModel`` per concern, one field on :class:`Settings`.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from gps_monitor.models import VehicleClass


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
    protocol_version: Literal["5", "3.1.1"] = Field(
        default="3.1.1",
        description="MQTT protocol version of every client. 3.1.1 by default: paho builds a "
        "Properties object for every MQTT 5 packet, which cost the ingest worker about a third "
        "of its throughput in benchmarks/ingest.py (3,400 vs 4,700 stored positions/s at 5,000 "
        "offered); a persistent session then lasts as long as the broker's "
        "persistent_client_expiration says (deploy config: 14 days). The embedded demo broker, "
        "amqtt, speaks 3.1.1 only.",
    )
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


def _default_client_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class BusSettings(BaseModel):
    """The transport between terminals, ingest, rules and the other consumers.

    ``mqtt`` (default): one partition on the MQTT broker of :class:`MqttSettings` (Mosquitto, or
    the demo's embedded broker). ``nats``: NATS JetStream, terminals partitioned by vehicle into
    ``partitions`` partitions; every ingest and rules process owns a share of them (pinned
    consumers of a priority group) and takes over those of a process that stops pulling for
    ``owner_timeout_s`` (docs/scale-out.md)."""

    transport: Literal["mqtt", "nats"] = Field(
        default="mqtt", description="mqtt: one partition on the MQTT broker; nats: JetStream."
    )
    nats_url: str = Field(
        default="nats://127.0.0.1:4222",
        description="NATS server URL; a comma-separated list for a cluster.",
    )
    partitions: int = Field(
        default=32,
        ge=1,
        le=1024,
        description="P, fixed at deployment (streams and consumers are made for it); ignored on "
        "mqtt, where it is 1.",
    )
    stream_replicas: int = Field(
        default=1, ge=1, le=5, description="Replicas of each JetStream stream (3 in a cluster)."
    )
    owner_timeout_s: float = Field(
        default=10.0,
        ge=1.0,
        le=3600.0,
        description="A partition's owner that has not pulled for this long loses it to another "
        "process (the consumers' pinned-client priority_timeout; also their ack wait).",
    )
    client_name: str = Field(
        default_factory=_default_client_name,
        min_length=1,
        description="This process's owner name (default hostname-pid).",
    )

    @property
    def partition_count(self) -> int:
        """P as in force: ``partitions`` on nats, 1 on mqtt."""
        return self.partitions if self.transport == "nats" else 1

    @property
    def described(self) -> str:
        """The transport in a log line, e.g. ``"NATS JetStream, 32 partitions"``."""
        if self.transport == "nats":
            return f"NATS JetStream, {self.partitions} partitions (owned ones logged as they move)"
        return "the MQTT broker"


class IngestSettings(BaseModel):
    """Ingest worker batching and input limits."""

    batch_size: int = Field(default=2000, ge=1, description="Positions per COPY batch.")
    flush_interval_s: float = Field(
        default=0.0,
        ge=0,
        description="Longest wait to fill a batch once one message is in (seconds); 0: a batch "
        "is what has arrived when the previous one is committed, which keeps batches small "
        "while the worker keeps up (a wait made the batches settle at batch_size under load, "
        "and fix -> alarm slower: benchmarks/pipeline.py).",
    )
    max_payload_bytes: int = Field(
        default=256 * 1024, ge=256, description="Larger MQTT payloads are rejected."
    )
    max_batch_positions: int = Field(
        default=5000, ge=1, description="Largest JSON array accepted on a batch topic."
    )
    max_extras_depth: int = Field(
        default=8,
        ge=1,
        le=64,
        description="Deepest nesting of JSON objects/arrays accepted inside a position object "
        "(its extras object counts as level 1); deeper messages are rejected (too_deep) so that "
        "no consumer downstream meets absurd nesting.",
    )
    max_in_flight_messages: int = Field(
        default=20000,
        ge=1,
        description="Unacknowledged QoS 1 messages the worker accepts before it stops reading.",
    )
    terminal_cache_ttl_s: float = Field(
        default=300.0,
        gt=0,
        description="How long a resolved terminal -> vehicle entry is trusted (seconds).",
    )
    unknown_terminal_retry_s: float = Field(
        default=10.0,
        ge=0,
        description="An unregistered terminal is looked up again after this long (seconds), so "
        "new registrations are picked up without a restart.",
    )
    contact_min_interval_s: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="Contact without a position (gps/v1/{terminal_id}/heartbeat: a JT/T 808 "
        "heartbeat or any other message) is written as the vehicle's last message at most once "
        "per terminal in this many seconds (0 = every one), so heartbeats are no write hotspot; "
        "the JT/T 808 gateway publishes at most one per connection in this interval. Keep it "
        "well below rules.offline_after_s: the offline clock can lag contact by this much.",
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
    max_plausible_speed_kmh: dict[str, float] = Field(
        default_factory=lambda: {
            "coach": 200.0,
            "tour_bus": 200.0,
            "heavy_truck": 200.0,
            "freight": 200.0,
            "hazmat": 160.0,
        },
        description="Per vehicle class, a reported speed above this (km/h) is no speed the "
        "vehicle drove: the fix is stored invalid (implausible_speed). Default twice the class's "
        "highest legal limit (DOMAIN.md, Overspeed: 100 km/h buses and trucks, 80 km/h hazmat), "
        'so a real overspeed is never hidden. JSON, e.g. \'{"coach": 180, "hazmat": 150}\'; '
        "classes left out get the highest bound given.",
    )

    @field_validator("max_plausible_speed_kmh")
    @classmethod
    def _plausible_speeds(cls, value: dict[str, float]) -> dict[str, float]:
        classes = {c.value for c in VehicleClass}
        if not value:
            raise ValueError("expected at least one vehicle class bound, got an empty mapping")
        for name, speed_kmh in value.items():
            if name not in classes:
                raise ValueError(
                    f"expected vehicle classes among {', '.join(sorted(classes))}, got {name!r}"
                )
            if not 0 < speed_kmh < float("inf"):
                raise ValueError(f"{name}: expected a finite speed above 0 km/h, got {speed_kmh!r}")
        return value


class WebSettings(BaseModel):
    """Web app: map, REST API, websocket live feed, login tokens (issue 4)."""

    host: str = Field(default="127.0.0.1", description="`gps-monitor web` bind address.")
    port: int = Field(default=8000, ge=1, le=65535, description="`gps-monitor web` port.")
    secret_key: str = Field(
        default="dev-insecure-secret-change-me",
        description="Keys the HMAC under which login tokens are stored. The default is refused "
        "when environment=production (set GPS_MONITOR_WEB_SECRET_KEY, 32+ characters).",
    )
    token_lifetime_s: int = Field(
        default=12 * 3600, ge=60, description="Login token / session cookie lifetime (12 h)."
    )
    cookie_secure: bool = Field(
        default=False, description="Mark the session cookie Secure (HTTPS only); on in production."
    )
    max_body_bytes: int = Field(
        default=2 * 1024 * 1024,
        ge=1024,
        description="Largest request body accepted (2 MiB), counted while it streams in, before "
        "authentication: a larger one is answered 413.",
    )
    max_json_depth: int = Field(
        default=32,
        ge=4,
        description="Deepest nesting of arrays/objects in a JSON request body (GeoJSON needs "
        "about 8); deeper is answered 422.",
    )
    hsts_max_age_s: int = Field(
        default=365 * 86400,
        ge=0,
        description="Strict-Transport-Security max-age sent on HTTPS requests only (behind a TLS "
        "proxy: uvicorn takes the scheme from X-Forwarded-Proto); 0: never sent.",
    )
    forwarded_allow_ips: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="comma-separated addresses (or '*') of the reverse proxies whose "
        "X-Forwarded-For / X-Forwarded-Proto `gps-monitor web` believes (uvicorn's "
        "forwarded_allow_ips): the client address the login throttle counts and the scheme "
        "HSTS needs. Behind a proxy on another host or container, name it here, or every client "
        "shares the proxy's address.",
    )
    login_account_attempts: int = Field(
        default=5,
        ge=1,
        description="Login attempts one account name may make within login_window_s before it "
        "is locked for login_lockout_s (answers 429 with Retry-After).",
    )
    login_address_attempts: int = Field(
        default=20,
        ge=1,
        description="Login attempts one client address may make within login_window_s before it "
        "is locked for login_lockout_s (higher than per account: offices share an address).",
    )
    login_window_s: float = Field(
        default=900.0, gt=0, description="Window over which login attempts are counted (15 min)."
    )
    login_lockout_s: float = Field(
        default=900.0, gt=0, description="How long a throttled account or address waits (15 min)."
    )
    login_hash_threads: int = Field(
        default=2,
        ge=1,
        description="Worker threads checking passwords (argon2: tens of ms of CPU and 64 MiB "
        "each), off the event loop; more logins at once wait their turn.",
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins (scheme://host[:port]) besides the app's own whose pages may send "
        "cookie-authenticated changes (POST/PUT/PATCH/DELETE) and open the websocket with the "
        "cookie; JSON list, e.g. '[\"https://portal.example.gov.cn\"]'. Empty: own origin only.",
    )
    tile_url_template: str | None = Field(
        default=None,
        description="Basemap tile URL template ({z}/{x}/{y}, optional {s}), e.g. OpenStreetMap "
        "'https://tile.openstreetmap.org/{z}/{x}/{y}.png', Tianditu or AMap. Unset: plain "
        "background with a scale (works offline).",
    )
    tile_crs: Literal["wgs84", "gcj02"] = Field(
        default="wgs84",
        description="Datum of the tiles: wgs84 (OSM, Tianditu/CGCS2000) or gcj02 (AMap, "
        "Tencent): the page converts positions, geofences and routes for display only.",
    )
    tile_attribution: str = Field(default="", description="Attribution shown under the tiles.")
    tile_max_zoom: int = Field(default=18, ge=1, le=22)
    # -- basemaps and place names (issue 11): the map page's layer switcher (web/basemaps.py)
    basemaps: list[Literal["osm", "tianditu", "amap"]] = Field(
        default=["osm", "tianditu", "amap"],
        description="Basemaps offered by the map page's layer switcher, in this order; JSON "
        "list, e.g. '[\"tianditu\"]'. '[]' with no tile_url_template: plain background only. "
        "tile_url_template, when set, is offered too (first, as 自定义底图).",
    )
    basemap_default: Literal["osm", "tianditu", "amap", "custom"] | None = Field(
        default=None,
        description="Basemap shown first (a user's own choice is kept in the browser). Unset: "
        "custom when tile_url_template is set, amap when tile_crs is gcj02, else the first of "
        "basemaps.",
    )
    osm_url_template: str = Field(
        default="https://tile.openstreetmap.org/{z}/{x}/{y}.png",
        description="OpenStreetMap tile URL template (a mirror or a local tile server).",
    )
    tianditu_key: str | None = Field(
        default=None,
        description="天地图 browser key (浏览器端 tk) for the vector (vec_w) and annotation "
        "(cva_w) tiles; public by nature (every tile URL carries it). Unset: the 天地图 "
        "basemap says it needs a key.",
    )
    tianditu_url_template: str = Field(
        default="https://t{s}.tianditu.gov.cn/{layer}_w/wmts?SERVICE=WMTS&REQUEST=GetTile"
        "&VERSION=1.0.0&LAYER={layer}&STYLE=default&TILEMATRIXSET=w&FORMAT=tiles"
        "&TILEMATRIX={z}&TILEROW={y}&TILECOL={x}&tk={tk}",
        description="天地图 WMTS tile template; {layer} is vec (roads) or cva (names), {tk} "
        "the key, {s} 0-7.",
    )
    amap_url_template: str = Field(
        default="https://webrd0{s}.is.autonavi.com/appmaptile?lang=zh_cn&size=1&scale=1"
        "&style=8&x={x}&y={y}&z={z}",
        description="高德 (AMap) tile template ({s} 1-4); GCJ-02, positions converted for display.",
    )
    geocoder_key: str | None = Field(
        default=None,
        description="天地图 server key (服务器端 tk) for place names (reverse geocoding, "
        "GET /api/geocode). Unset: tianditu_key is tried; neither: coordinates only.",
    )
    geocoder_url: str = Field(
        default="https://api.tianditu.gov.cn/geocoder",
        description="天地图 reverse geocoding endpoint (postStr={'lon','lat','ver':1}, "
        "type=geocode, tk).",
    )
    geocoder_timeout_s: float = Field(
        default=3.0, gt=0, le=30, description="One reverse geocoding request gives up after this."
    )
    geocoder_cache_size: int = Field(
        default=20000, ge=0, description="Place names kept in memory per web process (LRU)."
    )
    geocoder_cache_days: int = Field(
        default=180,
        ge=1,
        description="Place names stored in the database (table place_names) are looked up "
        "again after this many days.",
    )
    geocoder_cache_decimals: int = Field(
        default=4,
        ge=2,
        le=6,
        description="Positions are rounded to this many decimals of a degree before lookup and "
        "caching (4: about 11 m).",
    )
    map_center_lat: float = Field(default=39.9, ge=-90, le=90, description="Initial map centre.")
    map_center_lon: float = Field(default=116.4, ge=-180, le=180)
    map_zoom: int = Field(default=10, ge=1, le=22)
    coalesce_interval_s: float = Field(
        default=1.0,
        gt=0,
        description="At most one position per vehicle per this many seconds "
        "on the websocket (1 s).",
    )
    heartbeat_interval_s: float = Field(
        default=15.0, gt=0, description="Websocket heartbeat period (15 s)."
    )
    client_queue_size: int = Field(
        default=1000,
        ge=1,
        description="Alarm messages buffered per websocket client; a client that falls this far "
        "behind is disconnected (alarms are never dropped silently). Positions are coalesced per "
        "vehicle instead of queued, so a slow client loses intermediate positions only.",
    )
    send_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="A websocket send blocked longer than this closes the client.",
    )
    offline_after_s: float = Field(
        default=300.0, gt=0, description="Status 'offline' after no message this long (5 min)."
    )
    moving_speed_kmh: float = Field(
        default=5.0, ge=0, description="Status 'moving' at or above this speed (DOMAIN.md 5 km/h)."
    )
    track_max_points: int = Field(
        default=2000,
        ge=10,
        description="Longer tracks are simplified server-side to about this many points.",
    )
    track_simplify_tolerance_m: float = Field(
        default=15.0, gt=0, description="Starting Douglas-Peucker tolerance for long tracks (m)."
    )
    track_max_window_days: int = Field(
        default=31, ge=1, description="Longest track window one request may ask for (days)."
    )
    alert_min_level: int = Field(
        default=2,
        ge=1,
        le=4,
        description="The map page alerts (sound, pop-up card, title badge, desktop "
        "notification) for a new live alarm of this level or more urgent (2: 紧急 and 严重).",
    )
    alert_repeat_s: float = Field(
        default=30.0,
        ge=5,
        le=3600,
        description="A level-1 (紧急) alarm repeats its sound this often (s) until acknowledged.",
    )
    alarm_page_size: int = Field(
        default=50, ge=10, le=500, description="Alarms per page in the map page's alarm list."
    )
    mqtt_client_id_prefix: str = Field(
        default="gps-monitor-web",
        description="Web processes subscribe with a clean session under this prefix plus pid.",
    )


class Jt808Settings(BaseModel):
    """JT/T 808 TCP gateway (`gps-monitor jt808`): terminals speak JT/T 808, positions go out on
    the MQTT ingest contract. Env: ``GPS_MONITOR_JT808_<FIELD>``, e.g. ``GPS_MONITOR_JT808_PORT``.
    """

    host: str = Field(default="0.0.0.0", description="Listen address of the TCP server.")
    port: int = Field(default=8808, ge=1, le=65535, description="Listen port (unprivileged).")
    idle_timeout_s: float = Field(
        default=180.0,
        gt=0,
        description="A connection that sends no complete valid frame for this long is closed "
        "(terminals heartbeat every 60 s by default, JT/T 808 parameter 0x0001).",
    )
    auth_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="A connection not authenticated (0x0102 accepted) this long after it opened "
        "is closed, so unregistered devices cannot hold sockets with heartbeats.",
    )
    auth_policy: Literal["registry", "known_terminal"] = Field(
        default="registry",
        description="registry: 0x0100 is checked against the vehicle registry and 0x0102 must "
        "present the auth code the gateway issued; known_terminal: any terminal whose id is a "
        "registered vehicle's terminal_id may authenticate with any code (terminals provisioned "
        "by another platform).",
    )
    check_plate: bool = Field(
        default=True,
        description="0x0100 must carry the registered plate and colour (an empty plate does not "
        "match); false skips that check (first registration then trusts the phone number).",
    )
    utc_offset_overrides_min: dict[str, int] = Field(
        default_factory=dict,
        description="Per-terminal zone of the BCD fix times, minutes east of UTC, by terminal id "
        "(JSON, e.g. '{\"13511221122\": 0}'); overrides the vehicle's ``utc_offset_min`` "
        "column, whose default 480 is JT/T 808's GMT+8.",
    )
    max_frame_bytes: int = Field(
        default=4096,
        ge=64,
        description="Bytes buffered without a 0x7E delimiter before the buffer is dropped and "
        "counted (a full 1023-byte body escapes to at most ~2.1 kB).",
    )
    subpackage_timeout_s: float = Field(
        default=60.0, gt=0, description="Incomplete sub-packaged messages are dropped after this."
    )
    subpackage_max_packets: int = Field(
        default=128,
        ge=1,
        le=65535,
        description="Packets one sub-packaged message may have (128 x ~1 kB bodies: about 3,300 "
        "blind-area reports in one 0x0704); a message announcing more is refused.",
    )
    subpackage_max_connection_bytes: int = Field(
        default=256 * 1024,
        ge=4096,
        description="Bytes one connection may hold in unfinished sub-packaged messages (each "
        "packet counts its body and its wire bytes); the message whose packet would pass it is "
        "dropped and the packet answered with result 1.",
    )
    subpackage_max_total_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=4096,
        description="Bytes all connections together may hold in unfinished sub-packaged "
        "messages (same rule as the per-connection cap).",
    )
    reregistration: Literal["refuse", "same_identity"] = Field(
        default="refuse",
        description="0x0100 from a terminal that already holds an auth code: refuse (result 3, "
        "no code: it must authenticate with the code it has, or an operator forgets the "
        "registration) or same_identity (a new code, the old one withdrawn, when plate, colour, "
        "maker, model and device id all equal the stored registration and the terminal is not "
        "online on this gateway).",
    )
    publish_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Longest wait for the broker's PUBACK; on timeout the terminal gets a "
        "failure reply (result 1) and resends.",
    )
    max_inflight_messages: int = Field(
        default=0,
        ge=0,
        description="QoS 1 publishes awaiting PUBACK at once (paho); 0 = unlimited, which is "
        "bounded anyway by one report in flight per terminal connection.",
    )
    client_id: str = Field(
        default="gps-monitor-jt808", description="MQTT client id of the gateway."
    )
    stats_interval_s: float = Field(
        default=60.0, gt=0, description="How often the gateway logs its counters."
    )


class CommandsSettings(BaseModel):
    """The downlink command channel (``cmd/v1/{terminal_id}/{name}``, table ``commands``) and
    reminding the driver from an alarm (issue 9 section 4). Env: ``GPS_MONITOR_COMMANDS_<FIELD>``.
    """

    expiry_s: float = Field(
        default=600.0,
        gt=0,
        le=7 * 86400,
        description="Default life of a command: one still queued (terminal offline) or sent and "
        "unanswered this long after it was created is expired (10 min: a reminder about an "
        "alarm is worth little later).",
    )
    min_expiry_s: float = Field(
        default=10.0,
        gt=0,
        description="Shortest expiry a caller may ask for (10 s): a shorter one would expire "
        "before the dispatcher's first scan could send it.",
    )
    max_expiry_s: float = Field(
        default=86400.0, gt=0, description="Longest expiry a caller may ask for (1 day)."
    )
    text_max_bytes: int = Field(
        default=1000,
        ge=1,
        le=1021,
        description="Longest 0x8300 text in GBK bytes. The JT/T 808 body length field holds at "
        "most 1023 bytes and the 2019 layout spends 2 on the flag and type bytes; many "
        "terminals' displays take far less, so lower it to the fleet's terminals.",
    )
    scan_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="The dispatcher looks for queued commands of online terminals and for "
        "commands past their expiry at least this often (also at once on a new command).",
    )
    online_window_s: float = Field(
        default=300.0,
        gt=0,
        description="A terminal that never published a status message counts as online when "
        "its last message arrived within this long (DOMAIN.md offline threshold, 5 min).",
    )
    batch_max_messages: int = Field(
        default=500,
        ge=1,
        le=32767,
        description="Answer and status messages the dispatcher records per database "
        "transaction (acknowledged to the broker after its commit); the broker may have twice "
        "this many in flight to it (MQTT v5 Receive Maximum).",
    )
    batch_wait_s: float = Field(
        default=0.005,
        ge=0,
        description="Longest wait to fill a batch of answers once one message is in.",
    )
    gateway_hold_max: int = Field(
        default=16,
        ge=1,
        description="Commands the JT/T 808 gateway holds for one terminal that is not connected "
        "to it right now (only in the moment it went away); beyond that the oldest is answered "
        "result 1.",
    )
    remind_templates: dict[str, str] = Field(
        default_factory=lambda: {
            "overspeed": "您已超速行驶，请减速慢行",
            "fatigue_driving": "您已疲劳驾驶，请立即就近停车休息",
            "fatigue_warning": "您即将进入疲劳驾驶，请合理安排停车休息",
            "daily_driving_limit": "您当日累计驾驶时间已超限，请停车休息",
            "night_ban": "夜间02:00至05:00禁止客运班车运行，请就近停车休息",
            "route_deviation": "您已偏离规定线路，请按批准线路行驶",
            "forbidden_area_entry": "您已进入禁行区域，请立即驶离",
            "keep_in_area_exit": "您已驶出规定区域，请立即返回",
            "device_alarm.sos": "平台已收到您的紧急报警，请保持通讯畅通",
        },
        description="提醒驾驶员: the text offered per alarm type (editable before sending); JSON "
        "object alarm type (or device_alarm.<bit name>, e.g. device_alarm.sos) -> text. A type "
        "not listed gets remind_default_text.",
    )
    remind_default_text: str = Field(
        default="请注意安全驾驶，遵守道路交通安全法规",
        description="提醒驾驶员 text for an alarm type without its own template.",
    )
    auto_remind_alarm_types: list[str] = Field(
        default_factory=list,
        description="自动提醒: alarm types whose opening sends their reminder text at once "
        '(e.g. ["overspeed", "fatigue_driving"]); empty = off.',
    )
    auto_remind_min_interval_s: float = Field(
        default=600.0,
        ge=0,
        description="自动提醒 at most once per vehicle in this long (10 min), so a vehicle "
        "hovering around a limit is not flooded.",
    )

    @model_validator(mode="after")
    def _expiry_within_bounds(self) -> CommandsSettings:
        """The default expiry (alarm reminders, 自动提醒) obeys the bounds a caller's does."""
        if not self.min_expiry_s <= self.expiry_s <= self.max_expiry_s:
            raise ValueError(
                f"expiry_s: expected {self.min_expiry_s:g} to {self.max_expiry_s:g} s "
                f"(min_expiry_s .. max_expiry_s), got {self.expiry_s:g}"
            )
        return self


class MediaSettings(BaseModel):
    """Photo and video evidence (issue 12 items 6 and 8): where uploads are stored, the JT/T 808
    0x0801 upload limits, 自动拍照. Env: ``GPS_MONITOR_MEDIA_<FIELD>``."""

    directory: str = Field(
        default="media",
        description="Folder of the content-addressed store (objects/ by SHA-256, spool/ for "
        "uploads in progress); relative paths are relative to the working directory.",
    )
    max_upload_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=1024,
        description="Largest 0x0801 upload kept (bytes of media data); the packet that passes "
        "it ends the upload, kept as incomplete (reason size_limit).",
    )
    max_uploads: int = Field(
        default=20000,
        ge=1,
        description="0x0801 uploads in progress at once across the gateway (one per terminal); "
        "a new one beyond this is answered result 1.",
    )
    packet_timeout_s: float = Field(
        default=20.0,
        gt=0,
        description="An unfinished upload that received nothing for this long gets a resend "
        "request (0x8003, or 0x8800 once its last packet came) for its missing packets.",
    )
    resend_max_requests: int = Field(
        default=3,
        ge=0,
        description="Resend requests per upload; still incomplete after the last one (and "
        "packet_timeout_s), it is stored as incomplete with the missing packets.",
    )
    link_window_s: float = Field(
        default=600.0,
        ge=0,
        description="A media item without a command or alarm number is linked to the vehicle's "
        "unhandled alarm that started nearest its time within this many seconds.",
    )
    auto_photo_max_level: int = Field(
        default=0,
        ge=0,
        le=4,
        description="自动拍照: an alarm of this level or more urgent (1 紧急, 2 严重...) "
        "that opens live sends take_photo to its terminal; 0 = off, 2 = levels 1 and 2.",
    )
    auto_photo_min_interval_s: float = Field(
        default=300.0,
        ge=0,
        description="自动拍照 at most once per vehicle in this long.",
    )
    auto_photo_channel: int = Field(
        default=1, ge=1, le=255, description="Camera channel of 自动拍照 (1: usually the cab)."
    )


class AttachmentsSettings(BaseModel):
    """The T/JSATL 12-2017 attachment server of active-safety alarms (issue 12 item 8), run by
    ``gps-monitor jt808`` beside the gateway. Env: ``GPS_MONITOR_ATTACHMENTS_<FIELD>``."""

    host: str = Field(default="0.0.0.0", description="Listen address of the attachment server.")
    port: int = Field(default=8810, ge=0, le=65535, description="Listen port (0: any free port).")
    advertised_host: str = Field(
        default="",
        description="Address sent to terminals in 0x9208 (IPv4 or a host name); empty: the "
        "address the terminal reached the gateway at (same host).",
    )
    read_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="A frame, a data frame's head or 16 KiB of file data must arrive within "
        "this, else the connection is closed (a peer trickling bytes holds nothing for long).",
    )
    max_file_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        description="Largest attachment (a short video); a larger announced size is refused.",
    )
    alarm_ttl_s: float = Field(
        default=86400.0,
        gt=0,
        description="An alarm number sent in 0x9208 is accepted by the attachment server this "
        "long (terminals upload when they have signal).",
    )


class RulesSettings(BaseModel):
    """Rules engine thresholds (DOMAIN.md, Rules the platform must evaluate).

    Env: ``GPS_MONITOR_RULES_<FIELD>``, e.g. ``GPS_MONITOR_RULES_OVERSPEED_MIN_DURATION_S``.
    ``gps-monitor evaluate --set overspeed.min_duration_s=20`` overrides one field
    (``rule.key`` is ``<rule>_<key>`` here). Local times are Asia/Shanghai (``timezone``).

    Validated whichever way they come (env or ``--set``): local times of day ``HH:MM`` within
    00:00-23:59 (``6:00`` is read as ``06:00``), ``timezone`` an IANA zone name, every number
    finite (no NaN or infinity) and within the bounds given per field.

    Raises:
        pydantic.ValidationError: on construction with a value out of bounds;
            :func:`describe_validation_error` turns it into one line per setting.
    """

    model_config = ConfigDict(allow_inf_nan=False)

    timezone: str = Field(
        default="Asia/Shanghai", description="Zone of day boundaries and night windows."
    )
    # overspeed
    overspeed_min_duration_s: float = Field(
        default=10.0,
        ge=0,
        description="Speed above the limit at least this long before an episode opens "
        "(DOMAIN.md; JT/T 808 parameter 0x0056). Measured between fixes above the limit.",
    )
    overspeed_max_fix_gap_s: float = Field(
        default=900.0,
        gt=0,
        description="A gap between two fixes longer than this ends an episode at the last fix "
        "before it (configurable; above the 600 s of sparse taxi data).",
    )
    night_speed_factor: float = Field(
        default=0.8,
        gt=0,
        le=1,
        description="Coach/tour bus night limit = this x day limit (DOMAIN.md: 80 %).",
    )
    night_start_local: str = Field(default="22:00", description="Night begins (DOMAIN.md).")
    night_end_local: str = Field(default="06:00", description="Night ends (DOMAIN.md).")
    night_vehicle_classes: list[str] = Field(
        default=["coach", "tour_bus"],
        description="Classes with the night speed factor and the 2 h night fatigue limit.",
    )
    coach_speed_limit_kmh: float = Field(
        default=100.0, gt=0, description="Coach default limit (DOMAIN.md: buses 100 km/h)."
    )
    tour_bus_speed_limit_kmh: float = Field(
        default=100.0, gt=0, description="Tour bus default limit (DOMAIN.md: buses 100 km/h)."
    )
    heavy_truck_speed_limit_kmh: float = Field(
        default=100.0, gt=0, description="Heavy truck default limit (DOMAIN.md: trucks 100)."
    )
    freight_speed_limit_kmh: float = Field(
        default=100.0, gt=0, description="Freight default limit (DOMAIN.md: trucks 100)."
    )
    hazmat_expressway_speed_limit_kmh: float = Field(
        default=80.0, gt=0, description="Hazardous goods on expressways (DOMAIN.md: 80 km/h)."
    )
    hazmat_other_road_speed_limit_kmh: float = Field(
        default=60.0,
        gt=0,
        description="Hazardous goods on other roads (DOMAIN.md: 60 km/h); applied inside speed "
        "zones whose road_class is not 'expressway'.",
    )
    unsigned_urban_no_centre_line_speed_limit_kmh: float = Field(
        default=30.0,
        gt=0,
        description="Speed zone road_class 'unsigned_urban_no_centre_line' without its own "
        "limit (DOMAIN.md: unsigned roads without centre line, urban 30 km/h).",
    )
    unsigned_rural_no_centre_line_speed_limit_kmh: float = Field(
        default=40.0,
        gt=0,
        description="road_class 'unsigned_rural_no_centre_line' (DOMAIN.md: rural 40 km/h).",
    )
    unsigned_urban_one_lane_speed_limit_kmh: float = Field(
        default=50.0,
        gt=0,
        description="road_class 'unsigned_urban_one_lane' (DOMAIN.md: one lane each way, urban "
        "50 km/h).",
    )
    unsigned_rural_one_lane_speed_limit_kmh: float = Field(
        default=70.0,
        gt=0,
        description="road_class 'unsigned_rural_one_lane' (DOMAIN.md: one lane each way, rural "
        "70 km/h).",
    )
    # fatigue
    moving_speed_kmh: float = Field(
        default=5.0, ge=0, description="Above this a vehicle is moving/driving (DOMAIN.md)."
    )
    fatigue_day_limit_s: float = Field(
        default=4 * 3600.0, gt=0, description="Continuous driving limit by day (DOMAIN.md: 4 h)."
    )
    fatigue_night_limit_s: float = Field(
        default=2 * 3600.0,
        gt=0,
        description="Continuous driving limit at night for coach/tour bus (DOMAIN.md: 2 h).",
    )
    fatigue_min_rest_s: float = Field(
        default=20 * 60.0, gt=0, description="A stop this long resets continuous driving (20 min)."
    )
    fatigue_warning_before_s: float = Field(
        default=30 * 60.0,
        ge=0,
        description="fatigue_warning this long before the limit (JT/T 808 0x005C: 30 min).",
    )
    daily_driving_limit_s: float = Field(
        default=8 * 3600.0,
        gt=0,
        description="Driving per local day (split at local midnight) above this raises "
        "daily_driving_limit (DOMAIN.md: 8 h; JT/T 808 0x0058).",
    )
    fatigue_gap_s: float = Field(
        default=300.0,
        gt=0,
        description="An interval between fixes longer than this is a data gap, judged by the "
        "evidence (DOMAIN.md; same 5 min as offline).",
    )
    fatigue_gap_driving_speed_kmh: float = Field(
        default=20.0,
        gt=0,
        description="Road speed, km/h of straight-line displacement: a gap of at most "
        "fatigue_gap_max_driving_s covered at this implied speed or more is driving throughout "
        "(DOMAIN.md: covered road distance); a slower (ambiguous) one counts as driving only "
        "the time its displacement needs at this speed, the rest as stopped (rules/fatigue.py).",
    )
    fatigue_gap_max_driving_s: float = Field(
        default=3600.0,
        gt=0,
        description="A gap longer than this (1 h) is never driving throughout: it counts as "
        "driving only the time its displacement needs at fatigue_gap_long_speed_kmh, the rest "
        "as stopped (a day-long gap is not a day of driving).",
    )
    fatigue_gap_long_speed_kmh: float = Field(
        default=60.0,
        gt=0,
        description="Plausible average road speed, km/h of straight-line displacement, over a "
        "gap longer than fatigue_gap_max_driving_s (trunk roads and expressways, limits 80-120 "
        "km/h; a lower value counts more of a long gap as driving).",
    )
    fatigue_gap_stationary_m: float = Field(
        default=200.0,
        ge=0,
        description="A gap that ends within this distance (m) of where it began is rest.",
    )
    # night ban
    night_ban_start_local: str = Field(
        default="02:00", description="Long-distance coach ban begins (DOMAIN.md: 02:00)."
    )
    night_ban_end_local: str = Field(
        default="05:00", description="Long-distance coach ban ends (DOMAIN.md: 05:00)."
    )
    night_ban_vehicle_classes: list[str] = Field(
        default=["coach"], description="Classes the 02:00-05:00 ban applies to."
    )
    night_ban_stop_s: float = Field(
        default=300.0,
        gt=0,
        description="Standing still this long ends a night_ban episode (configurable).",
    )
    night_ban_min_duration_s: float = Field(
        default=60.0,
        ge=0,
        description="A night_ban alarm opens only after the vehicle has been going this long in "
        "the window (DOMAIN.md gives none: its route-deviation minimum, 60 s)...",
    )
    night_ban_min_distance_m: float = Field(
        default=500.0,
        ge=0,
        description="...AND has covered this distance (m) since its first moving fix there; "
        "rolling into a stop or relay point covers less (configurable).",
    )
    # route deviation
    route_deviation_min_duration_s: float = Field(
        default=60.0,
        ge=0,
        description="Outside the corridor at least this long (DOMAIN.md: 60 s)...",
    )
    route_deviation_min_distance_m: float = Field(
        default=200.0,
        ge=0,
        description="...AND this distance (m) driven outside the corridor (DOMAIN.md gives no "
        "figure; 200 m: a real deviation covers it within the minute above 12 km/h).",
    )
    route_return_fraction: float = Field(
        default=0.75,
        gt=0,
        le=1,
        description="Back on route only within this fraction of the corridor (hysteresis, 75 %).",
    )
    route_end_margin_m: float = Field(
        default=300.0,
        ge=0,
        description="Leaving the corridor within this distance of the route's end finishes the "
        "trip (depot/yard): no deviation.",
    )
    # geofences
    geofence_hysteresis_m: float = Field(
        default=30.0,
        ge=0,
        description="Enter only this far inside, exit only this far outside the boundary "
        "(parked GPS drift; configurable).",
    )
    geofence_dwell_s: float = Field(
        default=0.0, ge=0, description="A new inside/outside state must last this long."
    )
    geofence_exit_min_duration_s: float = Field(
        default=30.0,
        ge=0,
        description="keep_in_area_exit / geofence_exit: outside at least this long (s)... "
        "(DOMAIN.md: hysteresis or dwell, no figure; three fixes at a 10 s interval)",
    )
    geofence_exit_min_distance_m: float = Field(
        default=100.0,
        ge=0,
        description="...AND at least this far (m) beyond the boundary (well beyond parked GPS "
        "scatter and the 30 m hysteresis band).",
    )
    # offline
    offline_after_s: float = Field(
        default=300.0, gt=0, description="No message this long = offline (DOMAIN.md: 5 min)."
    )
    offline_check_interval_s: float = Field(
        default=5.0, gt=0, description="Live service: offline timer period."
    )
    offline_displacement_m: float = Field(
        default=1000.0,
        gt=0,
        description="Hazmat vehicle reappearing this far away after offline = "
        "offline_displacement (configurable; the 1 km of track completeness).",
    )
    offline_displacement_vehicle_classes: list[str] = Field(
        default=["hazmat"], description="Classes offline_displacement applies to."
    )
    # device alarms
    device_alarm_bits: list[int] = Field(
        default=[0, 1, 2, 13, 14, 18, 19, 20, 21, 22, 23, 28],
        description="JT/T 808 alarm flag bits that become device_alarm alarms (DOMAIN.md).",
    )
    # live service
    client_id: str = Field(
        default="",
        description="MQTT client id of the rules worker (persistent session). Empty: the "
        "mqtt client id with 'ingest' replaced by 'rules' (gps-monitor-rules by default).",
    )
    batch_max_messages: int = Field(
        default=500, ge=1, description="Messages processed per database transaction."
    )
    batch_wait_s: float = Field(
        default=0.02, ge=0, description="Longest wait to fill a batch once one message is in."
    )
    receive_maximum: int = Field(
        default=1000,
        ge=1,
        le=65535,
        description="MQTT v5 Receive Maximum: QoS 1 messages the broker may have in flight to "
        "the worker unacknowledged (acks wait for the commit; Mosquitto otherwise allows 20, "
        "which caps a batch at 20 messages).",
    )
    reload_interval_s: float = Field(
        default=30.0, gt=0, description="Reload vehicles, geofences and routes this often."
    )
    late_context_s: float = Field(
        default=3600.0,
        ge=0,
        description="Late positions are re-evaluated with stored neighbours this far around.",
    )

    @field_validator(
        "night_start_local", "night_end_local", "night_ban_start_local", "night_ban_end_local"
    )
    @classmethod
    def _time_of_day(cls, value: str) -> str:
        match = _TIME_OF_DAY.match(value)
        if not match or int(match[1]) > 23 or int(match[2]) > 59:
            raise PydanticCustomError(
                "time_of_day", "Input should be a local time of day HH:MM within 00:00-23:59"
            )
        return f"{int(match[1]):02d}:{match[2]}"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise PydanticCustomError(
                "time_zone", "Input should be an IANA time zone name such as Asia/Shanghai"
            ) from None
        return value


_TIME_OF_DAY = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*$")


def describe_validation_error(error: ValidationError, *, env_prefix: str | None = None) -> str:
    """A pydantic error as ``setting: expected ..., got ...`` lines (no tuples, no URLs).

    ``env_prefix`` (e.g. ``GPS_MONITOR_``): name the settings as environment variables
    (``GPS_MONITOR_RULES_NIGHT_START_LOCAL``) rather than by their dotted path.
    """
    lines = []
    for item in error.errors():
        path = [str(part) for part in item["loc"]]
        name = ".".join(path) or "settings"
        if env_prefix is not None:
            name = f"{env_prefix}{'_'.join(path).upper()}"
        expected = str(item["msg"]).removeprefix("Input should be ").rstrip(".")
        if expected.startswith(("greater", "less")):
            expected = f"a number {expected}"
        lines.append(f"{name}: expected {expected}, got {item.get('input')!r}")
    return "; ".join(lines)


class ReportsSettings(BaseModel):
    """Evidence and KPI reports, legal holds (issue 5; DOMAIN.md, KPIs and Retention)."""

    cjk_font_path: str = Field(
        default="/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
        description="CJK font (TrueType outlines, TTF/TTC) embedded in PDFs and used on charts. "
        "Default: Debian fonts-wqy-microhei (scripts/install-system.sh installs it). CFF-outline "
        "fonts such as Noto Sans CJK render too, but pypdf cannot extract their text.",
    )
    cjk_font_bold_path: str = Field(
        default="",
        description="Optional bold face; empty or missing: the regular face is used for headings.",
    )
    cjk_font_index: int = Field(
        default=0, ge=0, description="Face index in a TTC collection (WenQuanYi Micro Hei: 0)."
    )
    display_timezone: str = Field(
        default="Asia/Shanghai", description="Zone for local times, day boundaries and display."
    )
    issuer_name: str = Field(
        default="交通运输局 道路运输车辆动态监控平台",
        description="Organisation printed at the top of every report.",
    )
    context_before_s: float = Field(
        default=300.0, ge=0, description="Positions shown before an episode (5 min)."
    )
    context_after_s: float = Field(
        default=300.0, ge=0, description="Positions shown after an episode (5 min)."
    )
    context_min_fixes: int = Field(
        default=3,
        ge=0,
        description="On sparse data, widen the context to at least this many fixes either side...",
    )
    context_max_s: float = Field(
        default=1800.0,
        ge=0,
        description="...but never further than this from the episode (30 min).",
    )
    max_positions: int = Field(
        default=50_000, ge=10, description="Largest evidence window, in positions; larger fails."
    )
    kpi_gap_s: float = Field(
        default=300.0,
        gt=0,
        description="轨迹完整率: a stretch between two ok fixes is incomplete when longer than "
        "this (5 min) AND longer than kpi_gap_m (DOMAIN.md, configurable).",
    )
    kpi_gap_m: float = Field(
        default=1000.0, gt=0, description="轨迹完整率: distance half of the gap test (1 km)."
    )
    kpi_overspeed_alarm_types: tuple[str, ...] = Field(
        default=("overspeed",), description="Alarm types counted as overspeed alarms."
    )
    kpi_fatigue_alarm_types: tuple[str, ...] = Field(
        default=("fatigue_driving",),
        description="Alarm types whose duration counts as fatigue driving hours.",
    )
    kpi_violation_alarm_types: tuple[str, ...] = Field(
        default=(
            "overspeed",
            "fatigue_driving",
            "daily_driving_limit",
            "night_ban",
            "route_deviation",
            "forbidden_area_entry",
            "keep_in_area_exit",
            "offline_displacement",
        ),
        description="处理率: alarm types that are violations (denominator).",
    )


class AlarmsSettings(BaseModel):
    """Alarm levels (issue 9; policy in :mod:`gps_monitor.alarm_levels`)."""

    levels: dict[str, int] = Field(
        default_factory=dict,
        description="Overrides of the shipped alarm levels (1 紧急, 2 严重, 3 一般, 4 提示), by "
        "'alarm_type' or 'alarm_type@vehicle_class' (device alarms by bit: "
        "'device_alarm.sos'); the most specific key wins. JSON in the environment, e.g. "
        'GPS_MONITOR_ALARMS_LEVELS=\'{"offline": 3, "overspeed@hazmat": 1}\'.',
    )
    default_level: int = Field(
        default=3, ge=1, le=4, description="Level of an alarm type no key names (3 一般)."
    )

    @field_validator("levels")
    @classmethod
    def _known_keys(cls, value: dict[str, int]) -> dict[str, int]:
        from gps_monitor.alarm_levels import check_level, check_level_key

        try:
            return {check_level_key(k): check_level(v) for k, v in value.items()}
        except ValueError as error:
            raise PydanticCustomError(
                "alarm_level",
                "Input should be {why}",
                {"why": str(error).removeprefix("expected ")},
            ) from None


class NotifySettings(BaseModel):
    """`gps-monitor notify`: push alarms to 企业微信/钉钉/飞书 robots, webhooks, e-mail and SMS
    (issue 9). Channels and subscriptions live in the database (web API); these settings are the
    service's own: retries, timeouts, the SMTP server and the SMS gateway.

    Env: ``GPS_MONITOR_NOTIFY_<FIELD>``, e.g. ``GPS_MONITOR_NOTIFY_SMTP_HOST``.
    """

    model_config = ConfigDict(allow_inf_nan=False)

    client_id: str = Field(
        default="",
        description="MQTT client id of the notify worker (persistent session). Empty: the mqtt "
        "client id with 'ingest' replaced by 'notify' (gps-monitor-notify by default).",
    )
    timezone: str = Field(
        default="Asia/Shanghai", description="Zone of quiet hours and of times in messages."
    )
    send_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="Longest one delivery attempt may take (connect, send, answer); a receiver "
        "that hangs longer is a failed attempt.",
    )
    max_attempts: int = Field(
        default=5, ge=1, le=50, description="Attempts per delivery before it is marked failed."
    )
    retry_initial_delay_s: float = Field(
        default=5.0, gt=0, description="Delay before the 2nd attempt; doubled for each next one."
    )
    retry_max_delay_s: float = Field(
        default=600.0, gt=0, description="Longest delay between two attempts (10 min)."
    )
    channel_concurrency: int = Field(
        default=8,
        ge=1,
        le=256,
        description="Deliveries in flight at once per channel (each channel has its own "
        "senders, so a slow or dead one never holds up the others).",
    )
    channel_queue_max: int = Field(
        default=5000,
        ge=10,
        description="Deliveries held in memory per channel; beyond it they wait in the "
        "database (status pending) and are picked up by the rescan.",
    )
    # per-channel circuit breaker (notify/breaker.py)
    breaker_failures: int = Field(
        default=5,
        ge=1,
        le=10000,
        description="Consecutive failed attempts of one channel that open its breaker: no more "
        "attempts to it, its deliveries wait (pending, deferred with the reason) until a probe "
        "succeeds.",
    )
    breaker_probe_interval_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="While a channel's breaker is open, one probe (its oldest due delivery) "
        "per this many seconds; success closes the breaker and the backlog goes out.",
    )
    rescan_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="How often pending deliveries not in memory (backlog, restart) are loaded.",
    )
    reload_interval_s: float = Field(
        default=10.0,
        gt=0,
        description="How often channels, subscriptions and vehicles are checked for changes.",
    )
    batch_max_messages: int = Field(
        default=500, ge=1, description="Alarm messages recorded per database transaction."
    )
    batch_wait_s: float = Field(
        default=0.02, ge=0, description="Longest wait to fill a batch once one message is in."
    )
    include_late: bool = Field(
        default=False,
        description="Also push alarms raised from late (blind-area) data; off: they are stored "
        "and shown, not pushed as live.",
    )
    allowed_private_targets: list[str] = Field(
        default=[],
        description="Networks (CIDR, e.g. 10.1.2.0/24 or 127.0.0.1/32) that robot and webhook "
        "channels may reach although they are loopback, private (RFC 1918, fc00::/7), "
        "link-local, multicast, unspecified, reserved or otherwise not globally reachable. "
        "Empty (default): such targets are refused when a channel is saved (IP literals) and "
        "at every delivery after resolving the name, so a tenant cannot make the service "
        "call hosts of the internal network. JSON list in the environment: "
        "GPS_MONITOR_NOTIFY_ALLOWED_PRIVATE_TARGETS='[\"10.1.2.0/24\"]'.",
    )
    # e-mail
    smtp_host: str | None = Field(
        default=None, description="SMTP server; required when an e-mail channel exists."
    )
    smtp_port: int = Field(default=587, ge=1, le=65535, description="587 STARTTLS, 465 SSL.")
    smtp_security: Literal["starttls", "ssl", "none"] = Field(
        default="starttls",
        description="starttls (RFC 3207), ssl (implicit TLS, RFC 8314) or none (local relay).",
    )
    smtp_username: str | None = Field(default=None, description="SMTP AUTH user (optional).")
    smtp_password: str | None = Field(default=None, description="SMTP AUTH password.")
    smtp_from: str | None = Field(
        default=None, description="From address; required when an e-mail channel exists."
    )
    smtp_ca_file: str | None = Field(
        default=None, description="CA bundle to verify the SMTP server (default: system CAs)."
    )
    # SMS gateway
    sms_url: str | None = Field(
        default=None,
        description="HTTP(S) URL of the SMS gateway; required when an SMS channel exists.",
    )
    sms_body_template: str = Field(
        default='{"phone": "{phone}", "text": "{text}"}',
        description="Request body; {phone} and {text} are replaced (JSON-escaped when "
        "sms_content_type is JSON, form-encoded otherwise).",
    )
    sms_content_type: str = Field(
        default="application/json", description="Content-Type of the gateway request."
    )
    sms_max_chars: int = Field(
        default=300, ge=10, description="Longer texts are cut (an SMS part is 70 characters)."
    )

    @field_validator("allowed_private_targets")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise PydanticCustomError(
                    "network",
                    "Input should be IP networks in CIDR form such as 10.1.2.0/24, got {network}",
                    {"network": repr(network)},
                ) from None
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise PydanticCustomError(
                "time_zone", "Input should be an IANA time zone name such as Asia/Shanghai"
            ) from None
        return value


class Jt809Settings(BaseModel):
    """JT/T 809 link to the superior (provincial) platform, this platform being the lower one
    (下级平台); ``gps-monitor jt809`` (issue 10). Numbers the superior assigns (user id,
    接入码, M1/IA1/IC1) are u32."""

    superior_host: str | None = Field(
        default=None,
        description="Superior platform address of the main link. Unset: `gps-monitor jt809` "
        "refuses to start and says so.",
    )
    superior_port: int = Field(default=9000, ge=1, le=65535, description="Main link port.")
    user_id: int = Field(default=0, ge=0, le=0xFFFFFFFF, description="0x1001 USERID.")
    password: str = Field(default="", description="0x1001 PASSWORD, at most 8 GBK bytes.")
    access_code: int = Field(
        default=0, ge=0, le=0xFFFFFFFF, description="接入码 (MSG_GNSSCENTERID) in every header."
    )
    platform_id: str = Field(
        default="", description="2019: this platform's 11-character code (0x1202 PLATFORM_ID1)."
    )
    slave_host: str = Field(
        default="0.0.0.0", description="Listen address of the slave link (the superior connects)."
    )
    slave_port: int = Field(default=8809, ge=1, le=65535, description="Slave link listen port.")
    slave_advertised_ip: str = Field(
        default="",
        description="DOWN_LINK_IP sent in 0x1001 (the address the superior reaches us at). "
        "Empty: slave_host, unless that is 0.0.0.0 (then the service refuses to start).",
    )
    version: Literal[2011, 2019] = Field(
        default=2011, description="Header and body layout: JT/T 809-2011 or -2019."
    )
    m1: int = Field(default=0, ge=0, le=0xFFFFFFFF, description="Simple encryption M1.")
    ia1: int = Field(default=0, ge=0, le=0xFFFFFFFF, description="Simple encryption IA1.")
    ic1: int = Field(default=0, ge=0, le=0xFFFFFFFF, description="Simple encryption IC1.")
    encrypt: bool = Field(
        default=False,
        description="Encrypt the bodies we send (needs M1 > 0); encrypted frames received are "
        "decrypted whenever M1/IA1/IC1 are set.",
    )
    heartbeat_interval_s: float = Field(
        default=60.0, gt=0, description="0x1005 on the main link when idle this long."
    )
    link_timeout_s: float = Field(
        default=180.0, gt=0, description="Main link reset when nothing arrives for this long."
    )
    login_timeout_s: float = Field(default=10.0, gt=0, description="Longest wait for 0x1002.")
    reconnect_delay_s: float = Field(default=1.0, gt=0, description="First reconnect delay.")
    reconnect_delay_max_s: float = Field(
        default=60.0, gt=0, description="Reconnect delay doubles up to this."
    )
    position_min_interval_s: float = Field(
        default=0.0,
        ge=0,
        description="Thinning: at most one 0x1202 per vehicle per this many seconds of fix "
        "time (0: every accepted live position).",
    )
    reupload_rate_per_s: float = Field(
        default=50.0, gt=0, description="0x1203/0x1402 replayed from the buffer per second."
    )
    buffer_window_s: float = Field(
        default=7 * 24 * 3600.0,
        gt=0,
        description="Positions and alarms buffered longer than this (an outage longer than "
        "the window) are dropped, counted and logged rather than sent.",
    )
    resend_after_cut_s: float = Field(
        default=10.0,
        ge=0,
        description="When the main link breaks, what was written to it in the last this many "
        "seconds is buffered again (TCP may have lost it): duplicates over loss.",
    )
    max_frame_bytes: int = Field(
        default=65536, ge=256, description="Longer frames (or buffers without 5D) are dropped."
    )
    client_id: str = Field(
        default="gps-monitor-jt809", description="MQTT client id (persistent session)."
    )
    stats_interval_s: float = Field(default=60.0, gt=0, description="Counters logged this often.")
    query_answer_limit_s: float = Field(
        default=600.0,
        gt=0,
        description="查岗 (0x9301) answer time limit when the request gives none (2011 has no "
        "such field); the duty page counts down to it and 平台查岗响应率 counts answers by it.",
    )
    slave_fallback: bool = Field(
        default=True,
        description="While the main link is down, send upward traffic on a logged-in slave "
        "link (JT/T 809-2011 section 4.1.3); false: buffer until the main link returns.",
    )

    @field_validator("password")
    @classmethod
    def _password_fits(cls, value: str) -> str:
        try:
            size = len(value.encode("gbk"))
        except UnicodeEncodeError:
            size = -1
        if not 0 <= size <= 8:
            raise PydanticCustomError("jt809_password", "Input should be at most 8 GBK bytes")
        return value

    @field_validator("platform_id")
    @classmethod
    def _platform_id_fits(cls, value: str) -> str:
        if len(value.encode("ascii", errors="replace")) > 11 or not value.isascii():
            raise PydanticCustomError(
                "jt809_platform_id", "Input should be at most 11 ASCII characters"
            )
        return value

    @field_validator("encrypt")
    @classmethod
    def _keys_for_encryption(cls, value: bool, info: ValidationInfo) -> bool:
        if value and not info.data.get("m1"):
            raise PydanticCustomError(
                "jt809_encrypt",
                "Input should be false unless GPS_MONITOR_JT809_M1 (and IA1, IC1) are set",
            )
        return value


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
    bus: BusSettings = BusSettings()
    ingest: IngestSettings = IngestSettings()
    quality: QualitySettings = QualitySettings()
    web: WebSettings = WebSettings()
    jt808: Jt808Settings = Jt808Settings()
    rules: RulesSettings = RulesSettings()
    reports: ReportsSettings = ReportsSettings()
    alarms: AlarmsSettings = AlarmsSettings()
    notify: NotifySettings = NotifySettings()
    commands: CommandsSettings = CommandsSettings()
    jt809: Jt809Settings = Jt809Settings()
    media: MediaSettings = MediaSettings()
    attachments: AttachmentsSettings = AttachmentsSettings()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings read once from the environment."""
    return Settings()
