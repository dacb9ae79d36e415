"""REST API of push channels and subscriptions: users manage their own, the bureau everyone's;
422 for bad channels and rules; secrets write-only; audited; operators kept to their company."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from web_helpers import World, make_world, rest_client

from gps_monitor.config import Settings

DING = {"url": "https://oapi.dingtalk.com/robot/send?access_token=TOKEN"}


@pytest.fixture
async def world(pool: asyncpg.Pool, settings: Settings) -> World:
    return await make_world(pool, settings)


async def _channel(client: Any, world: World, who: str, **body: Any) -> dict[str, Any]:
    payload = {"name": "车队群", "kind": "dingtalk", "config": DING, "secret": "SECabc"} | body
    response = await client.post("/api/notify/channels", json=payload, headers=world.auth(who))
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_a_user_manages_their_own_channel_and_never_sees_the_secret(
    settings: Settings, world: World, pool: asyncpg.Pool
) -> None:
    async with rest_client(settings) as client:
        channel = await _channel(client, world, "op_a")
        assert channel["has_secret"] is True and "secret" not in channel
        assert channel["company_id"] == world.company_a
        listed = (await client.get("/api/notify/channels", headers=world.auth("op_a"))).json()
        assert [c["id"] for c in listed] == [channel["id"]]
        assert "SECabc" not in str(listed)
        # another operator neither sees nor changes it
        assert (await client.get("/api/notify/channels", headers=world.auth("op_b"))).json() == []
        other = await client.put(
            f"/api/notify/channels/{channel['id']}", json={"name": "x"}, headers=world.auth("op_b")
        )
        assert other.status_code == 404
        # rename keeps the stored secret
        renamed = await client.put(
            f"/api/notify/channels/{channel['id']}",
            json={"name": "安全员群"},
            headers=world.auth("op_a"),
        )
        assert renamed.status_code == 200 and renamed.json()["has_secret"] is True
        # removing the secret of a dingtalk robot is refused
        bare = await client.put(
            f"/api/notify/channels/{channel['id']}",
            json={"secret": None},
            headers=world.auth("op_a"),
        )
        assert bare.status_code == 422 and "secret: expected the signing secret" in bare.text
        # the bureau sees everyone's
        everyone = (await client.get("/api/notify/channels", headers=world.auth("bureau"))).json()
        assert [c["id"] for c in everyone] == [channel["id"]]
    stored = await pool.fetchval("SELECT secret FROM notify_channels")
    assert stored == "SECabc"
    audit = await pool.fetch(
        "SELECT action, details::text AS details FROM audit_log "
        "WHERE object_type = 'notify_channel' ORDER BY id"
    )
    assert [a["action"] for a in audit] == ["notify_channel.create", "notify_channel.update"]
    assert all("SECabc" not in a["details"] and "TOKEN" not in a["details"] for a in audit)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"kind": "telegram"}, "kind: expected one of wecom, dingtalk, feishu, webhook"),
        ({"config": {"url": "htp:/x"}}, "config.url: expected an http:// or https:// URL"),
        ({"secret": None}, "secret: expected the signing secret"),
        ({"kind": "email", "config": {"to": ["nobody"]}, "secret": None}, "config.to: expected"),
        ({"kind": "sms", "config": {"phones": []}, "secret": None}, "config.phones: expected"),
    ],
)
async def test_bad_channels_are_422_naming_the_field(
    settings: Settings, world: World, body: dict[str, Any], expected: str
) -> None:
    payload = {"name": "n", "kind": "dingtalk", "config": DING, "secret": "SECabc"} | body
    async with rest_client(settings) as client:
        response = await client.post(
            "/api/notify/channels", json=payload, headers=world.auth("op_a")
        )
    assert response.status_code == 422
    assert expected in response.json()["detail"]


async def test_subscriptions_are_scoped_to_the_operators_company(
    settings: Settings, world: World
) -> None:
    async with rest_client(settings) as client:
        channel = await _channel(client, world, "op_a")
        base = {"channel_id": channel["id"], "min_level": 2, "alarm_types": ["overspeed"]}
        created = await client.post(
            "/api/notify/subscriptions",
            json=base | {"quiet_start_local": "22:00", "quiet_end_local": "7:00"},
            headers=world.auth("op_a"),
        )
        assert created.status_code == 201, created.text
        sub = created.json()
        assert sub["company_id"] == world.company_a  # forced to the operator's company
        assert (sub["quiet_start_local"], sub["quiet_end_local"]) == ("22:00", "07:00")
        foreign_company = await client.post(
            "/api/notify/subscriptions",
            json=base | {"company_id": world.company_b},
            headers=world.auth("op_a"),
        )
        assert foreign_company.status_code == 403
        foreign_vehicle = await client.post(
            "/api/notify/subscriptions",
            json=base | {"vehicle_ids": [world.vehicles_b[0]]},
            headers=world.auth("op_a"),
        )
        assert foreign_vehicle.status_code == 422
        assert "vehicle_ids: expected vehicles of company" in foreign_vehicle.text
        # op_b cannot attach a rule to op_a's channel, nor see op_a's rules
        stolen = await client.post(
            "/api/notify/subscriptions", json=base, headers=world.auth("op_b")
        )
        assert stolen.status_code == 404
        listed = await client.get("/api/notify/subscriptions", headers=world.auth("op_b"))
        assert listed.json() == []
        gone = await client.delete(
            f"/api/notify/subscriptions/{sub['id']}", headers=world.auth("op_b")
        )
        assert gone.status_code == 404
        mine = await client.delete(
            f"/api/notify/subscriptions/{sub['id']}", headers=world.auth("op_a")
        )
        assert mine.status_code == 204


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"alarm_types": ["speeding"]}, "expected alarm types among overspeed"),
        ({"min_level": 5}, "less than or equal to 4"),
        ({"min_level": 0}, "greater than or equal to 1"),
        ({"events": []}, "at least 1 item"),
        ({"events": ["updated"]}, "'opened' or 'closed'"),
        ({"quiet_start_local": "25:00", "quiet_end_local": "07:00"}, "within 00:00-23:59"),
        ({"quiet_start_local": "22:00"}, "expected both or neither"),
    ],
)
async def test_bad_subscriptions_are_422(
    settings: Settings, world: World, body: dict[str, Any], expected: str
) -> None:
    async with rest_client(settings) as client:
        channel = await _channel(client, world, "op_a")
        response = await client.post(
            "/api/notify/subscriptions",
            json={"channel_id": channel["id"]} | body,
            headers=world.auth("op_a"),
        )
    assert response.status_code == 422
    assert expected in response.text


async def test_the_bureau_manages_everyones_and_company_wide_rules(
    settings: Settings, world: World, pool: asyncpg.Pool
) -> None:
    op_a = await pool.fetchval("SELECT id FROM users WHERE username = 'op_a'")
    async with rest_client(settings) as client:
        for_op = await _channel(client, world, "bureau", user_id=op_a)
        assert (for_op["user_id"], for_op["company_id"]) == (op_a, world.company_a)
        wide = await _channel(client, world, "bureau", company_wide=True)
        assert wide["user_id"] is None
        rule = await client.post(
            "/api/notify/subscriptions",
            json={"channel_id": wide["id"], "company_id": world.company_b, "min_level": 1},
            headers=world.auth("bureau"),
        )
        assert rule.status_code == 201 and rule.json()["company_id"] == world.company_b
        # operators may not create for others or company-wide
        refused = await client.post(
            "/api/notify/channels",
            json={"name": "n", "kind": "dingtalk", "config": DING, "secret": "s",
                  "company_wide": True},
            headers=world.auth("op_a"),
        )  # fmt: skip
        assert refused.status_code == 403
        # op_a sees the channel the bureau made for them, not the company-wide one
        mine = (await client.get("/api/notify/channels", headers=world.auth("op_a"))).json()
        assert [c["id"] for c in mine] == [for_op["id"]]
        log = await client.get("/api/notify/deliveries", headers=world.auth("bureau"))
        assert log.status_code == 200 and log.json() == []
        theirs = await client.get(
            f"/api/notify/deliveries?channel_id={wide['id']}", headers=world.auth("op_a")
        )
        assert theirs.status_code == 404


def _allowing(settings: Settings, networks: list[str]) -> Settings:
    notify = settings.notify.model_copy(update={"allowed_private_targets": networks})
    return settings.model_copy(update={"notify": notify})


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:8765/api/live", "loopback"),
        ("http://[::1]:5432/", "loopback"),
        ("http://[::ffff:127.0.0.1]:1883/", "loopback"),
        ("http://10.0.0.5/hook", "private"),
        ("https://192.168.1.1/", "private"),
        ("http://[fd00::1]/", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://0.0.0.0:5432/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://100.64.0.1/", "not globally reachable"),
    ],
)
async def test_an_operator_cannot_point_a_channel_into_the_internal_network(
    settings: Settings, world: World, url: str, why: str
) -> None:
    """Server-side request forgery: by default an internal IP target is a 422 naming the field
    and why, at create and at update."""
    async with rest_client(settings) as client:
        created = await client.post(
            "/api/notify/channels",
            json={"name": "n", "kind": "webhook", "config": {"url": url}, "secret": "s"},
            headers=world.auth("op_a"),
        )
        assert created.status_code == 422, created.text
        detail = created.json()["detail"]
        assert detail.startswith("config.url: ") and f"a {why} address" in detail
        assert "GPS_MONITOR_NOTIFY_ALLOWED_PRIVATE_TARGETS" in detail
        channel = await _channel(client, world, "op_a")
        updated = await client.put(
            f"/api/notify/channels/{channel['id']}",
            json={"config": {"url": url}},
            headers=world.auth("op_a"),
        )
        assert updated.status_code == 422 and f"a {why} address" in updated.json()["detail"]


async def test_allowed_private_targets_let_a_deployment_reach_its_own_network(
    settings: Settings, world: World, pool: asyncpg.Pool
) -> None:
    allowed = _allowing(settings, ["127.0.0.0/8", "10.1.2.0/24"])
    async with rest_client(allowed) as client:
        for url in ("http://127.0.0.1:8765/hook", "http://10.1.2.3/hook"):
            response = await client.post(
                "/api/notify/channels",
                json={"name": "n", "kind": "webhook", "config": {"url": url}, "secret": "s"},
                headers=world.auth("op_a"),
            )
            assert response.status_code == 201, response.text
        outside = await client.post(
            "/api/notify/channels",
            json={"name": "n", "kind": "webhook", "config": {"url": "http://10.1.3.1/"},
                  "secret": "s"},
            headers=world.auth("op_a"),
        )  # fmt: skip
        assert outside.status_code == 422 and "a private address" in outside.json()["detail"]
    assert await pool.fetchval("SELECT count(*) FROM notify_channels") == 2
