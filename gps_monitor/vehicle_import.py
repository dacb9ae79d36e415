"""Reading a bulk vehicle registration file (CSV or Excel .xlsx) into checked rows.

A county registers hundreds of vehicles at once from the spreadsheet it already keeps. The
first sheet (xlsx) or the file (CSV) holds one header row, then one vehicle per row. Headers
are accepted in Chinese or English (:data:`HEADERS`), in any order; other columns are ignored
and listed. Cells:

    车牌号 / plate_number      required, 2-20 characters (渝A12345)
    车牌颜色 / plate_color     JT/T 808 code (1, 2, 3, 4, 5, 9) or name (蓝 / 蓝色 / blue,
                               黄, 黑, 白, 黄绿, 其他); empty = 2 (yellow, as the API)
    车辆类型 / vehicle_class   客运班车, 旅游包车, 危险货物运输车 (危货), 重型货车 (重型载货汽车,
                               半挂牵引车), 普通货车; or coach, tour_bus, hazmat, heavy_truck,
                               freight
    终端号 / terminal_id       required (终端手机号); Excel cells should be text (the template's
                               are) so a leading 0 is kept
    限速 / speed_limit_kmh     optional, km/h, 0 < limit <= 300 (empty: the class default)
    所属企业 / company         required, an existing company's exact name

Each row is checked by :class:`ImportedVehicle` (the same field types as the API,
:mod:`gps_monitor.registry_fields`), so a cell is refused with the same pydantic error type the
admin page shows for its form. CSV is read as UTF-8 (with or without BOM) or, failing that, as
GB 18030 (what Excel on a Chinese Windows saves).
"""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from gps_monitor.errors import GpsMonitorError
from gps_monitor.models import PlateColor, VehicleClass
from gps_monitor.registry_fields import CompanyName, PlateNumber, SpeedLimitKmh, TerminalId

MAX_ROWS = 5000

HEADERS: dict[str, tuple[str, ...]] = {
    "plate_number": ("车牌号", "车牌号码", "车牌", "plate_number", "plate"),
    "plate_color": ("车牌颜色", "plate_color", "plate_colour"),
    "vehicle_class": ("车辆类型", "vehicle_class", "class"),
    "terminal_id": ("终端号", "终端手机号", "终端编号", "terminal_id", "terminal"),
    "speed_limit_kmh": ("限速", "限速(km/h)", "限速（km/h）", "speed_limit_kmh", "speed_limit"),
    "company": ("所属企业", "企业", "企业名称", "company", "company_name"),
}
"""Canonical field -> accepted header names (compared without case and surrounding blanks)."""

TEMPLATE_HEADERS = ("车牌号", "车牌颜色", "车辆类型", "终端号", "限速", "所属企业")
REQUIRED_COLUMNS = ("plate_number", "vehicle_class", "terminal_id", "company")

PLATE_COLOR_NAMES: dict[str, PlateColor] = {
    **{name: PlateColor.BLUE for name in ("蓝", "蓝色", "blue")},
    **{name: PlateColor.YELLOW for name in ("黄", "黄色", "yellow")},
    **{name: PlateColor.BLACK for name in ("黑", "黑色", "black")},
    **{name: PlateColor.WHITE for name in ("白", "白色", "white")},
    **{name: PlateColor.YELLOW_GREEN for name in ("黄绿", "黄绿色", "yellow_green")},
    **{name: PlateColor.OTHER for name in ("其他", "其它", "other")},
}
CLASS_NAMES: dict[str, VehicleClass] = {
    **{n: VehicleClass.COACH for n in ("客运班车", "班车", "客运")},
    **{n: VehicleClass.TOUR_BUS for n in ("旅游包车", "包车")},
    **{n: VehicleClass.HAZMAT for n in ("危险货物运输车", "危货", "危货车", "危险品运输车")},
    **{n: VehicleClass.HEAVY_TRUCK for n in ("重型货车", "重型载货汽车", "半挂牵引车", "重货")},
    **{n: VehicleClass.FREIGHT for n in ("普通货车", "货车", "普货")},
}


class VehicleImportError(GpsMonitorError, ValueError):
    """The file as a whole cannot be read: not CSV or xlsx, no header row, a required column
    missing, or more than :data:`MAX_ROWS` rows. Says what was expected and what came."""


class ImportedVehicle(BaseModel):
    """One row, checked: the API's vehicle fields with the company by name."""

    plate_number: PlateNumber
    plate_color: PlateColor = PlateColor.YELLOW
    vehicle_class: VehicleClass
    terminal_id: TerminalId
    speed_limit_kmh: SpeedLimitKmh | None = None
    company: CompanyName


@dataclass(frozen=True, slots=True)
class ImportRow:
    """One data row of the file.

    Attributes:
        line: its row number in the sheet (the header is row 1 when first).
        cells: canonical field -> cell text as read (empty cells left out).
        vehicle: the checked row, or None when a cell was refused.
        errors: ``{"field", "type", "msg", "ctx"}`` per refused cell (pydantic's error types
            and context, e.g. ``{"min_length": 2}``).
    """

    line: int
    cells: dict[str, str]
    vehicle: ImportedVehicle | None
    errors: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ImportFile:
    """The rows of a file and the columns it had that are not read (listed in the report)."""

    rows: list[ImportRow]
    ignored_columns: list[str]


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _normalised(cells: dict[str, str]) -> dict[str, Any]:
    """Cell text -> values the model reads: colour and class names to their codes."""
    values: dict[str, Any] = dict(cells)
    color = cells.get("plate_color")
    if color is not None and color.lower() in PLATE_COLOR_NAMES:
        values["plate_color"] = int(PLATE_COLOR_NAMES[color.lower()])
    vclass = cells.get("vehicle_class")
    if vclass is not None and vclass in CLASS_NAMES:
        values["vehicle_class"] = str(CLASS_NAMES[vclass])
    return values


def check_row(line: int, cells: dict[str, str]) -> ImportRow:
    """One row checked against :class:`ImportedVehicle`."""
    try:
        vehicle = ImportedVehicle.model_validate(_normalised(cells))
    except ValidationError as error:
        errors = [
            {
                "field": str(e["loc"][0]) if e["loc"] else "",
                "type": e["type"],
                "msg": e["msg"],
                "ctx": {
                    k: v for k, v in e.get("ctx", {}).items() if isinstance(v, str | int | float)
                },
            }
            for e in error.errors(include_url=False)
        ]
        return ImportRow(line, cells, None, errors)
    return ImportRow(line, cells, vehicle)


def _columns(header: list[str]) -> tuple[dict[int, str], list[str]]:
    """Header cells -> ({column index: canonical field}, ignored header names).

    Raises:
        VehicleImportError: a required column is missing or a field appears twice.
    """
    by_name = {alias.lower(): name for name, aliases in HEADERS.items() for alias in aliases}
    columns: dict[int, str] = {}
    ignored: list[str] = []
    for index, text in enumerate(header):
        name = by_name.get(text.strip().lower())
        if name is None:
            if text.strip():
                ignored.append(text.strip())
        elif name in columns.values():
            raise VehicleImportError(f"header: expected each column once, got {text!r} twice")
        else:
            columns[index] = name
    missing = [name for name in REQUIRED_COLUMNS if name not in columns.values()]
    if missing:
        wanted = ", ".join(f"{HEADERS[m][0]}/{m}" for m in missing)
        got = ", ".join(h for h in header if h.strip()) or "none"
        raise VehicleImportError(f"header: expected columns {wanted}; got columns: {got}")
    return columns, ignored


def _from_table(table: list[tuple[int, list[str]]]) -> ImportFile:
    """Numbered rows of text cells (header first) -> checked rows; blank rows skipped."""
    rows = [(line, cells) for line, cells in table if any(c.strip() for c in cells)]
    if not rows:
        raise VehicleImportError("file: expected a header row and vehicle rows, got no rows")
    (_, header), data = rows[0], rows[1:]
    if len(data) > MAX_ROWS:
        raise VehicleImportError(f"file: expected at most {MAX_ROWS} rows, got {len(data)}")
    columns, ignored = _columns(header)
    checked = []
    for line, cells in data:
        present = {
            name: cells[i].strip()
            for i, name in columns.items()
            if i < len(cells) and cells[i].strip()
        }
        checked.append(check_row(line, present))
    return ImportFile(checked, ignored)


def _csv_text(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            return data.decode("gb18030")
        except UnicodeDecodeError as error:
            raise VehicleImportError(
                "file: expected CSV text in UTF-8 or GB 18030, or an .xlsx workbook; got "
                "undecodable bytes"
            ) from error


def _xlsx_table(data: bytes) -> list[tuple[int, list[str]]]:
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as error:
        raise VehicleImportError(f"file: expected an .xlsx workbook, got {error}") from error
    try:
        sheet = workbook.worksheets[0]
        return [
            (line, [_cell_text(v) for v in values])
            for line, values in enumerate(sheet.iter_rows(values_only=True), start=1)
        ]
    finally:
        workbook.close()


def read_vehicle_file(data: bytes) -> ImportFile:
    """The checked rows of a CSV or .xlsx file (told apart by the zip signature).

    Raises:
        VehicleImportError: the file cannot be read as a whole (see the class).
    """
    if data.startswith(b"PK\x03\x04"):
        return _from_table(_xlsx_table(data))
    text = _csv_text(data)
    return _from_table(list(enumerate(csv.reader(io.StringIO(text)), start=1)))


def template_csv() -> bytes:
    """An empty import file: the Chinese header row, UTF-8 with BOM (Excel opens it right)."""
    return ("\ufeff" + ",".join(TEMPLATE_HEADERS) + "\r\n").encode()


def template_xlsx() -> bytes:
    """An empty import workbook: the header row with text-formatted columns (a terminal id
    keeps its leading 0) and a second sheet 说明 listing the accepted values."""
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "车辆"
    sheet.append(list(TEMPLATE_HEADERS))
    for letter in "ABCDEF":
        sheet.column_dimensions[letter].width = 18
        for row in range(2, 1002):
            sheet[f"{letter}{row}"].number_format = "@"
    notes = workbook.create_sheet("说明")
    notes.append(["列 column", "必填 required", "可填的值 accepted values"])
    notes.append(["车牌号 plate_number", "是", "2-20 个字符，如 渝A12345"])
    notes.append(["车牌颜色 plate_color", "否 (默认黄)", "蓝 1, 黄 2, 黑 3, 白 4, 黄绿 5, 其他 9"])
    notes.append(
        ["车辆类型 vehicle_class", "是", "客运班车, 旅游包车, 危险货物运输车, 重型货车, 普通货车"]
    )
    notes.append(["终端号 terminal_id", "是", "终端手机号, 1-32 位字母数字 - _ ."])
    notes.append(["限速 speed_limit_kmh", "否", "km/h, 大于 0 且不超过 300; 空 = 按车型默认"])
    notes.append(["所属企业 company", "是", "已登记企业的全称"])
    notes.column_dimensions["A"].width = 26
    notes.column_dimensions["C"].width = 60
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()
