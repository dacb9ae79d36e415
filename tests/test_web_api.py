"""REST API against the real database: login, registry, latest positions, tracks, alarms, and
company isolation of every endpoint (by id guessing, by filter, by bounding box)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from fastapi.routing import APIRoute
from web_helpers import PASSWORD, make_world, rest_client, served_app, store_alarm, store_position

from gps_monitor.config import Settings, WebSettings
from gps_monitor.errors import ConfigurationError
from web.app import ROUTERS, create_app

T0 = datetime(2026, 1, 26, 8, 0, tzinfo=UTC)


async def test_login_returns_token_and_cookie_and_rejects_wrong_password(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    await make_world(pool, settings)
    async with rest_client(settings) as client:
        bad = await client.post("/api/auth/login", json={"username": "op_a", "password": "nope"})
        assert bad.status_code == 401
        ok = await client.post("/api/auth/login", json={"username": "op_a", "password": PASSWORD})
        assert ok.status_code == 200
        body = ok.json()
        assert body["user"]["role"] == "operator"
        assert "gpsm_token" in ok.cookies
        # the cookie alone authenticates
        me = await client.get("/api/auth/me")
        assert me.status_code == 200 and me.json()["username"] == "op_a"
        assert me.json()["company_name"] == "甲运输公司"
        # the bearer token too; after logout it is refused
        headers = {"Authorization": f"Bearer {body['token']}"}
        assert (await client.post("/api/auth/logout", headers=headers)).status_code == 204
        client.cookies.clear()
        assert (await client.get("/api/auth/me", headers=headers)).status_code == 401
        assert (await client.get("/api/vehicles")).status_code == 401


async def test_passwords_are_stored_as_argon2_hashes(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    await make_world(pool, settings)
    hashes = await pool.fetch("SELECT password_hash FROM users")
    assert len(hashes) == 4
    assert all(h["password_hash"].startswith("$argon2id$") for h in hashes)
    assert all(PASSWORD not in h["password_hash"] for h in hashes)
    tokens = await pool.fetch("SELECT token_hash FROM user_tokens")
    assert all(len(t["token_hash"]) == 64 for t in tokens)


def test_production_refuses_the_default_secret_key(settings: Settings) -> None:
    prod = settings.model_copy(update={"environment": "production"})
    with pytest.raises(ConfigurationError, match="secret_key"):
        create_app(prod)
    good = prod.model_copy(update={"web": WebSettings(secret_key=secrets.token_urlsafe(32))})
    assert create_app(good) is not None


async def test_operator_sees_only_its_company_in_registry(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    w = await make_world(pool, settings)
    async with rest_client(settings) as client:
        companies = (await client.get("/api/companies", headers=w.auth("op_a"))).json()
        assert [c["id"] for c in companies] == [w.company_a]
        assert len((await client.get("/api/companies", headers=w.auth("bureau"))).json()) == 2
        vehicles = (await client.get("/api/vehicles", headers=w.auth("op_a"))).json()
        assert sorted(v["id"] for v in vehicles) == sorted(w.vehicles_a)
        # filter by the other company: refused, not silently widened
        r = await client.get(f"/api/vehicles?company_id={w.company_b}", headers=w.auth("op_a"))
        assert r.status_code == 403
        # id guessing: the other company's vehicle does not exist for this operator
        for vid in w.vehicles_b:
            assert (
                await client.get(f"/api/vehicles/{vid}", headers=w.auth("op_a"))
            ).status_code == 404
        assert (
            await client.get(f"/api/vehicles/{w.vehicles_b[0]}", headers=w.auth("op_b"))
        ).status_code == 200
        # plate search stays within the company
        r = await client.get("/api/vehicles?plate=B1000", headers=w.auth("op_a"))
        assert r.json() == []
        assert (
            len(
                (
                    await client.get("/api/vehicles?plate=B1000", headers=w.auth("enforcement"))
                ).json()
            )
            == 2
        )


async def test_only_bureau_creates_and_updates_vehicles_and_it_is_audited(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    w = await make_world(pool, settings)
    new = {
        "company_id": w.company_a,
        "plate_number": "渝A99999",
        "plate_color": 2,
        "vehicle_class": "coach",
        "terminal_id": "013900099999",
    }
    async with rest_client(settings) as client:
        for who in ("op_a", "enforcement"):
            assert (
                await client.post("/api/vehicles", json=new, headers=w.auth(who))
            ).status_code == 403
            r = await client.patch(
                f"/api/vehicles/{w.vehicles_a[0]}",
                json={"speed_limit_kmh": 10},
                headers=w.auth(who),
            )
            assert r.status_code == 403
        r = await client.post("/api/vehicles", json=new, headers=w.auth("bureau"))
        assert r.status_code == 201, r.text
        vid = r.json()["id"]
        assert (
            await client.post("/api/vehicles", json=new, headers=w.auth("bureau"))
        ).status_code == 409
        bad = dict(new, vehicle_class="tank", terminal_id="x1")
        r = await client.post("/api/vehicles", json=bad, headers=w.auth("bureau"))
        assert r.status_code == 422 and "vehicle_class" in r.text
        r = await client.patch(
            f"/api/vehicles/{vid}", json={"speed_limit_kmh": 80}, headers=w.auth("bureau")
        )
        assert r.status_code == 200 and r.json()["speed_limit_kmh"] == 80
        r = await client.post("/api/companies", json={"name": "丙公司"}, headers=w.auth("bureau"))
        assert r.status_code == 201
    actions = [r["action"] for r in await pool.fetch("SELECT action FROM audit_log ORDER BY id")]
    assert actions == ["vehicle.create", "vehicle.update", "company.create"]


async def test_latest_positions_filters_and_company_isolation(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    w = await make_world(pool, settings)
    now = datetime.now(UTC)
    # A0 moving in Chongqing, A1 stopped, B0 moving at the same place as A0, B1 in alarm
    await store_position(pool, w.vehicles_a[0], now, 29.56, 106.55, speed_kmh=50)
    await store_position(pool, w.vehicles_a[1], now, 29.60, 106.60, speed_kmh=0)
    await store_position(pool, w.vehicles_b[0], now, 29.56, 106.55, speed_kmh=50)
    await store_position(pool, w.vehicles_b[1], now, 30.00, 107.00, speed_kmh=70)
    await store_alarm(pool, w.vehicles_b[1], w.company_b)
    await pool.execute(
        "UPDATE latest_positions SET last_message_at = now() - interval '1 hour' "
        "WHERE vehicle_id = $1",
        w.vehicles_a[1],
    )
    async with rest_client(settings) as client:
        rows = (await client.get("/api/positions/latest", headers=w.auth("bureau"))).json()
        status = {r["vehicle_id"]: r["status"] for r in rows}
        assert status == {
            w.vehicles_a[0]: "moving",
            w.vehicles_a[1]: "offline",
            w.vehicles_b[0]: "moving",
            w.vehicles_b[1]: "in_alarm",
        }
        in_alarm = (
            await client.get("/api/positions/latest?status=in_alarm", headers=w.auth("bureau"))
        ).json()
        assert [r["vehicle_id"] for r in in_alarm] == [w.vehicles_b[1]]
        # bbox around the shared spot: bureau sees both companies, operator A only its own
        box = "106.5,29.5,106.56,29.57"
        both = (
            await client.get(f"/api/positions/latest?bbox={box}", headers=w.auth("bureau"))
        ).json()
        assert sorted(r["vehicle_id"] for r in both) == sorted([w.vehicles_a[0], w.vehicles_b[0]])
        mine = (
            await client.get(f"/api/positions/latest?bbox={box}", headers=w.auth("op_a"))
        ).json()
        assert [r["vehicle_id"] for r in mine] == [w.vehicles_a[0]]
        world = "-180,-90,180,90"
        mine = (
            await client.get(f"/api/positions/latest?bbox={world}", headers=w.auth("op_a"))
        ).json()
        assert {r["company_id"] for r in mine} == {w.company_a}
        # asking by vehicle id for the other company's vehicle yields nothing
        r = await client.get(
            f"/api/positions/latest?vehicle_id={w.vehicles_b[0]}", headers=w.auth("op_a")
        )
        assert r.json() == []
        r = await client.get(
            f"/api/positions/latest?company_id={w.company_b}", headers=w.auth("op_a")
        )
        assert r.status_code == 403
        r = await client.get("/api/positions/latest?bbox=1,2,3", headers=w.auth("op_a"))
        assert r.status_code == 422 and "bbox" in r.json()["detail"]
        r = await client.get("/api/positions/latest?status=parked", headers=w.auth("op_a"))
        assert r.status_code == 422


async def test_track_is_geojson_with_quality_flags_and_overspeed_stretch(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    w = await make_world(pool, settings)
    vid = w.vehicles_a[0]
    for i in range(20):
        await store_position(
            pool,
            vid,
            T0 + timedelta(seconds=10 * i),
            29.5 + i * 0.001,
            106.5,
            speed_kmh=80 if 5 <= i <= 8 else 40,
        )
    await store_position(pool, vid, T0 + timedelta(seconds=15), 31.0, 108.0, quality="drift")
    await store_position(pool, vid, T0 + timedelta(seconds=25), 0.0, 0.0, quality="invalid")
    await store_alarm(
        pool,
        vid,
        w.company_a,
        started_at=T0 + timedelta(seconds=50),
        ended_at=T0 + timedelta(seconds=80),
        details={"limit_kmh": 60, "max_speed_kmh": 80},
    )
    fatigue = await store_alarm(
        pool, vid, w.company_a, "fatigue_driving", started_at=T0 + timedelta(seconds=90), level=2
    )
    end = (T0 + timedelta(hours=1)).isoformat()
    window = f"start={T0.isoformat().replace('+', '%2B')}&end={end.replace('+', '%2B')}"
    async with rest_client(settings) as client:
        r = await client.get(f"/api/vehicles/{vid}/track?{window}", headers=w.auth("op_a"))
        assert r.status_code == 200, r.text
        fc = r.json()
        assert fc["type"] == "FeatureCollection"
        track = next(f for f in fc["features"] if f["properties"]["kind"] == "track")
        assert track["properties"]["points_ok"] == 20
        assert track["properties"]["points_returned"] == 20
        assert len(track["geometry"]["coordinates"]) == 20
        assert track["geometry"]["coordinates"][0] == [106.5, 29.5]
        flagged = [f for f in fc["features"] if f["properties"]["kind"] == "flagged"]
        assert sorted(f["properties"]["quality"] for f in flagged) == ["drift", "invalid"]
        overspeed = [f for f in fc["features"] if f["properties"]["kind"] == "overspeed"]
        assert len(overspeed) == 1
        assert len(overspeed[0]["geometry"]["coordinates"]) == 4  # fixes 5..8
        # every alarm of the window, for the playback timeline (the open one without an end)
        assert [(a["alarm_type"], a["level"], a["ended_at"]) for a in fc["alarms"]] == [
            ("overspeed", 3, (T0 + timedelta(seconds=80)).isoformat()),
            ("fatigue_driving", 2, None),
        ]
        assert fc["alarms"][1]["id"] == fatigue
        # other company: not found; naive or too-long window: 422
        r = await client.get(f"/api/vehicles/{vid}/track?{window}", headers=w.auth("op_b"))
        assert r.status_code == 404
        r = await client.get(
            f"/api/vehicles/{vid}/track?start=2026-01-26T08:00:00&end=2026-01-27T08:00:00",
            headers=w.auth("op_a"),
        )
        assert r.status_code == 422
        r = await client.get(
            f"/api/vehicles/{vid}/track?start=2026-01-01T00:00:00Z&end=2026-03-01T00:00:00Z",
            headers=w.auth("op_a"),
        )
        assert r.status_code == 422 and "days" in r.json()["detail"]


async def test_long_track_is_simplified_keeping_original_fixes(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    w = await make_world(pool, settings)
    vid = w.vehicles_a[0]
    rows = [
        (
            vid,
            T0 + timedelta(seconds=30 * i),
            T0,
            29.5 + 0.0005 * i,
            106.5 + 0.01 * ((i // 200) % 2) * (i % 200) / 200,
            40.0,
            0.0,
            True,
            "ok",
            False,
        )
        for i in range(6000)
    ]
    await pool.copy_records_to_table(
        "positions",
        records=rows,
        columns=[
            "vehicle_id",
            "fix_time",
            "received_at",
            "latitude",
            "longitude",
            "speed_kmh",
            "heading_deg",
            "fix_valid",
            "quality",
            "late",
        ],
    )
    async with rest_client(settings) as client:
        r = await client.get(
            f"/api/vehicles/{vid}/track",
            params={
                "start": T0.isoformat(),
                "end": (T0 + timedelta(days=3)).isoformat(),
                "max_points": 500,
            },
            headers=w.auth("bureau"),
        )
    track = r.json()["features"][0]
    props = track["properties"]
    assert props["points_ok"] == 6000 and props["simplified"]
    assert 2 < props["points_returned"] <= 500
    assert props["tolerance_m"] > 0
    originals = {(round(r[4], 9), round(r[3], 9)) for r in rows}
    assert all((round(x, 9), round(y, 9)) in originals for x, y in track["geometry"]["coordinates"])
    assert props["fix_times"][0] == T0.isoformat()
    assert props["fix_times"][-1] == (T0 + timedelta(seconds=30 * 5999)).isoformat()


async def test_alarm_handling_roles_isolation_and_audit(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    w = await make_world(pool, settings)
    a_alarm = await store_alarm(pool, w.vehicles_a[0], w.company_a, started_at=T0)
    b_alarm = await store_alarm(
        pool, w.vehicles_b[0], w.company_b, started_at=T0, alarm_type="fatigue_driving"
    )
    async with rest_client(settings) as client:
        listed = (await client.get("/api/alarms", headers=w.auth("op_a"))).json()
        assert [a["id"] for a in listed] == [a_alarm]
        assert len((await client.get("/api/alarms", headers=w.auth("enforcement"))).json()) == 2
        r = await client.get("/api/alarms?alarm_type=fatigue_driving", headers=w.auth("op_a"))
        assert r.json() == []
        r = await client.get(f"/api/alarms?vehicle_id={w.vehicles_b[0]}", headers=w.auth("op_a"))
        assert r.json() == []
        assert (
            await client.get(f"/api/alarms?company_id={w.company_b}", headers=w.auth("op_a"))
        ).status_code == 403
        # id guessing on read and on every change
        for path in ("", "/audit"):
            assert (
                await client.get(f"/api/alarms/{b_alarm}{path}", headers=w.auth("op_a"))
            ).status_code == 404
        assert (
            await client.post(f"/api/alarms/{b_alarm}/acknowledge", headers=w.auth("op_a"))
        ).status_code == 404
        assert (
            await client.post(
                f"/api/alarms/{b_alarm}/handle", json={"note": "x"}, headers=w.auth("op_a")
            )
        ).status_code == 404
        # enforcement reads but does not acknowledge; operators do not record penalties
        assert (
            await client.post(f"/api/alarms/{a_alarm}/acknowledge", headers=w.auth("enforcement"))
        ).status_code == 403
        assert (
            await client.post(
                f"/api/alarms/{a_alarm}/penalty", json={"decision": "罚款"}, headers=w.auth("op_a")
            )
        ).status_code == 403
        # the flow
        r = await client.post(f"/api/alarms/{a_alarm}/acknowledge", headers=w.auth("op_a"))
        assert r.status_code == 200 and r.json()["status"] == "acknowledged"
        r = await client.post(f"/api/alarms/{a_alarm}/acknowledge", headers=w.auth("op_a"))
        assert r.status_code == 409 and "expected status open" in r.json()["detail"]
        r = await client.post(
            f"/api/alarms/{a_alarm}/handle", json={"note": ""}, headers=w.auth("op_a")
        )
        assert r.status_code == 422
        r = await client.post(
            f"/api/alarms/{a_alarm}/handle",
            json={"note": "已电话提醒驾驶员减速"},
            headers=w.auth("op_a"),
        )
        assert r.status_code == 200 and r.json()["handling_note"] == "已电话提醒驾驶员减速"
        r = await client.post(
            f"/api/alarms/{a_alarm}/penalty",
            json={"decision": "罚款", "fine_yuan": 200, "note": "第一次"},
            headers=w.auth("enforcement"),
        )
        assert r.status_code == 201 and r.json()["fine_yuan"] == 200
        detail = (await client.get(f"/api/alarms/{a_alarm}", headers=w.auth("bureau"))).json()
        assert detail["status"] == "handled"
        assert [p["decision"] for p in detail["penalties"]] == ["罚款"]
        trail = [(e["username"], e["action"]) for e in detail["audit"]]
        assert trail == [
            ("op_a", "alarm.acknowledge"),
            ("op_a", "alarm.handle"),
            ("enforcement", "alarm.penalty"),
        ]
        assert all(e["at"] for e in detail["audit"])
        # bureau handles any company's alarm
        r = await client.post(
            f"/api/alarms/{b_alarm}/handle", json={"note": "督办"}, headers=w.auth("bureau")
        )
        assert r.status_code == 200
    b_row = await pool.fetchrow("SELECT status, handled_by FROM alarms WHERE id = $1", b_alarm)
    assert b_row["status"] == "handled"


async def test_unauthenticated_requests_are_refused_everywhere(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    await make_world(pool, settings)
    async with rest_client(settings) as client:
        for method, path in (
            ("GET", "/api/companies"),
            ("GET", "/api/vehicles"),
            ("GET", "/api/vehicles/1"),
            ("GET", "/api/positions/latest"),
            ("GET", "/api/alarms"),
            ("GET", "/api/alarms/1"),
            ("POST", "/api/alarms/1/acknowledge"),
        ):
            r = await client.request(method, path, headers={"Authorization": "Bearer forged"})
            assert r.status_code == 401, (method, path)
        page = await client.get("/map")
        assert page.status_code == 200 and "leaflet" in page.text.lower()
        assert (await client.get("/api/config")).json()["tile_url_template"] is None


async def test_pages_answer_head_as_get_for_probes_and_link_checkers(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    await make_world(pool, settings)
    async with (
        served_app(settings) as (base, _),
        httpx.AsyncClient(base_url=f"http://{base}") as client,
    ):
        for path in ("/", "/map", "/favicon.ico", "/dashboard", "/notify", "/static/app.js"):
            get = await client.get(path)
            head = await client.head(path)
            assert (head.status_code, head.content) == (get.status_code, b""), path
            assert get.status_code in (200, 307), (path, get.status_code)
            for name in ("content-type", "content-length", "location"):
                assert head.headers.get(name) == get.headers.get(name), (path, name)
        # every page route (outside the API schema, answering GET) takes HEAD too
        routes = [r for router in ROUTERS for r in router.routes]
        pages = [r for r in routes if isinstance(r, APIRoute) and not r.include_in_schema]
        assert {r.path for r in pages} >= {"/", "/map", "/favicon.ico", "/dashboard", "/notify"}
        assert [r.path for r in pages if "GET" in r.methods and "HEAD" not in r.methods] == []


async def test_operator_and_enforcement_cannot_change_registry_or_geofences(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """Every changing endpoint refuses an operator (and enforcement) whatever the target id."""
    w = await make_world(pool, settings)
    square = [[106.5, 29.5], [106.6, 29.5], [106.6, 29.6], [106.5, 29.5]]
    fence = {
        "feature": {
            "type": "Feature",
            "properties": {"id": "f1", "kind": "watch"},
            "geometry": {"type": "Polygon", "coordinates": [square]},
        }
    }
    route = {
        "feature": {
            "type": "Feature",
            "properties": {"id": "r1", "corridor_m": 50},
            "geometry": {"type": "LineString", "coordinates": square[:2]},
        }
    }
    async with rest_client(settings) as client:
        assert (
            await client.post("/api/geofences", json=fence, headers=w.auth("bureau"))
        ).status_code == 201
        assert (
            await client.post("/api/routes", json=route, headers=w.auth("bureau"))
        ).status_code == 201
        calls = [
            ("POST", "/api/companies", {"name": "新公司"}),
            ("PATCH", f"/api/companies/{w.company_a}", {"name": "改名"}),
            ("PATCH", f"/api/companies/{w.company_b}", {"name": "改名"}),
            (
                "POST",
                "/api/vehicles",
                {
                    "company_id": w.company_a,
                    "plate_number": "渝A0",
                    "vehicle_class": "coach",
                    "terminal_id": "x",
                },
            ),
            ("PATCH", f"/api/vehicles/{w.vehicles_b[0]}", {"company_id": w.company_a}),
            ("PUT", "/api/geofences/f1", fence),
            ("PATCH", "/api/geofences/f1", {"name": "x"}),
            ("PUT", "/api/geofences/f1/vehicles", {"vehicle_ids": [w.vehicles_a[0]]}),
            ("DELETE", "/api/geofences/f1", None),
            ("PUT", "/api/routes/r1", route),
            ("PATCH", "/api/routes/r1", {"name": "x"}),
            ("PUT", "/api/routes/r1/vehicles", {"vehicle_ids": [w.vehicles_a[0]]}),
            ("DELETE", "/api/routes/r1", None),
        ]
        for who in ("op_a", "enforcement"):
            for method, path, body in calls:
                r = await client.request(method, path, json=body, headers=w.auth(who))
                assert r.status_code == 403, (who, method, path, r.status_code)
    names = {r["name"] for r in await pool.fetch("SELECT name FROM companies")}
    assert names == {"甲运输公司", "乙运输公司"}
    moved = await pool.fetchval("SELECT company_id FROM vehicles WHERE id = $1", w.vehicles_b[0])
    assert moved == w.company_b


async def test_expired_tokens_and_deactivated_users_are_refused(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    w = await make_world(pool, settings)
    async with rest_client(settings) as client:
        assert (await client.get("/api/vehicles", headers=w.auth("op_a"))).status_code == 200
        await pool.execute(
            "UPDATE user_tokens SET expires_at = now() - interval '1 second' "
            "WHERE user_id = (SELECT id FROM users WHERE username = 'op_a')"
        )
        assert (await client.get("/api/vehicles", headers=w.auth("op_a"))).status_code == 401
        assert (await client.get("/api/vehicles", headers=w.auth("op_b"))).status_code == 200
        await pool.execute("UPDATE users SET active = false WHERE username = 'op_b'")
        assert (await client.get("/api/vehicles", headers=w.auth("op_b"))).status_code == 401
        r = await client.post("/api/auth/login", json={"username": "op_b", "password": PASSWORD})
        assert r.status_code == 401
        session = (await client.get("/api/auth/session", headers=w.auth("op_b"))).json()
        assert session == {"user": None}


HUGE = 99999999999999999999  # above bigint


async def test_ids_beyond_bigint_answer_422_on_every_endpoint(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    world = await make_world(pool, settings)
    window = {"start": "2026-01-26T08:00:00+00:00", "end": "2026-01-26T09:00:00+00:00"}
    fence = {
        "type": "Feature",
        "properties": {"id": "f-huge", "name": "f", "kind": "forbidden"},
        "geometry": {"type": "Polygon", "coordinates": [[[106.5, 29.5], [106.6, 29.5],
                                                          [106.6, 29.6], [106.5, 29.5]]]},
    }  # fmt: skip
    # (method, path, query, json body, who, the id parameter tested)
    cases: list[tuple[str, str, dict, dict | None, str, str]] = [
        ("PATCH", f"/api/companies/{HUGE}", {}, {"name": "x"}, "bureau", "company_id"),
        ("GET", "/api/vehicles", {"company_id": HUGE}, None, "bureau", "company_id"),
        ("GET", f"/api/vehicles/{HUGE}", {}, None, "bureau", "vehicle_id"),
        ("PATCH", f"/api/vehicles/{HUGE}", {}, {"plate_number": "渝A1"}, "bureau", "vehicle_id"),
        ("DELETE", f"/api/vehicles/{HUGE}", {}, None, "bureau", "vehicle_id"),
        ("PUT", f"/api/users/{HUGE}", {}, {"role": "bureau"}, "bureau", "user_id"),
        ("PUT", f"/api/users/{HUGE}/password", {}, {"password": "12345678"}, "bureau", "user_id"),
        ("GET", "/api/positions/latest", {"company_id": HUGE}, None, "bureau", "company_id"),
        ("GET", "/api/positions/latest", {"vehicle_id": [1, HUGE]}, None, "bureau", "vehicle_id"),
        ("GET", f"/api/vehicles/{HUGE}/track", window, None, "bureau", "vehicle_id"),
        ("GET", "/api/alarms", {"company_id": HUGE}, None, "bureau", "company_id"),
        ("GET", "/api/alarms", {"vehicle_id": HUGE}, None, "bureau", "vehicle_id"),
        ("GET", "/api/alarms/summary", {"company_id": HUGE}, None, "bureau", "company_id"),
        ("GET", "/api/alarms/summary", {"vehicle_id": HUGE}, None, "bureau", "vehicle_id"),
        ("GET", f"/api/alarms/{HUGE}", {}, None, "bureau", "alarm_id"),
        ("POST", f"/api/alarms/{HUGE}/acknowledge", {}, None, "bureau", "alarm_id"),
        ("POST", f"/api/alarms/{HUGE}/handle", {}, {"note": "x"}, "bureau", "alarm_id"),
        ("POST", f"/api/alarms/{HUGE}/penalty", {}, {"decision": "警告"}, "enforcement",
         "alarm_id"),
        ("GET", f"/api/alarms/{HUGE}/audit", {}, None, "bureau", "alarm_id"),
        ("PUT", f"/api/penalties/{HUGE}", {}, {"decision": "警告"}, "enforcement", "penalty_id"),
        ("PUT", "/api/geofences/f-huge/vehicles", {}, {"vehicle_ids": [HUGE]}, "bureau",
         "vehicle_ids"),
        ("PUT", "/api/routes/r-huge/vehicles", {}, {"vehicle_ids": [HUGE]}, "bureau",
         "vehicle_ids"),
        ("GET", "/api/reports/evidence", {"alarm_id": HUGE}, None, "bureau", "alarm_id"),
        ("GET", "/api/reports/evidence", {"vehicle_id": HUGE, **window}, None, "bureau",
         "vehicle_id"),
        ("GET", "/api/reports/kpi", {"from": "2026-01-01", "to": "2026-01-02",
                                     "company_id": HUGE}, None, "bureau", "company_id"),
        ("GET", "/api/reports/log", {"alarm_id": HUGE}, None, "bureau", "alarm_id"),
        ("GET", "/api/holds", {"vehicle_id": HUGE}, None, "bureau", "vehicle_id"),
        ("POST", "/api/holds", {}, {"vehicle_id": HUGE, "window_start": window["start"],
                                    "window_end": window["end"], "reason": "事故"}, "bureau",
         "vehicle_id"),
        ("POST", f"/api/holds/{HUGE}/release", {}, {"reason": "x"}, "bureau", "hold_id"),
        ("PUT", f"/api/notify/channels/{HUGE}", {}, {"name": "x"}, "op_a", "channel_id"),
        ("DELETE", f"/api/notify/channels/{HUGE}", {}, None, "op_a", "channel_id"),
        ("PUT", f"/api/notify/subscriptions/{HUGE}", {}, {"channel_id": 1}, "op_a",
         "subscription_id"),
        ("DELETE", f"/api/notify/subscriptions/{HUGE}", {}, None, "op_a", "subscription_id"),
        ("GET", "/api/notify/deliveries", {"channel_id": HUGE}, None, "op_a", "channel_id"),
        ("GET", "/api/notify/deliveries", {"alarm_id": HUGE}, None, "op_a", "alarm_id"),
        ("POST", "/api/notify/subscriptions", {}, {"channel_id": HUGE}, "op_a", "channel_id"),
        ("POST", "/api/vehicles", {}, {"company_id": HUGE, "plate_number": "渝A1",
                                       "vehicle_class": "freight", "terminal_id": "1"},
         "bureau", "company_id"),
        ("GET", f"/api/commands/{HUGE}", {}, None, "bureau", "command_row_id"),
        ("GET", "/api/commands", {"vehicle_id": HUGE}, None, "bureau", "vehicle_id"),
        ("GET", "/api/commands", {"alarm_id": HUGE}, None, "bureau", "alarm_id"),
        ("POST", "/api/commands", {}, {"vehicle_id": HUGE, "body": {"text": "x"}}, "bureau",
         "vehicle_id"),
        ("GET", "/api/supervisions", {"company_id": HUGE}, None, "bureau", "company_id"),
        ("GET", "/api/supervisions", {"alarm_id": HUGE}, None, "bureau", "alarm_id"),
        ("GET", f"/api/supervisions/{HUGE}", {}, None, "bureau", "supervision_id"),
        ("POST", f"/api/supervisions/{HUGE}/answer", {}, {"answer": "x"}, "bureau",
         "supervision_id"),
        ("POST", "/api/supervisions", {}, {"alarm_id": HUGE, "deadline": "2099-01-01T00:00:00Z",
                                          "note": "x"}, "bureau", "alarm_id"),
        ("POST", "/api/supervisions", {}, {"company_id": HUGE, "deadline": "2099-01-01T00:00:00Z",
                                          "note": "x"}, "bureau", "company_id"),
        ("GET", "/api/media", {"alarm_id": HUGE}, None, "bureau", "alarm_id"),
        ("GET", "/api/media", {"vehicle_id": HUGE}, None, "bureau", "vehicle_id"),
        ("GET", f"/api/media/{HUGE}", {}, None, "bureau", "media_id"),
        ("GET", f"/api/media/{HUGE}/content", {}, None, "bureau", "media_id"),
        ("POST", "/api/media/take-photo", {}, {"alarm_id": HUGE}, "bureau", "alarm_id"),
        ("POST", "/api/media/take-photo", {}, {"vehicle_id": HUGE}, "bureau", "vehicle_id"),
        ("GET", "/api/terminal-uploads", {"vehicle_id": HUGE}, None, "bureau", "vehicle_id"),
        ("GET", "/api/driver-sessions", {"vehicle_id": HUGE}, None, "bureau", "vehicle_id"),
        ("POST", f"/api/jt809/queries/{HUGE}/answer", {}, {"answer": "x"}, "bureau",
         "query_id"),
        ("POST", "/api/commands", {}, {"alarm_id": HUGE, "body": {"text": "x"}}, "bureau",
         "alarm_id"),
        ("PATCH", f"/api/vehicles/{world.vehicles_a[0]}", {}, {"company_id": HUGE}, "bureau",
         "company_id"),
        ("POST", "/api/users", {}, {"username": "u-huge", "password": "12345678",
                                    "role": "operator", "company_id": HUGE}, "bureau",
         "company_id"),
        ("PUT", "/api/users/1", {}, {"company_id": HUGE}, "bureau", "company_id"),
        ("POST", "/api/notify/channels", {}, {"name": "x", "kind": "webhook", "user_id": HUGE},
         "op_a", "user_id"),
        ("PUT", "/api/geofences/f-huge/vehicles", {}, {"company_ids": [HUGE]}, "bureau",
         "company_ids"),
        ("POST", "/api/notify/subscriptions", {}, {"channel_id": 1, "company_id": HUGE}, "op_a",
         "company_id"),
        ("POST", "/api/notify/subscriptions", {}, {"channel_id": 1, "vehicle_ids": [HUGE]},
         "op_a", "vehicle_ids"),
    ]  # fmt: skip
    async with rest_client(settings) as client:
        assert (
            await client.post(
                "/api/geofences", json={"feature": fence}, headers=world.auth("bureau")
            )
        ).status_code == 201
        # every integer id parameter of the API is in the list above
        spec = client.app.openapi()  # type: ignore[attr-defined]
        covered = {(m, p.replace(str(HUGE), "{x}"), name) for m, p, _, _, _, name in cases}
        for path, operations in spec["paths"].items():
            for method, operation in operations.items():
                for param in operation.get("parameters", []):
                    if param["name"].endswith("_id") and "integer" in str(param["schema"]):
                        generic = path.replace("{" + param["name"] + "}", "{x}")
                        assert (method.upper(), generic, param["name"]) in covered, (path, param)
        for method, path, params, body, who, name in cases:
            r = await client.request(
                method, path, params=params, json=body, headers=world.auth(who)
            )
            assert r.status_code == 422, (method, path, r.status_code, r.text)
            assert "9223372036854775807" in r.text and name in r.text, r.text
        # in range but unknown stays a 404
        r = await client.get("/api/vehicles/9223372036854775807", headers=world.auth("bureau"))
        assert r.status_code == 404


async def test_api_sends_speeds_rounded_to_a_tenth_not_float32_noise(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    world = await make_world(pool, settings)
    vehicle = world.vehicles_a[0]
    fix = datetime.now(UTC).replace(microsecond=0)
    # real (float32) columns give 7.730000019073486 back for 7.73
    await store_position(pool, vehicle, fix - timedelta(seconds=20), 29.5, 106.5, speed_kmh=7.73)
    await store_position(
        pool, vehicle, fix - timedelta(seconds=10), 29.6, 106.5, 13.06, quality="invalid"
    )
    await store_position(pool, vehicle, fix, 29.5001, 106.5, speed_kmh=7.73)
    alarm = await store_alarm(
        pool, vehicle, world.company_a, started_at=fix - timedelta(seconds=30), ended_at=fix
    )
    bureau = world.auth("bureau")
    async with rest_client(settings) as client:
        card = (await client.get(f"/api/vehicles/{vehicle}", headers=bureau)).json()
        assert card["latest"]["speed_kmh"] == 7.7 and card["latest"]["heading_deg"] == 90
        latest = (await client.get("/api/positions/latest", headers=bureau)).json()
        assert {v["speed_kmh"] for v in latest if v["vehicle_id"] == vehicle} == {7.7}
        detail = (await client.get(f"/api/alarms/{alarm}", headers=bureau)).json()
        assert [p["speed_kmh"] for p in detail["positions"]] == [7.7, 13.1, 7.7]
        window = {"start": (fix - timedelta(minutes=1)).isoformat(),
                  "end": (fix + timedelta(minutes=1)).isoformat()}  # fmt: skip
        track = (
            await client.get(f"/api/vehicles/{vehicle}/track", params=window, headers=bureau)
        ).json()
        flagged = [f for f in track["features"] if f["properties"]["kind"] == "flagged"]
        assert [f["properties"]["speed_kmh"] for f in flagged] == [13.1]
        assert track["features"][0]["properties"]["speeds_kmh"] == [7.7, 7.7]
