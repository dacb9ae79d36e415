"""The JT/T 809 duty exchange end to end: the superior-platform simulator over real TCP, the
``jt809`` service, the REST API, the command dispatcher, real PostgreSQL and Mosquitto.

查岗 -> duty list -> answer -> 0x1301 with the info id; 督办 -> supervision order -> answer ->
0x1401; 0x9503 -> downlink command -> terminal answer -> 0x1503; superior warnings -> alarms;
alarm handled -> 0x1412; 0x1201 at login; slave-link fallback; 2019 0x1402 field by field;
unsupported and malformed requests answered or counted with the link kept."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import aiomqtt
import asyncpg
from broker_helpers import free_port
from ingest_helpers import drop_session, publish_raw, running_worker, wait_for
from test_jt809_service import TERMINAL, fixes, jt809_settings, running_service
from web_helpers import make_world, rest_client

from gps_monitor import topics
from gps_monitor.config import Jt809Settings, Settings
from gps_monitor.models import Alarm
from ingest.commands import CommandDispatcher
from jt809 import exchange as x
from jt809 import messages as m
from jt809.links import build_codec
from jt809.service import Jt809Service
from jt809.sim import SuperiorSimulator


@contextlib.asynccontextmanager
async def superior_and_service(
    settings: Settings, pool: asyncpg.Pool, version: int = 2011, **fields: object
) -> AsyncIterator[tuple[SuperiorSimulator, Jt809Service, Settings]]:
    sim = SuperiorSimulator(
        build_codec(Jt809Settings(access_code=20180920, version=version)),  # type: ignore[arg-type]
        user_id=20180920,
        password="pw809",
    )
    sim.heartbeat_interval_s = 0.5
    port = await sim.start()
    settings = jt809_settings(settings, port, version=version, platform_id="50000000001", **fields)
    try:
        async with running_service(settings, pool) as service:
            await wait_for(lambda: _value(service.main.status), lambda s: s == "up", 30)
            await wait_for(lambda: _value(len(sim.slave_links)), lambda n: n == 1, 30)
            await wait_for(lambda: _value(service.slave.status), lambda s: s == "up", 30)
            yield sim, service, settings
    finally:
        await sim.stop()
        await drop_session(settings, settings.jt809.client_id)


async def test_query_is_listed_with_a_countdown_answered_and_0x1301_quotes_the_info_id(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    world = await make_world(pool, settings)
    async with superior_and_service(settings, pool) as (sim, _service, settings):
        platform_info = await sim.send_query("请报告值班人员姓名")
        await sim.send_query(
            "请甲运输公司报告在岗情况", object_type=2, object_id="甲运输公司", info_id=4242
        )
        async with rest_client(settings) as client:
            listed = await wait_for(
                lambda: _json(client, "/api/jt809/queries", world.auth("bureau")),
                lambda rows: len(rows) == 2,
            )
            assert {q["info_id"] for q in listed} == {platform_info, 4242}
            assert all(q["state"] == "open" and 590 < q["seconds_left"] <= 600 for q in listed)
            # the named company's operators see only their question; another company none
            mine = await _json(client, "/api/jt809/queries", world.auth("op_a"))
            assert [q["info_id"] for q in mine] == [4242]
            assert mine[0]["company_id"] == world.company_a
            assert await _json(client, "/api/jt809/queries", world.auth("op_b")) == []
            platform_q = next(q for q in listed if q["info_id"] == platform_info)
            denied = await client.post(
                f"/api/jt809/queries/{platform_q['id']}/answer",
                json={"answer": "张三"},
                headers=world.auth("op_a"),
            )
            assert denied.status_code == 404
            answered = await client.post(
                f"/api/jt809/queries/{platform_q['id']}/answer",
                json={"answer": "值班员张三在岗"},
                headers=world.auth("bureau"),
            )
            assert answered.status_code == 200, answered.text
            assert answered.json()["state"] == "answered"
            again = await client.post(
                f"/api/jt809/queries/{platform_q['id']}/answer",
                json={"answer": "x"},
                headers=world.auth("bureau"),
            )
            assert again.status_code == 409
            company_q = mine[0]
            ok = await client.post(
                f"/api/jt809/queries/{company_q['id']}/answer",
                json={"answer": "甲公司值班员李四在岗"},
                headers=world.auth("op_a"),
            )
            assert ok.status_code == 200, ok.text
            await wait_for(lambda: _value(len(sim.record.query_answers)), lambda n: n >= 2, 30)
            status = await _json(client, "/api/jt809/status", world.auth("bureau"))
    answers = {a.info_id: a for a in sim.record.query_answers}
    assert answers[platform_info].answer == "值班员张三在岗"
    assert answers[platform_info].object_type == 1
    assert (answers[4242].object_id, answers[4242].answer) == ("甲运输公司", "甲公司值班员李四在岗")
    assert status["queries_today"] == {"received": 2, "in_time": 2, "unanswered": 0}
    assert {link["link"]: link["status"] for link in status["links"]} == {
        "main": "up",
        "slave": "up",
    }
    audited = "SELECT count(*) FROM audit_log WHERE action = 'jt809.query.answer'"
    assert await pool.fetchval(audited) == 2


async def test_2019_query_answer_quotes_the_request_serial_and_unanswered_ones_count(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    world = await make_world(pool, settings)
    async with superior_and_service(settings, pool, version=2019) as (sim, _service, settings):
        await sim.send_query("请回复", answer_time_min=5)
        await sim.send_query("第二次查岗")
        async with rest_client(settings) as client:
            rows = await wait_for(
                lambda: _json(client, "/api/jt809/queries", world.auth("bureau")),
                lambda rows: len(rows) == 2,
            )
            five_min = next(q for q in rows if q["question"] == "请回复")
            assert 290 < five_min["seconds_left"] <= 300  # the 2019 answer time
            await client.post(
                f"/api/jt809/queries/{five_min['id']}/answer",
                json={"answer": "在岗"},
                headers=world.auth("bureau"),
            )
            await wait_for(lambda: _value(len(sim.record.query_answers)), lambda n: n >= 1, 30)
            status = await _json(client, "/api/jt809/status", world.auth("bureau"))
    answer = sim.record.query_answers[0]
    sent_serial = dict(sim.sent_queries)[five_min["info_id"]]
    assert (answer.source_data_type, answer.source_msg_sn) == (x.MSG_QUERY, sent_serial)
    assert status["queries_today"] == {"received": 2, "in_time": 1, "unanswered": 1}


async def test_supervision_becomes_an_order_of_the_company_and_its_answer_goes_back_as_0x1401(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    world = await make_world(pool, settings)
    async with superior_and_service(settings, pool) as (sim, _service, settings):
        sid = await sim.send_supervision("渝A10000", 2, supervision_id=0x123FFAA1)
        async with rest_client(settings) as client:
            orders = await wait_for(
                lambda: _json(client, "/api/supervisions", world.auth("op_a")),
                lambda rows: len(rows) == 1,
            )
            order = orders[0]
            assert (order["source"], order["superior_info_id"]) == ("superior", sid)
            assert order["company_id"] == world.company_a and order["plate_number"] == "渝A10000"
            assert order["issued_by"] is None and order["state"] == "open"
            assert "省平台值班员" in order["note"]
            assert await _json(client, "/api/supervisions", world.auth("op_b")) == []
            answered = await client.post(
                f"/api/supervisions/{order['id']}/answer",
                json={"answer": "已电话提醒驾驶员减速"},
                headers=world.auth("op_a"),
            )
            assert answered.status_code == 200, answered.text
            await wait_for(
                lambda: _value(len(sim.record.supervision_answers)), lambda n: n >= 1, 10
            )
    assert sim.record.supervision_answers == [(0x123FFAA1, x.SUPERVISION_DONE)]


async def test_vehicle_text_is_relayed_as_a_command_and_the_terminal_answer_goes_up_as_0x1503(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    world = await make_world(pool, settings)
    dispatcher = CommandDispatcher(settings)
    task = asyncio.create_task(dispatcher.run())
    try:
        await asyncio.wait_for(dispatcher.ready.wait(), 10)
        async with superior_and_service(settings, pool) as (sim, _service, settings):
            await sim.send_vehicle_text("渝A10000", 2, "请立即停车休息", msg_sequence=333)
            await sim.send_vehicle_text("京X00000", 1, "无此车", msg_sequence=334)
            command = await wait_for(
                lambda: pool.fetchrow("SELECT command_id::text, terminal_id, body FROM commands"),
                lambda row: row is not None,
            )
            assert command["terminal_id"] == world.terminals[world.vehicles_a[0]]
            assert command["body"]["text"] == "请立即停车休息"
            prefix = settings.mqtt.topic_prefix
            async with aiomqtt.Client("127.0.0.1", settings.mqtt.port) as mq:
                await mq.publish(
                    topics.cmd_result_topic(command["terminal_id"], prefix),
                    json.dumps({"command_id": command["command_id"], "result": 0}),
                    qos=1,
                )
            await wait_for(lambda: _value(len(sim.record.text_answers)), lambda n: n >= 2, 15)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert sorted(sim.record.text_answers) == [
        ("京X00000", 334, x.TEXT_FAILED),  # no such vehicle: answered at once
        ("渝A10000", 333, x.TEXT_SENT),
    ]


async def test_superior_warnings_become_alarms_and_a_handled_alarm_goes_up_as_0x1412(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    world = await make_world(pool, settings)
    async with superior_and_service(settings, pool) as (sim, _service, settings):
        await sim.send_warning("渝A10000", 2, x.MSG_WARNING, 0x000A, "劫警")
        await sim.send_warning("渝A10000", 2, x.MSG_EXCHANGE_ALARM, 0x0002, "疲劳驾驶报警")
        async with rest_client(settings) as client:
            alarms = await wait_for(
                lambda: _json(client, "/api/alarms", world.auth("op_a")),
                lambda rows: len(rows) == 2,
            )
            types = {a["alarm_type"]: a for a in alarms}
            assert set(types) == {"superior_warning", "superior_alarm"}
            assert types["superior_warning"]["details"]["content"] == "劫警"
            assert types["superior_alarm"]["details"]["warn_name"] == "疲劳驾驶报警"
            alarm_id = types["superior_alarm"]["id"]
            handled = await client.post(
                f"/api/alarms/{alarm_id}/handle",
                json={"method": "phone_call", "note": "已电话联系驾驶员"},
                headers=world.auth("op_a"),
            )
            assert handled.status_code == 200, handled.text
            await wait_for(lambda: _value(len(sim.record.alarm_results)), lambda n: n >= 1, 30)
    assert sim.record.alarm_results == [("渝A10000", alarm_id, x.ALARM_RESULT_DONE)]


async def test_registrations_go_up_at_login_as_0x1201(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    await make_world(pool, settings)
    async with superior_and_service(settings, pool) as (sim, _service, _settings):
        await wait_for(lambda: _value(len(sim.record.registrations)), lambda n: n >= 4, 30)
    plates = sorted(plate for plate, _ in sim.record.registrations)
    assert plates == ["渝A10000", "渝A10001", "渝B10000", "渝B10001"]
    reg = dict(sim.record.registrations)["渝A10000"]
    assert reg.platform_id == "50000000001" and reg.terminal_sim == "139A0000000"[-12:].lstrip("0")


async def test_a_vehicle_registered_or_changed_later_goes_up_as_0x1201(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    world = await make_world(pool, settings)
    async with superior_and_service(settings, pool) as (sim, _service, settings):
        await wait_for(lambda: _value(len(sim.record.registrations)), lambda n: n >= 4, 30)
        async with rest_client(settings) as client:
            created = await client.post(
                "/api/vehicles",
                json={"company_id": world.company_a, "plate_number": "渝A20000",
                      "vehicle_class": "coach", "terminal_id": "013900020000"},
                headers=world.auth("bureau"),
            )  # fmt: skip
            assert created.status_code == 201, created.text
            changed = await client.patch(
                f"/api/vehicles/{world.vehicles_b[0]}",
                json={"plate_number": "渝B19999"},
                headers=world.auth("bureau"),
            )
            assert changed.status_code == 200, changed.text
            await wait_for(lambda: _value(len(sim.record.registrations)), lambda n: n >= 6, 30)
    later = [plate for plate, _ in sim.record.registrations[4:]]
    assert sorted(later) == ["渝A20000", "渝B19999"]


async def test_upward_traffic_uses_the_slave_link_while_the_main_link_is_down(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    company = await pool.fetchval("INSERT INTO companies (name) VALUES ('809') RETURNING id")
    await pool.execute(
        "INSERT INTO vehicles (company_id, plate_number, plate_color, vehicle_class, terminal_id) "
        "VALUES ($1, '渝A80901', 1, 'coach', $2)",
        company,
        TERMINAL,
    )
    async with (
        superior_and_service(settings, pool, resend_after_cut_s=0) as (sim, service, settings),
        running_worker(settings),
    ):
        sim.stop_listening()
        await sim.drop_main_links()
        await wait_for(lambda: _value(service.main.status), lambda s: s != "up", 30)
        await publish_raw(settings, fixes(0, 6))
        await wait_for(lambda: _value(len(sim.record.positions)), lambda n: n >= 6, 20)
    assert sim.record.on_slave_link[m.MSG_VEHICLE_DYNAMIC] >= 6
    assert {p.msg_id for p in sim.record.positions} == {m.MSG_REALTIME_POSITION}
    assert await pool.fetchval("SELECT count(*) FROM jt809_outbox WHERE kind = 'position'") == 0


async def test_2019_alarm_reaches_the_superior_in_the_2019_layout_field_by_field(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    world = await make_world(pool, settings)
    vehicle_id = world.vehicles_a[0]
    started = datetime(2026, 1, 26, 1, 2, 3, tzinfo=UTC)
    alarm = Alarm(
        alarm_type="overspeed", dedup_key="k", vehicle_id=vehicle_id, company_id=world.company_a,
        terminal_id=world.terminals[vehicle_id], started_at=started, id=91,
    )  # fmt: skip
    async with superior_and_service(settings, pool, version=2019) as (sim, _service, settings):
        topic = f"alarms/v1/{world.company_a}/{vehicle_id}/overspeed"
        await publish_raw(settings, [(topic, json.dumps(alarm.to_dict()))])
        await wait_for(lambda: _value(len(sim.record.alarms_2019)), lambda n: n >= 1, 30)
    got = sim.record.alarms_2019[0]
    assert sim.record.alarms == []  # no 2011 body on a 2019 link
    assert got.source_platform_id == "50000000001"
    assert got.warn_type == m.WARN_OVERSPEED
    assert got.warn_time == got.start_time == got.end_time == started
    assert (got.plate_number, got.plate_color) == ("渝A10000", 2)
    assert (got.destination_platform_id, got.drv_line_id) == ("", 0)
    assert got.info_content == "overspeed #91"


async def test_unserved_and_unknown_requests_are_answered_or_counted_and_the_link_stays(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    await make_world(pool, settings)
    async with superior_and_service(settings, pool) as (sim, service, _settings):
        monitor = x.Envelope(0x9501, b"13800000000".ljust(20, b"\x00"), "渝A10000", 2)
        await sim.send_raw(0x9500, x.encode_envelope(0x9500, monitor, 2011))
        await sim.send_raw(0x9999, b"\x01\x02")  # unknown message id
        unknown_sub = x.Envelope(0x93FF, b"")
        await sim.send_raw(0x9300, x.encode_envelope(0x9300, unknown_sub, 2011))
        lying = x.encode_envelope(0x9300, x.Envelope(x.MSG_QUERY, b"\x01" * 30), 2011)
        await sim.send_raw(0x9300, lying[:-5])  # data_length says 30, 25 bytes follow
        await wait_for(lambda: _value(len(sim.record.other_answers)), lambda n: n >= 1, 30)
        await wait_for(lambda: _value(service.downward.counts["bad_requests"]), bool, 30)
        info_id = await sim.send_query("链路仍在？")
        rows = await wait_for(
            lambda: pool.fetch("SELECT info_id FROM jt809_platform_queries"), lambda r: len(r) == 1
        )
        counts = dict(service.downward.unsupported)
    assert sim.record.other_answers == [(0x1501, b"\x01")]  # 车辆单向监听: failure
    assert counts == {0x9501: 1, 0x9999: 1, 0x93FF: 1}
    assert rows[0]["info_id"] == info_id  # the slave link survived all of it
    assert service.main.status == "up"


async def _json(client: object, path: str, headers: dict[str, str]) -> object:
    response = await client.get(path, headers=headers)  # type: ignore[attr-defined]
    assert response.status_code == 200, response.text
    return response.json()


async def _value(value: object) -> object:
    return value


__all__ = ["free_port"]


async def test_kpi_report_has_query_response_rate_with_unanswered_and_main_link_connectivity(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    from datetime import date, timedelta

    from web.reports.kpi import compute_kpis

    day = date(2026, 3, 2)
    start = datetime(2026, 3, 1, 16, 0, tzinfo=UTC)  # 00:00 Beijing time
    for n, answered_after_s in enumerate((60, None, 900)):  # in time, unanswered, late
        await pool.execute(
            "INSERT INTO jt809_platform_queries (info_id, msg_sn, object_type, object_id, "
            "question, received_at, deadline, answer, answered_at) VALUES ($1, 1, 1, '', 'q', "
            "$2::timestamptz, $2::timestamptz + interval '10 minutes', $3, "
            "$2::timestamptz + $4::int * interval '1 second')",
            n, start + timedelta(hours=1), None if answered_after_s is None else "a",
            answered_after_s,
        )  # fmt: skip
    # the main link: up from the day start for 6 h, then 6 h more from noon (18 h down... 12 h)
    await pool.execute(
        "INSERT INTO jt809_link_sessions (up_at, down_at) VALUES ($1, $2), ($3, $4)",
        start, start + timedelta(hours=6), start + timedelta(hours=12),
        start + timedelta(hours=18),
    )  # fmt: skip
    # found by a walkthrough: one received just now, still inside its deadline, counted as
    # unanswered (平台查岗响应率 0 % right after start); it is not counted until it is decided
    now = datetime.now(UTC)
    await pool.execute(
        "INSERT INTO jt809_platform_queries (info_id, msg_sn, object_type, object_id, question, "
        "received_at, deadline) VALUES (9, 1, 1, '', 'q', $1::timestamptz, "
        "$1::timestamptz + interval '10 minutes')",
        now,
    )
    today = now.astimezone(ZoneInfo("Asia/Shanghai")).date()
    pending = (await compute_kpis(pool, today, today, settings.reports)).to_dict()["county"]
    assert pending["counts"]["platform_queries"] == 0
    assert pending["kpis"]["platform_query_rate"] is None
    report = (await compute_kpis(pool, day, day, settings.reports)).to_dict()
    county = report["county"]
    assert county["counts"]["platform_queries"] == 3
    assert county["counts"]["platform_queries_unanswered"] == 1
    assert county["kpis"]["platform_query_rate"] == 33.33  # 1 of 3 answered within the limit
    assert county["kpis"]["platform_connectivity"] == 50.0  # 12 h of 24 h
    assert report["labels"]["platform_connectivity"] == "平台连通率 %"
    assert county["days"][0]["kpis"]["platform_connectivity"] == 50.0


async def _handle(client: object, world: object, alarm_id: int) -> None:
    handled = await client.post(  # type: ignore[attr-defined]
        f"/api/alarms/{alarm_id}/handle",
        json={"method": "phone_call", "note": "已电话联系驾驶员"},
        headers=world.auth("op_a"),  # type: ignore[attr-defined]
    )
    assert handled.status_code == 200, handled.text


async def _stored_alarm(pool: asyncpg.Pool, world: object, vehicle_id: int, key: str) -> Alarm:
    started = datetime(2026, 1, 26, 1, 2, 3, tzinfo=UTC)
    company = world.company_a  # type: ignore[attr-defined]
    alarm_id = await pool.fetchval(
        "INSERT INTO alarms (vehicle_id, company_id, alarm_type, dedup_key, started_at) "
        "VALUES ($1, $2, 'overspeed', $3, $4) RETURNING id",
        vehicle_id, company, key, started,
    )  # fmt: skip
    return Alarm(
        alarm_type="overspeed", dedup_key=key, vehicle_id=vehicle_id, company_id=company,
        terminal_id=world.terminals[vehicle_id], started_at=started, id=alarm_id,  # type: ignore[attr-defined]
    )  # fmt: skip


async def test_2019_0x1412_quotes_the_serial_of_the_0x1402_that_reported_the_alarm(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """Review of issue 10: the 2019 0x1412 carried serial 0; it must name the 0x1402 frame
    (SOURCE_DATA_TYPE 0x1402, SOURCE_MSG_SN its serial), here after the login and the
    0x1201s moved the serial counter past 1."""
    world = await make_world(pool, settings)
    vehicle_id = world.vehicles_a[0]
    alarm = await _stored_alarm(pool, world, vehicle_id, "review-1412")
    async with superior_and_service(settings, pool, version=2019) as (sim, _service, settings):
        await wait_for(lambda: _value(len(sim.record.registrations)), lambda n: n >= 4, 30)
        topic = f"alarms/v1/{world.company_a}/{vehicle_id}/overspeed"
        reports = "SELECT count(*) FROM jt809_alarm_reports"

        async def reported() -> tuple[int, int]:
            return len(sim.record.alarm_serials), await pool.fetchval(reports)

        async def answered() -> tuple[int, int]:
            return len(sim.record.alarm_results), await pool.fetchval(reports)

        await publish_raw(settings, [(topic, json.dumps(alarm.to_dict()))])
        # the service sends the 0x1402, then records its serial: wait for the record too (a
        # 0x1412 taken before it would quote serial 0)
        await wait_for(reported, lambda got: got[0] >= 1 and got[1] == 1, 30)
        async with rest_client(settings) as client:
            await _handle(client, world, alarm.id or 0)
            # the service sends the 0x1412, then forgets the report: wait for both before it
            # stops (a stop between the two leaves the row)
            await wait_for(answered, lambda got: got[0] >= 1 and got[1] == 0, 30)
    (serial,) = sim.record.alarm_serials
    assert serial > 1
    assert sim.record.alarm_results == [("", serial, x.ALARM_RESULT_DONE)]  # 2019 0x1400: no plate
    assert sim.record.alarm_result_types == [m.MSG_ALARM_INFO]
    assert await pool.fetchval("SELECT count(*) FROM jt809_alarm_reports") == 0  # answered


async def test_2019_0x1412_of_a_buffered_alarm_follows_its_0x1402_and_quotes_it(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """An alarm raised and handled while the link was down: its 0x1402 waits in the outbox,
    so its 0x1412 (an answer, sent first otherwise) must wait and then quote that 0x1402."""
    world = await make_world(pool, settings)
    vehicle_id = world.vehicles_a[0]
    alarm = await _stored_alarm(pool, world, vehicle_id, "review-1412-buffered")
    assert alarm.id is not None
    settings = jt809_settings(settings, free_port(), version=2019, platform_id="50000000001")
    service = Jt809Service(settings, pool)
    await service.handle_alarm(alarm.to_dict())  # no link: into the outbox
    async with rest_client(settings) as client:
        await _handle(client, world, alarm.id)
    kinds = await pool.fetch("SELECT kind FROM jt809_outbox ORDER BY id")
    assert [r["kind"] for r in kinds] == ["alarm", "alarm_result"]
    async with superior_and_service(settings, pool, version=2019) as (sim, _service, _s):
        await wait_for(lambda: _value(len(sim.record.alarm_results)), lambda n: n >= 1, 15)
    (serial,) = sim.record.alarm_serials
    assert sim.record.alarm_results == [("", serial, x.ALARM_RESULT_DONE)]  # 2019 0x1400: no plate


async def test_2019_0x1412_of_a_superior_alarm_quotes_the_0x9403_frame(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    world = await make_world(pool, settings)
    async with superior_and_service(settings, pool, version=2019) as (sim, _service, settings):
        serial = await sim.send_warning("渝A10000", 2, x.MSG_EXCHANGE_ALARM, 0x0002, "疲劳驾驶")
        async with rest_client(settings) as client:
            alarms = await wait_for(
                lambda: _json(client, "/api/alarms", world.auth("op_a")),
                lambda rows: len(rows) == 1,
            )
            await _handle(client, world, alarms[0]["id"])
            await wait_for(lambda: _value(len(sim.record.alarm_results)), lambda n: n >= 1, 30)
    assert sim.record.alarm_results == [("", serial, x.ALARM_RESULT_DONE)]  # 2019 0x1400: no plate
    assert sim.record.alarm_result_types == [x.MSG_EXCHANGE_ALARM]
