"""Bulk vehicle registration from CSV and Excel (issue 11, item 3): per-row report, preview
(nothing written), commit (valid rows in one transaction, refused rows not written), audit,
bureau only. Real PostgreSQL; the xlsx files are written with openpyxl."""

from __future__ import annotations

import io

import asyncpg
import pytest
from openpyxl import Workbook, load_workbook
from web_helpers import make_world, rest_client

from gps_monitor.config import Settings

HEADER_ZH = ["车牌号", "车牌颜色", "车辆类型", "终端号", "限速", "所属企业"]
HEADER_EN = ["company", "plate_number", "plate_color", "vehicle_class", "terminal_id",
             "speed_limit_kmh", "remark"]  # fmt: skip
# (plate, colour, class, terminal, limit, company): what a county's spreadsheet holds
ROWS = [
    ["渝D50001", "黄色", "危险货物运输车", "013950000001", "60", "甲运输公司"],  # added
    ["渝D50002", "2", "coach", "013950000002", "", "乙运输公司"],  # added
    ["渝D50001", "黄", "危货", "013950000003", "60", "甲运输公司"],  # plate of line 2 again
    ["渝D50004", "紫", "普通货车", "013950000004", "", "甲运输公司"],  # bad colour
    ["渝D50005", "蓝", "普通货车", "013950000005", "", "丁公司"],  # unknown company
    ["渝D50006", "蓝", "普通货车", "", "80", "甲运输公司"],  # empty terminal
    ["渝A10000", "黄", "危货", "0139A0000000", "45", "甲运输公司"],  # registered: limit 60 -> 45
]
EXPECTED = [
    (2, "added", []),
    (3, "added", []),
    (4, "refused", [("plate_number", "registry_duplicate_in_file")]),
    (5, "refused", [("plate_color", "enum")]),
    (6, "refused", [("company", "registry_unknown_company")]),
    (7, "refused", [("terminal_id", "missing")]),
    (8, "updated", []),
]


def csv_file(rows: list[list[str]], encoding: str = "utf-8-sig") -> bytes:
    return "\r\n".join(",".join(r) for r in [HEADER_ZH, *rows]).encode(encoding)


def xlsx_file(rows: list[list[str]]) -> bytes:
    """English headers in another order, with an extra column; numbers as numbers."""
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(HEADER_EN)
    for plate, color, vclass, terminal, limit, company in rows:
        sheet.append([company, plate, int(color) if color.isdigit() else color, vclass,
                      terminal, float(limit) if limit else None, "备注"])  # fmt: skip
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def outcomes(report: dict) -> list[tuple[int, str, list[tuple[str, str]]]]:
    return [
        (r["line"], r["outcome"], [(e["field"], e["type"]) for e in r["errors"]])
        for r in report["rows"]
    ]


async def registry_state(pool: asyncpg.Pool) -> list[tuple]:
    rows = await pool.fetch(
        "SELECT plate_number, plate_color, vehicle_class, terminal_id, speed_limit_kmh, "
        "company_id FROM vehicles ORDER BY plate_number"
    )
    return [tuple(r) for r in rows]


@pytest.mark.parametrize("kind", ["csv", "csv-gbk", "xlsx"])
async def test_import_previews_then_commits_valid_rows_and_reports_each_row(
    settings: Settings, pool: asyncpg.Pool, kind: str
) -> None:
    w = await make_world(pool, settings)
    body = {
        "csv": csv_file(ROWS),
        "csv-gbk": csv_file(ROWS, "gb18030"),
        "xlsx": xlsx_file(ROWS),
    }[kind]
    before = await registry_state(pool)
    async with rest_client(settings) as client:
        r = await client.post("/api/vehicle-import", content=body, headers=w.auth("bureau"))
        assert r.status_code == 200, r.text
        preview = r.json()
        assert preview["committed"] is False
        assert outcomes(preview) == EXPECTED
        assert preview["counts"] == {"added": 2, "updated": 1, "unchanged": 0, "refused": 4}
        assert preview["ignored_columns"] == (["remark"] if kind == "xlsx" else [])
        assert await registry_state(pool) == before  # a preview writes nothing
        assert await pool.fetchval("SELECT count(*) FROM audit_log") == 0
        r = await client.post(
            "/api/vehicle-import",
            params={"commit": "true"},
            content=body,
            headers=w.auth("bureau"),
        )
        assert r.status_code == 200 and r.json()["committed"] is True
        assert outcomes(r.json()) == EXPECTED
        updated = r.json()["rows"][-1]
        assert updated["changes"] == {"speed_limit_kmh": 60.0}
        # the same file again: what went in is unchanged, the refused rows still refused
        again = await client.post("/api/vehicle-import", content=body, headers=w.auth("bureau"))
        assert [o for _, o, _ in outcomes(again.json())] == [
            "unchanged", "unchanged", "refused", "refused", "refused", "refused", "unchanged"
        ]  # fmt: skip
    after = await registry_state(pool)
    added = [v for v in after if v not in before]
    assert sorted(added) == [
        ("渝A10000", 2, "hazmat", "0139A0000000", 45.0, w.company_a),
        ("渝D50001", 2, "hazmat", "013950000001", 60.0, w.company_a),
        ("渝D50002", 2, "coach", "013950000002", None, w.company_b),
    ]
    assert len(after) == 6  # 4 of the world + 2 added; nothing of the refused rows
    audit = await pool.fetch("SELECT action, object_id, details FROM audit_log ORDER BY id")
    assert [a["action"] for a in audit] == [
        "vehicle.create", "vehicle.create", "vehicle.update", "vehicle.import"
    ]  # fmt: skip
    assert audit[2]["details"]["before"] == {"speed_limit_kmh": 60.0}
    assert audit[3]["details"] == {"added": 2, "updated": 1, "unchanged": 0, "refused": 4}


async def test_a_file_that_cannot_be_read_is_refused_whole_and_operators_cannot_import(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    w = await make_world(pool, settings)
    async with rest_client(settings) as client:
        r = await client.post(
            "/api/vehicle-import", content=csv_file(ROWS[:1]), headers=w.auth("op_a")
        )
        assert r.status_code == 403
        no_terminal = "车牌号,车辆类型,所属企业\r\n渝D1,客运班车,甲运输公司\r\n".encode()
        r = await client.post("/api/vehicle-import", content=no_terminal, headers=w.auth("bureau"))
        assert r.status_code == 422 and "终端号/terminal_id" in r.json()["detail"]
        r = await client.post(
            "/api/vehicle-import", content=b"PK\x03\x04broken", headers=w.auth("bureau")
        )
        assert r.status_code == 422 and "xlsx" in r.json()["detail"]
        for name in ("template.csv", "template.xlsx"):
            r = await client.get(f"/api/vehicle-import/{name}", headers=w.auth("bureau"))
            assert r.status_code == 200
            assert (await client.get(f"/api/vehicle-import/{name}", headers=w.auth("op_a"))
                    ).status_code == 403  # fmt: skip
    # the templates read back as an import file with no rows
    template = load_workbook(io.BytesIO(r.content))
    assert [c.value for c in template.worksheets[0][1]] == HEADER_ZH
    assert await pool.fetchval("SELECT count(*) FROM vehicles") == 4


async def test_a_plate_cell_with_a_line_break_is_refused_not_registered(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """Found in the console review: a quoted CSV cell "渝D5000\\n7" was imported as a plate with
    a line break in it (the page showed 渝D5000 7)."""
    w = await make_world(pool, settings)
    body = (",".join(HEADER_ZH) + '\r\n"渝D5000\n7",黄,客运班车,013950000007,,甲运输公司\r\n'
            "渝D50008,黄,客运班车,013950000008,,甲运输公司\r\n").encode()  # fmt: skip
    async with rest_client(settings) as client:
        r = await client.post(
            "/api/vehicle-import", params={"commit": "true"}, content=body, headers=w.auth("bureau")
        )
    assert r.status_code == 200, r.text
    assert outcomes(r.json()) == [
        (2, "refused", [("plate_number", "string_pattern_mismatch")]),
        (3, "added", []),
    ]
    assert await pool.fetchval("SELECT count(*) FROM vehicles WHERE plate_number ~ '\\s'") == 0
