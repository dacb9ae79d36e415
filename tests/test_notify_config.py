"""Bad notify settings and channels: `gps-monitor notify` exits 2 naming the setting or the
channel field; subscription routing and levels (pure)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time
from typing import Any

import pytest

from gps_monitor.cli import main
from gps_monitor.config import AlarmsSettings, NotifySettings, Settings
from gps_monitor.db import notify as store
from gps_monitor.db.notify import Subscription
from gps_monitor.db.pool import connect
from notify.channels import ChannelError, validate_channel
from notify.levels import level_of
from notify.message import Notification
from notify.routing import in_window, route


def _add_channel(settings: Settings, kind: str, config: dict[str, Any], secret: str | None) -> None:
    async def add() -> None:
        conn = await connect(settings.database)
        try:
            await store.create_channel(
                conn,
                name="车队群",
                kind=kind,
                config=config,
                secret=secret,
                user_id=None,
                company_id=None,
            )
        finally:
            await conn.close()

    asyncio.run(add())


def _notify_check(settings: Settings, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["notify", "--check", "--no-upgrade"], settings)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("kind", "config", "secret", "expected"),
    [
        ("telegram", {"url": "https://t.me/x"}, None, "kind: expected one of wecom, dingtalk"),
        ("dingtalk", {"url": "htp:/oapi.dingtalk.com"}, "SEC1", "config.url: expected an http"),
        ("feishu", {"url": "https://open.feishu.cn/hook/x"}, None, "secret: expected the signing"),
        (
            "webhook",
            {},
            "s",
            "config.url: expected an http:// or https:// URL with a host, got None",
        ),
        ("email", {"to": ["a@b.cn"]}, None, "GPS_MONITOR_NOTIFY_SMTP_HOST: expected the SMTP"),
        ("email", {"to": ["not-an-address"]}, None, "config.to: expected e-mail addresses"),
        ("sms", {"phones": ["138"]}, None, "config.phones: expected phone numbers"),
        ("sms", {"phones": ["13800138000"]}, None, "GPS_MONITOR_NOTIFY_SMS_URL: expected"),
    ],
)
def test_notify_exits_2_naming_the_bad_channel_field(
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    kind: str,
    config: dict[str, Any],
    secret: str | None,
    expected: str,
) -> None:
    _add_channel(settings, kind, config, secret)
    code, err = _notify_check(settings, capsys)
    assert code == 2
    assert f"notify channel 1 '车队群' ({kind}): {expected}" in err
    assert "SEC1" not in err  # the secret is never printed


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"smtp_host": "127.0.0.1"}, "GPS_MONITOR_NOTIFY_SMTP_FROM: expected an e-mail address"),
        (
            {"smtp_host": "h", "smtp_from": "a@b.cn", "smtp_username": "u"},
            "GPS_MONITOR_NOTIFY_SMTP_PASSWORD: expected a password",
        ),
        (
            {"smtp_host": "h", "smtp_from": "a@b.cn", "smtp_ca_file": "/nonexistent/ca.pem"},
            "GPS_MONITOR_NOTIFY_SMTP_CA_FILE: expected a readable PEM CA file",
        ),
        ({"sms_url": "gateway.example.cn/send"}, "GPS_MONITOR_NOTIFY_SMS_URL: expected an http"),
        (
            {"sms_url": "http://127.0.0.1/sms", "sms_body_template": '{"to": "{phone}"}'},
            "GPS_MONITOR_NOTIFY_SMS_BODY_TEMPLATE: expected both {phone} and {text}",
        ),
        (
            {"sms_url": "http://127.0.0.1/sms", "sms_body_template": '{"to": {phone}, {text}}'},
            "GPS_MONITOR_NOTIFY_SMS_BODY_TEMPLATE: expected valid JSON",
        ),
    ],
)
def test_notify_exits_2_naming_the_bad_setting(
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    changes: dict[str, Any],
    expected: str,
) -> None:
    notify = settings.notify.model_copy(update=changes)
    code, err = _notify_check(settings.model_copy(update={"notify": notify}), capsys)
    assert code == 2
    assert expected in err


def test_bad_smtp_security_in_the_environment_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gps_monitor.config import get_settings

    get_settings.cache_clear()
    monkeypatch.setenv("GPS_MONITOR_NOTIFY_SMTP_SECURITY", "tls13")
    try:
        assert main(["notify", "--check"]) == 2
    finally:
        get_settings.cache_clear()
    assert "GPS_MONITOR_NOTIFY_SMTP_SECURITY: expected 'starttls', 'ssl' or 'none'" in (
        capsys.readouterr().err
    )


def test_notify_check_passes_with_good_channels(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    _add_channel(
        settings,
        "dingtalk",
        {"url": "https://oapi.dingtalk.com/robot/send?access_token=TOKEN123"},
        "SECsecret",
    )
    assert main(["notify", "--check", "--no-upgrade"], settings) == 0
    out = capsys.readouterr().out
    assert "ok: channel 1 '车队群' (dingtalk https://oapi.dingtalk.com/robot/send)" in out
    assert "TOKEN123" not in out and "SECsecret" not in out


def test_validate_channel_refuses_a_secret_where_none_belongs() -> None:
    with pytest.raises(ChannelError, match="secret: expected none"):
        validate_channel("wecom", {"url": "https://qyapi.weixin.qq.com/x"}, "s", NotifySettings())


# --- routing and levels (pure) -------------------------------------------------------------


def _note(**changes: Any) -> Notification:
    values: dict[str, Any] = {
        "alarm_id": 1,
        "dedup_key": "k",
        "event": "opened",
        "alarm_type": "overspeed",
        "level": 2,
        "company_id": 10,
        "vehicle_id": 100,
        "terminal_id": "t",
        "started_at": datetime(2026, 1, 1, tzinfo=UTC),
        "ended_at": None,
        "late": False,
        "plate_number": "渝A1",
        "company_name": "甲",
    }
    return Notification(**(values | changes))


def test_quiet_window_may_cross_midnight() -> None:
    assert in_window(time(23, 30), time(22, 0), time(7, 0))
    assert in_window(time(6, 59), time(22, 0), time(7, 0))
    assert not in_window(time(7, 0), time(22, 0), time(7, 0))
    assert not in_window(time(12, 0), time(22, 0), time(7, 0))
    assert in_window(time(12, 0), time(9, 0), time(17, 0))
    assert not in_window(time(12, 0), time(9, 0), time(9, 0))


def test_route_min_level_and_quiet_hours_per_channel() -> None:
    night = {"quiet_start_local": time(22, 0), "quiet_end_local": time(7, 0)}
    subs = [
        Subscription(id=1, channel_id=1, min_level=2, **night),
        Subscription(id=2, channel_id=2, min_level=1),
        Subscription(id=3, channel_id=3, min_level=4, **night),
        Subscription(id=4, channel_id=3, min_level=4),  # a second rule without quiet hours
        Subscription(id=5, channel_id=4, min_level=4, enabled=False),
        Subscription(id=6, channel_id=5, min_level=4),  # channel not usable
    ]
    at_night = time(23, 0)
    assert route(subs, {1, 2, 3, 4}, _note(level=2), at_night) == {1: False, 3: True}
    assert route(subs, {1, 2, 3, 4}, _note(level=1), at_night) == {1: True, 2: True, 3: True}
    assert route(subs, {1, 2, 3, 4}, _note(level=3), time(12, 0)) == {3: True}


def test_level_comes_from_the_message_else_the_level_policy() -> None:
    policy = AlarmsSettings(levels={"overspeed@hazmat": 1})
    assert level_of({"alarm_type": "overspeed", "level": 3}, "hazmat", policy) == 3
    assert level_of({"alarm_type": "overspeed"}, "hazmat", policy) == 1
    assert level_of({"alarm_type": "overspeed"}, "coach", policy) == 2
    assert level_of({"alarm_type": "device_alarm", "details": {"name": "sos"}}, None, policy) == 1
    assert level_of({"alarm_type": "overspeed", "level": True}, "coach", policy) == 2
