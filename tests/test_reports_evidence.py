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
from test_reports_support import BEIJING, insert_alarm, read_tdrive, store_fixes

from gps_monitor.config import Settings
from gps_monitor.db import registry
from gps_monitor.models import PlateColor, VehicleClass
from web.reports import evidence, excel, export, pdf

LIMIT_KMH = 30.0  # the taxi's derived speeds never exceed 47.5 km/h, so 60 would raise nothing
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "reports"


def _episode(fixes: list, limit: float) -> tuple[int, int]:
    """Indices (first above, first back at or below) of the longest run of consecutive fixes
    above the limit (>= 2 fixes: one fix has no measured duration)."""
    best: tuple[int, int] = (0, 0)
    i = 0
    while i < len(fixes):
        if fixes[i].speed_kmh > limit:
            j = i
            while j < len(fixes) and fixes[j].speed_kmh > limit:
                j += 1
            if j - i >= 2 and j - i > best[1] - best[0]:
                best = (i, j)
            i = j
        i += 1
    return best


@pytest.fixture
async def taxi(pool: asyncpg.Pool, shared_data: Path) -> dict:
    """The T-Drive taxi stored as ingest stores it, and one overspeed alarm over its longest
    run above 30 km/h, with details in the rules engine's shape."""
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
    fixes = read_tdrive(shared_data / "tdrive_beijing_taxi_1.txt")
    await store_fixes(pool, vehicle.id, company.id, vehicle.terminal_id, fixes)
    first, back = _episode(fixes, LIMIT_KMH)
    run = fixes[first:back]
    alarm_id = await insert_alarm(
        pool,
        vehicle_id=vehicle.id,
        company_id=company.id,
        alarm_type="overspeed",
        started_at=run[0].fix_time,
        ended_at=fixes[back].fix_time,
        first_fix_time=run[0].fix_time,
        last_fix_time=run[-1].fix_time,
        details={
            "limit_kmh": LIMIT_KMH,
            "limit_source": "vehicle",
            "max_speed_kmh": max(f.speed_kmh for f in run),
            "duration_s": (run[-1].fix_time - run[0].fix_time).total_seconds(),
        },
    )
    return {
        "vehicle": vehicle,
        "company": company,
        "fixes": fixes,
        "run": run,
        "back": fixes[back],
        "alarm_id": alarm_id,
    }


async def test_evidence_pdf_text_holds_plate_times_speeds_limit_and_digest(
    pool: asyncpg.Pool, settings: Settings, taxi: dict
) -> None:
    report = await evidence.build_for_alarm(
        pool, taxi["alarm_id"], settings.reports, generated_by="执法人员 张三"
    )
    run = taxi["run"]
    # the episode found in the real track: 2008-02-06 afternoon, three fixes above 30 km/h
    assert run[0].fix_time == datetime(2008, 2, 6, 14, 27, 43, tzinfo=BEIJING)
    assert [f.speed_kmh for f in run] == [38.7, 47.5, 35.7]
    data = pdf.render_pdf(report, settings.reports)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "evidence_tdrive.pdf").write_bytes(data)
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)
    compact = text.replace(" ", "")
    assert "京B12345" in text
    assert "2008-02-0614:27:43" in compact  # start, local time
    assert "2008-02-0614:57:43" in compact  # end: the first fix back at or below the limit
    assert "47.5km/h" in compact  # max speed
    assert "30.0km/h" in compact  # limit
    assert report.digest_sha256 in compact
    assert report.report_number in text
    assert "执法人员张三" in compact
    # every position of the episode is in the table with its speed
    for fix in run:
        assert fix.fix_time.strftime("%Y-%m-%d%H:%M:%S") in compact
    # context: 5 minutes either side of the 10-minute sampled episode adds no fix before it
    assert report.positions[0].fix_time <= run[0].fix_time
    assert report.positions[-1].fix_time >= taxi["back"].fix_time


async def test_digest_recomputed_from_csv_export_matches(
    pool: asyncpg.Pool, settings: Settings, taxi: dict
) -> None:
    report = await evidence.build_for_alarm(
        pool, taxi["alarm_id"], settings.reports, generated_by="cli"
    )
    rows = export.read_csv_rows(export.render_csv(report))
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
        "".join(",".join(str(v or "") for v in r[:16]) + "\n" for r in sheet_rows).encode()
    ).hexdigest()
    assert recomputed == report.digest_sha256 == wb["校验"]["B1"].value
    body = json.loads(export.render_json(report))
    assert body["vehicle"]["plate_number"] == "京B12345"
    assert body["violation"]["limit_kmh"] == 30.0
    assert body["violation"]["max_speed_kmh"] == 47.5
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
