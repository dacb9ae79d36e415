"""督办 (supervision orders) on the real PostgreSQL through the REST API: the bureau supervises an
alarm or a company with a deadline; only that company's operators see and answer it; overdue
orders stand out for both sides; the alarm list flags it; 督办处理率 in the KPI report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
from web_helpers import make_world, rest_client, store_alarm

from gps_monitor.config import Settings


def _iso(moment: datetime) -> str:
    return moment.isoformat()


async def test_bureau_supervises_an_alarm_and_only_its_company_answers(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    world = await make_world(pool, settings)
    alarm_id = await store_alarm(pool, world.vehicles_a[0], world.company_a)
    deadline = datetime.now(UTC) + timedelta(hours=2)
    async with rest_client(settings) as client:
        for who in ("op_a", "enforcement"):
            refused = await client.post(
                "/api/supervisions",
                json={"alarm_id": alarm_id, "deadline": _iso(deadline), "note": "限期整改"},
                headers=world.auth(who),
            )
            assert refused.status_code == 403
        issued = await client.post(
            "/api/supervisions",
            json={
                "alarm_id": alarm_id,
                "deadline": _iso(deadline),
                "note": "限期整改，报送处理结果",
            },
            headers=world.auth("bureau"),
        )
        assert issued.status_code == 201, issued.text
        order = issued.json()
        assert (order["company_id"], order["state"], order["plate_number"]) == (
            world.company_a, "open", "渝A10000",
        )  # fmt: skip
        # the operator of company A sees it on the alarm and in its list; B sees nothing
        alarms = (await client.get("/api/alarms", headers=world.auth("op_a"))).json()
        flagged = next(a for a in alarms if a["id"] == alarm_id)
        assert flagged["supervision_id"] == order["id"]
        assert datetime.fromisoformat(flagged["supervision_deadline"]) == deadline
        assert [
            o["id"]
            for o in (await client.get("/api/supervisions", headers=world.auth("op_a"))).json()
        ] == [order["id"]]
        assert (await client.get("/api/supervisions", headers=world.auth("op_b"))).json() == []
        foreign = await client.post(
            f"/api/supervisions/{order['id']}/answer",
            json={"answer": "x"},
            headers=world.auth("op_b"),
        )
        assert foreign.status_code == 404
        assert (
            await client.get(f"/api/supervisions/{order['id']}", headers=world.auth("op_b"))
        ).status_code == 404
        answered = await client.post(
            f"/api/supervisions/{order['id']}/answer",
            json={"answer": "已约谈驾驶员并停岗培训"},
            headers=world.auth("op_a"),
        )
        assert answered.status_code == 200
        assert answered.json()["state"] == "answered"
        assert answered.json()["answered_by"] == "op_a"
        again = await client.post(
            f"/api/supervisions/{order['id']}/answer",
            json={"answer": "再次答复"},
            headers=world.auth("op_a"),
        )
        assert again.status_code == 409
    trail = await pool.fetch(
        "SELECT username, action FROM audit_log WHERE object_type = 'supervision' ORDER BY id"
    )
    assert [(r["username"], r["action"]) for r in trail] == [
        ("bureau", "supervision.issue"),
        ("op_a", "supervision.answer"),
    ]


async def test_bad_supervision_requests(settings: Settings, pool: asyncpg.Pool) -> None:
    world = await make_world(pool, settings)
    soon = _iso(datetime.now(UTC) + timedelta(hours=1))
    async with rest_client(settings) as client:
        auth = world.auth("bureau")
        past = await client.post(
            "/api/supervisions",
            json={
                "company_id": world.company_a,
                "deadline": _iso(datetime.now(UTC) - timedelta(minutes=1)),
                "note": "x",
            },
            headers=auth,
        )
        assert past.status_code == 422 and "future" in past.text
        naive = await client.post(
            "/api/supervisions",
            json={"company_id": world.company_a, "deadline": "2030-01-01T00:00:00", "note": "x"},
            headers=auth,
        )
        assert naive.status_code == 422
        both = await client.post(
            "/api/supervisions",
            json={"company_id": world.company_a, "alarm_id": 1, "deadline": soon, "note": "x"},
            headers=auth,
        )
        assert both.status_code == 422
        unknown = await client.post(
            "/api/supervisions", json={"alarm_id": 999999, "deadline": soon, "note": "x"},
            headers=auth,
        )  # fmt: skip
        assert unknown.status_code == 404
        unknown_company = await client.post(
            "/api/supervisions", json={"company_id": 999999, "deadline": soon, "note": "x"},
            headers=auth,
        )  # fmt: skip
        assert unknown_company.status_code == 404
    assert await pool.fetchval("SELECT count(*) FROM supervisions") == 0


async def test_overdue_orders_stand_out_and_the_kpi_counts_answers_by_the_deadline(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    world = await make_world(pool, settings)
    async with rest_client(settings) as client:
        ids = []
        for company in (world.company_a, world.company_a, world.company_a, world.company_b):
            r = await client.post(
                "/api/supervisions",
                json={
                    "company_id": company,
                    "deadline": _iso(datetime.now(UTC) + timedelta(hours=1)),
                    "note": "整改",
                },
                headers=world.auth("bureau"),
            )
            ids.append(r.json()["id"])
        # A answers the first in time; the second's deadline passes, then A answers it late;
        # the third stays unanswered past its deadline; B answers its one in time
        await client.post(
            f"/api/supervisions/{ids[0]}/answer",
            json={"answer": "已整改"},
            headers=world.auth("op_a"),
        )
        await client.post(
            f"/api/supervisions/{ids[3]}/answer",
            json={"answer": "已整改"},
            headers=world.auth("op_b"),
        )
        await pool.execute(
            "UPDATE supervisions SET issued_at = issued_at - interval '3 hours', "
            "deadline = deadline - interval '3 hours' WHERE id = ANY($1::bigint[])",
            ids[1:3],
        )
        await client.post(
            f"/api/supervisions/{ids[1]}/answer",
            json={"answer": "晚了"},
            headers=world.auth("op_a"),
        )
        states = {
            o["id"]: o["state"]
            for o in (await client.get("/api/supervisions", headers=world.auth("bureau"))).json()
        }
        assert states == {
            ids[0]: "answered",
            ids[1]: "answered_late",
            ids[2]: "overdue",
            ids[3]: "answered",
        }
        overdue = (
            await client.get("/api/supervisions?state=overdue", headers=world.auth("op_a"))
        ).json()
        assert [o["id"] for o in overdue] == [ids[2]]
        # unanswered ones come first in the list
        listed = (await client.get("/api/supervisions", headers=world.auth("op_a"))).json()
        assert listed[0]["id"] == ids[2]
        today = datetime.now(UTC).astimezone().date()
        span = {
            "from": (today - timedelta(days=1)).isoformat(),
            "to": (today + timedelta(days=1)).isoformat(),
        }
        kpi = (
            await client.get("/api/reports/kpi", params=span, headers=world.auth("bureau"))
        ).json()
    assert kpi["county"]["kpis"]["supervision_rate"] == 50.0  # 2 of 4 answered by the deadline
    by_company = {c["id"]: c for c in kpi["companies"]}
    assert by_company[world.company_a]["kpis"]["supervision_rate"] == 33.33
    assert by_company[world.company_b]["kpis"]["supervision_rate"] == 100.0
    assert kpi["labels"]["supervision_rate"] == "督办处理率 %"
