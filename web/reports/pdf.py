"""Evidence report as an A4 PDF (fpdf2, with an embedded CJK font).

The font is the one in ``reports.cjk_font_path`` (default Debian's WenQuanYi Micro Hei, a
TrueType-outline CJK font; Noto Sans CJK renders as well, but its CFF outlines make fpdf2 write an
embedded encoding CMap that pypdf cannot extract text from). fpdf2 embeds the subset used, so the
PDF reads the same on any machine. Every page carries the report number, the page number and
the integrity digest.
"""

from __future__ import annotations

from pathlib import Path

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from gps_monitor.config import ReportsSettings
from gps_monitor.errors import ConfigurationError
from gps_monitor.media_store import MediaStore
from web.reports import charts
from web.reports.evidence import CANONICAL_COLUMNS, CANONICAL_VERSION, EvidenceReport

FONT = "cjk"
_TABLE = (  # (header, width mm)
    ("#", 10), ("定位时间 (本地)", 34), ("纬度 lat", 22), ("经度 lon", 23), ("速度 km/h", 17),
    ("方向°", 13), ("卫星", 10), ("质量", 14), ("补报", 10), ("区段", 14),
)  # fmt: skip
QUALITY_TEXT = {"ok": "正常", "invalid": "无效", "drift": "漂移"}
# the 区段 column: inside the violation, counted toward it (fatigue lead-up), context
SEGMENT_TEXT = {"violation": "违法", "lead_up": "连续驾驶", "context": "前后"}
_VIOLATION_FILL = (253, 226, 226)
_LEAD_UP_FILL = (255, 243, 205)


def require_font(settings: ReportsSettings) -> tuple[str, str]:
    """(regular, bold) font paths; bold falls back to regular.

    Raises:
        ConfigurationError: the regular CJK font file does not exist.
    """
    regular = settings.cjk_font_path
    if not Path(regular).exists():
        raise ConfigurationError(
            f"reports.cjk_font_path: expected a CJK font file, {regular!r} does not exist "
            "(install Debian's fonts-wqy-microhei: scripts/install-system.sh, or set "
            "GPS_MONITOR_REPORTS_CJK_FONT_PATH)"
        )
    bold = settings.cjk_font_bold_path
    return regular, bold if bold and Path(bold).exists() else regular


class _EvidencePdf(FPDF):
    def __init__(self, report: EvidenceReport) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.report = report
        self.set_margins(15, 18, 15)
        self.set_auto_page_break(True, margin=16)
        self.set_title(f"证据报告 {report.report_number}")
        self.set_author(report.generated_by)
        self.set_creator("gps-monitor")
        self.set_subject(f"SHA-256 {report.digest_sha256}")

    def header(self) -> None:
        self.set_font(FONT, "", 7)
        self.set_text_color(90, 90, 90)
        self.set_xy(15, 8)
        self.cell(90, 4, self.report.issuer)
        self.cell(90, 4, f"报告编号 {self.report.report_number}", align="R")
        self.line(15, 13, 195, 13)
        self.set_text_color(0, 0, 0)
        self.set_y(16)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(FONT, "", 6.5)
        self.set_text_color(90, 90, 90)
        self.cell(150, 4, f"SHA-256 {self.report.digest_sha256}")
        self.cell(30, 4, f"第 {self.page_no()}/{{nb}} 页", align="R")
        self.set_text_color(0, 0, 0)


def render_pdf(
    report: EvidenceReport, settings: ReportsSettings, media_store: MediaStore | None = None
) -> bytes:
    """The report as PDF bytes (A4 portrait); the alarm's photos are printed from
    ``media_store`` with their SHA-256 (a file that no longer matches its digest is not
    printed, and the page says so).

    Raises:
        ConfigurationError: the CJK font is missing.
    """
    regular, bold = require_font(settings)
    pdf = _EvidencePdf(report)
    pdf.add_font(FONT, "", regular, collection_font_number=settings.cjk_font_index)
    if bold != regular:  # parsing a CJK font costs ~0.3 s: never load the same file twice
        pdf.add_font(FONT, "B", bold, collection_font_number=settings.cjk_font_index)
    pdf.alias_nb_pages()
    pdf.add_page()
    _title(pdf, report)
    _summary(pdf, report)
    pdf.add_page()
    _section(pdf, "一、轨迹图 Track map")
    pdf.image(charts.track_map_png(report, regular), x=15, w=180)
    pdf.ln(2)
    _section(pdf, "二、速度曲线 Speed over time")
    pdf.image(charts.speed_chart_png(report, regular), x=15, w=180)
    pdf.add_page()
    _section(pdf, "三、定位数据 Positions (违法区段前后各含数分钟 context)")
    _positions(pdf, report)
    _integrity(pdf, report)
    if report.media:
        _media(pdf, report, media_store)
    return bytes(pdf.output())


def _media(pdf: FPDF, report: EvidenceReport, store: MediaStore | None) -> None:
    """五、照片证据: each photo (checked against its digest) with what :meth:`media_text` says."""
    pdf.add_page()
    _section(pdf, "五、照片/视频证据 Photo and video evidence")
    for item in report.media:
        if pdf.get_y() > pdf.page_break_trigger - 70:
            pdf.add_page()
        sha256 = item.get("sha256")
        printable = store is not None and sha256 and item.get("content_type") in ("image/jpeg",)
        note = ""
        if printable:
            assert store is not None and sha256
            try:
                if store.verify(sha256):
                    pdf.image(str(store.path(sha256)), x=15, h=60, keep_aspect_ratio=True)
                else:
                    note = "文件校验失败, 未打印 (stored file does not match its SHA-256)"
            except (OSError, ValueError, RuntimeError) as error:
                note = f"无法打印 (not printable): {type(error).__name__}"
        pdf.set_font(FONT, "", 8)
        text = report.media_text(item) + (f"; {note}" if note else "")
        pdf.multi_cell(0, 4.5, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(2)


def _title(pdf: FPDF, report: EvidenceReport) -> None:
    pdf.set_font(FONT, _bold(pdf), 16)
    pdf.cell(
        0, 10, "道路运输车辆动态监控 违法证据报告", align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT
    )
    pdf.set_font(FONT, "", 9)
    pdf.cell(
        0, 5, "Vehicle monitoring evidence report", align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT
    )
    pdf.ln(4)


def _section(pdf: FPDF, text: str) -> None:
    pdf.set_font(FONT, _bold(pdf), 11)
    pdf.set_fill_color(230, 236, 245)
    pdf.cell(0, 7, text, fill=True, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(1.5)


def _summary(pdf: FPDF, report: EvidenceReport) -> None:
    _section(pdf, "基本信息与违法事实 Summary")
    label_w, value_w = 52, 128
    for label, value in report.summary():
        digest_row = "SHA-256" in label and len(value) == 64
        pdf.set_font(FONT, _bold(pdf), 8.5)
        y = pdf.get_y()
        pdf.set_fill_color(245, 245, 245)
        lines: list[str] = pdf.multi_cell(  # type: ignore[assignment]
            value_w, 5.5, value, dry_run=True, output="LINES"
        )
        height = 5.5 * max(1, len(lines))
        if y + height > pdf.page_break_trigger:
            pdf.add_page()
            y = pdf.get_y()
        pdf.multi_cell(
            label_w, height, label, border=1, fill=True, new_x=XPos.RIGHT, new_y=YPos.TOP
        )
        pdf.set_font(FONT, _bold(pdf) if digest_row else "", 8.5 if not digest_row else 8)
        pdf.multi_cell(value_w, 5.5, value, border=1, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_y(max(pdf.get_y(), y + height))


def _table_header(pdf: FPDF) -> None:
    pdf.set_font(FONT, _bold(pdf), 7.5)
    pdf.set_fill_color(220, 220, 220)
    for title, width in _TABLE:
        pdf.cell(width, 5.5, title, border=1, align="C", fill=True)
    pdf.ln(5.5)
    pdf.set_font(FONT, "", 7.5)


def _bold(pdf: FPDF) -> str:
    return "B" if f"{FONT}b" in pdf.fonts else ""


def _positions(pdf: FPDF, report: EvidenceReport) -> None:
    """The positions table. Drawn with low-level text/line/rect calls rather than one cell per
    value (26,000 cells for a 2,600-row table cost about a second); rows keep the cell look."""
    limit = report.violation.limit_kmh
    row_h = 4.6
    left = pdf.l_margin
    edges = [left]
    for _, width in _TABLE:
        edges.append(edges[-1] + width)
    pdf.set_draw_color(0, 0, 0)
    pdf.set_line_width(0.2)

    def close_block(top: float, bottom: float) -> None:
        for x in edges:
            pdf.line(x, top, x, bottom)

    _table_header(pdf)
    top = pdf.get_y()
    lead_up_rows = any(p.lead_up for p in report.positions)
    for index, p in enumerate(report.positions, start=1):
        y = pdf.get_y()
        if y + row_h > pdf.page_break_trigger:
            close_block(top, y)
            pdf.add_page()
            _table_header(pdf)
            top = y = pdf.get_y()
        over = limit is not None and p.quality == "ok" and p.speed_kmh > limit
        if p.in_episode or p.lead_up:
            pdf.set_fill_color(*(_VIOLATION_FILL if p.in_episode else _LEAD_UP_FILL))
            pdf.rect(left, y, edges[-1] - left, row_h, style="F")
        values = (
            str(index),
            report.local(p.fix_time),
            f"{p.latitude:.6f}",
            f"{p.longitude:.6f}",
            f"{p.speed_kmh:.1f}" + (" 超" if over else ""),
            "" if p.heading_deg is None else f"{p.heading_deg:.0f}",
            "" if p.satellites is None else str(p.satellites),
            QUALITY_TEXT.get(p.quality, p.quality),
            "是" if p.late else "",
            SEGMENT_TEXT[p.segment],
        )
        baseline = y + row_h - 1.2
        for x, value in zip(edges, values, strict=False):
            if value:
                pdf.text(x + 1.2, baseline, value)
        pdf.line(left, y + row_h, edges[-1], y + row_h)
        pdf.set_y(y + row_h)
    close_block(top, pdf.get_y())
    pdf.set_font(FONT, "", 7)
    legend = "说明: 粉色“违法”行为违法区段内定位点 (报警开始至结束, 与上方开始/结束时间一致); "
    if lead_up_rows:
        legend += (
            "浅黄色“连续驾驶”为报警开始前已计入连续驾驶时长、使其后驾驶构成违法的定位点, "
            "本身不属违法区段; "
        )
    legend += "“前后”为前后参考点; "
    if limit is not None:
        legend += f"“超”表示速度超过限速 {limit:g} km/h; "
    legend += "时间为北京时间 (Asia/Shanghai)。无效点不计入轨迹与里程, 漂移点不计入里程。"
    pdf.ln(1)
    pdf.multi_cell(0, 4, legend, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _integrity(pdf: FPDF, report: EvidenceReport) -> None:
    pdf.ln(3)
    if pdf.get_y() > pdf.page_break_trigger - 60:
        pdf.add_page()
    _section(pdf, "四、数据完整性 Integrity")
    pdf.set_font(FONT, "", 8.5)
    text = (
        f"本报告依据的 {len(report.positions)} 条定位原始记录的 SHA-256 校验值 "
        f"(规范格式 {CANONICAL_VERSION}):"
    )
    pdf.multi_cell(0, 5, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FONT, _bold(pdf), 10)
    pdf.cell(0, 8, report.digest_sha256, border=1, align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FONT, "", 7.5)
    method = (
        "复核方法 How to verify: 每条定位一行, 按定位时间升序, 字段以逗号连接, 行尾换行 (LF), "
        "UTF-8 编码, 对全部行计算 SHA-256。字段顺序: " + ", ".join(CANONICAL_COLUMNS) + "。"
        "时间为 UTC (YYYY-MM-DDTHH:MM:SS.ffffffZ), 经纬度保留7位小数, "
        "速度/方向/高程/里程保留1位小数, "
        "布尔值 true/false, 空值为空字符串; raw_sha256 为接收到的原始 MQTT 报文字节的 SHA-256。"
        "本报告的 CSV 导出的前16列即为上述规范字段, 可直接复算。"
    )
    pdf.multi_cell(0, 4.2, method, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
