"""The alarm list as a worklist (issue 9): unhandled first, then by level, then newest; filters
by type, level, status, company, plate and time window; counts per status and level; paging;
an operator sees and counts only its own company's alarms."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
from web_helpers import make_world, rest_client, store_alarm, store_position

from gps_monitor.config import Settings

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


async def _worklist(pool: asyncpg.Pool, settings: Settings):  # type: ignore[no-untyped-def]
    """Company A: alarms of every status and level at distinct times; company B: two."""
    w = await make_world(pool, settings)
    a0, a1 = w.vehicles_a
    ids = {}
    specs = [  # name, vehicle, type, level, status, minutes after T0
        ("old_l1_open", a0, "forbidden_area_entry", 1, "open", 0),
        ("new_l3_open", a1, "geofence_enter", 3, "open", 50),
        ("mid_l2_ack", a0, "overspeed", 2, "acknowledged", 30),
        ("new_l1_handled", a0, "forbidden_area_entry", 1, "handled", 60),
        ("new_l2_open", a1, "overspeed", 2, "open", 40),
        ("old_l2_open", a0, "fatigue_driving", 2, "open", 10),
        ("l4_closed", a1, "offline", 4, "closed", 20),
    ]
    for name, vehicle, alarm_type, level, status, minutes in specs:
        ids[name] = await store_alarm(
            pool, vehicle, w.company_a, alarm_type, T0 + timedelta(minutes=minutes),
            level=level, status=status,
        )  # fmt: skip
    ids["b_l1"] = await store_alarm(
        pool, w.vehicles_b[0], w.company_b, "overspeed", T0 + timedelta(minutes=5), level=1
    )
    ids["b_l4"] = await store_alarm(
        pool, w.vehicles_b[1], w.company_b, "offline", T0 + timedelta(minutes=6), level=4
    )
    return w, ids


async def test_unhandled_first_then_by_level_then_newest(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    w, ids = await _worklist(pool, settings)
    async with rest_client(settings) as client:
        rows = (await client.get("/api/alarms", headers=w.auth("op_a"))).json()
    assert [r["id"] for r in rows] == [
        ids["old_l1_open"],  # unhandled, level 1
        ids["new_l2_open"],  # unhandled, level 2, newest first
        ids["mid_l2_ack"],
        ids["old_l2_open"],
        ids["new_l3_open"],  # unhandled, level 3
        ids["new_l1_handled"],  # handled / closed after every unhandled one, by level
        ids["l4_closed"],
    ]
    first = rows[0]
    assert first["level"] == 1 and first["plate_number"] == "渝A10000"
    assert first["company_name"] == "甲运输公司" and first["vehicle_class"] == "hazmat"


async def test_filters_by_type_level_status_company_plate_and_window(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    w, ids = await _worklist(pool, settings)

    async def listed(query: str, who: str = "bureau") -> list[int]:
        r = await client.get(f"/api/alarms?{query}", headers=w.auth(who))
        assert r.status_code == 200, r.text
        return [row["id"] for row in r.json()]

    async with rest_client(settings) as client:
        assert await listed("alarm_type=overspeed") == [
            ids["b_l1"],
            ids["new_l2_open"],
            ids["mid_l2_ack"],
        ]
        assert await listed("level=1") == [ids["b_l1"], ids["old_l1_open"], ids["new_l1_handled"]]
        assert await listed("level=1&level=4&status=open") == [
            ids["b_l1"],
            ids["old_l1_open"],
            ids["b_l4"],
        ]
        assert await listed("status=acknowledged") == [ids["mid_l2_ack"]]
        assert set(await listed("status=unhandled")) == {
            ids[k]
            for k in (
                "old_l1_open",
                "new_l3_open",
                "mid_l2_ack",
                "new_l2_open",
                "old_l2_open",
                "b_l1",
                "b_l4",
            )
        }
        assert await listed(f"company_id={w.company_b}") == [ids["b_l1"], ids["b_l4"]]
        # plate: any part, any case; LIKE wildcards are literal
        assert await listed("plate=a10001") == [
            ids["new_l2_open"],
            ids["new_l3_open"],
            ids["l4_closed"],
        ]
        assert await listed("plate=%25") == []
        assert await listed("plate=_") == []
        start, end = (T0 + timedelta(minutes=m) for m in (10, 40))
        window = f"start={start.isoformat()}&end={end.isoformat()}".replace("+", "%2B")
        assert await listed(window) == [
            ids["mid_l2_ack"],
            ids["old_l2_open"],
            ids["l4_closed"],
        ]
        assert await listed(f"vehicle_id={w.vehicles_a[0]}&status=open") == [
            ids["old_l1_open"],
            ids["old_l2_open"],
        ]
        for bad, word in (("status=done", "unhandled"), ("level=5", "level"), ("level=0", "level")):
            r = await client.get(f"/api/alarms?{bad}", headers=w.auth("bureau"))
            assert r.status_code == 422 and word in r.text, (bad, r.text)
            r = await client.get(f"/api/alarms/summary?{bad}", headers=w.auth("bureau"))
            assert r.status_code == 422, bad


async def test_counts_per_status_and_level_follow_the_other_filters(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    w, _ = await _worklist(pool, settings)
    async with rest_client(settings) as client:
        everything = (await client.get("/api/alarms/summary", headers=w.auth("bureau"))).json()
        assert everything == {
            "total": 9,
            "by_status": {"open": 6, "acknowledged": 1, "handled": 1, "closed": 1},
            "by_level": {"1": 3, "2": 3, "3": 1, "4": 2},
            "unhandled_by_level": {"1": 2, "2": 3, "3": 1, "4": 1},
            "open_by_level": {"1": 2, "2": 2, "3": 1, "4": 1},
        }
        r = await client.get("/api/alarms/summary?status=open&level=2", headers=w.auth("op_a"))
        summary = r.json()
        # status counts under the level filter, level counts under the status filter
        assert summary["total"] == 2
        assert summary["by_status"] == {"open": 2, "acknowledged": 1, "handled": 0, "closed": 0}
        assert summary["by_level"] == {"1": 1, "2": 2, "3": 1, "4": 0}
        assert summary["open_by_level"] == {"1": 1, "2": 2, "3": 1, "4": 0}
        listed = await client.get("/api/alarms?status=open&level=2", headers=w.auth("op_a"))
        assert len(listed.json()) == summary["total"]


async def test_paging_walks_the_worklist_once_with_its_total(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    w, _ = await _worklist(pool, settings)
    async with rest_client(settings) as client:
        whole = [
            r["id"] for r in (await client.get("/api/alarms", headers=w.auth("bureau"))).json()
        ]
        pages = []
        for offset in range(0, 12, 4):
            r = await client.get(f"/api/alarms?limit=4&offset={offset}", headers=w.auth("bureau"))
            pages.append([row["id"] for row in r.json()])
        total = (await client.get("/api/alarms/summary", headers=w.auth("bureau"))).json()["total"]
        r = await client.get("/api/alarms?limit=4&offset=-1", headers=w.auth("bureau"))
        assert r.status_code == 422
    assert [len(p) for p in pages] == [4, 4, 1]
    assert [i for page in pages for i in page] == whole and len(whole) == total == 9


async def test_operator_lists_and_counts_only_its_own_company(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    w, ids = await _worklist(pool, settings)
    async with rest_client(settings) as client:
        mine = (await client.get("/api/alarms", headers=w.auth("op_b"))).json()
        assert [r["id"] for r in mine] == [ids["b_l1"], ids["b_l4"]]
        summary = (await client.get("/api/alarms/summary", headers=w.auth("op_b"))).json()
        assert summary["total"] == 2 and summary["open_by_level"] == {
            "1": 1,
            "2": 0,
            "3": 0,
            "4": 1,
        }
        # another company's plate finds nothing; its company id is refused
        assert (await client.get("/api/alarms?plate=渝A", headers=w.auth("op_b"))).json() == []
        r = await client.get("/api/alarms/summary?plate=渝A", headers=w.auth("op_b"))
        assert r.json()["total"] == 0
        for path in ("/api/alarms", "/api/alarms/summary"):
            r = await client.get(f"{path}?company_id={w.company_a}", headers=w.auth("op_b"))
            assert r.status_code == 403


async def test_each_row_says_where_the_alarm_started(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    w = await make_world(pool, settings)
    a0, a1 = w.vehicles_a
    await store_position(pool, a0, T0 - timedelta(seconds=10), 29.561, 106.551)
    await store_position(pool, a0, T0, 29.562, 106.552)
    await store_position(pool, a0, T0 + timedelta(seconds=10), 29.563, 106.553)
    placed = await store_alarm(pool, a0, w.company_a, started_at=T0)
    nowhere = await store_alarm(pool, a1, w.company_a, started_at=T0)
    async with rest_client(settings) as client:
        rows = {
            r["id"]: r for r in (await client.get("/api/alarms", headers=w.auth("op_a"))).json()
        }
    assert (rows[placed]["latitude"], rows[placed]["longitude"]) == (29.562, 106.552)
    assert (rows[nowhere]["latitude"], rows[nowhere]["longitude"]) == (None, None)
