"""Websocket /ws/live against the real broker and database: snapshot, scoped updates,
coalescing, alarms, narrowing, heartbeats, and a slow client that never slows the others."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from web_helpers import (
    make_world,
    position_dict,
    publish_alarm,
    publish_positions,
    served_app,
    store_alarm,
    store_position,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from gps_monitor.config import Settings
from gps_monitor.models import Alarm
from web.hub import LiveClient, LiveHub


def fast_settings(settings: Settings, **web: Any) -> Settings:
    return settings.model_copy(update={"web": settings.web.model_copy(update=web)})


async def ws_connect(base: str, token: str | None) -> ClientConnection:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return await connect(f"ws://{base}/ws/live", additional_headers=headers)


async def receive_until(ws: ClientConnection, seconds: float, stop=None) -> list[dict[str, Any]]:
    """Messages received within ``seconds`` (or until ``stop(messages)`` is true)."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            out.append(json.loads(await asyncio.wait_for(ws.recv(), remaining)))
        except TimeoutError:
            break
        if stop is not None and stop(out):
            break
    return out


def positions_of(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for m in messages if m["type"] == "positions" for p in m["positions"]]


async def test_snapshot_is_scoped_and_login_is_required(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    w = await make_world(pool, settings)
    now = datetime.now(UTC)
    for vid in w.vehicles_a + w.vehicles_b:
        await store_position(pool, vid, now, 29.56, 106.55)
    async with served_app(settings) as (base, _):
        ws = await ws_connect(base, None)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        ws = await ws_connect(base, "forged-token")
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        async with await ws_connect(base, w.tokens["op_a"]) as ws:
            snap = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert snap["type"] == "snapshot"
            assert sorted(v["vehicle_id"] for v in snap["vehicles"]) == sorted(w.vehicles_a)
        async with await ws_connect(base, w.tokens["bureau"]) as ws:
            snap = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert len(snap["vehicles"]) == 4


async def test_positions_reach_only_the_owning_company_coalesced_and_never_backwards(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    w = await make_world(pool, settings)
    a0, b0 = w.vehicles_a[0], w.vehicles_b[0]
    t0 = datetime.now(UTC).replace(microsecond=0)
    async with served_app(settings) as (base, _):
        op_a = await ws_connect(base, w.tokens["op_a"])
        op_b = await ws_connect(base, w.tokens["op_b"])
        bureau = await ws_connect(base, w.tokens["bureau"])
        for ws in (op_a, op_b, bureau):
            assert json.loads(await ws.recv())["type"] == "snapshot"
        # op_b tries to widen its feed to company A, by company, by vehicles, by bbox
        await op_b.send(json.dumps({"type": "subscribe", "company_id": w.company_a}))
        err = await receive_until(op_b, 3, lambda m: any(x["type"] == "error" for x in m))
        assert any(x["type"] == "error" and "company_id" in x["detail"] for x in err)
        await op_b.send(
            json.dumps({"type": "subscribe", "vehicle_ids": [a0, b0], "bbox": [-180, -90, 180, 90]})
        )
        snap = await receive_until(op_b, 3, lambda m: any(x["type"] == "snapshot" for x in m))
        assert any(x["type"] == "snapshot" for x in snap)

        # 10 fixes of A0 and of B0, one second of fix time apart, published in a burst
        batches = []
        for i in range(10):
            fix = t0 + timedelta(seconds=i)
            batches.append(
                [position_dict(a0, w.company_a, w.terminals[a0], fix, 29.5 + i * 1e-3, 106.5)]
            )
            batches.append(
                [position_dict(b0, w.company_b, w.terminals[b0], fix, 30.5 + i * 1e-3, 107.5)]
            )
        # then things that must never move the marker: an older fix, a late one, a drift one
        old = t0 + timedelta(seconds=3)
        batches.append([position_dict(a0, w.company_a, w.terminals[a0], old, 10.0, 100.0)])
        later = t0 + timedelta(seconds=20)
        batches.append(
            [position_dict(a0, w.company_a, w.terminals[a0], later, 11.0, 101.0, late=True)]
        )
        batches.append(
            [position_dict(a0, w.company_a, w.terminals[a0], later, 12.0, 102.0, quality="drift")]
        )
        await publish_positions(settings, batches)

        got_a = positions_of(await receive_until(op_a, 3))
        got_b = positions_of(await receive_until(op_b, 0.5))
        got_bureau = positions_of(await receive_until(bureau, 0.5))
        # isolation: each operator only its own company, whatever it subscribed to
        assert {p["vehicle_id"] for p in got_a} == {a0}
        assert {p["vehicle_id"] for p in got_b} == {b0}
        assert {p["vehicle_id"] for p in got_bureau} == {a0, b0}
        # coalesced: a burst of 10 gives at most 2 (first immediately, the rest merged), ending
        # with the newest fix; nothing older, late or drift ever reached the client
        assert 1 <= len(got_a) <= 2
        assert got_a[-1]["fix_time"] == (t0 + timedelta(seconds=9)).isoformat()
        assert got_a[-1]["latitude"] == pytest.approx(29.509)
        assert all(p["latitude"] < 10.5 or p["latitude"] > 29 for p in got_a)
        assert [p["fix_time"] for p in got_a] == sorted(p["fix_time"] for p in got_a)
        for ws in (op_a, op_b, bureau):
            await ws.close()


async def test_alarms_open_and_close_reach_the_right_clients_with_ids(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    w = await make_world(pool, settings)
    a0 = w.vehicles_a[0]
    started = datetime.now(UTC).replace(microsecond=0)
    alarm_id = await store_alarm(pool, a0, w.company_a, started_at=started)
    dedup_key = f"{a0}:overspeed:{started.isoformat()}"
    async with served_app(settings) as (base, _):
        op_a = await ws_connect(base, w.tokens["op_a"])
        op_b = await ws_connect(base, w.tokens["op_b"])
        for ws in (op_a, op_b):
            await ws.recv()
        opened = Alarm(
            alarm_type="overspeed",
            dedup_key=dedup_key,
            vehicle_id=a0,
            company_id=w.company_a,
            terminal_id=w.terminals[a0],
            started_at=started,
            details={"limit_kmh": 60, "max_speed_kmh": 92},
            level=1,
        )
        await publish_alarm(settings, opened)
        late = Alarm(
            alarm_type="overspeed",
            dedup_key="late-one",
            vehicle_id=a0,
            company_id=w.company_a,
            terminal_id=w.terminals[a0],
            started_at=started - timedelta(hours=2),
            late=True,
        )
        await publish_alarm(settings, late)
        closed = Alarm(
            alarm_type="overspeed",
            dedup_key=dedup_key,
            vehicle_id=a0,
            company_id=w.company_a,
            terminal_id=w.terminals[a0],
            started_at=started,
            ended_at=started + timedelta(seconds=40),
            event="closed",
        )
        await publish_alarm(settings, closed)
        got = [
            m
            for m in await receive_until(
                op_a, 15, lambda m: sum(x["type"] == "alarm" for x in m) >= 3
            )
            if m["type"] == "alarm"
        ]
        assert [(m["alarm"]["event"], m["live"]) for m in got] == [
            ("opened", True),
            ("opened", False),
            ("closed", True),
        ]
        assert got[0]["alarm"]["id"] == alarm_id  # looked up by dedup_key
        assert got[0]["alarm"]["details"]["max_speed_kmh"] == 92
        # the level as published, and the names the pop-up card shows
        assert got[0]["alarm"]["level"] == 1
        assert got[0]["alarm"]["plate_number"] == "渝A10000"
        assert got[0]["alarm"]["company_name"] == "甲运输公司"
        assert not [m for m in await receive_until(op_b, 1) if m["type"] == "alarm"]

        # a user acknowledging it is announced to the company's live clients too
        async with httpx.AsyncClient(base_url=f"http://{base}") as http:
            r = await http.post(f"/api/alarms/{alarm_id}/acknowledge", headers=w.auth("op_a"))
            assert r.status_code == 200
        status = [
            m
            for m in await receive_until(
                op_a, 15, lambda m: any(x["type"] == "alarm_status" for x in m)
            )
            if m["type"] == "alarm_status"
        ]
        assert status and status[0]["alarm"]["status"] == "acknowledged"
        assert status[0]["alarm"]["level"] == 3  # the stored row's level
        assert status[0]["alarm"]["acknowledged_at"] is not None
        assert not [m for m in await receive_until(op_b, 1) if m["type"] == "alarm_status"]
        await op_a.close()
        await op_b.close()


async def test_narrowing_by_vehicles_and_bbox_and_heartbeats(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    settings = fast_settings(settings, heartbeat_interval_s=0.5, coalesce_interval_s=0.2)
    w = await make_world(pool, settings)
    a0, a1 = w.vehicles_a
    now = datetime.now(UTC).replace(microsecond=0)
    await store_position(pool, a0, now, 29.50, 106.50)
    await store_position(pool, a1, now, 31.00, 108.00)
    async with (
        served_app(settings) as (base, _),
        await ws_connect(base, w.tokens["bureau"]) as ws,
    ):
        await ws.recv()
        await ws.send(json.dumps({"type": "subscribe", "bbox": [106.0, 29.0, 107.0, 30.0]}))
        snap = next(
            m
            for m in await receive_until(ws, 3, lambda m: any(x["type"] == "snapshot" for x in m))
            if m["type"] == "snapshot"
        )
        assert [v["vehicle_id"] for v in snap["vehicles"]] == [a0]
        await publish_positions(
            settings,
            [
                [
                    position_dict(
                        a0,
                        w.company_a,
                        w.terminals[a0],
                        now + timedelta(seconds=5),
                        29.6,
                        106.6,
                    )
                ],
                [
                    position_dict(
                        a1,
                        w.company_a,
                        w.terminals[a1],
                        now + timedelta(seconds=5),
                        31.1,
                        108.1,
                    )
                ],
                # a0 leaves the box: not delivered
                [
                    position_dict(
                        a0,
                        w.company_a,
                        w.terminals[a0],
                        now + timedelta(seconds=9),
                        35.0,
                        110.0,
                    )
                ],
            ],
        )
        messages = await receive_until(ws, 2)
        got = positions_of(messages)
        assert [(p["vehicle_id"], p["latitude"]) for p in got] == [(a0, 29.6)]
        assert any(m["type"] == "heartbeat" for m in messages)
        await ws.send(json.dumps({"type": "subscribe", "vehicle_ids": [a1]}))
        snap = next(
            m
            for m in await receive_until(ws, 3, lambda m: any(x["type"] == "snapshot" for x in m))
            if m["type"] == "snapshot"
        )
        assert [v["vehicle_id"] for v in snap["vehicles"]] == [a1]
        await ws.send("not json")
        err = await receive_until(ws, 2, lambda m: any(x["type"] == "error" for x in m))
        assert any(x["type"] == "error" for x in err)
        # nested deeper than json.loads can go (RecursionError ended the socket): an error too
        await ws.send('{"type": "subscribe", "vehicle_ids": ' + "[" * 5000 + "]" * 5000 + "}")
        err = await receive_until(ws, 2, lambda m: any(x["type"] == "error" for x in m))
        assert any(x["type"] == "error" and "nested" in x["detail"] for x in err), err
        # ids beyond bigint are refused like any malformed filter, the socket stays open
        for message in ({"vehicle_ids": [10**20]}, {"company_id": 10**20}):
            await ws.send(json.dumps({"type": "subscribe", **message}))
            err = await receive_until(ws, 2, lambda m: any(x["type"] == "error" for x in m))
            (name,) = message
            assert any(x["type"] == "error" and name in x["detail"] for x in err), err


async def test_slow_client_loses_intermediate_positions_never_alarms_never_slows_others(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """Through the hub with the real database: one client whose every send takes 300 ms, one
    that sends at once; 50 vehicles x 20 fixes and 5 alarms pour in."""
    settings = fast_settings(settings, coalesce_interval_s=0.1, heartbeat_interval_s=60)
    w = await make_world(pool, settings)
    hub = LiveHub(settings, pool)
    from gps_monitor.db.users import user_by_name

    bureau = await user_by_name(pool, "bureau")
    fast_received: list[tuple[float, dict[str, Any]]] = []
    slow_received: list[dict[str, Any]] = []
    slow_times: list[float] = []

    async def fast_send(text: str) -> None:
        fast_received.append((time.monotonic(), json.loads(text)))

    async def slow_send(text: str) -> None:
        await asyncio.sleep(0.3)
        slow_received.append(json.loads(text))
        slow_times.append(time.monotonic())

    fast = LiveClient(bureau, fast_send, settings)
    slow = LiveClient(bureau, slow_send, settings)
    hub.clients.update({fast, slow})
    tasks = [asyncio.create_task(c.run_sender()) for c in (fast, slow)]
    t0 = datetime(2026, 1, 26, tzinfo=UTC)
    for i in range(20):
        batch = [
            position_dict(
                1000 + v, w.company_a, f"t{v}", t0 + timedelta(seconds=i), 29.0 + i, 106.0
            )
            for v in range(50)
        ]
        hub.handle_positions(batch)
        if i % 4 == 0:
            await hub.handle_alarm(
                Alarm(
                    alarm_type="sos",
                    dedup_key=f"k{i}",
                    vehicle_id=1000,
                    company_id=w.company_a,
                    terminal_id="t0",
                    started_at=t0,
                ).to_dict()
            )
        await asyncio.sleep(0.02)
    for _ in range(100):  # until both have sent everything queued (the slow one takes a while)
        await asyncio.sleep(0.4)
        if not (fast.pending or fast.alarms or slow.pending or slow.alarms):
            break
    await asyncio.sleep(0.4)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    def newest(messages: list[dict[str, Any]]) -> dict[int, float]:
        out: dict[int, float] = {}
        for p in positions_of(messages):
            out[p["vehicle_id"]] = p["latitude"]
        return out

    fast_msgs = [m for _, m in fast_received]
    # both end with every vehicle's newest fix; the slow one got far fewer position messages
    assert newest(fast_msgs) == {1000 + v: 48.0 for v in range(50)}
    assert newest(slow_received) == {1000 + v: 48.0 for v in range(50)}
    assert len(positions_of(slow_received)) < len(positions_of(fast_msgs)) <= 20 * 50
    assert slow.dropped_positions > 0
    # every alarm reached both, in order
    for msgs in (fast_msgs, slow_received):
        assert [m["alarm"]["dedup_key"] for m in msgs if m["type"] == "alarm"] == [
            "k0",
            "k4",
            "k8",
            "k12",
            "k16",
        ]
    # the fast client was fully served while the slow one was still working through its
    # backlog: when the fast one got its last positions, the slow one had not had half of its
    fast_done = max(t for t, m in fast_received if m["type"] == "positions")
    assert sum(t <= fast_done for t in slow_times) < len(slow_times) / 2


async def test_cookie_login_from_another_origin_is_refused(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    w = await make_world(pool, settings)
    async with served_app(settings) as (base, _):
        cookie = {"Cookie": f"gpsm_token={w.tokens['op_a']}"}
        async with connect(
            f"ws://{base}/ws/live", additional_headers=cookie | {"Origin": f"http://{base}"}
        ) as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "snapshot"
        ws = await connect(
            f"ws://{base}/ws/live", additional_headers=cookie | {"Origin": "http://evil.example"}
        )
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


async def test_two_web_processes_serve_the_same_feed_and_share_alarm_handling(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """Two app instances (each its own MQTT subscription, as two web processes would be): a
    position reaches clients of both; an acknowledgement made through one reaches the other's."""
    w = await make_world(pool, settings)
    a0 = w.vehicles_a[0]
    started = datetime.now(UTC).replace(microsecond=0)
    alarm_id = await store_alarm(pool, a0, w.company_a, started_at=started)
    async with served_app(settings) as (base1, _), served_app(settings) as (base2, _):
        ws1 = await ws_connect(base1, w.tokens["op_a"])
        ws2 = await ws_connect(base2, w.tokens["bureau"])
        for ws in (ws1, ws2):
            await ws.recv()
        fix = datetime.now(UTC).replace(microsecond=0)
        await publish_positions(
            settings, [[position_dict(a0, w.company_a, w.terminals[a0], fix, 29.7, 106.7)]]
        )
        for ws in (ws1, ws2):
            got = positions_of(await receive_until(ws, 15, lambda m: bool(positions_of(m))))
            assert [(p["vehicle_id"], p["latitude"]) for p in got] == [(a0, 29.7)]
        async with httpx.AsyncClient(base_url=f"http://{base1}") as http:
            r = await http.post(f"/api/alarms/{alarm_id}/acknowledge", headers=w.auth("op_a"))
            assert r.status_code == 200
        status = [
            m
            for m in await receive_until(
                ws2, 15, lambda m: any(x["type"] == "alarm_status" for x in m)
            )
            if m["type"] == "alarm_status"
        ]
        assert status and status[0]["alarm"]["id"] == alarm_id
        assert status[0]["alarm"]["status"] == "acknowledged"
        await ws1.close()
        await ws2.close()


async def test_client_too_far_behind_on_alarms_is_disconnected_not_thinned(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """With room for 3 queued alarms, a client stuck in a send while 6 arrive is closed
    (ClientOverflow) instead of silently losing one; what it did get came in order."""
    from web.hub import ClientOverflow

    settings = fast_settings(settings, client_queue_size=3, heartbeat_interval_s=60)
    w = await make_world(pool, settings)
    from gps_monitor.db.users import user_by_name

    bureau = await user_by_name(pool, "bureau")
    sent: list[str] = []
    release = asyncio.Event()

    async def stuck_send(text: str) -> None:
        await release.wait()
        sent.append(json.loads(text)["alarm"]["dedup_key"])

    hub = LiveHub(settings, pool)
    client = LiveClient(bureau, stuck_send, settings)
    hub.clients.add(client)
    sender = asyncio.create_task(client.run_sender())
    t0 = datetime(2026, 1, 26, tzinfo=UTC)
    for i in range(6):
        await hub.handle_alarm(
            Alarm(alarm_type="sos", dedup_key=f"k{i}", vehicle_id=w.vehicles_a[0],
                  company_id=w.company_a, terminal_id="t", started_at=t0).to_dict()
        )  # fmt: skip
        await asyncio.sleep(0.01)
    release.set()
    with pytest.raises(ClientOverflow):
        await asyncio.wait_for(sender, 5)
    assert sent == [f"k{i}" for i in range(len(sent))] and len(sent) < 6
