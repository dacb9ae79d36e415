"""`gps-monitor notify` end to end: real Mosquitto, real PostgreSQL, a real HTTP receiver on
localhost playing the 企业微信/钉钉/飞书 robots, a webhook receiver and an SMS gateway
(tests/notify_helpers.py), and a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg
import pytest
from aiosmtpd.controller import Controller
from notify_helpers import SECRETS, Receiver, running_receiver
from web_helpers import World, make_world, rest_client

from gps_monitor import topics
from gps_monitor.config import NotifySettings, Settings
from gps_monitor.db import notify as store
from gps_monitor.db.notify import Subscription
from gps_monitor.mqtt import build_client
from notify.channels import (
    HttpAnswer,
    Outcome,
    SendContext,
    TargetPolicy,
    guarded_connector,
    post_json,
)
from notify.worker import NotifyWorker

LOOPBACK = ["127.0.0.0/8", "::1/128"]


def allowing(settings: Settings, networks: list[str]) -> Settings:
    """``settings`` with notify.allowed_private_targets = ``networks``."""
    notify = settings.notify.model_copy(update={"allowed_private_targets": networks})
    return settings.model_copy(update={"notify": notify})


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """These tests deliver to receivers on 127.0.0.1, so this is a test deployment that allows
    its own loopback network (GPS_MONITOR_NOTIFY_ALLOWED_PRIVATE_TARGETS); the default refuses
    it (test_a_name_resolving_to_loopback_is_refused_at_delivery)."""
    return allowing(settings, LOOPBACK)


def fast(settings: Settings, **changes: Any) -> Settings:
    """Settings with short timeouts and retry delays (seconds, not minutes)."""
    notify = settings.notify.model_copy(
        update={
            "send_timeout_s": 1.0,
            "retry_initial_delay_s": 0.2,
            "retry_max_delay_s": 1.0,
            "max_attempts": 3,
            "rescan_interval_s": 0.3,
            "reload_interval_s": 0.3,
            **changes,
        }
    )
    return settings.model_copy(update={"notify": notify})


@contextlib.asynccontextmanager
async def running_worker(settings: Settings) -> AsyncIterator[NotifyWorker]:
    worker = NotifyWorker(settings)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.ready.wait(), 10)
        yield worker
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def alarm_message(
    world: World,
    *,
    vehicle: int = 0,
    alarm_type: str = "overspeed",
    event: str = "opened",
    key: str = "k1",
    company: str = "a",
    **extra: Any,
) -> dict[str, Any]:
    vehicles = world.vehicles_a if company == "a" else world.vehicles_b
    vehicle_id = vehicles[vehicle]
    started = datetime.now(UTC) - timedelta(minutes=1)
    return {
        "alarm_type": alarm_type,
        "dedup_key": f"{vehicle_id}:{alarm_type}:{key}",
        "vehicle_id": vehicle_id,
        "company_id": world.company_a if company == "a" else world.company_b,
        "terminal_id": world.terminals[vehicle_id],
        "started_at": started.isoformat(),
        "ended_at": datetime.now(UTC).isoformat() if event == "closed" else None,
        "late": False,
        "details": {"max_speed_kmh": 82.4, "limit_kmh": 60.0, "duration_s": 31.0},
        "first_fix_time": started.isoformat(),
        "last_fix_time": started.isoformat(),
        "status": "open",
        "id": abs(hash(key)) % 100000,
        "event": event,
        **extra,
    }


async def publish(settings: Settings, *messages: dict[str, Any] | bytes) -> None:
    client_id = f"{settings.mqtt.client_id}-pub"
    async with build_client(settings.mqtt, client_id=client_id) as client:
        for message in messages:
            if isinstance(message, bytes):
                topic = f"{settings.mqtt.topic_prefix}alarms/v1/1/1/overspeed"
                await client.publish(topic, message, qos=1)
                continue
            topic = topics.alarm_topic(
                message["company_id"],
                message["vehicle_id"],
                message["alarm_type"],
                settings.mqtt.topic_prefix,
            )
            await client.publish(topic, json.dumps(message, ensure_ascii=False), qos=1)


async def add_channel(
    pool: asyncpg.Pool,
    kind: str,
    config: dict[str, Any],
    *,
    secret: str | None = None,
    name: str = "",
    **subscription: Any,
) -> int:
    channel = await store.create_channel(
        pool,
        name=name or kind,
        kind=kind,
        config=config,
        secret=secret,
        user_id=None,
        company_id=None,
    )
    await store.save_subscription(
        pool, Subscription(id=0, channel_id=channel["id"], **subscription)
    )
    return int(channel["id"])


async def deliveries(pool: asyncpg.Pool, channel_id: int) -> list[dict[str, Any]]:
    return await store.list_deliveries(pool, channel_id=channel_id)


async def wait_status(
    pool: asyncpg.Pool, channel_id: int, status: str, count: int = 1, timeout_s: float = 15
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        rows = [d for d in await deliveries(pool, channel_id) if d["status"] == status]
        if len(rows) >= count:
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(
                f"channel {channel_id}: expected {count} deliveries {status}, got "
                f"{[(d['status'], d['attempts']) for d in await deliveries(pool, channel_id)]}"
            )
        await asyncio.sleep(0.1)


@pytest.fixture
async def world(pool: asyncpg.Pool, settings: Settings) -> World:
    return await make_world(pool, settings)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with running_receiver() as receiver:
        yield receiver


async def test_each_robot_gets_its_documented_format_and_signature(
    pool: asyncpg.Pool, settings: Settings, world: World, receiver: Receiver
) -> None:
    wecom = await add_channel(pool, "wecom", {"url": receiver.url("wecom", "wx", "key=abc")})
    ding = await add_channel(
        pool,
        "dingtalk",
        {"url": receiver.url("dingtalk", "dd", "access_token=tok")},
        secret=SECRETS["dingtalk"],
    )
    feishu = await add_channel(
        pool, "feishu", {"url": receiver.url("feishu", "fs")}, secret=SECRETS["feishu"]
    )
    hook = await add_channel(
        pool, "webhook", {"url": receiver.url("webhook", "wh")}, secret=SECRETS["webhook"]
    )
    async with running_worker(fast(settings)):
        await publish(settings, alarm_message(world))
        for name in ("wx", "dd", "fs", "wh"):
            await receiver.wait_for(name, 1)
    assert [(r.name, r.verdict) for r in sorted(receiver.received, key=lambda r: r.name)] == [
        ("dd", "ok"),
        ("fs", "ok"),
        ("wh", "ok"),
        ("wx", "ok"),
    ]
    plate = "渝A10000"
    (wx,) = receiver.of("wx")
    assert plate in wx.body["markdown"]["content"] and "超速" in wx.body["markdown"]["content"]
    assert "最高 82.4 km/h，限速 60 km/h" in wx.body["markdown"]["content"]
    (dd,) = receiver.of("dd")
    assert dd.body["markdown"]["title"].startswith("【严重】超速 渝A10000")
    (fs,) = receiver.of("fs")
    assert plate in fs.body["content"]["text"]
    (wh,) = receiver.of("wh")
    assert wh.body["event"] == "alarm.opened" and wh.body["level"] == 2
    assert wh.body["alarm"]["dedup_key"] == alarm_message(world)["dedup_key"]
    for channel in (wecom, ding, feishu, hook):
        (row,) = await wait_status(pool, channel, "sent")
        assert row["attempts"] == 1 and row["last_reply_code"] == 200
        assert row["attempt_log"][0]["ok"] is True
        assert "?" not in row["target"]  # the access token in the query is not logged


async def test_dead_slow_and_garbage_channels_do_not_delay_a_live_one(
    pool: asyncpg.Pool, settings: Settings, world: World, receiver: Receiver
) -> None:
    # each delivery's retries are checked here, so the breakers stay closed (12 failures per
    # channel); tests/test_notify_breaker.py checks the breaker
    settings = fast(
        settings, send_timeout_s=30.0, max_attempts=2, channel_concurrency=2, breaker_failures=100
    )
    receiver.mode.update({"hang": "hang", "e500": "500", "junk": "garbage"})
    hang = await add_channel(
        pool, "webhook", {"url": receiver.url("webhook", "hang")}, secret=SECRETS["webhook"]
    )
    e500 = await add_channel(
        pool, "webhook", {"url": receiver.url("webhook", "e500")}, secret=SECRETS["webhook"]
    )
    junk = await add_channel(
        pool,
        "dingtalk",
        {"url": receiver.url("dingtalk", "junk", "access_token=t")},
        secret=SECRETS["dingtalk"],
    )
    # refused: nothing listens on port 9 of localhost
    refused = await add_channel(
        pool, "webhook", {"url": "http://127.0.0.1:9/hook"}, secret=SECRETS["webhook"]
    )
    await add_channel(
        pool, "webhook", {"url": receiver.url("webhook", "live")}, secret=SECRETS["webhook"]
    )
    messages = [alarm_message(world, key=f"k{i}") for i in range(6)]
    async with running_worker(settings):
        await publish(settings, *messages)
        await receiver.wait_for("live", 6)
        # the hanging receiver holds both of its senders for the 30 s timeout: the live channel
        # got everything while the first of those sends were still waiting (no hang attempt
        # recorded), so it never waited behind them (an order, not a time limit load can break)
        assert receiver.counts.get("hang", 0) >= 1
        hanging = await deliveries(pool, hang)
        assert hanging and not any(d["attempts"] for d in hanging), hanging
        failed_500 = await wait_status(pool, e500, "failed", 6)
        failed_junk = await wait_status(pool, junk, "failed", 6)
        failed_refused = await wait_status(pool, refused, "failed", 6)
    for row in failed_500:
        assert row["attempts"] == 2
        assert [a["reply_code"] for a in row["attempt_log"]] == [500, 500]
    assert all("expected a JSON answer" in r["last_reply"] for r in failed_junk)
    assert all(r["last_reply_code"] is None for r in failed_refused)
    assert all("ClientConnectorError" in r["last_reply"] for r in failed_refused)
    hung = await deliveries(pool, hang)
    assert hung and all(d["status"] == "pending" for d in hung)


async def test_a_hanging_receiver_times_out_and_is_retried(
    pool: asyncpg.Pool, settings: Settings, world: World, receiver: Receiver
) -> None:
    receiver.mode["hang"] = "hang"
    hang = await add_channel(
        pool, "webhook", {"url": receiver.url("webhook", "hang")}, secret=SECRETS["webhook"]
    )
    async with running_worker(fast(settings, send_timeout_s=0.5, max_attempts=2)):
        await publish(settings, alarm_message(world))
        (row,) = await wait_status(pool, hang, "failed")
    assert row["attempts"] == 2
    assert [a["reply_code"] for a in row["attempt_log"]] == [None, None]
    assert all("no answer within 0.5 s" in a["reply"] for a in row["attempt_log"])
    assert all(a["duration_ms"] >= 450 for a in row["attempt_log"])


async def test_a_redelivered_alarm_message_is_not_sent_twice(
    pool: asyncpg.Pool, settings: Settings, world: World, receiver: Receiver
) -> None:
    hook = await add_channel(
        pool, "webhook", {"url": receiver.url("webhook", "wh")}, secret=SECRETS["webhook"]
    )
    message = alarm_message(world)
    async with running_worker(fast(settings)):
        await publish(settings, message, message)
        await receiver.wait_for("wh", 1)
        await wait_status(pool, hook, "sent")
    # a restarted worker (same persistent session) gets the same message again
    async with running_worker(fast(settings)):
        await publish(settings, message)
        closed = alarm_message(world, event="closed")
        await publish(settings, closed)
        await receiver.wait_for("wh", 2)
        # the receiver has the request before the worker records its answer
        await wait_status(pool, hook, "sent", 2)
        await asyncio.sleep(0.5)  # a second copy of the opened one would come by now
    assert [r.body["event"] for r in receiver.of("wh")] == ["alarm.opened", "alarm.closed"]
    rows = await deliveries(pool, hook)
    assert sorted((r["event"], r["status"]) for r in rows) == [
        ("closed", "sent"),
        ("opened", "sent"),
    ]


async def test_quiet_hours_hold_back_all_but_level_1(
    pool: asyncpg.Pool, settings: Settings, world: World, receiver: Receiver
) -> None:
    now = datetime.now(ZoneInfo("Asia/Shanghai"))
    quiet = {
        "quiet_start_local": (now - timedelta(hours=1)).time().replace(second=0, microsecond=0),
        "quiet_end_local": (now + timedelta(hours=1)).time().replace(second=0, microsecond=0),
    }
    hook = await add_channel(
        pool, "webhook", {"url": receiver.url("webhook", "wh")}, secret=SECRETS["webhook"], **quiet
    )
    async with running_worker(fast(settings)):
        await publish(
            settings,
            alarm_message(world, alarm_type="overspeed", key="a"),
            alarm_message(world, alarm_type="offline_displacement", key="b"),
        )
        await receiver.wait_for("wh", 1)
        suppressed = await wait_status(pool, hook, "suppressed")
        await asyncio.sleep(0.5)
    assert [r.body["alarm"]["alarm_type"] for r in receiver.of("wh")] == ["offline_displacement"]
    assert [(r["alarm_type"], r["attempts"]) for r in suppressed] == [("overspeed", 0)]


async def test_failed_attempts_are_retried_with_backoff_and_recorded(
    pool: asyncpg.Pool, settings: Settings, world: World, receiver: Receiver
) -> None:
    receiver.mode["flaky"] = "fail:2"
    flaky = await add_channel(
        pool, "wecom", {"url": receiver.url("wecom", "flaky", "key=k")}, name="车队群"
    )
    async with running_worker(fast(settings, retry_initial_delay_s=0.3, max_attempts=4)):
        await publish(settings, alarm_message(world))
        (row,) = await wait_status(pool, flaky, "sent")
    log = row["attempt_log"]
    assert [(a["attempt"], a["ok"], a["reply_code"]) for a in log] == [
        (1, False, 500),
        (2, False, 500),
        (3, True, 200),
    ]
    times = [datetime.fromisoformat(a["at"]) for a in log]
    first_gap = (times[1] - times[0]).total_seconds()
    second_gap = (times[2] - times[1]).total_seconds()
    assert first_gap >= 0.3 and second_gap >= 0.6  # 0.3 s, then doubled
    assert row["delivered_at"] is not None


async def test_subscription_filters_and_operator_scope(
    pool: asyncpg.Pool, settings: Settings, world: World, receiver: Receiver
) -> None:
    op_a = await pool.fetchval("SELECT id FROM users WHERE username = 'op_a'")
    channel = await store.create_channel(
        pool,
        name="op_a hook",
        kind="webhook",
        config={"url": receiver.url("webhook", "opa")},
        secret=SECRETS["webhook"],
        user_id=op_a,
        company_id=world.company_a,
    )
    # an operator's subscription sees its own company only, even with no company filter
    await store.save_subscription(
        pool,
        Subscription(
            id=0,
            channel_id=channel["id"],
            user_id=op_a,
            alarm_types=frozenset({"overspeed", "fatigue_driving"}),
            vehicle_ids=frozenset({world.vehicles_a[0], world.vehicles_b[0]}),
            min_level=2,
            events=frozenset({"opened"}),
        ),
    )
    async with running_worker(fast(settings)):
        await publish(
            settings,
            alarm_message(world, key="other-company", company="b"),
            alarm_message(world, key="other-vehicle", vehicle=1),
            alarm_message(world, key="geofence", alarm_type="geofence_enter"),
            alarm_message(world, key="closed", event="closed"),
            alarm_message(world, key="updated", event="updated"),
            alarm_message(world, key="late", late=True),
            alarm_message(world, key="yes"),
        )
        await receiver.wait_for("opa", 1)
        await asyncio.sleep(0.8)
    assert [r.body["alarm"]["dedup_key"].split(":")[-1] for r in receiver.of("opa")] == ["yes"]


async def test_a_malformed_message_is_set_aside_and_later_alarms_go_out(
    pool: asyncpg.Pool, settings: Settings, world: World, receiver: Receiver
) -> None:
    await add_channel(
        pool, "webhook", {"url": receiver.url("webhook", "wh")}, secret=SECRETS["webhook"]
    )
    async with running_worker(fast(settings)):
        await publish(settings, b"{not json", b'{"alarm_type": 5}', alarm_message(world))
        await receiver.wait_for("wh", 1)
    rows = await pool.fetch("SELECT reason, detail FROM rejected_messages ORDER BY id")
    assert [r["reason"] for r in rows] == ["malformed_json", "wrong_type"]
    assert "alarm_type: expected str, got 5" in rows[1]["detail"]


async def test_sms_gateway_gets_the_configured_body_per_phone(
    pool: asyncpg.Pool, settings: Settings, world: World, receiver: Receiver
) -> None:
    settings = fast(
        settings,
        sms_url=receiver.url("sms", "gw"),
        sms_body_template='{"mobile": "{phone}", "content": "{text}", "sign": "监控平台"}',
    )
    sms = await add_channel(pool, "sms", {"phones": ["13800138000", "+8613900139000"]})
    async with running_worker(settings):
        await publish(settings, alarm_message(world))
        got = await receiver.wait_for("gw", 2)
        await wait_status(pool, sms, "sent")
    assert sorted(r.body["mobile"] for r in got) == ["+8613900139000", "13800138000"]
    assert all(r.body["content"].startswith("【严重】超速 渝A10000") for r in got)


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"


def _self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.mark.parametrize("security", ["starttls", "none"])
async def test_email_goes_out_over_smtp(
    pool: asyncpg.Pool,
    settings: Settings,
    world: World,
    tmp_path: Path,
    security: str,
) -> None:
    import ssl

    inbox = _Inbox()
    options: dict[str, Any] = {}
    if security == "starttls":
        cert, key = _self_signed(tmp_path)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        options = {"tls_context": context, "require_starttls": True}
    with socket.socket() as probe:  # aiosmtpd's Controller needs a real port to self-check
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        settings = fast(
            settings,
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_security=security,
            smtp_from="alarms@monitor.example.cn",
            smtp_ca_file=str(cert) if security == "starttls" else None,
        )
        mail = await add_channel(pool, "email", {"to": ["safety@fleet-a.example.cn"]})
        async with running_worker(settings):
            await publish(settings, alarm_message(world))
            (row,) = await wait_status(pool, mail, "sent")
    finally:
        controller.stop()
    assert row["last_reply_code"] == 250
    ((sender, recipients, content),) = inbox.messages
    assert sender == "alarms@monitor.example.cn"
    assert recipients == ["safety@fleet-a.example.cn"]
    from email import message_from_bytes
    from email.header import decode_header, make_header

    parsed = message_from_bytes(content)
    assert str(make_header(decode_header(parsed["Subject"]))).startswith("【严重】超速 渝A10000")
    body = parsed.get_payload(decode=True).decode()
    assert "最高 82.4 km/h" in body


async def test_an_unreachable_smtp_server_is_a_failed_attempt(
    pool: asyncpg.Pool, settings: Settings, world: World
) -> None:
    settings = fast(
        settings, smtp_host="127.0.0.1", smtp_port=9, smtp_from="a@b.cn", max_attempts=2
    )
    mail = await add_channel(pool, "email", {"to": ["x@y.cn"]})
    async with running_worker(settings):
        await publish(settings, alarm_message(world))
        (row,) = await wait_status(pool, mail, "failed")
    assert row["attempts"] == 2 and "ConnectionRefusedError" in row["last_reply"]


async def test_pending_deliveries_resume_after_a_restart(
    pool: asyncpg.Pool, settings: Settings, world: World, receiver: Receiver
) -> None:
    receiver.mode["wh"] = "500"
    hook = await add_channel(
        pool, "webhook", {"url": receiver.url("webhook", "wh")}, secret=SECRETS["webhook"]
    )
    slow_retry = fast(settings, retry_initial_delay_s=30.0, max_attempts=5)
    async with running_worker(slow_retry):
        await publish(settings, alarm_message(world))
        await receiver.wait_for("wh", 1)
        # the attempt is recorded once the worker has the answer: wait for it, not a fixed time
        deadline = time.monotonic() + 15
        while not any(d["attempts"] for d in await deliveries(pool, hook)):
            assert time.monotonic() < deadline, await deliveries(pool, hook)
            await asyncio.sleep(0.05)
    (row,) = await deliveries(pool, hook)
    assert (row["status"], row["attempts"]) == ("pending", 1)
    receiver.mode["wh"] = "ok"
    await pool.execute("UPDATE notify_deliveries SET next_attempt_at = now()")
    async with running_worker(slow_retry):
        (row,) = await wait_status(pool, hook, "sent")
    assert row["attempts"] == 2


async def test_secrets_and_robot_tokens_never_reach_the_log(
    pool: asyncpg.Pool,
    settings: Settings,
    world: World,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.mode.update({"dd": "garbage", "fs": "500"})
    token = "tok0123456789abcdefTOKEN"
    ding = await add_channel(
        pool,
        "dingtalk",
        {"url": receiver.url("dingtalk", "dd", f"access_token={token}")},
        secret=SECRETS["dingtalk"],
    )
    feishu = await add_channel(
        pool, "feishu", {"url": receiver.url("feishu", token)}, secret=SECRETS["feishu"]
    )
    receiver.mode[token] = "500"
    async with running_worker(fast(settings, max_attempts=2)):
        await publish(settings, alarm_message(world))
        await wait_status(pool, ding, "failed")
        await wait_status(pool, feishu, "failed")
    assert "attempt 1 of delivery" in caplog.text  # the failures were logged...
    for secret in (token, SECRETS["dingtalk"], SECRETS["feishu"], "sign="):
        assert secret not in caplog.text  # ...without the secrets
    targets = [d["target"] for c in (ding, feishu) for d in await deliveries(pool, c)]
    assert all(token not in t for t in targets), targets


async def test_a_name_resolving_to_loopback_is_refused_at_delivery(
    pool: asyncpg.Pool, settings: Settings, world: World, receiver: Receiver
) -> None:
    """A channel whose name resolves to 127.0.0.1 (localhost) got past the save-time check
    (it checks IP literals only; here the row is written directly): under the default settings
    the delivery resolves, refuses, never connects, and fails at once with the reason."""
    url = receiver.url("webhook", "lh").replace("127.0.0.1", "localhost")
    channel = await add_channel(pool, "webhook", {"url": url}, secret=SECRETS["webhook"])
    strict = allowing(settings, [])
    async with running_worker(fast(strict, max_attempts=5)):
        await publish(strict, alarm_message(world, key="k1"))
        (row,) = await wait_status(pool, channel, "failed")
    assert row["attempts"] == 1 and row["last_reply_code"] is None
    assert row["last_reply"].startswith("target refused: localhost resolves to 127.0.0.1,")
    assert "a loopback address" in row["last_reply"]
    assert receiver.counts.get("lh", 0) == 0
    # the same row under a deployment that allows its loopback network is delivered
    async with running_worker(fast(settings)):
        await publish(settings, alarm_message(world, key="k2"))
        await receiver.wait_for("lh", 1)
        sent = await wait_status(pool, channel, "sent")
    assert [d["attempts"] for d in sent] == [1] and receiver.of("lh")[0].verdict == "ok"


async def test_an_ip_literal_is_refused_in_the_delivery_path(receiver: Receiver) -> None:
    """aiohttp does not resolve IP literals, so post() checks them itself (a row edited behind
    the API's back, or a policy tightened since)."""
    strict = NotifySettings()
    loopback = NotifySettings(allowed_private_targets=LOOPBACK)
    for notify, refused in ((strict, True), (loopback, False)):
        policy = TargetPolicy.of(notify)
        async with aiohttp.ClientSession(connector=guarded_connector(policy, 2)) as http:
            ctx = SendContext(http, notify, ZoneInfo("Asia/Shanghai"), 1, policy)
            for url in (
                receiver.url("sms", "ip"),
                receiver.url("sms", "ip").replace("127.0.0.1", "[::ffff:127.0.0.1]"),
            ):
                answer = await post_json(ctx, url, {"phone": "13800138000", "text": "t"})
                if refused:
                    assert isinstance(answer, Outcome) and answer.final and not answer.ok
                    assert answer.reply.startswith("target refused: ")
                    assert "a loopback address" in answer.reply
                else:  # the IPv4-mapped form is the same address, allowed alike
                    assert isinstance(answer, HttpAnswer) and answer.status == 200
    assert receiver.counts.get("ip", 0) == 2  # only the two allowed requests got through


async def test_an_operator_sees_the_status_but_not_the_answer_of_a_receiver(
    pool: asyncpg.Pool, settings: Settings, world: World, receiver: Receiver
) -> None:
    """The answer text stays with the bureau (README, Notifications); the owner sees the
    HTTP status."""
    receiver.mode["e500"] = "500"
    operator = await pool.fetchrow("SELECT id, company_id FROM users WHERE username = 'op_a'")
    channel = await store.create_channel(
        pool,
        name="op hook",
        kind="webhook",
        config={"url": receiver.url("webhook", "e500")},
        secret=SECRETS["webhook"],
        user_id=operator["id"],
        company_id=operator["company_id"],
    )
    await store.save_subscription(
        pool,
        Subscription(
            id=0,
            channel_id=channel["id"],
            user_id=operator["id"],
            company_id=operator["company_id"],
        ),
    )
    async with running_worker(fast(settings, max_attempts=1)):
        await publish(settings, alarm_message(world))
        await wait_status(pool, channel["id"], "failed")
    async with rest_client(settings) as client:
        mine = (await client.get("/api/notify/deliveries", headers=world.auth("op_a"))).json()
        everyone = (await client.get("/api/notify/deliveries", headers=world.auth("bureau"))).json()
    assert [(d["last_reply_code"], d["last_reply"]) for d in mine] == [
        (500, "answer withheld (500)")
    ]
    assert [a["reply"] for a in mine[0]["attempt_log"]] == ["answer withheld (500)"]
    assert [(d["last_reply_code"], d["last_reply"]) for d in everyone] == [(500, "internal error")]
