"""Offline drawings for the evidence report: the track map and the speed chart (matplotlib, Agg).

No tiles and no internet: the track is drawn in a local transverse Mercator projection centred on
the track (metres, true scale and north up at the centre), with the violating stretch highlighted,
start and end marked, any geofence or route outlined, a scale bar and a north arrow. Invalid fixes
are left out of the track (DOMAIN.md, Position quality); drift fixes are shown as crosses, not
joined to the track.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Sequence
from datetime import datetime, tzinfo
from functools import lru_cache
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib import font_manager
from matplotlib.figure import Figure
from pyproj import Transformer

from web.reports.evidence import EvidencePosition, EvidenceReport, Shape

DPI = 150
# pyplot keeps global state: reports rendered in worker threads (the API) draw one at a time
_DRAW_LOCK = threading.Lock()


@lru_cache(maxsize=4)
def _font_family(font_path: str) -> str | None:
    """Register the CJK font with matplotlib once; returns its family name (None if absent)."""
    if not Path(font_path).exists():
        return None
    font_manager.fontManager.addfont(font_path)
    return font_manager.FontProperties(fname=font_path).get_name()


def _style(font_path: str) -> dict[str, Any]:
    family = _font_family(font_path)
    style: dict[str, Any] = {"axes.unicode_minus": False, "font.size": 8}
    if family:
        style["font.family"] = [family, "DejaVu Sans"]
    return style


def _nice_length(span_m: float) -> float:
    """A round scale-bar length (1, 2 or 5 x 10^n metres) about a fifth of ``span_m``."""
    target = max(span_m / 5, 1.0)
    exponent = 10 ** math.floor(math.log10(target))
    for step in (5, 2, 1):
        if step * exponent <= target:
            return float(step * exponent)
    return float(exponent)


def _num(moment: datetime, tz: tzinfo) -> float:
    """Matplotlib date number of a time shown in local time (naive local on the axis)."""
    return float(mdates.date2num(moment.astimezone(tz).replace(tzinfo=None)))


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    return buffer.getvalue()


def _segments(points: Sequence[EvidencePosition], flag: Sequence[bool]) -> list[list[int]]:
    """Runs of consecutive indices where ``flag`` is true."""
    runs: list[list[int]] = []
    current: list[int] = []
    for i, on in enumerate(flag):
        if on:
            current.append(i)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return runs


def track_map_png(
    report: EvidenceReport, font_path: str, size_in: tuple[float, float] = (7.2, 5.0)
) -> bytes:
    """PNG bytes of the track map (see module docstring)."""
    with _DRAW_LOCK:
        return _track_map_png(report, font_path, size_in)


def _track_map_png(report: EvidenceReport, font_path: str, size_in: tuple[float, float]) -> bytes:
    ok = [p for p in report.positions if p.quality == "ok"]
    drift = [p for p in report.positions if p.quality == "drift"]
    with plt.rc_context(_style(font_path)):  # type: ignore[arg-type]
        fig = plt.figure(figsize=size_in)
        ax = fig.add_axes((0.02, 0.02, 0.96, 0.9))
        ax.set_title(f"{report.plate_number} 轨迹图 Track map", fontsize=10)
        if not ok:
            ax.text(0.5, 0.5, "无有效定位点 (no valid fixes)", ha="center", va="center")
            ax.set_axis_off()
            return _png(fig)
        lat0 = sum(p.latitude for p in ok) / len(ok)
        lon0 = sum(p.longitude for p in ok) / len(ok)
        to_local = Transformer.from_crs(
            "EPSG:4326",
            f"+proj=tmerc +lat_0={lat0} +lon_0={lon0} +ellps=WGS84 +units=m",
            always_xy=True,
        )
        xs, ys = to_local.transform([p.longitude for p in ok], [p.latitude for p in ok])
        xs, ys = list(xs), list(ys)
        for shape in report.shapes:
            _draw_shape(ax, shape, to_local)
        ax.plot(xs, ys, "-", color="#4a6fa5", linewidth=1.2, label="轨迹 track", zorder=2)
        limit = report.violation.limit_kmh
        lead_label = "连续驾驶 continuous driving before the violation"
        for run in _segments(ok, [p.lead_up for p in ok]):
            ax.plot(
                [xs[i] for i in run],
                [ys[i] for i in run],
                "-",
                color="#e0a800",
                linewidth=2.2,
                marker="o" if len(run) == 1 else None,
                label=lead_label,
                zorder=3,
            )
            lead_label = "_"
        flags = [p.in_episode for p in ok]
        label = "违法路段 violation"
        for run in _segments(ok, flags):
            ax.plot(
                [xs[i] for i in run],
                [ys[i] for i in run],
                "-",
                color="#d62728",
                linewidth=3.0,
                marker="o" if len(run) == 1 else None,
                label=label,
                zorder=3,
            )
            label = "_"
        if limit is not None:
            over = [p.speed_kmh > limit for p in ok]
            over_label = f"超过限速 > {limit:g} km/h"
            idx = [i for i, on in enumerate(over) if on]
            if idx:
                ax.scatter(
                    [xs[i] for i in idx],
                    [ys[i] for i in idx],
                    s=9,
                    color="#ff7f0e",
                    zorder=4,
                    label=over_label,
                )
        if drift:
            dx, dy = to_local.transform([p.longitude for p in drift], [p.latitude for p in drift])
            ax.scatter(
                dx, dy, marker="x", color="#888888", s=18, zorder=4, label="漂移点 drift (excluded)"
            )
        ax.scatter(
            [xs[0]],
            [ys[0]],
            marker="o",
            s=60,
            color="#2ca02c",
            zorder=5,
            edgecolors="black",
            label=f"起点 start {report.local(ok[0].fix_time)[11:]}",
        )
        ax.scatter(
            [xs[-1]],
            [ys[-1]],
            marker="s",
            s=60,
            color="#000000",
            zorder=5,
            label=f"终点 end {report.local(ok[-1].fix_time)[11:]}",
        )
        # limits with the axes' own aspect ratio, so metres are equal on both axes
        box = ax.get_position()
        ratio = (box.height * size_in[1]) / (box.width * size_in[0])
        width = max(max(xs) - min(xs), (max(ys) - min(ys)) / ratio, 200.0) * 1.25
        cx, cy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
        ax.set_xlim(cx - width / 2, cx + width / 2)
        ax.set_ylim(cy - width * ratio / 2, cy + width * ratio / 2)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        ax.set_facecolor("#f7f7f2")
        fig.canvas.draw()
        _scale_bar(ax)
        _north_arrow(ax)
        ax.legend(loc="lower right", fontsize=7, framealpha=0.9)
        ax.text(
            0.01,
            0.99,
            f"WGS-84, 中心 {lat0:.5f}N {lon0:.5f}E",
            transform=ax.transAxes,
            fontsize=6,
            va="top",
            color="#555555",
        )
        return _png(fig)


def _draw_shape(ax: plt.Axes, shape: Shape, to_local: Transformer) -> None:
    color = "#9467bd"
    label = f"{shape.kind}: {shape.name}"
    for line in shape.lines:
        lx, ly = to_local.transform([c[0] for c in line], [c[1] for c in line])
        if shape.closed:
            ax.fill(lx, ly, color=color, alpha=0.12, zorder=1)
        else:  # a route: a wide band under the track, so it shows where they coincide
            ax.plot(
                lx, ly, "-", color=color, linewidth=8, alpha=0.3, zorder=1, solid_capstyle="round"
            )
        ax.plot(lx, ly, "--", color=color, linewidth=1.2, zorder=1, label=label)
        label = "_"


def _scale_bar(ax: plt.Axes) -> None:
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    length = _nice_length(x1 - x0)
    bx = x0 + (x1 - x0) * 0.04
    by = y0 + (y1 - y0) * 0.05
    ax.plot(
        [bx, bx + length], [by, by], color="black", linewidth=3, solid_capstyle="butt", zorder=6
    )
    for x in (bx, bx + length):
        ax.plot(
            [x, x],
            [by - (y1 - y0) * 0.01, by + (y1 - y0) * 0.01],
            color="black",
            linewidth=1,
            zorder=6,
        )
    text = f"{length / 1000:g} km" if length >= 1000 else f"{length:g} m"
    ax.text(
        bx + length / 2,
        by + (y1 - y0) * 0.015,
        text,
        ha="center",
        va="bottom",
        fontsize=7,
        zorder=6,
    )


def _north_arrow(ax: plt.Axes) -> None:
    ax.annotate(
        "",
        xy=(0.95, 0.95),
        xytext=(0.95, 0.83),
        xycoords="axes fraction",
        arrowprops={"facecolor": "black", "width": 3, "headwidth": 10, "headlength": 10},
        zorder=6,
    )
    ax.text(
        0.95,
        0.80,
        "N 北",
        transform=ax.transAxes,
        ha="center",
        va="top",
        fontsize=8,
        zorder=6,
    )


def speed_chart_png(
    report: EvidenceReport, font_path: str, size_in: tuple[float, float] = (7.2, 2.8)
) -> bytes:
    """PNG bytes of reported speed over local fix time, the limit as a dashed line and the
    episode shaded. Invalid fixes are left out; drift fixes shown as grey crosses."""
    with _DRAW_LOCK:
        return _speed_chart_png(report, font_path, size_in)


def _speed_chart_png(report: EvidenceReport, font_path: str, size_in: tuple[float, float]) -> bytes:
    tz = report.tz
    ok = [p for p in report.positions if p.quality == "ok"]
    drift = [p for p in report.positions if p.quality == "drift"]
    with plt.rc_context(_style(font_path)):  # type: ignore[arg-type]
        fig = plt.figure(figsize=size_in)
        ax = fig.add_axes((0.08, 0.17, 0.9, 0.72))
        ax.set_title("速度曲线 Speed over time", fontsize=10)
        times = [_num(p.fix_time, tz) for p in ok]
        ax.plot(
            times,
            [p.speed_kmh for p in ok],
            "-",
            color="#1f77b4",
            linewidth=1.0,
            marker="." if len(ok) < 200 else None,
            markersize=3,
            label="速度 speed",
        )
        if drift:
            ax.scatter(
                [_num(p.fix_time, tz) for p in drift],
                [p.speed_kmh for p in drift],
                marker="x",
                color="#888888",
                s=14,
                label="漂移 drift",
            )
        v = report.violation
        start = _num(v.started_at, tz)
        end = _num(v.ended_at or report.window_end, tz)
        ax.axvspan(start, end, color="#d62728", alpha=0.12, label="违法时段 episode")
        if v.limit_kmh is not None:
            ax.axhline(
                v.limit_kmh,
                color="#d62728",
                linestyle="--",
                linewidth=1.2,
                label=f"限速 limit {v.limit_kmh:g} km/h",
            )
        ax.set_ylabel("km/h")
        ax.set_ylim(bottom=0)
        ax.grid(True, linewidth=0.3)
        locator = mdates.AutoDateLocator(tz=None)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        ax.set_xlabel(f"时间 local time ({report.display_timezone})")
        ax.legend(loc="upper right", fontsize=7, ncol=2, framealpha=0.9)
        return _png(fig)
