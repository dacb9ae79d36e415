"""Build, render and log a report in one call: what the CLI and the API both use."""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from typing import Any

import asyncpg

from gps_monitor.config import ReportsSettings
from gps_monitor.db import registry, report_log
from gps_monitor.errors import NotFoundError
from gps_monitor.media_store import MediaStore
from web.reports import evidence, excel, export, kpi

EVIDENCE_FORMATS = ("pdf", "xlsx", "csv", "json")
KPI_FORMATS = ("json", "xlsx")
MEDIA_TYPES = {
    "pdf": "application/pdf",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
}


def render_evidence(
    report: evidence.EvidenceReport,
    fmt: str,
    settings: ReportsSettings,
    media_store: MediaStore | None = None,
) -> bytes:
    """The report in one of :data:`EVIDENCE_FORMATS` (the PDF prints the alarm's photos from
    ``media_store`` when given).

    Raises:
        ValueError: unknown format.
    """
    if fmt == "pdf":
        from web.reports import pdf  # fpdf2 and matplotlib load only when needed

        return pdf.render_pdf(report, settings, media_store)
    if fmt == "xlsx":
        return excel.render_evidence_xlsx(report, settings)
    if fmt == "csv":
        return export.render_csv(report)
    if fmt == "json":
        return export.render_json(report)
    raise ValueError(f"format: expected one of {', '.join(EVIDENCE_FORMATS)}, got {fmt!r}")


async def evidence_report(
    pool: asyncpg.Pool | asyncpg.Connection,
    settings: ReportsSettings,
    fmt: str,
    *,
    generated_by: str,
    user_id: int | None = None,
    alarm_id: int | None = None,
    vehicle_id: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    speed_limit_kmh: float | None = None,
    media_store: MediaStore | None = None,
) -> tuple[evidence.EvidenceReport, bytes]:
    """Build (from an alarm, or a vehicle and window), render and log an evidence report.

    Raises:
        NotFoundError: no such alarm or vehicle.
        ValueError: bad format or window, or too many positions.
    """
    if fmt not in EVIDENCE_FORMATS:
        raise ValueError(f"format: expected one of {', '.join(EVIDENCE_FORMATS)}, got {fmt!r}")
    if alarm_id is not None:
        report = await evidence.build_for_alarm(pool, alarm_id, settings, generated_by=generated_by)
    else:
        if vehicle_id is None or start is None or end is None:
            raise ValueError("expected an alarm id, or a vehicle with a window start and end")
        report = await evidence.build_for_window(
            pool, vehicle_id, start, end, settings,
            generated_by=generated_by, speed_limit_kmh=speed_limit_kmh,
        )  # fmt: skip
    data = await asyncio.to_thread(render_evidence, report, fmt, settings, media_store)
    await report_log.record(
        pool,
        report_number=report.report_number,
        kind="evidence",
        format=fmt,
        generated_by=generated_by,
        generated_at=report.generated_at,
        alarm_id=report.alarm_id,
        vehicle_id=report.vehicle_id,
        company_id=report.company_id,
        window_start=report.window_start,
        window_end=report.window_end,
        user_id=user_id,
        digest_sha256=report.digest_sha256,
        record_count=len(report.positions),
        parameters={} if speed_limit_kmh is None else {"speed_limit_kmh": speed_limit_kmh},
    )
    return report, data


async def kpi_report(
    pool: asyncpg.Pool | asyncpg.Connection,
    settings: ReportsSettings,
    fmt: str,
    first_day: date,
    last_day: date,
    *,
    generated_by: str,
    company_id: int | None = None,
    user_id: int | None = None,
    log: bool = True,
) -> tuple[dict[str, Any], bytes]:
    """Compute, render (json/xlsx) and log a KPI report; returns (report dict, bytes).

    Raises:
        ValueError: bad format or period.
        NotFoundError: ``company_id`` names no company (checked before a number is taken).
    """
    if fmt not in KPI_FORMATS:
        raise ValueError(f"format: expected one of {', '.join(KPI_FORMATS)}, got {fmt!r}")
    kpi.check_period(first_day, last_day, settings.display_timezone)  # before a number is taken
    if company_id is not None and await registry.company_name(pool, company_id) is None:
        raise NotFoundError(f"company {company_id}: expected an existing company, found none")
    number = await report_log.next_report_number(pool, "kpi", settings.display_timezone)
    result = await kpi.compute_kpis(
        pool, first_day, last_day, settings,
        company_id=company_id, generated_by=generated_by, report_number=number,
    )  # fmt: skip
    body = result.to_dict()
    if fmt == "json":
        import json

        data = json.dumps(body, ensure_ascii=False, indent=1).encode("utf-8")
    else:
        data = excel.render_kpi_xlsx(body)
    if log:
        await report_log.record(
            pool,
            report_number=number,
            kind="kpi",
            format=fmt,
            generated_by=generated_by,
            generated_at=result.generated_at,
            company_id=company_id,
            user_id=user_id,
            parameters={"from": first_day.isoformat(), "to": last_day.isoformat()},
        )
    return body, data
