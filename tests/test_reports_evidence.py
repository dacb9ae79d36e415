"""Evidence reports built from real data: PDF text, CSV digest, Excel, JSON, PNG pages."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from openpyxl import load_workbook
from pypdf import PdfReader
from test_reports_support import BEIJING, Fix, store_fixes

from gps_monitor.config import Settings
from gps_monitor.db import registry
from gps_monitor.models import PlateColor, VehicleClass
from web.reports import evidence, excel, export, pdf

LIMIT_KMH = 30.0  # the taxi's derived speeds never exceed 47.5 km/h, so 60 would raise nothing
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "reports"
_ENGINE_RUN: dict[str, list] = {}


@pytest.fixture
async def taxi(pool: asyncpg.Pool, settings: Settings, shared_data: Path) -> dict:
    """The T-Drive taxi stored as ingest stores it (one raw MQTT message per fix), and the
    overspeed alarms the rules engine raises on it with a 30 km/h vehicle limit, stored as the
    rules worker stores them (gps_monitor.db.alarms)."""
    from dataclasses import replace

    from gps_monitor.db.alarms import save_alarm_events
    from gps_monitor.tracks import read_track
    from rules.evaluate import evaluate_track, prepare_track

    company = await registry.ensure_company(pool, "北京出租汽车公司")
    vehicle = await registry.ensure_vehicle(
        pool,
        company_id=company.id,
        plate_number="京B12345",
        terminal_id="013800000001",
        vehicle_class=VehicleClass.FREIGHT,
        plate_color=PlateColor.YELLOW,
        speed_limit_kmh=LIMIT_KMH,
    )
    path = shared_data / "tdrive_beijing_taxi_1.txt"
    tracks = read_track(path, "tdrive")
    if "alarms" not in _ENGINE_RUN:  # the engine is deterministic: run it once per session
        at_60 = evaluate_track(tracks, settings, fmt="tdrive", speed_limit_kmh=60.0)
        assert [a for a in at_60 if a.alarm_type == "overspeed"] == []  # max derived 47.5 km/h
        _ENGINE_RUN["alarms"] = [
            a
            for a in evaluate_track(tracks, settings, fmt="tdrive", speed_limit_kmh=LIMIT_KMH)
            if a.alarm_type == "overspeed"
        ]
    alarms = _ENGINE_RUN["alarms"]
    # the positions with the speeds the engine judged (derived from the previous good fix)
    (track,) = tracks.values()
    judged = prepare_track(track, "tdrive", settings)
    fixes = [Fix(p.fix_time, p.latitude, p.longitude, p.speed_kmh, p.heading_deg,
                 quality=p.quality) for p in judged]  # fmt: skip
    await store_fixes(pool, vehicle.id, company.id, vehicle.terminal_id, fixes)
    async with pool.acquire() as conn, conn.transaction():
        queued = await save_alarm_events(
            conn,
            [replace(a, vehicle_id=vehicle.id, company_id=company.id,
                     dedup_key=f"{vehicle.id}:{a.dedup_key}") for a in alarms],
        )  # fmt: skip
    stored = queued.alarms
    first = stored[0]
    run = [f for f in fixes if first.started_at <= f.fix_time <= first.last_fix_time]
    back = next(f for f in fixes if f.fix_time == first.ended_at)
    return {
        "vehicle": vehicle,
        "company": company,
        "fixes": fixes,
        "alarms": stored,
        "run": run,
        "back": back,
        "alarm_id": stored[0].id,
    }


async def test_evidence_pdf_text_holds_plate_times_speeds_limit_and_digest(
    pool: asyncpg.Pool, settings: Settings, taxi: dict
) -> None:
    report = await evidence.build_for_alarm(
        pool, taxi["alarm_id"], settings.reports, generated_by="执法人员 张三"
    )
    run = taxi["run"]

    # the engine's first episode in the real track: 2008-02-06 14:27:43-14:57:43 local, three
    # fixes above 30 km/h (10-minute sampling), max 47.46 km/h, 1,800 s
    # all three episodes at 30 km/h (local start, end), checked against the derived speeds
    def local(*parts: int) -> datetime:
        return datetime(*parts, tzinfo=BEIJING)  # type: ignore[misc]

    assert [(a.started_at, a.ended_at) for a in taxi["alarms"]] == [
        (local(2008, 2, 6, 14, 27, 43), local(2008, 2, 6, 14, 57, 43)),
        (local(2008, 2, 7, 19, 4, 53), local(2008, 2, 7, 19, 24, 52)),
        (local(2008, 2, 8, 10, 44, 48), local(2008, 2, 8, 10, 54, 48)),
    ]
    assert [round(f.speed_kmh, 1) for f in run] == [38.7, 47.5, 35.6]
    data = pdf.render_pdf(report, settings.reports)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "evidence_tdrive.pdf").write_bytes(data)
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)
    compact = text.replace(" ", "")
    assert "京B12345" in text
    assert "2008-02-0614:27:43" in compact  # start, local time
    assert "2008-02-0614:57:43" in compact  # end: the first fix back at or below the limit
    assert "0:30:00(1800s)" in compact  # duration
    assert "47.5km/h" in compact  # max speed (47.46)
    assert "30.0km/h" in compact  # limit
    assert "[vehicle]" in compact  # limit source: the vehicle's own limit
    assert "13.85km" in compact  # distance of the episode as the engine measured it
    assert report.digest_sha256 in compact
    assert report.report_number in text
    assert "执法人员张三" in compact
    # every position of the episode is in the table with its speed
    for fix in run:
        assert report.local(fix.fix_time).replace(" ", "") in compact
        assert f"{fix.speed_kmh:.1f}超" in compact  # above the limit: marked
    # sparse data: the context reaches 3 fixes either side (within 30 min)
    before = [p for p in report.positions if p.fix_time < run[0].fix_time]
    after = [p for p in report.positions if p.fix_time > taxi["back"].fix_time]
    assert len(before) == len(after) == 3

    # every other overspeed episode the engine raised renders with its own times and speeds
    for alarm in taxi["alarms"][1:]:
        other = await evidence.build_for_alarm(pool, alarm.id, settings.reports,
                                               generated_by="t")  # fmt: skip
        body = "".join(
            page.extract_text()
            for page in PdfReader(io.BytesIO(pdf.render_pdf(other, settings.reports))).pages
        ).replace(" ", "")
        assert other.local(alarm.started_at).replace(" ", "") in body
        assert f"{alarm.details['max_speed_kmh']:.1f}km/h" in body
        assert other.digest_sha256 in body


async def test_digest_recomputed_from_csv_export_matches(
    pool: asyncpg.Pool, settings: Settings, taxi: dict
) -> None:
    report = await evidence.build_for_alarm(
        pool, taxi["alarm_id"], settings.reports, generated_by="cli"
    )
    csv_bytes = export.render_csv(report)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "evidence_tdrive.csv").write_bytes(csv_bytes)
    rows = export.read_csv_rows(csv_bytes)
    assert len(rows) == len(report.positions) > 0
    recomputed = hashlib.sha256(
        "".join(",".join(row[:16]) + "\n" for row in rows).encode("utf-8")
    ).hexdigest()
    assert recomputed == report.digest_sha256
    # each raw_sha256 is the digest of the stored raw MQTT payload
    raw = await pool.fetch("SELECT id, payload FROM raw_messages")
    by_id = {r["id"]: hashlib.sha256(bytes(r["payload"])).hexdigest() for r in raw}
    for row in rows:
        assert row[15] == by_id[int(row[19])]
    # tampering with one stored speed changes the digest
    first = report.positions[0]
    await pool.execute(
        "UPDATE positions SET speed_kmh = speed_kmh + 1 WHERE vehicle_id = $1 AND fix_time = $2",
        first.vehicle_id,
        first.fix_time,
    )
    again = await evidence.build_for_alarm(
        pool, taxi["alarm_id"], settings.reports, generated_by="cli"
    )
    assert again.digest_sha256 != report.digest_sha256


async def test_excel_and_json_hold_the_same_content(
    pool: asyncpg.Pool, settings: Settings, taxi: dict
) -> None:
    report = await evidence.build_for_alarm(
        pool, taxi["alarm_id"], settings.reports, generated_by="cli"
    )
    wb = load_workbook(io.BytesIO(excel.render_evidence_xlsx(report, settings.reports)))
    assert wb.sheetnames == ["报告", "定位数据", "校验"]
    summary = {r[0]: r[1] for r in wb["报告"].iter_rows(values_only=True) if r and r[0]}
    assert summary["车牌号码 Plate"] == "京B12345 (黄色)"
    assert summary["最高速度 Max speed"] == "47.5 km/h"
    assert summary["限速 Limit applied"] == "30.0 km/h"
    sheet_rows = [list(r) for r in wb["定位数据"].iter_rows(min_row=2, values_only=True)]
    recomputed = hashlib.sha256(
        "".join(",".join(str(v or "") for v in r[1:17]) + "\n" for r in sheet_rows).encode()
    ).hexdigest()
    assert recomputed == report.digest_sha256 == wb["校验"]["B1"].value
    body = json.loads(export.render_json(report))
    assert body["vehicle"]["plate_number"] == "京B12345"
    assert body["violation"]["limit_kmh"] == 30.0
    assert body["violation"]["max_speed_kmh"] == 47.46  # as the rules engine recorded it
    assert body["integrity"]["digest_sha256"] == report.digest_sha256
    assert [p["canonical"] for p in body["positions"]] == report.canonical_rows()


async def test_window_report_and_pdf_pages_convert_to_png(
    pool: asyncpg.Pool, settings: Settings, taxi: dict, tmp_path: Path
) -> None:
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (poppler-utils) not installed: scripts/install-system.sh")
    start = datetime(2008, 2, 6, 13, 0, tzinfo=BEIJING)
    report = await evidence.build_for_window(
        pool,
        taxi["vehicle"].id,
        start,
        start + timedelta(hours=4),
        settings.reports,
        generated_by="bureau",
        speed_limit_kmh=LIMIT_KMH,
    )
    assert report.violation.alarm_type == "window"
    assert all(start <= p.fix_time <= start + timedelta(hours=4) for p in report.positions)
    path = tmp_path / "window.pdf"
    path.write_bytes(pdf.render_pdf(report, settings.reports))
    await asyncio.to_thread(
        subprocess.run,
        ["pdftoppm", "-r", "60", "-png", str(path), str(tmp_path / "window")],
        check=True,
        capture_output=True,
        timeout=120,
    )
    pages = sorted(await asyncio.to_thread(lambda: list(tmp_path.glob("window-*.png"))))
    assert len(pages) >= 3  # summary, map and speed chart, positions and integrity
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for page in pages:
        shutil.copy(page, ARTIFACTS / page.name)


async def test_geofence_and_route_of_an_alarm_are_drawn(
    pool: asyncpg.Pool, settings: Settings, taxi: dict
) -> None:
    run = taxi["run"]
    lats = [f.latitude for f in run]
    lons = [f.longitude for f in run]
    ring = [[min(lons) - 0.01, min(lats) - 0.01], [max(lons) + 0.01, min(lats) - 0.01],
            [max(lons) + 0.01, max(lats) + 0.01], [min(lons) - 0.01, max(lats) + 0.01],
            [min(lons) - 0.01, min(lats) - 0.01]]  # fmt: skip
    await pool.execute(
        "INSERT INTO geofences (id, name, kind, geometry) VALUES ('wz-1', '水源保护区', "
        "'forbidden', $1)",
        {"type": "Polygon", "coordinates": [ring]},
    )
    await pool.execute(
        "INSERT INTO routes (id, name, line, corridor_m) VALUES ('r-9', '危化品核定线路', $1, 100)",
        {"type": "LineString", "coordinates": [[f.longitude, f.latitude] for f in run]},
    )
    vehicle = taxi["vehicle"]
    for alarm_type, details in (
        ("forbidden_area_entry", {"geofence_id": "wz-1", "geofence_name": "水源保护区"}),
        ("route_deviation", {"route_id": "r-9"}),
    ):
        alarm_id = await pool.fetchval(
            "INSERT INTO alarms (vehicle_id, company_id, alarm_type, dedup_key, started_at, "
            "ended_at, details) VALUES ($1, $2, $3, $3, $4, $5, $6) RETURNING id",
            vehicle.id, vehicle.company_id, alarm_type, run[0].fix_time, run[-1].fix_time,
            details,
        )  # fmt: skip
        report = await evidence.build_for_alarm(pool, alarm_id, settings.reports, generated_by="t")
        (shape,) = report.shapes
        assert shape.name == ("水源保护区" if alarm_type != "route_deviation" else "危化品核定线路")
        assert shape.closed is (alarm_type != "route_deviation")
        data = pdf.render_pdf(report, settings.reports)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / f"evidence_{alarm_type}.pdf").write_bytes(data)
        text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(data)).pages)
        assert evidence.ALARM_TYPES[alarm_type] in text
        assert "GB/T35658-2017" in text.replace(" ", "")
