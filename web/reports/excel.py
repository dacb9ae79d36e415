"""Evidence and KPI reports as Excel workbooks (openpyxl; GB/T 35658 asks for Excel export).

Evidence workbook: sheet 报告 (summary, the track map and the speed chart as images), sheet
定位数据 (the positions: column A the fix time as a date-time cell in local time, the display
zone, named in the header; columns B-Q the 16 canonical columns as text, exactly as the digest
defines them, fix_time among them in UTC; then episode flag and segment), sheet 校验 (digest and
how to recompute it). Every time shown for reading is local (display zone); UTC appears only in
the canonical column the digest is computed over.
KPI workbook: sheet 汇总 (county and companies), sheet 日趋势 (per day), sheet 说明 (definitions).

Every row goes through :func:`append_row`, which stores text as text: openpyxl would store a
string starting with ``=`` as a live formula, so a plate, company name or handling note such as
``=HYPERLINK(...)`` would run in the reader's spreadsheet. The cell's type is set to string and
the text is kept exactly (no quote prefix: the evidence must show what was recorded). A control
character that a workbook cannot hold (U+0000-U+001F other than tab, LF and CR: openpyxl raises
``IllegalCharacterError``, so one such character in an operator's handling note made the alarm's
evidence workbook a 500) is written as its escape ``\\x07``, visible to the reader.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.drawing.image import Image as XlImage
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

from gps_monitor.config import ReportsSettings
from web.reports import charts
from web.reports.evidence import CANONICAL_COLUMNS, CANONICAL_VERSION, EvidenceReport

_BOLD = Font(bold=True)
_EPISODE_FILL = PatternFill("solid", fgColor="FDE2E2")
_LEAD_UP_FILL = PatternFill("solid", fgColor="FFF3CD")  # lead-up counted toward the violation
_HEADER_FILL = PatternFill("solid", fgColor="DDDDDD")
LOCAL_TIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
"""Number format of the local-time cells (Excel datetimes carry no zone: the header names it)."""


def _escape(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def append_row(sheet: Any, values: Sequence[Any]) -> None:
    """Append ``values`` as the next row of ``sheet``; every ``str`` is stored as a text cell.

    openpyxl types a string that starts with ``=`` as a formula (``data_type == "f"``); here its
    type is set back to string (``"s"``), so the workbook holds the exact text and no formula.
    Other leading characters Excel treats specially (``+ - @``, tab, CR) are already plain
    strings in openpyxl and stay so. Control characters a workbook cannot hold become their
    escape (``"\\x07"``) rather than failing the whole workbook.
    """
    values = [
        ILLEGAL_CHARACTERS_RE.sub(_escape, value) if isinstance(value, str) else value
        for value in values
    ]
    sheet.append(values)
    row = sheet.max_row
    for column, value in enumerate(values, start=1):
        if isinstance(value, str):
            sheet.cell(row=row, column=column).data_type = "s"


def _local_text(iso: str, zone: str) -> str:
    """An ISO 8601 instant as local ``YYYY-MM-DD HH:MM:SS`` in ``zone``."""
    return datetime.fromisoformat(iso).astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S")


def _widths(sheet: Any, widths: list[int]) -> None:
    for i, width in enumerate(widths, start=1):
        sheet.column_dimensions[get_column_letter(i)].width = width


def render_evidence_xlsx(
    report: EvidenceReport, settings: ReportsSettings, *, images: bool = True
) -> bytes:
    """The evidence report as .xlsx bytes (see module docstring)."""
    wb = Workbook()
    summary = wb.active
    assert summary is not None
    summary.title = "报告"
    append_row(summary, [report.issuer])
    append_row(summary, ["道路运输车辆动态监控 违法证据报告 Evidence report"])
    summary["A2"].font = Font(bold=True, size=14)
    append_row(summary, [])
    for label, value in report.summary():
        append_row(summary, [label, value])
        summary.cell(row=summary.max_row, column=1).font = _BOLD
    _widths(summary, [26, 90])
    if images:
        anchor_row = summary.max_row + 2
        track = XlImage(io.BytesIO(charts.track_map_png(report, settings.cjk_font_path)))
        track.width, track.height = 720, 500
        summary.add_image(track, f"A{anchor_row}")
        speed = XlImage(io.BytesIO(charts.speed_chart_png(report, settings.cjk_font_path)))
        speed.width, speed.height = 720, 280
        summary.add_image(speed, f"A{anchor_row + 27}")

    sheet = wb.create_sheet("定位数据")
    local_header = f"定位时间 local time ({report.display_timezone})"
    canonical_header = [f"{c} (UTC)" if c == "fix_time" else c for c in CANONICAL_COLUMNS]
    append_row(sheet, [local_header, *canonical_header, "in_episode", "segment"])
    for cell in sheet[1]:
        cell.font = _BOLD
        cell.fill = _HEADER_FILL
    for p in report.positions:
        local = p.fix_time.astimezone(report.tz).replace(tzinfo=None)
        append_row(sheet, [local, *p.canonical_fields(), p.in_episode, p.segment])
        sheet.cell(row=sheet.max_row, column=1).number_format = LOCAL_TIME_FORMAT
        if p.in_episode or p.lead_up:
            for cell in sheet[sheet.max_row]:
                cell.fill = _EPISODE_FILL if p.in_episode else _LEAD_UP_FILL
    sheet.freeze_panes = "B2"
    _widths(sheet, [20, 10, 28, 12, 12, 9, 9, 9, 8, 8, 8, 10, 10, 10, 8, 7, 66, 10, 10])

    check = wb.create_sheet("校验")
    append_row(check, ["SHA-256", report.digest_sha256])
    append_row(check, ["canonical form", CANONICAL_VERSION])
    append_row(check, ["positions", len(report.positions)])
    append_row(
        check,
        [
            "how to verify",
            "Sheet 定位数据, columns B-Q as text (column A is the local time for reading), rows "
            "in order: join each row's 16 values with ',' and end with LF, UTF-8, SHA-256 over "
            "all rows.",
        ],
    )
    check["B4"].alignment = Alignment(wrap_text=True)
    _widths(check, [18, 80])
    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()


def render_kpi_xlsx(report: dict[str, Any]) -> bytes:
    """A KPI report dict (:func:`web.reports.kpi.KpiReport.to_dict`) as .xlsx bytes."""
    from web.reports.kpi import KPI_LABELS  # local: avoids an import cycle at module load

    wb = Workbook()
    sheet = wb.active
    assert sheet is not None
    sheet.title = "汇总"
    append_row(sheet, [f"联网联控考核指标 KPI report {report['report_number']}"])
    sheet["A1"].font = Font(bold=True, size=13)
    append_row(
        sheet,
        [
            f"期间 period: {report['period']['from_local']} — {report['period']['to_local']}"
            f" ({report['period']['timezone']}); 生成 "
            f"{_local_text(report['generated_at'], report['period']['timezone'])} "
            f"by {report['generated_by']}"
        ],
    )
    append_row(sheet, [])
    keys = list(KPI_LABELS)
    append_row(sheet, ["单位 Unit", *[KPI_LABELS[k] for k in keys]])
    for cell in sheet[sheet.max_row]:
        cell.font = _BOLD
        cell.fill = _HEADER_FILL
        cell.alignment = Alignment(wrap_text=True)
    for entry in [report["county"], *report["companies"]]:
        append_row(sheet, [entry["name"], *[entry["kpis"].get(k) for k in keys]])
    _widths(sheet, [28, *[14] * len(keys)])

    trend = wb.create_sheet("日趋势")
    append_row(trend, ["日期 day", *[KPI_LABELS[k] for k in keys]])
    for cell in trend[1]:
        cell.font = _BOLD
        cell.fill = _HEADER_FILL
        cell.alignment = Alignment(wrap_text=True)
    for day in report["county"]["days"]:
        append_row(trend, [day["day"], *[day["kpis"].get(k) for k in keys]])
    _widths(trend, [14, *[14] * len(keys)])

    notes = wb.create_sheet("说明")
    for key, text in report["definitions"].items():
        append_row(notes, [KPI_LABELS.get(key, key), text])
    append_row(notes, ["thresholds", str(report["thresholds"])])
    _widths(notes, [24, 120])
    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()
