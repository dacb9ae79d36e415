"""Real ``gps-monitor ingest`` and ``gps-monitor rules`` processes on NATS JetStream (a private
nats-server) and the real PostgreSQL, two of each: the partitions split between them; one of
each is killed (SIGKILL) or stopped (SIGSTOP, its partitions move, SIGCONT) while terminals
publish; every position is stored once and every device alarm episode is raised once, with the
right start and end (a stale owner committing would duplicate or bend them)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import nats
import pytest
from ingest_helpers import wait_for, worker_env
from nats_helpers import PrivateNats, nats_server  # noqa: F401  (fixture)

from gps_monitor.bus.nats_names import NatsNames
from gps_monitor.bus.partition import partition_of
from gps_monitor.config import Settings
from gps_monitor.db import leases
from ingest.replay import register_terminals

P = 8
OWNER_TIMEOUT_S = 2.0
TERMINALS = [f"1390000{i:04d}" for i in range(16)]
ALARM_EVERY = 5  # SOS (alarm bit 0) toggles every 5 fixes: on for i // 5 odd
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


def _fix_time(i: int) -> datetime:
    return T0 + timedelta(seconds=i)


def _sos(i: int) -> int:
    return (i // ALARM_EVERY) % 2


def _expected_episodes(fixes: int) -> set[tuple[datetime, datetime | None]]:
    """(started_at, ended_at) of the SOS episodes of one terminal that sent ``fixes`` fixes."""
    episodes = set()
    for start in range(ALARM_EVERY, fixes, 2 * ALARM_EVERY):
        end = start + ALARM_EVERY
        episodes.add((_fix_time(start), _fix_time(end) if end < fixes else None))
    return episodes


class Processes:
    """The worker subprocesses of one test, their logs in ``folder``."""

    def __init__(self, settings: Settings, server: PrivateNats, folder: Path) -> None:
        self.settings = settings
        self.server = server
        self.folder = folder
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, stage: str, name: str) -> None:
        env = worker_env(self.settings)
        env.update(
            GPS_MONITOR_BUS_TRANSPORT="nats",
            GPS_MONITOR_BUS_NATS_URL=self.server.url,
            GPS_MONITOR_BUS_PARTITIONS=str(P),
            GPS_MONITOR_BUS_OWNER_TIMEOUT_S=str(OWNER_TIMEOUT_S),
            GPS_MONITOR_BUS_CLIENT_NAME=name,
            # the downlink command dispatcher beside ingest stays on MQTT: its own session
            GPS_MONITOR_MQTT_CLIENT_ID=f"{self.settings.mqtt.client_id}-{name}",
            GPS_MONITOR_RULES_OFFLINE_CHECK_INTERVAL_S="1",
        )
        args = [stage, "--no-upgrade"] if stage == "ingest" else [stage]
        with (self.folder / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "gps_monitor.cli", *args], env=env, stdout=log, stderr=log
            )

    def signal(self, name: str, sig: signal.Signals) -> None:
        self.procs[name].send_signal(sig)
        if sig == signal.SIGKILL:
            self.procs[name].wait(10)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-2500:]}"
            for p in sorted(self.folder.glob("*.log"))
        )

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGCONT)
                    proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _fix(i: int) -> bytes:
    """The payload of a terminal's i-th fix (SOS as :func:`_sos` says)."""
    payload = {
        "fix_time": _fix_time(i).isoformat(),
        "latitude": 30.5 + i * 1e-5,
        "longitude": 104.0 + i * 1e-5,
        "speed_kmh": 40.0,
        "alarm_flags": _sos(i),
    }
    return json.dumps(payload).encode()


async def _publish(nc: nats.NATS, prefix: str, fixes: range) -> None:
    """One fix per terminal per round, ~10 rounds a second, each acknowledged by the stream."""
    js = nc.jetstream()
    for i in fixes:
        for terminal in TERMINALS:
            subject = NatsNames.to_subject(f"{prefix}gps/v1/{terminal}/position")
            await js.publish(subject, _fix(i))
        await asyncio.sleep(0.1)


async def _check_everything_once(pool: asyncpg.Pool, fixes: int, logs: str) -> None:
    count = await wait_for(
        lambda: pool.fetchval("SELECT count(*) FROM positions"),
        lambda n: n >= fixes * len(TERMINALS),
        timeout_s=60,
    )
    assert count == fixes * len(TERMINALS), logs
    expected = _expected_episodes(fixes)

    async def episodes() -> dict[str, set[tuple[datetime, datetime | None]]]:
        rows = await pool.fetch(
            "SELECT v.terminal_id, a.started_at, a.ended_at FROM alarms a "
            "JOIN vehicles v ON v.id = a.vehicle_id WHERE a.alarm_type = 'device_alarm'"
        )
        found: dict[str, set[tuple[datetime, datetime | None]]] = {t: set() for t in TERMINALS}
        for r in rows:
            found[r["terminal_id"]].add((r["started_at"], r["ended_at"]))
        return found

    found = await wait_for(episodes, lambda f: all(s == expected for s in f.values()), timeout_s=60)
    rows = await pool.fetchval("SELECT count(*) FROM alarms WHERE alarm_type = 'device_alarm'")
    wrong = {t: (sorted(s - expected, key=str), sorted(expected - s, key=str))
             for t, s in found.items() if s != expected}  # fmt: skip
    late = await pool.fetch(
        "SELECT v.terminal_id, p.fix_time, p.received_at FROM positions p "
        "JOIN vehicles v ON v.id = p.vehicle_id WHERE p.late ORDER BY 1, 2"
    )
    assert wrong == {}, f"(extra, missing) per terminal: {wrong}\nlate: {late}\n{logs}"
    assert rows == len(TERMINALS) * len(expected)  # nothing beside the expected episodes


@pytest.mark.slow
@pytest.mark.parametrize("failure", ["sigkill", "sigstop"])
async def test_two_processes_per_stage_share_partitions_and_survive_an_owner_failure(
    settings: Settings,
    pool: asyncpg.Pool,
    nats_server: PrivateNats,  # noqa: F811
    tmp_path: Path,
    failure: str,
) -> None:
    await register_terminals(pool, TERMINALS)
    assert len({partition_of(t, P) for t in TERMINALS}) >= 6  # the terminals spread
    procs = Processes(settings, nats_server, tmp_path)
    nc = await nats.connect(nats_server.url)
    try:
        for name in ("ingest-a", "ingest-b"):
            procs.start("ingest", name)
        for name in ("rules-a", "rules-b"):
            procs.start("rules", name)
        for stage in ("ingest", "rules"):
            owners = await wait_for(
                lambda stage=stage: leases.owners(pool, stage),
                lambda o: len(o) == P and len(set(o.values())) == 2,
                timeout_s=60,
            )
            assert len(owners) == P and len(set(owners.values())) == 2, procs.logs()
        await _publish(nc, settings.mqtt.topic_prefix, range(0, 30))
        victims = ("ingest-b", "rules-b")
        before = {s: await leases.owners(pool, s) for s in ("ingest", "rules")}
        if failure == "sigkill":
            for name in victims:
                procs.signal(name, signal.SIGKILL)
        else:
            for name in victims:
                procs.signal(name, signal.SIGSTOP)
        publishing = asyncio.create_task(_publish(nc, settings.mqtt.topic_prefix, range(30, 80)))
        # the victims' partitions move to the survivors
        for stage, victim in zip(("ingest", "rules"), victims, strict=True):
            moved = await wait_for(
                lambda stage=stage: leases.owners(pool, stage),
                lambda o, victim=victim: victim not in o.values(),
                timeout_s=60,
            )
            assert victim not in moved.values(), procs.logs()
            assert victim in before[stage].values()
        if failure == "sigstop":
            await asyncio.sleep(1.0)
            for name in victims:
                procs.signal(name, signal.SIGCONT)  # wakes with stale batches and pins
        await publishing
        await _publish(nc, settings.mqtt.topic_prefix, range(80, 100))
        started = time.monotonic()
        await _check_everything_once(pool, 100, procs.logs())
        assert time.monotonic() - started < 60
    finally:
        await nc.close()
        procs.stop_all()


@pytest.mark.slow
async def test_odd_terminal_ids_through_the_mqtt_listener_are_stored_or_rejected_with_a_reason(
    settings: Settings,
    pool: asyncpg.Pool,
    nats_server: PrivateNats,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Terminals publish MQTT to the NATS server's listener with ids legal in an MQTT topic but
    special in a NATS subject: a registered dotted id is stored and raises its alarm (rules owns
    it in the partition the server put it in); the unregistered 'T*1', 'T>1', non-ASCII and
    over-long ids are kept in rejected_messages as unknown_terminal, an empty level as
    bad_topic, a malformed payload as malformed_json; nothing crashes a worker. (A level that is
    exactly '*' or '>' never reaches the stream: nats-server acknowledges and drops it; README.)"""
    import paho.mqtt.client as mqtt

    dotted = "T.1"
    await register_terminals(pool, [dotted])
    procs = Processes(settings, nats_server, tmp_path)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="odd-terminals")
    prefix = settings.mqtt.topic_prefix
    try:
        procs.start("ingest", "ingest-a")
        procs.start("rules", "rules-a")
        for stage in ("ingest", "rules"):
            owners = await wait_for(
                lambda stage=stage: leases.owners(pool, stage), lambda o: len(o) == P, timeout_s=60
            )
            assert len(owners) == P, procs.logs()
        assert nats_server.mqtt_port is not None
        client.connect("127.0.0.1", nats_server.mqtt_port)
        client.loop_start()

        def publish(terminal: str, payload: bytes, kind: str = "position") -> None:
            topic = f"{prefix}gps/v1/{terminal}/{kind}"
            client.publish(topic, payload, qos=1).wait_for_publish(10)

        for i in range(12):  # SOS on from fix 5 to fix 10
            publish(dotted, _fix(i))
        unknown = ["T*1", "T>1", "粤B12345", "X" * 200]
        for terminal in unknown:
            publish(terminal, json.dumps({"fix_time": _fix_time(0).isoformat()}).encode())
        publish(dotted, b"{not json")
        client.publish(f"{prefix}gps/v1//position", b"{}", qos=1).wait_for_publish(10)

        stored = await wait_for(
            lambda: pool.fetchval("SELECT count(*) FROM positions"), lambda n: n >= 12
        )
        assert stored == 12, procs.logs()
        episodes = await wait_for(
            lambda: pool.fetch(
                "SELECT a.started_at, a.ended_at FROM alarms a JOIN vehicles v "
                "ON v.id = a.vehicle_id WHERE v.terminal_id = $1 "
                "AND a.alarm_type = 'device_alarm'",
                dotted,
            ),
            lambda rows: len(rows) == 1 and rows[0]["ended_at"] is not None,
        )
        assert [(r["started_at"], r["ended_at"]) for r in episodes] == [
            (_fix_time(5), _fix_time(10))
        ], procs.logs()
        expected = {(t, "unknown_terminal") for t in unknown} | {
            (dotted, "malformed_json"),
            (None, "bad_topic"),
        }
        rejected = await wait_for(
            lambda: pool.fetch("SELECT terminal_id, reason FROM rejected_messages"),
            lambda rows: len(rows) >= len(expected),
        )
        assert {(r["terminal_id"], r["reason"]) for r in rejected} == expected, procs.logs()
        assert all(p.poll() is None for p in procs.procs.values()), procs.logs()
    finally:
        client.loop_stop()
        client.disconnect()
        procs.stop_all()


@pytest.mark.slow
async def test_a_database_outage_during_nats_consumption_loses_and_doubles_nothing(
    settings: Settings,
    database_url: str,
    nats_server: PrivateNats,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The database refuses every connection (ALLOW_CONNECTIONS false, sessions terminated) while
    terminals publish to one ingest process on NATS, for several ack waits (the server
    redelivers what the process holds): once the database is back every position is stored
    once, nothing was set aside, every message is acknowledged and the process still runs."""
    from conftest import ADMIN_URL

    name = database_url.rpartition("/")[2].partition("?")[0]
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    assert pool is not None
    await register_terminals(pool, TERMINALS)
    await pool.close()
    procs = Processes(settings, nats_server, tmp_path)
    nc = await nats.connect(nats_server.url)
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        procs.start("ingest", "ingest-a")
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
        assert pool is not None
        owners = await wait_for(lambda: leases.owners(pool, "ingest"), lambda o: len(o) == P, 60)
        assert len(owners) == P, procs.logs()
        await pool.close()
        await _publish(nc, settings.mqtt.topic_prefix, range(0, 5))
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        await _publish(nc, settings.mqtt.topic_prefix, range(5, 20))
        await asyncio.sleep(4 * OWNER_TIMEOUT_S)  # ack wait is half of it: redeliveries
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
        assert pool is not None
        count = await wait_for(
            lambda: pool.fetchval("SELECT count(*) FROM positions"),
            lambda n: n >= 20 * len(TERMINALS),
            timeout_s=90,
        )
        await asyncio.sleep(2 * OWNER_TIMEOUT_S)
        count = await pool.fetchval("SELECT count(*) FROM positions")
        rejected = await pool.fetchval("SELECT count(*) FROM rejected_messages")
        await pool.close()
        assert (count, rejected) == (20 * len(TERMINALS), 0), procs.logs()
        js = nc.jetstream()
        names = NatsNames(settings.mqtt.topic_prefix)
        pending = {}
        for p in range(P):
            info = await js.consumer_info(names.inbound_stream, names.consumer("ingest", p))
            pending[p] = (info.num_ack_pending, info.num_pending)
        assert all(v == (0, 0) for v in pending.values()), (pending, procs.logs())
        assert all(p.poll() is None for p in procs.procs.values()), procs.logs()
    finally:
        with contextlib.suppress(Exception):
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
        await nc.close()
        procs.stop_all()
