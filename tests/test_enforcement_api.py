"""Enforcement through the API on the real database: penalty decisions recorded and corrected
(audited, role and company scope), one report number per evidence set across PDF, Excel and CSV
(read back out of each file), local time in the exports, and the KPI fatigue hours of an open
episode."""

from __future__ import annotations

import asyncio
import csv
import io
import shutil
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from openpyxl import load_workbook
from test_reports_support import BEIJING, Fix, insert_alarm, store_fixes
from web_helpers import make_world, rest_client, store_position

from gps_monitor.config import Settings

DAY = date(2026, 3, 2)
DECISION = {
    "decision": "罚款",
    "decision_number": "渝交执罚〔2026〕第0123号",
    "fine_yuan": 200.5,
    "decided_on": "2026-03-05",
    "note": "超速 25%",
}


def _track() -> list[Fix]:
    """One fix a minute from 10:00 local on DAY, heading north; 70-75 km/h at 10:02-10:04."""
    out, lat = [], 29.5
    for i, speed in enumerate([40, 50, 70, 75, 72, 50, 40, 30]):
        lat += speed / 60 / 111.0
        out.append(Fix(datetime(2026, 3, 2, 10, i, tzinfo=BEIJING), lat, 106.55, speed, 0.0))
    return out


@pytest.fixture
async def world(pool: asyncpg.Pool, settings: Settings):  # type: ignore[no-untyped-def]
    world = await make_world(pool, settings)
    world.alarms = {}  # type: ignore[attr-defined]
    for name, company, vehicles in (
        ("A", world.company_a, world.vehicles_a),
        ("B", world.company_b, world.vehicles_b),
    ):
        await store_fixes(pool, vehicles[0], company, world.terminals[vehicles[0]], _track())
        world.alarms[name] = await insert_alarm(  # type: ignore[attr-defined]
            pool,
            vehicle_id=vehicles[0],
            company_id=company,
            alarm_type="overspeed",
            started_at=datetime(2026, 3, 2, 10, 2, tzinfo=BEIJING),
            ended_at=datetime(2026, 3, 2, 10, 4, tzinfo=BEIJING),
            details={"limit_kmh": 60.0, "limit_source": "vehicle", "max_speed_kmh": 75.0},
            status="open",
        )
    return world


async def test_enforcement_records_and_corrects_a_penalty_audited_with_before_and_after(
    settings: Settings, pool: asyncpg.Pool, world
) -> None:  # type: ignore[no-untyped-def]
    alarm = world.alarms["A"]
    law = world.auth("enforcement")
    async with rest_client(settings) as client:
        r = await client.post(f"/api/alarms/{alarm}/penalty", json=DECISION, headers=law)
        assert r.status_code == 201, r.text
        created = r.json()
        assert created["decision_number"] == DECISION["decision_number"]
        assert created["fine_yuan"] == 200.5 and created["decided_on"] == "2026-03-05"
        assert created["recorded_by"] == "enforcement" and created["updated_at"] is None
        # a correction: another amount and date
        fixed = {**DECISION, "fine_yuan": 150, "decided_on": "2026-03-06", "note": "复核减为150元"}
        early = {**fixed, "decided_on": "1900-01-01"}
        r = await client.put(f"/api/penalties/{created['id']}", json=early, headers=law)
        assert r.status_code == 422 and "expected a date from the alarm's day" in r.text, r.text
        r = await client.put(f"/api/penalties/{created['id']}", json=fixed, headers=law)
        assert r.status_code == 200, r.text
        assert r.json()["fine_yuan"] == 150 and r.json()["updated_by"] == "enforcement"
        detail = (await client.get(f"/api/alarms/{alarm}", headers=world.auth("bureau"))).json()
        assert [(p["fine_yuan"], p["decided_on"], p["note"]) for p in detail["penalties"]] == [
            (150.0, "2026-03-06", "复核减为150元")
        ]
        trail = [(e["action"], e["details"]) for e in detail["audit"]]
        assert [a for a, _ in trail] == ["alarm.penalty", "alarm.penalty_edit"]
        assert trail[0][1]["fine_yuan"] == 200.5
        assert trail[1][1]["before"]["fine_yuan"] == 200.5
        assert trail[1][1]["after"]["fine_yuan"] == 150.0
        # what the form refuses, with the API's messages
        bad = [
            ({**DECISION, "fine_yuan": None}, "expected fine_yuan"),
            ({**DECISION, "fine_yuan": 1.005}, "decimal places"),
            ({**DECISION, "fine_yuan": -1}, "greater than or equal to 0"),
            ({**DECISION, "fine_yuan": 0}, "expected fine_yuan above 0, got 0"),
            ({**DECISION, "fine_yuan": "0.00"}, "expected fine_yuan above 0, got 0.00"),
            ({**DECISION, "fine_yuan": "-0"}, "expected fine_yuan above 0, got -0"),
            ({"decision": "警告", "fine_yuan": 200}, "decision 警告: expected no fine_yuan"),
            ({"decision": "不予处罚", "fine_yuan": 0}, "decision 不予处罚: expected no fine_yuan"),
            ({**DECISION, "decided_on": "2999-01-01"}, "up to today ("),
            # the alarm started 2026-03-02 (Beijing): a decision cannot come before it
            ({**DECISION, "decided_on": "1900-01-01"}, "expected a date from the alarm's day"),
            ({**DECISION, "decided_on": "2026-03-01"}, "(2026-03-02) up to today ("),
            ({**DECISION, "decision": "  "}, "got blanks"),
        ]
        for body, message in bad:
            r = await client.post(f"/api/alarms/{alarm}/penalty", json=body, headers=law)
            assert r.status_code == 422 and message in r.text, (body, r.text)
        # a warning needs no fine; the date defaults to today (local)
        r = await client.post(
            f"/api/alarms/{alarm}/penalty", json={"decision": "警告"}, headers=law
        )
        assert r.status_code == 201
        assert r.json()["decided_on"] == datetime.now(BEIJING).date().isoformat()
    assert await pool.fetchval("SELECT count(*) FROM alarm_penalties") == 2


@pytest.mark.parametrize(
    "body",
    [
        {"decision": "foo"},
        {"decision": "fine", "decision_number": "N3"},  # was recorded, a 罚款-like without amount
        {"decision": "fine", "fine_yuan": 100},
        {"decision": "罚款 200元", "fine_yuan": 200},
    ],
)
async def test_a_decision_other_than_the_three_kinds_is_a_422_listing_them(
    settings: Settings, pool: asyncpg.Pool, world, body: dict
) -> None:  # type: ignore[no-untyped-def]
    """Found by a new-user walkthrough: the decision was free text (``foo`` was recorded)."""
    alarm = world.alarms["A"]
    law = world.auth("enforcement")
    async with rest_client(settings) as client:
        r = await client.post(f"/api/alarms/{alarm}/penalty", json=body, headers=law)
        assert r.status_code == 422, r.text
        expected = f'decision: expected one of 罚款, 警告, 不予处罚, got \\"{body["decision"]}\\"'
        assert expected in r.text, r.text
        recorded = await client.post(
            f"/api/alarms/{alarm}/penalty", json={"decision": "警告"}, headers=law
        )
        assert recorded.status_code == 201, recorded.text
        r = await client.put(f"/api/penalties/{recorded.json()['id']}", json=body, headers=law)
        assert r.status_code == 422 and expected in r.text, r.text
    assert await pool.fetchval("SELECT array_agg(decision) FROM alarm_penalties") == ["警告"]


async def test_each_of_the_three_kinds_is_recorded(
    settings: Settings, pool: asyncpg.Pool, world
) -> None:  # type: ignore[no-untyped-def]
    alarm = world.alarms["A"]
    law = world.auth("enforcement")
    async with rest_client(settings) as client:
        for body in (
            {"decision": " 罚款 ", "fine_yuan": 100},
            {"decision": "警告"},
            {"decision": "不予处罚", "note": "首违不罚"},
        ):
            r = await client.post(f"/api/alarms/{alarm}/penalty", json=body, headers=law)
            assert r.status_code == 201, r.text
    stored = await pool.fetch("SELECT decision, fine_yuan FROM alarm_penalties ORDER BY id")
    assert [(row["decision"], row["fine_yuan"]) for row in stored] == [
        ("罚款", 100),
        ("警告", None),
        ("不予处罚", None),
    ]


async def test_a_decision_is_recorded_once_a_repeat_or_double_submit_is_409(
    settings: Settings, pool: asyncpg.Pool, world
) -> None:  # type: ignore[no-untyped-def]
    """Found in the console review: a double click on 保存 recorded the decision twice."""
    alarm = world.alarms["A"]
    law = world.auth("enforcement")
    async with rest_client(settings) as client:
        # a double submit: two requests at once, one decision
        answers = await asyncio.gather(
            *(client.post(f"/api/alarms/{alarm}/penalty", json=DECISION, headers=law)
              for _ in range(2))
        )  # fmt: skip
        assert sorted(r.status_code for r in answers) == [201, 409], [r.text for r in answers]
        first = next(r.json() for r in answers if r.status_code == 201)
        refused = next(r for r in answers if r.status_code == 409)
        assert f"penalty {first['id']}" in refused.text and "0123" in refused.text
        # the same decision number with other values is still the same document: 409
        r = await client.post(
            f"/api/alarms/{alarm}/penalty", json={**DECISION, "fine_yuan": 100}, headers=law
        )
        assert r.status_code == 409
        # found by a walkthrough: the number typed in full-width or another case was recorded
        # again; it is the same document (NFKC, case-folded)
        r = await client.post(
            f"/api/alarms/{alarm}/penalty",
            json={**DECISION, "decision_number": "渝交执罚〔２０２６〕第０１２３号"},
            headers=law,
        )
        assert r.status_code == 409 and f"penalty {first['id']}" in r.text, r.text
        lower = {**DECISION, "decision_number": "yj-2026-7"}
        r = await client.post(f"/api/alarms/{alarm}/penalty", json=lower, headers=law)
        assert r.status_code == 201, r.text
        r = await client.post(
            f"/api/alarms/{alarm}/penalty", json={**lower, "decision_number": "ＹＪ-2026-7"},
            headers=law,
        )  # fmt: skip
        assert r.status_code == 409, r.text
        # without a number: the very same decision twice is 409, a different one is recorded
        warning = {"decision": "警告", "decided_on": "2026-03-05"}
        r = await client.post(f"/api/alarms/{alarm}/penalty", json=warning, headers=law)
        assert r.status_code == 201, r.text
        r = await client.post(f"/api/alarms/{alarm}/penalty", json=warning, headers=law)
        assert r.status_code == 409
        r = await client.post(
            f"/api/alarms/{alarm}/penalty", json={**warning, "note": "二次警告"}, headers=law
        )
        assert r.status_code == 201
        # another alarm may carry its own decision (a number is checked per alarm)
        r = await client.post(
            f"/api/alarms/{world.alarms['B']}/penalty", json=DECISION, headers=law
        )
        assert r.status_code == 201
    assert await pool.fetchval("SELECT count(*) FROM alarm_penalties") == 5
    actions = await pool.fetch("SELECT action FROM audit_log")
    assert [a["action"] for a in actions] == ["alarm.penalty"] * 5


async def test_only_enforcement_records_penalties_and_unknown_ones_are_404(
    settings: Settings, pool: asyncpg.Pool, world
) -> None:  # type: ignore[no-untyped-def]
    alarm_a, alarm_b = world.alarms["A"], world.alarms["B"]
    law = world.auth("enforcement")
    async with rest_client(settings) as client:
        for who in ("op_a", "op_b", "bureau"):
            r = await client.post(
                f"/api/alarms/{alarm_a}/penalty", json=DECISION, headers=world.auth(who)
            )
            assert r.status_code == 403, who
        r = await client.post(f"/api/alarms/{alarm_a}/penalty", json=DECISION, headers=law)
        penalty = r.json()["id"]
        for who in ("op_a", "bureau"):
            r = await client.put(
                f"/api/penalties/{penalty}", json=DECISION, headers=world.auth(who)
            )
            assert r.status_code == 403, who
        r = await client.put(f"/api/penalties/{penalty + 99}", json=DECISION, headers=law)
        assert r.status_code == 404
        r = await client.post(f"/api/alarms/{alarm_b + 99}/penalty", json=DECISION, headers=law)
        assert r.status_code == 404
        # the other company's operator sees neither the alarm nor its evidence
        assert (
            await client.get(f"/api/alarms/{alarm_a}", headers=world.auth("op_b"))
        ).status_code == 404
        for fmt in ("pdf", "xlsx", "csv"):
            r = await client.get(
                "/api/reports/evidence",
                params={"alarm_id": alarm_a, "format": fmt},
                headers=world.auth("op_b"),
            )
            assert r.status_code == 404, fmt
    assert await pool.fetchval("SELECT count(*) FROM alarm_penalties") == 1
    actions = await pool.fetch("SELECT action FROM audit_log")
    assert [a["action"] for a in actions] == ["alarm.penalty"]


def _pdf_text(data: bytes, tmp_path: Path) -> str:
    path = tmp_path / "evidence.pdf"
    path.write_bytes(data)
    done = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    )
    return done.stdout


async def test_pdf_excel_and_csv_of_one_alarm_carry_one_report_number_and_local_time(
    settings: Settings, pool: asyncpg.Pool, world, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) not installed: scripts/install-system.sh")
    alarm = world.alarms["A"]
    law = world.auth("enforcement")
    async with rest_client(settings) as client:
        r = await client.post(f"/api/alarms/{alarm}/penalty", json=DECISION, headers=law)
        assert r.status_code == 201
        files: dict[str, bytes] = {}
        headers: dict[str, str] = {}
        for fmt in ("pdf", "xlsx", "csv"):
            r = await client.get(
                "/api/reports/evidence", params={"alarm_id": alarm, "format": fmt}, headers=law
            )
            assert r.status_code == 200, r.text
            files[fmt], headers[fmt] = r.content, r.headers["x-report-number"]
        # the number as each file prints it
        pdf_text = await asyncio.to_thread(_pdf_text, files["pdf"], tmp_path)
        workbook = load_workbook(io.BytesIO(files["xlsx"]))
        summary = {r[0]: r[1] for r in workbook["报告"].iter_rows(values_only=True) if r and r[0]}
        csv_text = files["csv"].decode("utf-8-sig")
        csv_summary = dict(
            line[2:].split(": ", 1) for line in csv_text.splitlines() if line.startswith("# ")
        )
        number = summary["报告编号 Report No."]
        assert number.startswith("EV-")
        assert csv_summary["报告编号 Report No."] == number
        assert f"报告编号 {number}" in pdf_text
        assert set(headers.values()) == {number}
        # the penalty is in every format
        for text in (summary["处罚决定 Penalty"], csv_summary["处罚决定 Penalty"], pdf_text):
            assert "渝交执罚〔2026〕第0123号" in text and "罚款 200.50 元" in text
        # every download is logged, all under the set's number
        log = await pool.fetch("SELECT report_number, format FROM report_log ORDER BY id")
        assert [(e["report_number"], e["format"]) for e in log] == [
            (number, "pdf"),
            (number, "xlsx"),
            (number, "csv"),
        ]
        # local time (Asia/Shanghai): the Excel's first column is local, its header says so;
        # the CSV's fix_time_local too; the canonical fix_time stays UTC
        sheet = workbook["定位数据"]
        header = [c.value for c in sheet[1]]
        assert header[0] == "定位时间 local time (Asia/Shanghai)" and header[2] == "fix_time (UTC)"
        rows = list(sheet.iter_rows(min_row=2, values_only=True))
        first_utc = datetime.fromisoformat(rows[0][2].replace("Z", "+00:00"))
        assert rows[0][0] == first_utc.astimezone(BEIJING).replace(tzinfo=None)
        assert rows[0][0] == datetime(2026, 3, 2, 10, 0)  # the first fix, 10:00 in Beijing
        assert sheet.cell(row=2, column=1).number_format == "yyyy-mm-dd hh:mm:ss"
        csv_rows = list(
            csv.reader(line for line in csv_text.splitlines() if not line.startswith("#"))
        )
        local_column = csv_rows[0].index("fix_time_local")
        assert [r[local_column] for r in csv_rows[1:4]] == [
            "2026-03-02 10:00:00",
            "2026-03-02 10:01:00",
            "2026-03-02 10:02:00",
        ]
        generated = summary["生成时间 Generated at"]
        assert generated.endswith("(Asia/Shanghai)")
        generated_local = datetime.strptime(generated[:19], "%Y-%m-%d %H:%M:%S")
        now_local = datetime.now(BEIJING).replace(tzinfo=None)
        assert abs((now_local - generated_local).total_seconds()) < 120
        # other data (a fix stored since, inside the window) is another set: a new number
        await store_position(
            pool, world.vehicles_a[0], datetime(2026, 3, 2, 2, 3, 30, tzinfo=UTC), 29.52, 106.55
        )
        r = await client.get(
            "/api/reports/evidence", params={"alarm_id": alarm, "format": "csv"}, headers=law
        )
        assert r.headers["x-report-number"] != number


async def test_kpi_fatigue_hours_count_an_open_episode_up_to_now(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    world = await make_world(pool, settings)
    vehicle = world.vehicles_a[0]
    now = datetime.now(UTC)
    today = now.astimezone(BEIJING).date()
    started = max(now - timedelta(hours=1), datetime.combine(today, datetime.min.time(), BEIJING))
    await store_position(pool, vehicle, started, 29.56, 106.55)
    await store_position(pool, vehicle, now - timedelta(seconds=20), 29.60, 106.55)
    # the rules engine's open fatigue episode: no end, its last fix where it began
    await insert_alarm(
        pool,
        vehicle_id=vehicle,
        company_id=world.company_a,
        alarm_type="fatigue_driving",
        started_at=started,
        ended_at=None,
        status="open",
        first_fix_time=started - timedelta(hours=4),
        last_fix_time=started,
    )
    async with rest_client(settings) as client:
        r = await client.get(
            "/api/reports/kpi",
            params={"from": today.isoformat(), "to": today.isoformat()},
            headers=world.auth("bureau"),
        )
    assert r.status_code == 200, r.text
    expected_h = (datetime.now(UTC) - started).total_seconds() / 3600
    fatigue_h = r.json()["county"]["counts"]["fatigue_hours"]
    assert expected_h - 0.02 <= fatigue_h <= expected_h + 0.001
    assert fatigue_h > 0
