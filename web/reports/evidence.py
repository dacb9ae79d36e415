"""Evidence report data for one alarm, or one vehicle over a time window, and its digest.

The report holds: report number, generation time and author; the vehicle (plate number and
colour, class), company and terminal; the violation (type, start, end, duration, distance, max
and mean speed, limit or rule applied and its basis, handling and penalty status); the positions
of the episode with a few minutes of context either side (``reports.context_before_s`` /
``context_after_s``); any geofence or route involved; and the integrity digest.

Positions come from ``positions``; a position sealed under a legal hold comes from its held copy
(``held_positions``), so a report built after a retention run is identical to one built before.

Integrity digest (canonical form ``gps-monitor-evidence-v1``)
--------------------------------------------------------------
SHA-256, lowercase hex, over the UTF-8 bytes of one line per position of the report (context
included, every quality), sorted by fix time ascending, each line terminated by ``\\n`` (LF), no
header line. A line is these 16 fields joined by ``,``:

==  ==============  =====================================================================
 1  vehicle_id      integer
 2  fix_time        UTC, ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (always 6 fraction digits)
 3  latitude        degrees, fixed 7 decimals (``%.7f``)
 4  longitude       degrees, fixed 7 decimals
 5  speed_kmh       fixed 1 decimal (JT/T 808 resolution 1/10 km/h)
 6  heading_deg     fixed 1 decimal
 7  altitude_m      fixed 1 decimal
 8  satellites      integer
 9  fix_valid       ``true`` / ``false``
10  acc_on          ``true`` / ``false``
11  alarm_flags     integer (JT/T 808 bit field as sent)
12  status_flags    integer
13  mileage_km      fixed 1 decimal
14  quality         ``ok`` / ``invalid`` / ``drift``
15  late            ``true`` / ``false``
16  raw_sha256      SHA-256 (lowercase hex) of the raw MQTT payload bytes of the message that
                    carried the position (``raw_messages.payload``); a batch message's digest
                    is shared by its positions
==  ==============  =====================================================================

A NULL value is the empty string. The CSV export (:mod:`web.reports.export`) has exactly these
16 columns first, formatted exactly so, in this order, one row per position in fix-time order:
anyone can recompute the digest with ``sha256(''.join(','.join(row[:16]) + '\\n' for row in
rows))`` and compare it with the one printed in the PDF, the Excel sheet and the report log, and
check each raw_sha256 against the stored raw message.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from gps_monitor import alarm_levels
from gps_monitor.config import ReportsSettings
from gps_monitor.db import alarms as alarms_db
from gps_monitor.db import commands as commands_db
from gps_monitor.db import drivers as drivers_db
from gps_monitor.db import holds, migrate, penalties, registry, report_log
from gps_monitor.db import media as media_db
from gps_monitor.db import positions as positions_db
from gps_monitor.errors import NotFoundError
from gps_monitor.geo import distance_m

CANONICAL_VERSION = "gps-monitor-evidence-v1"
CANONICAL_COLUMNS: tuple[str, ...] = (
    "vehicle_id", "fix_time", "latitude", "longitude", "speed_kmh", "heading_deg", "altitude_m",
    "satellites", "fix_valid", "acc_on", "alarm_flags", "status_flags", "mileage_km", "quality",
    "late", "raw_sha256",
)  # fmt: skip

PLATE_COLORS = {1: "蓝色", 2: "黄色", 3: "黑色", 4: "白色", 5: "黄绿色", 9: "其他"}
VEHICLE_CLASSES = {
    "coach": "客运班车",
    "tour_bus": "旅游包车",
    "hazmat": "危险货物运输车",
    "heavy_truck": "重型载货汽车/半挂牵引车",
    "freight": "普通货运车辆",
}
ALARM_TYPES = {**alarm_levels.ALARM_TYPES, "window": "时段轨迹调取"}
# The regulation or standard behind each rule (DOMAIN.md, Rules the platform must evaluate).
ALARM_BASIS = {
    "overspeed": "《中华人民共和国道路交通安全法》第四十二条; GB/T 35658-2017; "
    "JT/T 808 0x0055/0x0056",
    "fatigue_driving": "《道路交通安全法实施条例》第六十二条: 连续驾驶不得超过4小时 "
    "(客运夜间2小时), 停车休息不少于20分钟",
    "daily_driving_limit": "《道路交通安全法实施条例》第六十二条; 24小时内累计驾驶不超过8小时",
    "night_ban": "《道路旅客运输及客运站管理规定》: 长途客运02:00-05:00停止运行或接驳运输",
    "route_deviation": "GB/T 35658-2017 平台路线偏离报警; 《危险货物道路运输安全管理办法》",
    "forbidden_area_entry": "GB/T 35658-2017 平台区域报警 (禁入区域)",
    "keep_in_area_exit": "GB/T 35658-2017 平台区域报警 (限定区域)",
    "offline_displacement": "GB/T 35658-2017 离线位移",
}
STATUS_TEXT = {"open": "未处理", "acknowledged": "已确认", "handled": "已处理", "closed": "已关闭"}
METHOD_TEXT = {
    "remind_driver": "提醒驾驶员",
    "phone_call": "电话联系",
    "notify_company": "通知企业",
    "false_alarm": "误报/设备故障",
    "other": "其他",
}


def _fmt_float(value: float | None, decimals: int) -> str:
    return "" if value is None else f"{float(value):.{decimals}f}"


def _fmt_bool(value: bool | None) -> str:
    return "" if value is None else ("true" if value else "false")


def _fmt_int(value: int | None) -> str:
    return "" if value is None else str(int(value))


def format_fix_time(value: datetime) -> str:
    """Canonical UTC time: ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class EvidencePosition:
    """One stored position as it appears in a report.

    in_episode: inside the violation itself, [started_at, ended_at] of the alarm, the times
        the summary gives (False = context or lead-up).
    lead_up: before the violation but counted toward it, [first_fix_time, started_at) of the
        alarm: for fatigue driving the continuous driving since the run began, whose length
        made the driving beyond the limit a violation; False for every other alarm type, whose
        first fix is its start.
    source: ``live`` (positions) or ``held`` (held_positions, sealed under a legal hold).
    raw_sha256: SHA-256 hex of the raw MQTT payload that carried it, None if that is gone.
    """

    vehicle_id: int
    fix_time: datetime
    latitude: float
    longitude: float
    speed_kmh: float
    heading_deg: float | None
    altitude_m: float | None
    satellites: int | None
    fix_valid: bool
    acc_on: bool | None
    alarm_flags: int
    status_flags: int
    mileage_km: float | None
    quality: str
    late: bool
    raw_message_id: int | None
    raw_sha256: str | None
    in_episode: bool
    source: str = "live"
    lead_up: bool = False

    @property
    def segment(self) -> str:
        """``violation``, ``lead_up`` or ``context``: how the report marks this position."""
        if self.in_episode:
            return "violation"
        return "lead_up" if self.lead_up else "context"

    def canonical_fields(self) -> list[str]:
        """The 16 canonical field strings (module docstring), in :data:`CANONICAL_COLUMNS` order."""
        return [
            str(self.vehicle_id),
            format_fix_time(self.fix_time),
            _fmt_float(self.latitude, 7),
            _fmt_float(self.longitude, 7),
            _fmt_float(self.speed_kmh, 1),
            _fmt_float(self.heading_deg, 1),
            _fmt_float(self.altitude_m, 1),
            _fmt_int(self.satellites),
            _fmt_bool(self.fix_valid),
            _fmt_bool(self.acc_on),
            _fmt_int(self.alarm_flags),
            _fmt_int(self.status_flags),
            _fmt_float(self.mileage_km, 1),
            self.quality,
            _fmt_bool(self.late),
            self.raw_sha256 or "",
        ]


def canonical_digest(rows: list[list[str]]) -> str:
    """SHA-256 hex of canonical rows (each the 16 field strings), as the module doc defines."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update((",".join(row) + "\n").encode("utf-8"))
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Violation:
    """The violation a report is about (for a window report: the window itself).

    Speeds km/h, distance metres, duration seconds; limit_kmh None where the rule has no speed
    limit. limit_source says where the limit came from (geofence, route, vehicle, class default).
    """

    alarm_type: str
    started_at: datetime
    ended_at: datetime | None
    duration_s: float | None
    distance_m: float
    max_speed_kmh: float | None
    mean_speed_kmh: float | None
    limit_kmh: float | None
    limit_source: str | None
    basis: str
    late: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def type_text(self) -> str:
        return ALARM_TYPES.get(self.alarm_type, self.alarm_type)


@dataclass(frozen=True, slots=True)
class Handling:
    """Handling and penalty status so far (alarms columns of migration 0051, alarm_penalties)."""

    status: str
    acknowledged_at: datetime | None = None
    handled_at: datetime | None = None
    handling_note: str | None = None
    penalties: tuple[dict[str, Any], ...] = ()
    handling_method: str | None = None
    reminders: tuple[dict[str, Any], ...] = ()  # text commands sent about the alarm (0080)

    @property
    def status_text(self) -> str:
        return STATUS_TEXT.get(self.status, self.status)


@dataclass(frozen=True, slots=True)
class Shape:
    """A geofence or route involved, for the map: name, kind and WGS-84 rings/lines
    as lists of (longitude, latitude)."""

    name: str
    kind: str
    lines: tuple[tuple[tuple[float, float], ...], ...]
    closed: bool
    kind_table: str = "geofence"


@dataclass(frozen=True, slots=True)
class EvidenceReport:
    """Everything a rendered evidence report shows; see the module docstring."""

    report_number: str
    generated_at: datetime
    generated_by: str
    issuer: str
    display_timezone: str
    alarm_id: int | None
    vehicle_id: int
    plate_number: str
    plate_color: int
    vehicle_class: str
    terminal_id: str
    company_id: int
    company_name: str
    violation: Violation
    handling: Handling | None
    window_start: datetime
    window_end: datetime
    positions: tuple[EvidencePosition, ...]
    shapes: tuple[Shape, ...]
    legal_holds: tuple[int, ...]
    digest_sha256: str
    media: tuple[dict[str, Any], ...] = ()  # photos / videos of the alarm (table media, 0135)
    drivers: tuple[dict[str, Any], ...] = ()  # IC card drivers (gps_monitor.db.drivers, 0140)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.display_timezone)

    def local(self, moment: datetime | None) -> str:
        """A time as local ``YYYY-MM-DD HH:MM:SS`` (display zone), '' for None."""
        if moment is None:
            return ""
        return moment.astimezone(self.tz).strftime("%Y-%m-%d %H:%M:%S")

    @property
    def plate_color_text(self) -> str:
        return PLATE_COLORS.get(self.plate_color, str(self.plate_color))

    @property
    def vehicle_class_text(self) -> str:
        return VEHICLE_CLASSES.get(self.vehicle_class, self.vehicle_class)

    def canonical_rows(self) -> list[list[str]]:
        return [p.canonical_fields() for p in self.positions]

    def reminder_text(self, reminder: dict[str, Any]) -> str:
        """One reminder: when it was issued, its text, and whether and when the terminal
        confirmed it."""
        state = reminder.get("state")
        sent = reminder.get("sent_at")
        answered = self.local(reminder.get("answered_at"))
        line = f"{self.local(reminder.get('created_at'))} 下发「{reminder.get('text', '')}」" + (
            f"; 已发送 {self.local(sent)}" if sent else ""
        )
        if state == "acknowledged":
            return (
                line
                + f"; 终端已确认 {self.local(reminder.get('answered_at'))} (terminal confirmed)"
            )
        if state == "failed":
            return line + (
                f"; 终端拒绝 {answered}, 结果 {reminder.get('result')} (terminal refused)"
            )
        if state == "expired":
            return line + "; 终端未确认, 已过期 (not confirmed, expired)"
        return line + "; 等待终端确认 (awaiting the terminal)"

    def media_text(self, item: dict[str, Any]) -> str:
        """One media item: what, when and where it was taken, its size and SHA-256, and why it
        is incomplete when it is."""
        where = ""
        if item.get("latitude") is not None and item.get("longitude") is not None:
            where = f" {item['latitude']:.6f}, {item['longitude']:.6f}"
        taken = self.local(item.get("fix_time")) or self.local(item.get("received_at"))
        text = (
            f"#{item['id']} {item.get('media_type')} {item.get('content_type')} {taken}{where}; "
            f"{item.get('size_bytes')} bytes; SHA-256 {item.get('sha256') or '-'}"
        )
        if not item.get("complete"):
            text += f"; 不完整 (incomplete): {item.get('incomplete_reason')}"
        return text

    def driver_text(self, driver: dict[str, Any]) -> str:
        """One driver: name, 从业资格证号, 发证机构, validity, and the card times on the vehicle."""
        text = f"{driver.get('name') or '-'}; 从业资格证号 (certificate) {driver['certificate_no']}"
        if driver.get("issuing_authority"):
            text += f"; 发证机构 (issued by) {driver['issuing_authority']}"
        if driver.get("valid_until"):
            text += f"; 有效期至 (valid until) {driver['valid_until']}"
        if driver.get("card_in_at"):
            out = self.local(driver.get("card_out_at")) or "未拔卡 (card still in)"
            text += f"; 插卡 (card in) {self.local(driver['card_in_at'])} — {out}"
        return text

    def summary(self) -> list[tuple[str, str]]:
        """(label, value) pairs shown at the top of every rendering, in display order."""
        v = self.violation
        h = self.handling
        rows = [
            ("报告编号 Report No.", self.report_number),
            ("生成时间 Generated at", f"{self.local(self.generated_at)} ({self.display_timezone})"),
            (
                "时间 Times",
                f"本地时间 {self.display_timezone}; 定位数据的 fix_time 列为 UTC (校验值按此计算) "
                "(local time; the canonical fix_time column is UTC)",
            ),
            ("生成人 Generated by", self.generated_by),
            ("车牌号码 Plate", f"{self.plate_number} ({self.plate_color_text})"),
            ("车辆类型 Class", self.vehicle_class_text),
            ("所属企业 Company", self.company_name),
            ("终端号 Terminal", self.terminal_id),
            ("违法类型 Violation", f"{v.type_text} ({v.alarm_type})"),
            ("开始时间 Start", self.local(v.started_at)),
            ("结束时间 End", self.local(v.ended_at) or "未结束 (open)"),
            ("持续时长 Duration", _duration_text(v.duration_s)),
            ("行驶里程 Distance", f"{v.distance_m / 1000:.2f} km"),
            ("最高速度 Max speed", _speed_text(v.max_speed_kmh)),
            ("平均速度 Mean speed", _speed_text(v.mean_speed_kmh)),
            ("限速 Limit applied", _speed_text(v.limit_kmh)),
            ("限速来源 Limit source", v.limit_source or "-"),
            ("依据 Basis", v.basis),
        ]
        for i, driver in enumerate(self.drivers):  # after the terminal
            rows.insert(8 + i, ("驾驶员 Driver", self.driver_text(driver)))
        if self.alarm_id is not None:
            rows.insert(7, ("报警编号 Alarm id", str(self.alarm_id)))
        if v.late:
            rows.append(("补报 Late data", "由盲区补报数据产生 (raised from blind-area upload)"))
        if h is not None:
            rows.append(("处理状态 Handling", h.status_text))
            if h.handled_at or h.handling_note:
                rows.append(
                    (
                        "处理记录 Handling note",
                        f"{self.local(h.handled_at)} {h.handling_note or ''}",
                    )
                )
            if h.handling_method:
                method = METHOD_TEXT.get(h.handling_method, h.handling_method)
                rows.append(("处理方式 Method", f"{method} ({h.handling_method})"))
            for reminder in h.reminders:
                rows.append(("提醒驾驶员 Driver reminded", self.reminder_text(reminder)))
            for penalty in h.penalties:
                rows.append(("处罚决定 Penalty", penalty_text(penalty)))
            if not h.penalties:
                rows.append(("处罚决定 Penalty", "暂无 (none recorded)"))
        for item in self.media:
            rows.append(("照片/视频证据 Media", self.media_text(item)))
        if self.legal_holds:
            rows.append(("封存 Legal hold", ", ".join(f"#{i}" for i in self.legal_holds)))
        rows.append(
            (
                "数据窗口 Data window",
                f"{self.local(self.window_start)} — {self.local(self.window_end)}",
            )
        )
        rows.append(("定位点数 Positions", str(len(self.positions))))
        rows.append(("校验算法 Digest", f"SHA-256, {CANONICAL_VERSION}"))
        rows.append(("完整性校验值 SHA-256", self.digest_sha256))
        return rows


def penalty_text(penalty: dict[str, Any]) -> str:
    """One penalty decision (:meth:`gps_monitor.db.penalties.Penalty.to_dict`) as one line:
    decision, 决定书编号, 罚款金额 (yuan, 2 decimals), 决定日期, note."""
    parts = [str(penalty.get("decision") or "")]
    if penalty.get("decision_number"):
        parts.append(f"决定书编号 {penalty['decision_number']}")
    if penalty.get("fine_yuan") is not None:
        parts.append(f"罚款 {float(penalty['fine_yuan']):.2f} 元")
    if penalty.get("decided_on"):
        parts.append(f"决定日期 {penalty['decided_on']}")
    if penalty.get("note"):
        parts.append(f"备注 {penalty['note']}")
    return "; ".join(parts)


def _duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d} ({total} s)"


def _speed_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} km/h"


def _first(details: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if details.get(key) is not None:
            return details[key]
    return None


def limit_source_text(source: str | None, shapes: list[Shape] | None = None) -> str | None:
    """Readable limit source from the rules engine's code (``geofence:<id>``, ``route:<id>``,
    ``vehicle``, ``class:<class>``, each optionally suffixed ``+night``)."""
    if not source:
        return None
    base, night, _ = source.partition("+night")
    kind, _, ident = base.partition(":")
    names = {s.kind_table: s.name for s in shapes or []}
    if kind == "geofence":
        text = f"限速区围栏 speed-zone geofence #{ident}"
    elif kind == "route":
        text = f"线路限速 route #{ident}"
    elif kind == "vehicle":
        text = "车辆核定限速 vehicle limit"
    elif kind == "class":
        text = f"车型默认限速 class default ({VEHICLE_CLASSES.get(ident, ident)})"
    else:
        text = source
        night = ""
    if kind in names:
        text += f" {names[kind]}"
    if night:
        text += "; 夜间 22:00-06:00 按日间限速80% (night 80 %)"
    return f"{text} [{source}]"


async def context_window(
    conn: asyncpg.Connection | asyncpg.Pool,
    vehicle_id: int,
    start: datetime,
    end: datetime,
    settings: ReportsSettings,
) -> tuple[datetime, datetime]:
    """The data window of an episode [start, end]: ``context_before_s`` / ``context_after_s``
    either side, widened on sparse data to ``context_min_fixes`` fixes either side but never
    beyond ``context_max_s``."""
    lo = start - timedelta(seconds=settings.context_before_s)
    hi = end + timedelta(seconds=settings.context_after_s)
    n = settings.context_min_fixes
    if n > 0:
        # live and held (sealed) positions alike, so the window is the same after retention
        before = await holds.nth_fix_time(conn, vehicle_id, start, n, before=True)
        after = await holds.nth_fix_time(conn, vehicle_id, end, n, before=False)
        limit = timedelta(seconds=settings.context_max_s)
        if before is not None:
            lo = min(lo, max(before, start - limit))
        if after is not None:
            hi = max(hi, min(after, end + limit))
    return lo, hi


async def _load_positions(
    conn: asyncpg.Connection | asyncpg.Pool,
    vehicle_id: int,
    start: datetime,
    end: datetime,
    episode: tuple[datetime, datetime],
    max_positions: int,
    lead_up_start: datetime | None = None,
) -> list[EvidencePosition]:
    """Positions over [start, end], live or held; ``in_episode`` within ``episode``,
    ``lead_up`` within [lead_up_start, episode start)."""
    live = await holds.live_positions(conn, vehicle_id, start, end, max_positions + 1)
    held = await holds.held_positions(conn, vehicle_id, start, end)
    merged: dict[datetime, tuple[asyncpg.Record, str]] = {r["fix_time"]: (r, "live") for r in live}
    merged.update({r["fix_time"]: (r, "held") for r in held})
    if len(merged) > max_positions:
        raise ValueError(
            f"evidence window: expected at most {max_positions} positions "
            f"(reports.max_positions), got more; narrow the window"
        )
    raw_ids = sorted({r["raw_message_id"] for r, _ in merged.values() if r["raw_message_id"]})
    raw_digest: dict[int, str] = {}
    if raw_ids:
        raw_digest = await positions_db.raw_digests(conn, raw_ids)
        missing = [i for i in raw_ids if i not in raw_digest]
        if missing:
            for raw_id, payload in (await holds.held_raw_payloads(conn, missing)).items():
                raw_digest[raw_id] = hashlib.sha256(payload).hexdigest()
    out = []
    for fix_time in sorted(merged):
        row, source = merged[fix_time]
        raw_id = row["raw_message_id"]
        out.append(
            EvidencePosition(
                vehicle_id=row["vehicle_id"],
                fix_time=fix_time,
                latitude=row["latitude"],
                longitude=row["longitude"],
                speed_kmh=float(row["speed_kmh"]),
                heading_deg=row["heading_deg"],
                altitude_m=row["altitude_m"],
                satellites=row["satellites"],
                fix_valid=row["fix_valid"],
                acc_on=row["acc_on"],
                alarm_flags=row["alarm_flags"],
                status_flags=row["status_flags"],
                mileage_km=row["mileage_km"],
                quality=row["quality"],
                late=row["late"],
                raw_message_id=raw_id,
                raw_sha256=raw_digest.get(raw_id) if raw_id else None,
                in_episode=episode[0] <= fix_time <= episode[1],
                source=source,
                lead_up=lead_up_start is not None and lead_up_start <= fix_time < episode[0],
            )
        )
    return out


def episode_stats(
    positions: list[EvidencePosition],
) -> tuple[float, float | None, float | None]:
    """(distance_m, max_speed_kmh, mean_speed_kmh) over the ok fixes inside the episode:
    geodesic distance between consecutive ok fixes, max and arithmetic mean of reported speed."""
    ok = [p for p in positions if p.in_episode and p.quality == "ok"]
    if not ok:
        return 0.0, None, None
    dist = sum(
        distance_m(a.latitude, a.longitude, b.latitude, b.longitude)
        for a, b in itertools.pairwise(ok)
    )
    speeds = [p.speed_kmh for p in ok]
    return dist, max(speeds), sum(speeds) / len(speeds)


async def _vehicle(conn: asyncpg.Connection | asyncpg.Pool, vehicle_id: int) -> asyncpg.Record:
    rows = await registry.vehicle_labels(conn, [vehicle_id])
    if not rows:
        raise NotFoundError(f"vehicle {vehicle_id}: expected a registered vehicle, found none")
    return rows[0]


async def _handling(conn: asyncpg.Connection | asyncpg.Pool, alarm: asyncpg.Record) -> Handling:
    if not await migrate.table_exists(conn, "alarm_penalties"):
        return Handling(status=alarm["status"])
    extra = await alarms_db.handling_of(conn, alarm["id"])
    reminders: list[dict[str, Any]] = []
    if await migrate.table_exists(conn, "commands"):
        reminders = await commands_db.reminders_for_alarm(conn, alarm["id"])
    return Handling(
        status=alarm["status"],
        acknowledged_at=extra["acknowledged_at"] if extra else None,
        handled_at=extra["handled_at"] if extra else None,
        handling_note=extra["handling_note"] if extra else None,
        handling_method=extra.get("handling_method") if extra else None,
        reminders=tuple(reminders),
        penalties=tuple(p.to_dict() for p in await penalties.for_alarm(conn, alarm["id"])),
    )


async def _shapes(conn: asyncpg.Connection | asyncpg.Pool, details: dict[str, Any]) -> list[Shape]:
    """Geofence / route named in the alarm details, when the rules tables hold it."""
    from web.reports import shapes  # local: reads tables another issue owns

    return await shapes.shapes_for(conn, details)


async def build_for_alarm(
    conn: asyncpg.Connection | asyncpg.Pool,
    alarm_id: int,
    settings: ReportsSettings,
    *,
    generated_by: str,
    report_number: str | None = None,
) -> EvidenceReport:
    """The evidence report of one alarm: the episode plus context either side.

    Raises:
        NotFoundError: no such alarm.
        ValueError: the window holds more than ``reports.max_positions`` positions.
    """
    alarm = await alarms_db.episode(conn, alarm_id)
    if alarm is None:
        raise NotFoundError(f"alarm {alarm_id}: expected an existing alarm, found none")
    details: dict[str, Any] = alarm["details"] or {}
    shapes = await _shapes(conn, details)
    # The violation is the alarm's own [started_at, ended_at], as the summary states. A fatigue
    # alarm's first fix is earlier: the start of the continuous driving that reached the limit
    # at started_at. That lead-up is in the report (it is what makes the rest a violation) but
    # marked apart from the violation; for other types first fix and start coincide.
    ended = alarm["ended_at"] or alarm["last_fix_time"] or datetime.now(UTC)
    episode_end = max(ended, alarm["last_fix_time"] or ended)
    episode_start = alarm["started_at"]
    lead_up_start = min(alarm["first_fix_time"] or episode_start, episode_start)
    window = await context_window(conn, alarm["vehicle_id"], lead_up_start, episode_end, settings)
    positions = await _load_positions(
        conn,
        alarm["vehicle_id"],
        window[0],
        window[1],
        (episode_start, episode_end),
        settings.max_positions,
        lead_up_start if lead_up_start < episode_start else None,
    )
    dist, max_speed, mean_speed = episode_stats(positions)
    duration = _first(details, "duration_s")
    if duration is None and alarm["ended_at"] is not None:
        duration = (alarm["ended_at"] - alarm["started_at"]).total_seconds()
    violation = Violation(
        alarm_type=alarm["alarm_type"],
        started_at=alarm["started_at"],
        ended_at=alarm["ended_at"],
        duration_s=None if duration is None else float(duration),
        distance_m=float(_first(details, "distance_m") or dist),
        max_speed_kmh=_opt_float(_first(details, "max_speed_kmh") or max_speed),
        mean_speed_kmh=_opt_float(_first(details, "mean_speed_kmh", "avg_speed_kmh") or mean_speed),
        limit_kmh=_opt_float(_first(details, "limit_kmh", "speed_limit_kmh")),
        limit_source=limit_source_text(_first(details, "limit_source"), shapes),
        basis=ALARM_BASIS.get(alarm["alarm_type"], "GB/T 35658-2017"),
        late=alarm["late"],
        details=details,
    )
    # the driver the alarm names (fatigue: whose count it is), else whoever had a card in
    drivers = await drivers_db.for_evidence(
        conn, alarm["vehicle_id"], episode_start, episode_end, details.get("driver_certificate_no")
    )
    return await _assemble(
        conn,
        settings,
        vehicle_id=alarm["vehicle_id"],
        alarm_id=alarm_id,
        violation=violation,
        handling=await _handling(conn, alarm),
        media=tuple((await media_db.for_alarms(conn, [alarm_id])).get(alarm_id, [])),
        drivers=tuple(drivers),
        window=window,
        positions=positions,
        shapes=shapes,
        generated_by=generated_by,
        report_number=report_number,
    )


async def build_for_window(
    conn: asyncpg.Connection | asyncpg.Pool,
    vehicle_id: int,
    start: datetime,
    end: datetime,
    settings: ReportsSettings,
    *,
    generated_by: str,
    speed_limit_kmh: float | None = None,
    report_number: str | None = None,
) -> EvidenceReport:
    """The evidence report of one vehicle over [start, end] (UTC-aware), e.g. after an accident:
    every position in the window, no context added. ``speed_limit_kmh`` (optional) is drawn on
    the speed chart and marks the stretches above it.

    Raises:
        NotFoundError: no such vehicle.
        ValueError: naive datetimes, end not after start, or too many positions.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start/end: expected timezone-aware datetimes, got naive")
    if end <= start:
        raise ValueError(f"window: expected end after start, got {start} .. {end}")
    positions = await _load_positions(
        conn, vehicle_id, start, end, (start, end), settings.max_positions
    )
    dist, max_speed, mean_speed = episode_stats(positions)
    violation = Violation(
        alarm_type="window",
        started_at=start,
        ended_at=end,
        duration_s=(end - start).total_seconds(),
        distance_m=dist,
        max_speed_kmh=max_speed,
        mean_speed_kmh=mean_speed,
        limit_kmh=speed_limit_kmh,
        limit_source="请求指定 (given with the request)" if speed_limit_kmh else None,
        basis="指定车辆与时段的轨迹数据调取 (vehicle and window requested)",
    )
    return await _assemble(
        conn,
        settings,
        vehicle_id=vehicle_id,
        alarm_id=None,
        violation=violation,
        handling=None,
        drivers=tuple(await drivers_db.for_evidence(conn, vehicle_id, start, end)),
        window=(start, end),
        positions=positions,
        shapes=[],
        generated_by=generated_by,
        report_number=report_number,
    )


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


async def _assemble(
    conn: asyncpg.Connection | asyncpg.Pool,
    settings: ReportsSettings,
    *,
    vehicle_id: int,
    alarm_id: int | None,
    violation: Violation,
    handling: Handling | None,
    window: tuple[datetime, datetime],
    positions: list[EvidencePosition],
    shapes: list[Shape],
    generated_by: str,
    report_number: str | None,
    media: tuple[dict[str, Any], ...] = (),
    drivers: tuple[dict[str, Any], ...] = (),
) -> EvidenceReport:
    vehicle = await _vehicle(conn, vehicle_id)
    covering = await holds.holds_covering(conn, vehicle_id, window[0], window[1])
    digest = canonical_digest([p.canonical_fields() for p in positions])
    if report_number is None:
        # one number per evidence set (gps_monitor.db.report_log): every format of the same
        # alarm, or vehicle, window and limit, over the same data carries it
        key = report_log.evidence_set_key(
            alarm_id=alarm_id, vehicle_id=vehicle_id,
            window=None if alarm_id is not None else window,
            speed_limit_kmh=None if alarm_id is not None else violation.limit_kmh,
            digest_sha256=digest,
        )  # fmt: skip
        report_number = await report_log.evidence_set_number(
            conn, set_key=key, alarm_id=alarm_id, vehicle_id=vehicle_id, digest_sha256=digest,
            tz=settings.display_timezone,
        )  # fmt: skip
    return EvidenceReport(
        report_number=report_number,
        generated_at=datetime.now(UTC),
        generated_by=generated_by,
        issuer=settings.issuer_name,
        display_timezone=settings.display_timezone,
        alarm_id=alarm_id,
        vehicle_id=vehicle_id,
        plate_number=vehicle["plate_number"],
        plate_color=vehicle["plate_color"],
        vehicle_class=vehicle["vehicle_class"],
        terminal_id=vehicle["terminal_id"],
        company_id=vehicle["company_id"],
        company_name=vehicle["company_name"],
        violation=violation,
        handling=handling,
        window_start=window[0],
        window_end=window[1],
        positions=tuple(positions),
        shapes=tuple(shapes),
        legal_holds=tuple(h.id for h in covering),
        digest_sha256=digest,
        media=media,
        drivers=drivers,
    )
