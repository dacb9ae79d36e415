"""Bulk registration of vehicles from a CSV or Excel file (bureau only), and its templates.

``POST /api/vehicle-import`` takes the file itself as the request body (any content type; CSV
or .xlsx told apart by content, :mod:`gps_monitor.vehicle_import`) and answers a report with one
outcome per row: added, updated, unchanged or refused with its reasons.

The policy, chosen for a county that registers hundreds at once: **preview first, then every
valid row in one transaction**. Without ``commit=true`` the import runs in full inside a
transaction that is rolled back (a dry run: the report is exactly what an import would do now).
With ``commit=true`` the valid rows are written and the refused rows are not, all in one
transaction together with one audit entry per vehicle added or updated and one
``vehicle.import`` summary; a failure anywhere rolls the whole file back. A refused row never
leaves half a vehicle behind (each row runs in a savepoint). Fix the refused rows and import the
file again: rows already in are then ``unchanged``.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from gps_monitor.db import audit
from gps_monitor.db import registry as store
from gps_monitor.db.users import User
from gps_monitor.vehicle_import import (
    VehicleImportError,
    read_vehicle_file,
    template_csv,
    template_xlsx,
)
from web.deps import BureauUser, PoolDep

router = APIRouter(prefix="/api/vehicle-import", tags=["registry"])
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@router.post("")
async def import_vehicles(
    request: Request, user: BureauUser, pool: PoolDep, commit: bool = False
) -> dict[str, Any]:
    """Preview (default) or commit a vehicle file; answers ``{committed, counts: {added,
    updated, unchanged, refused}, ignored_columns, rows: [{line, plate_number, outcome,
    vehicle_id, errors: [{field, type, msg}], changes?}]}``.

    422 when the file as a whole cannot be read (format, header, size), saying why.
    """
    try:
        parsed = read_vehicle_file(await request.body())
    except VehicleImportError as error:
        raise HTTPException(422, str(error)) from error
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            rows = await store.import_vehicles(conn, parsed.rows)
            counts = {k: 0 for k in ("added", "updated", "unchanged", "refused")}
            for row in rows:
                counts[row["outcome"]] += 1
            if commit:  # a preview is rolled back: nothing to audit
                await _audit(conn, user, rows, counts)
        except BaseException:
            await transaction.rollback()
            raise
        if commit:
            await transaction.commit()
        else:
            await transaction.rollback()
    return {
        "committed": commit,
        "counts": counts,
        "ignored_columns": parsed.ignored_columns,
        "rows": rows,
    }


async def _audit(
    conn: asyncpg.Connection, user: User, rows: list[dict[str, Any]], counts: dict[str, int]
) -> None:
    """One entry per vehicle added or updated (with its import line), then the counts."""
    for row in rows:
        if row["outcome"] in ("added", "updated"):
            entry = row["vehicle"]
            details = {k: entry[k] for k in _AUDITED} | {"import_line": row["line"]}
            if "changes" in row:
                details["before"] = row["changes"]
            action = "vehicle.create" if row["outcome"] == "added" else "vehicle.update"
            await audit.record(
                conn,
                user,
                action,
                "vehicle",
                row["vehicle_id"],
                company_id=entry["company_id"],
                details=details,
            )
    await audit.record(conn, user, "vehicle.import", "vehicle", None, details=counts)


_AUDITED = ("plate_number", "plate_color", "vehicle_class", "terminal_id", "speed_limit_kmh",
            "company_id")  # fmt: skip


@router.get("/template.csv")
async def csv_template(_: BureauUser) -> Response:
    """The CSV template: the header row (车牌号,车牌颜色,车辆类型,终端号,限速,所属企业)."""
    return Response(
        template_csv(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="vehicles-template.csv"'},
    )


@router.get("/template.xlsx")
async def xlsx_template(_: BureauUser) -> Response:
    """The Excel template: the header row, text cells, and a sheet 说明 of accepted values."""
    return Response(
        template_xlsx(),
        media_type=XLSX_TYPE,
        headers={"Content-Disposition": 'attachment; filename="vehicles-template.xlsx"'},
    )
