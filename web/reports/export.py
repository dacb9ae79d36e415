"""Evidence report as CSV and JSON.

CSV (UTF-8 with BOM so Excel shows Chinese; LF line ends): first the report summary as comment
lines ``# label: value``, then a header row and one row per position in fix-time order. The first
16 columns are the canonical fields of :mod:`web.reports.evidence`, formatted exactly as the
digest defines them, so skipping the ``#`` lines and the header, the digest is
``sha256(''.join(','.join(row[:16]) + '\\n' for row in rows))``. Then display columns:
``fix_time_local``, ``in_episode``, ``source`` (live / held), ``raw_message_id``, ``segment``
(``violation``: inside the alarm's [start, end]; ``lead_up``: counted toward it, e.g. the
continuous driving before a fatigue alarm; ``context``).

Spreadsheet formulas (CSV injection): Excel and LibreOffice run a cell that starts with ``=``,
``+``, ``-`` or ``@`` (also after a tab or CR) as a formula. The position rows hold only values
this module formats (numbers, ``true``/``false``, enums, hex digests), so they are written
unchanged and the digest stays exact. The ``#`` summary lines carry recorded text (plate, company,
handling notes); each line is one line (any line break inside a value becomes a space) and, as
a spreadsheet splits it at commas, each comma-separated piece that would start a formula gets a
leading ``'`` (the common practice; the piece then shows as text). Those lines are a display
copy: the exact text is in the JSON export, the Excel workbook (text cells) and the PDF.

JSON: ``{"report": ..., "vehicle": ..., "violation": ..., "handling": ..., "integrity": ...,
"positions": [...]}``; each position carries its typed values and its ``canonical`` field
strings.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from typing import Any

from web.reports.evidence import CANONICAL_COLUMNS, CANONICAL_VERSION, EvidenceReport

DISPLAY_COLUMNS = ("fix_time_local", "in_episode", "source", "raw_message_id", "segment")


FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
"""Leading characters that make a spreadsheet cell a formula."""


def summary_line(label: str, value: str) -> str:
    """The CSV comment line ``# label: value`` (no line end), safe to open in a spreadsheet:
    line breaks become spaces, and a comma-separated piece that would start a formula (after
    optional blanks or a double quote) is prefixed with ``'``."""
    text = " ".join(f"# {label}: {value}".splitlines())
    pieces = text.split(",")
    for i, piece in enumerate(pieces[1:], start=1):
        if piece.lstrip(' "').startswith(FORMULA_TRIGGERS):
            pieces[i] = "'" + piece
    return ",".join(pieces)


def render_csv(report: EvidenceReport) -> bytes:
    """CSV bytes (see module docstring)."""
    out = io.StringIO()
    for label, value in report.summary():
        out.write(summary_line(label, value) + "\n")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*CANONICAL_COLUMNS, *DISPLAY_COLUMNS])
    for p in report.positions:
        writer.writerow(
            [
                *p.canonical_fields(),
                report.local(p.fix_time),
                "true" if p.in_episode else "false",
                p.source,
                "" if p.raw_message_id is None else str(p.raw_message_id),
                p.segment,
            ]
        )
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def read_csv_rows(data: bytes) -> list[list[str]]:
    """The position rows of a CSV made by :func:`render_csv` (comment lines and header dropped)."""
    text = data.decode("utf-8-sig")
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    rows = list(csv.reader(lines))
    return rows[1:]


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def report_dict(report: EvidenceReport) -> dict[str, Any]:
    """The report as a JSON-ready dict (datetimes ISO 8601 UTC)."""
    v = report.violation
    h = report.handling
    return _jsonable(
        {
            "report": {
                "report_number": report.report_number,
                "generated_at": report.generated_at,
                "generated_by": report.generated_by,
                "issuer": report.issuer,
                "alarm_id": report.alarm_id,
                "window_start": report.window_start,
                "window_end": report.window_end,
                "legal_holds": list(report.legal_holds),
            },
            "drivers": list(report.drivers),
            "vehicle": {
                "vehicle_id": report.vehicle_id,
                "plate_number": report.plate_number,
                "plate_color": report.plate_color,
                "plate_color_text": report.plate_color_text,
                "vehicle_class": report.vehicle_class,
                "terminal_id": report.terminal_id,
                "company_id": report.company_id,
                "company_name": report.company_name,
            },
            "violation": {
                "alarm_type": v.alarm_type,
                "type_text": v.type_text,
                "started_at": v.started_at,
                "ended_at": v.ended_at,
                "duration_s": v.duration_s,
                "distance_m": v.distance_m,
                "max_speed_kmh": v.max_speed_kmh,
                "mean_speed_kmh": v.mean_speed_kmh,
                "limit_kmh": v.limit_kmh,
                "limit_source": v.limit_source,
                "basis": v.basis,
                "late": v.late,
                "details": v.details,
            },
            "handling": None
            if h is None
            else {
                "status": h.status,
                "acknowledged_at": h.acknowledged_at,
                "handled_at": h.handled_at,
                "handling_note": h.handling_note,
                "handling_method": h.handling_method,
                "reminders": list(h.reminders),
                "penalties": list(h.penalties),
            },
            "media": list(report.media),
            "integrity": {
                "algorithm": "SHA-256",
                "canonical_form": CANONICAL_VERSION,
                "canonical_columns": list(CANONICAL_COLUMNS),
                "digest_sha256": report.digest_sha256,
                "positions": len(report.positions),
            },
            "positions": [
                {
                    "fix_time": p.fix_time,
                    "fix_time_local": report.local(p.fix_time),
                    "latitude": p.latitude,
                    "longitude": p.longitude,
                    "speed_kmh": p.speed_kmh,
                    "heading_deg": p.heading_deg,
                    "altitude_m": p.altitude_m,
                    "satellites": p.satellites,
                    "fix_valid": p.fix_valid,
                    "acc_on": p.acc_on,
                    "alarm_flags": p.alarm_flags,
                    "status_flags": p.status_flags,
                    "mileage_km": p.mileage_km,
                    "quality": p.quality,
                    "late": p.late,
                    "raw_message_id": p.raw_message_id,
                    "raw_sha256": p.raw_sha256,
                    "in_episode": p.in_episode,
                    "segment": p.segment,
                    "source": p.source,
                    "canonical": p.canonical_fields(),
                }
                for p in report.positions
            ],
        }
    )


def render_json(report: EvidenceReport) -> bytes:
    """JSON bytes (UTF-8, Chinese kept as is, indented)."""
    return json.dumps(report_dict(report), ensure_ascii=False, indent=1).encode("utf-8")
