"""The registry API the bureau's admin page uses (issue 11, item 3): companies, vehicles
(deactivate, delete), users, refusals tied to their field, scope, and the audit entry written in
the same transaction as the change (real PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest
from web_helpers import PASSWORD, make_world, rest_client, store_position

from gps_monitor.config import Settings

NEW_VEHICLE = {
    "plate_number": "渝A99999",
    "plate_color": 2,
    "vehicle_class": "coach",
    "terminal_id": "013900099999",
}


async def test_a_taken_plate_or_name_is_refused_on_its_field(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    w = await make_world(pool, settings)
    bureau = w.auth("bureau")
    async with rest_client(settings) as client:
        r = await client.post("/api/companies", json={"name": "甲运输公司"}, headers=bureau)
        assert r.status_code == 409
        assert [(d["loc"], d["type"]) for d in r.json()["detail"]] == [
            (["body", "name"], "registry_taken")
        ]
        taken_plate = dict(NEW_VEHICLE, company_id=w.company_a, plate_number="渝A10000")
        r = await client.post("/api/vehicles", json=taken_plate, headers=bureau)
        assert r.status_code == 409
        assert r.json()["detail"][0]["loc"] == ["body", "plate_number"]
        taken_terminal = dict(NEW_VEHICLE, company_id=w.company_a, terminal_id="0139A0000000")
        r = await client.post("/api/vehicles", json=taken_terminal, headers=bureau)
        assert r.status_code == 409 and r.json()["detail"][0]["loc"] == ["body", "terminal_id"]
        unknown = dict(NEW_VEHICLE, company_id=w.company_b + 1000)
        r = await client.post("/api/vehicles", json=unknown, headers=bureau)
        assert r.status_code == 422
        assert r.json()["detail"][0]["type"] == "registry_unknown_company"
        r = await client.post(
            "/api/vehicles",
            json=dict(NEW_VEHICLE, company_id=w.company_a, plate_color=7, speed_limit_kmh=0),
            headers=bureau,
        )
        assert r.status_code == 422
        assert {(d["loc"][-1], d["type"]) for d in r.json()["detail"]} == {
            ("plate_color", "enum"),
            ("speed_limit_kmh", "greater_than"),
        }
    assert await pool.fetchval("SELECT count(*) FROM vehicles") == 4
    assert await pool.fetchval("SELECT count(*) FROM audit_log") == 0


async def test_a_plate_with_spaces_line_breaks_or_invisible_characters_is_refused(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """Found in the console review: "渝A10000 " (a trailing space pasted from a spreadsheet)
    was registered as a second vehicle beside 渝A10000, and a line break went into a plate."""
    w = await make_world(pool, settings)
    bureau = w.auth("bureau")
    async with rest_client(settings) as client:
        for plate in ("渝A10000 ", " 渝A10000", "渝A1000\n0", "渝A\t10000", "渝A\u300010000",
                      "渝A\u200b10000", "渝A\x0110000"):  # fmt: skip
            body = dict(NEW_VEHICLE, company_id=w.company_a, plate_number=plate)
            r = await client.post("/api/vehicles", json=body, headers=bureau)
            assert r.status_code == 422, (plate, r.text)
            assert [(d["loc"], d["type"]) for d in r.json()["detail"]] == [
                (["body", "plate_number"], "string_pattern_mismatch")
            ], plate
        r = await client.patch(
            f"/api/vehicles/{w.vehicles_a[0]}", json={"plate_number": "渝A 10000"}, headers=bureau
        )
        assert r.status_code == 422
        # what plates look like stays accepted: Chinese, with a separator dot, 学/挂, ASCII
        for plate in ("渝A·12345", "渝A1234学", "渝A1234挂", "BODS-4716"):
            body = dict(NEW_VEHICLE, company_id=w.company_a, plate_number=plate,
                        terminal_id=f"0139{abs(hash(plate)) % 10**8:08d}")  # fmt: skip
            r = await client.post("/api/vehicles", json=body, headers=bureau)
            assert r.status_code == 201, (plate, r.text)
    plates = {r["plate_number"] for r in await pool.fetch("SELECT plate_number FROM vehicles")}
    assert plates == {"渝A10000", "渝A10001", "渝B10000", "渝B10001",
                      "渝A·12345", "渝A1234学", "渝A1234挂", "BODS-4716"}  # fmt: skip


async def test_a_blank_company_name_or_one_with_invisible_characters_is_refused(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """Found in a walkthrough: a company named "  " was registered, and names holding a
    right-to-left override (U+202E) or a zero-width space (U+200B), which plates refuse. A
    company name gets the plate's checks, spaces inside the name apart."""
    w = await make_world(pool, settings)
    bureau = w.auth("bureau")
    before = await pool.fetchval("SELECT count(*) FROM companies")
    name_a = await pool.fetchval("SELECT name FROM companies WHERE id = $1", w.company_a)
    async with rest_client(settings) as client:
        for name in ("  ", "\u3000", "\t", " 丙运输公司", "丙运输公司 ", "丙运输\n公司",
                     "丙\u202e运输公司", "丙运\u200b输公司", "\ufeff丙运输公司",
                     "丙\x01运输公司"):  # fmt: skip
            r = await client.post("/api/companies", json={"name": name}, headers=bureau)
            assert r.status_code == 422, (name, r.text)
            assert [(d["loc"], d["type"]) for d in r.json()["detail"]] == [
                (["body", "name"], "string_pattern_mismatch")
            ], name
            r = await client.patch(
                f"/api/companies/{w.company_a}", json={"name": name}, headers=bureau
            )
            assert r.status_code == 422, (name, r.text)
        r = await client.post("/api/companies", json={"name": ""}, headers=bureau)
        assert r.status_code == 422 and r.json()["detail"][0]["type"] == "string_too_short"
        # what company names look like stays accepted: spaces inside, brackets, a dot
        for name in ("丙运输公司", "Reject test company", "重庆（渝北）运输·有限公司", "A"):
            r = await client.post("/api/companies", json={"name": name}, headers=bureau)
            assert r.status_code == 201, (name, r.text)
    assert await pool.fetchval("SELECT count(*) FROM companies") == before + 4
    assert await pool.fetchval("SELECT name FROM companies WHERE id = $1", w.company_a) == name_a


async def test_deactivate_keeps_history_and_leaves_the_connection_rate(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    w = await make_world(pool, settings)
    with_history = w.vehicles_a[0]
    await store_position(pool, with_history, datetime(2026, 1, 26, 8, tzinfo=UTC), 29.5, 106.5)
    async with rest_client(settings) as client:
        r = await client.delete(f"/api/vehicles/{with_history}", headers=w.auth("bureau"))
        assert r.status_code == 409
        assert r.json()["detail"][0]["type"] == "registry_has_history"
        r = await client.patch(
            f"/api/vehicles/{with_history}", json={"active": False}, headers=w.auth("bureau")
        )
        assert r.status_code == 200 and r.json()["active"] is False
        r = await client.delete(f"/api/vehicles/{w.vehicles_a[1]}", headers=w.auth("bureau"))
        assert r.status_code == 200 and r.json()["plate_number"] == "渝A10001"
        listed = (await client.get("/api/vehicles", headers=w.auth("op_a"))).json()
    assert [(v["id"], v["active"]) for v in listed] == [(with_history, False)]
    row = await pool.fetchrow(
        "SELECT active, must_connect FROM vehicles WHERE id = $1", with_history
    )
    assert (row["active"], row["must_connect"]) == (False, False)
    assert await pool.fetchval("SELECT count(*) FROM positions") == 1
    audit = await pool.fetch("SELECT action, object_id, details FROM audit_log ORDER BY id")
    assert [(a["action"], a["object_id"]) for a in audit] == [
        ("vehicle.deactivate", with_history),
        ("vehicle.delete", w.vehicles_a[1]),
    ]
    assert audit[0]["details"] == {"active": False, "before": {"active": True}}


async def test_the_audit_entry_is_in_the_same_transaction_as_the_change(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """When the audit entry cannot be written the change is not written either."""
    w = await make_world(pool, settings)
    await pool.execute(
        "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'audit refused'; END $$"
    )
    await pool.execute(
        "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION refuse_audit()"
    )
    changes = [
        ("POST", "/api/companies", {"name": "丙公司"}),
        ("POST", "/api/vehicles", dict(NEW_VEHICLE, company_id=w.company_a)),
        ("PATCH", f"/api/vehicles/{w.vehicles_a[0]}", {"speed_limit_kmh": 99}),
        ("DELETE", f"/api/vehicles/{w.vehicles_a[1]}", None),
        ("POST", "/api/users", {"username": "u9", "role": "bureau", "password": PASSWORD}),
    ]
    async with rest_client(settings) as client:
        for method, path, body in changes:
            with pytest.raises(asyncpg.RaiseError):
                await client.request(method, path, json=body, headers=w.auth("bureau"))
    assert await pool.fetchval("SELECT count(*) FROM companies") == 2
    assert await pool.fetchval("SELECT count(*) FROM vehicles") == 4
    assert await pool.fetchval("SELECT max(speed_limit_kmh) FROM vehicles") == 60
    assert await pool.fetchval("SELECT count(*) FROM users WHERE username = 'u9'") == 0


async def test_bureau_manages_users_and_operators_cannot(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    w = await make_world(pool, settings)
    bureau = w.auth("bureau")
    new = {"username": "zhang", "role": "operator", "company_id": w.company_a,
           "display_name": "张安全员", "password": "s3cret-pass"}  # fmt: skip
    async with rest_client(settings) as client:
        for who in ("op_a", "enforcement"):
            assert (await client.get("/api/users", headers=w.auth(who))).status_code == 403
            r = await client.post("/api/users", json=new, headers=w.auth(who))
            assert r.status_code == 403
        r = await client.post("/api/users", json=dict(new, company_id=None), headers=bureau)
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["body", "company_id"]
        r = await client.post("/api/users", json=dict(new, password="short"), headers=bureau)
        assert r.status_code == 422 and r.json()["detail"][0]["type"] == "string_too_short"
        r = await client.post("/api/users", json=new, headers=bureau)
        assert r.status_code == 201, r.text
        uid = r.json()["id"]
        r = await client.post("/api/users", json=new, headers=bureau)
        assert r.status_code == 422 and r.json()["detail"][0]["type"] == "registry_taken"
        login = {"username": "zhang", "password": "s3cret-pass"}
        token = (await client.post("/api/auth/login", json=login)).json()["token"]
        me = {"Authorization": f"Bearer {token}"}
        assert (await client.get("/api/auth/me", headers=me)).json()["company_name"] == "甲运输公司"
        r = await client.put(
            f"/api/users/{uid}/password", json={"password": "another-pass"}, headers=bureau
        )
        assert r.status_code == 204
        assert (await client.get("/api/auth/me", headers=me)).status_code == 401  # revoked
        edit = {"role": "operator", "company_id": w.company_b, "active": False}
        r = await client.put(f"/api/users/{uid}", json=edit, headers=bureau)
        assert r.status_code == 200 and r.json()["company_id"] == w.company_b
        r = await client.post(
            "/api/auth/login", json={"username": "zhang", "password": "another-pass"}
        )
        assert r.status_code == 401  # disabled
        bureau_id = await pool.fetchval("SELECT id FROM users WHERE username = 'bureau'")
        r = await client.put(
            f"/api/users/{bureau_id}", json={"role": "bureau", "active": False}, headers=bureau
        )
        assert r.status_code == 409
        listed = (await client.get("/api/users", headers=bureau)).json()
    zhang = next(u for u in listed if u["username"] == "zhang")
    assert (zhang["active"], zhang["company_name"]) == (False, "乙运输公司")
    assert all("password" not in str(u) for u in listed)
    audit = await pool.fetch("SELECT action, details FROM audit_log ORDER BY id")
    assert [a["action"] for a in audit] == ["user.create", "user.password", "user.update"]
    assert "password" not in str([a["details"] for a in audit])
