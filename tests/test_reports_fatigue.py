"""Evidence report of a fatigue alarm: the violation marked in the table, the map and the exports
is the alarm's own [start, end], as the summary gives it; the continuous driving before the
start (which made the rest a violation) is shown apart as lead-up, never as violation."""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import asyncpg
from pypdf import PdfReader
from test_reports_support import BEIJING, Fix, insert_alarm, store_fixes

from gps_monitor.config import Settings
from gps_monitor.db import registry
from web.reports import evidence, export, pdf

RUN_START = datetime(2026, 3, 2, 9, 55, 0, tzinfo=BEIJING)
LIMIT_REACHED = RUN_START + timedelta(hours=4, seconds=38)  # 13:55:38
RUN_END = datetime(2026, 3, 2, 14, 20, 0, tzinfo=BEIJING)


async def test_fatigue_evidence_marks_only_the_driving_beyond_the_limit_as_violation(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    company = await registry.ensure_company(pool, "渝运物流")
    vehicle = await registry.ensure_vehicle(
        pool, company_id=company.id, plate_number="渝A20001", terminal_id="013900020001"
    )
    # parked 10 min, then a fix a minute driving north at ~60 km/h until 14:20, then parked
    fixes, lat = [], 29.5
    t = RUN_START - timedelta(minutes=10)
    while t <= RUN_END + timedelta(minutes=10):
        moving = RUN_START <= t <= RUN_END
        lat += 0.009 if moving else 0.0
        fixes.append(Fix(t, lat, 106.55, 60.0 if moving else 0.0, 0.0))
        t += timedelta(minutes=1)
    await store_fixes(pool, vehicle.id, company.id, vehicle.terminal_id, fixes)
    # as rules/fatigue.py stores it: start = when the limit was exceeded, first fix = run start
    alarm_id = await insert_alarm(
        pool, vehicle_id=vehicle.id, company_id=company.id, alarm_type="fatigue_driving",
        started_at=LIMIT_REACHED, ended_at=RUN_END, first_fix_time=RUN_START,
        last_fix_time=RUN_END,
        details={"continuous_driving_s": 15900.0, "limit_s": 14400.0,
                 "run_started_at": RUN_START.isoformat()},
    )  # fmt: skip
    report = await evidence.build_for_alarm(pool, alarm_id, settings.reports, generated_by="test")
    summary = dict(report.summary())
    assert summary["开始时间 Start"].endswith("13:55:38")
    violation = [p.fix_time for p in report.positions if p.in_episode]
    assert violation[0] == datetime(2026, 3, 2, 13, 56, tzinfo=BEIJING)
    assert violation[-1] == RUN_END
    lead_up = [p.fix_time for p in report.positions if p.lead_up]
    assert lead_up[0] == RUN_START and lead_up[-1] == datetime(2026, 3, 2, 13, 55, tzinfo=BEIJING)
    assert not any(p.in_episode and p.lead_up for p in report.positions)
    assert report.positions[0].segment == "context"  # parked before the run
    # duration and distance are those of the violation, not of the whole run
    assert report.violation.duration_s == (RUN_END - LIMIT_REACHED).total_seconds()
    # the PDF table says which rows are violation, lead-up and context
    text = "\n".join(
        page.extract_text()
        for page in PdfReader(io.BytesIO(pdf.render_pdf(report, settings.reports))).pages
    )
    rows = {line.split()[2]: line for line in text.splitlines() if " 2026-03-02 " in line}
    assert rows["09:56:00"].endswith("连续驾驶"), rows["09:56:00"]
    assert rows["13:55:00"].endswith("连续驾驶")
    assert rows["13:56:00"].endswith("违法")
    assert rows["09:50:00"].endswith("前后")
    # the CSV says the same
    segments = {r[16][11:]: r[20] for r in export.read_csv_rows(export.render_csv(report))}
    assert segments["09:56:00"] == "lead_up" and segments["13:56:00"] == "violation"
