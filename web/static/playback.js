// Track playback: a panel under the map with the window (local time), play / pause at 1×-64×,
// a speed chart whose cursor is the playback position (click or drag it; arrow keys step), the
// vehicle's alarms of the window on the chart's timeline (click: jump to the start), and the
// point table (time, speed, position, status) that follows the cursor. Every time is shown in the
// rules' zone (config.timezone, Asia/Shanghai); errors are shown in the panel in the page language.
//
// The chart is an SVG drawn here (one path, a few ticks, a cursor, alarm bars): a chart library
// (uPlot ~45 kB) would draw on a canvas, which the tests could not read, and bring features the
// curve does not need.
//
// Play speed is track time per wall time (16× = 16 s of track per second); a gap of more than
// GAP_S between two fixes (a parked vehicle, no signal) is crossed at once instead of waited out.
(function () {
  "use strict";
  const t = (k) => GpsmI18n.t(k);
  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s == null ? "" : s).replace(/[&<>"']/g, (c) => (
    { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const RATES = [1, 2, 4, 8, 16, 32, 64];
  const TICK_MS = 100;
  const GAP_S = 120;
  const PANEL_H = { wide: 250, narrow: 330 };
  const LEVEL_COLORS = { 1: "#b00020", 2: "#e02424", 3: "#f08c00", 4: "#2f6fd0" };

  GpsmI18n.register({
    "zh-CN": {
      pb_rate: "倍速", pb_local: "北京时间", pb_position: "位置", pb_status: "状态",
      pb_no_points: "该时间段没有定位数据", pb_loading: "加载中…", pb_overspeed: "超速", pb_late: "补报",
      pb_err_order: "结束时间应晚于开始时间", pb_err_long: "时间段最长 {days} 天，请缩短",
      pb_err_time: "请填写有效的开始和结束时间", pb_err_vehicle: "找不到该车辆或无权查看",
      pb_err_network: "网络或服务器错误，请稍后重试", pb_chart: "速度曲线 (km/h)，点击或拖动定位",
      pb_alarm_jump: "点击跳到报警开始",
    },
    en: {
      pb_rate: "Speed", pb_local: "Beijing time", pb_position: "Position", pb_status: "Status",
      pb_no_points: "No fixes in this window", pb_loading: "Loading…", pb_overspeed: "overspeed", pb_late: "late",
      pb_err_order: "The end must be after the start", pb_err_long: "At most {days} days: shorten the window",
      pb_err_time: "Enter a valid start and end", pb_err_vehicle: "Vehicle not found or not yours to see",
      pb_err_network: "Network or server error: try again", pb_chart: "Speed (km/h): click or drag to move",
      pb_alarm_jump: "click to jump to the alarm's start",
    },
  });

  let g = null;
  const P = { vehicleId: null, data: null, i: 0, simMs: 0, timer: null, layer: null, cursor: null };

  // ---------------------------------------------------------------- local time (config.timezone)
  const zone = () => (g && g.config && g.config.timezone) || "Asia/Shanghai";
  const locale = () => (GpsmI18n.lang === "en" ? "en-GB" : "zh-CN");
  function fmt(ms, parts) {
    const opts = { timeZone: zone(), hour12: false, hour: "2-digit", minute: "2-digit", second: "2-digit" };
    if (parts === "date") Object.assign(opts, { year: "numeric", month: "2-digit", day: "2-digit" });
    if (parts === "short") { delete opts.second; }
    return new Intl.DateTimeFormat(locale(), opts).format(new Date(ms));
  }
  function offsetMs(ms) {  // the zone's offset from UTC at that instant
    const p = {};
    new Intl.DateTimeFormat("en-US", { timeZone: zone(), hourCycle: "h23", year: "numeric", month: "numeric",
      day: "numeric", hour: "numeric", minute: "numeric", second: "numeric" })
      .formatToParts(new Date(ms)).forEach((x) => { p[x.type] = x.value; });
    return Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second) - Math.floor(ms / 1000) * 1000;
  }
  const toInput = (ms) => new Date(ms + offsetMs(ms)).toISOString().slice(0, 16);
  function fromInput(s) {  // "YYYY-MM-DDTHH:MM" local -> epoch ms (NaN when empty/invalid)
    const wall = Date.parse(s + ":00Z");
    if (!Number.isFinite(wall)) return NaN;
    return wall - offsetMs(wall - offsetMs(wall));
  }

  // ---------------------------------------------------------------- panel
  function build() {
    const el = $("playback");
    el.innerHTML = `
      <div class="pb-head">
        <b data-i18n="track"></b> <span id="pb-plate"></span>
        <label><span data-i18n="start"></span> <input type="datetime-local" id="pb-start"></label>
        <label><span data-i18n="end"></span> <input type="datetime-local" id="pb-end"></label>
        <small class="pb-zone" data-i18n="pb_local"></small>
        <button type="button" id="pb-load" data-i18n="load"></button>
        <button type="button" id="pb-close" aria-label="close">×</button>
      </div>
      <div class="pb-controls">
        <button type="button" id="pb-play" data-i18n="play"></button>
        <label><span data-i18n="pb_rate"></span> <select id="pb-rate">${RATES.map((r) => `<option value="${r}">${r}×</option>`).join("")}</select></label>
        <span id="pb-now"></span> <b id="pb-speed"></b> <small id="pb-info"></small>
      </div>
      <div id="pb-error" class="pb-error" role="alert" hidden></div>
      <div class="pb-body">
        <div class="pb-chart-wrap"><svg id="pb-chart" tabindex="0" role="slider" aria-valuemin="0"></svg></div>
        <div class="pb-table-wrap" id="pb-table-wrap"><table id="pb-table"><thead><tr>
          <th data-i18n="time"></th><th data-i18n="speed"></th><th data-i18n="pb_position"></th><th data-i18n="pb_status"></th>
        </tr></thead><tbody></tbody></table></div>
      </div>`;
    GpsmI18n.apply(el);
    $("pb-close").addEventListener("click", close);
    $("pb-load").addEventListener("click", () => load());
    $("pb-play").addEventListener("click", togglePlay);
    $("pb-rate").addEventListener("change", () => { $("pb-rate").dataset.rate = $("pb-rate").value; });
    $("pb-table").addEventListener("click", (e) => {
      const tr = e.target.closest("tr[data-i]"); if (tr) { pause(); step(Number(tr.dataset.i)); }
    });
    const chart = $("pb-chart");
    chart.addEventListener("pointerdown", (e) => {
      const bar = e.target.closest(".pb-alarm");
      if (bar) { pause(); jumpTo(Number(bar.dataset.startMs)); return; }
      chart.setPointerCapture(e.pointerId); P.dragging = true; pause(); stepAtX(e);
    });
    chart.addEventListener("pointermove", (e) => { if (P.dragging) stepAtX(e); });
    chart.addEventListener("pointerup", () => { P.dragging = false; });
    chart.addEventListener("keydown", (e) => {
      if (!P.data) return;
      const d = { ArrowLeft: -1, ArrowRight: 1, PageUp: -10, PageDown: 10 }[e.key];
      if (d) { e.preventDefault(); pause(); step(Math.max(0, Math.min(P.data.times.length - 1, P.i + d))); }
    });
    window.addEventListener("resize", () => { if (isOpen()) { place(); drawChart(); } });
    document.addEventListener("gpsm:lang", () => { GpsmI18n.apply(el); if (isOpen() && P.data) { renderTable(); drawChart(); step(P.i); } });
  }
  const isOpen = () => !$("playback").hidden;
  // the panel sits under the map, as wide as the map; the map gives up that height
  function place() {
    const map = $("map"), el = $("playback");
    map.style.height = "";
    const r = map.getBoundingClientRect();
    const h = Math.min(r.width < 700 ? PANEL_H.narrow : PANEL_H.wide, Math.max(160, r.height * 0.6));
    Object.assign(el.style, { left: r.left + "px", width: r.width + "px", height: h + "px", top: (r.bottom - h) + "px" });
    map.style.height = (r.height - h) + "px";
    map.style.alignSelf = "flex-start";
    if (g.map) g.map.invalidateSize();
  }
  function open(vehicleId, start, end, loadNow) {
    clear();
    const v = g.vehicles.get(vehicleId) || {};
    P.vehicleId = vehicleId;
    $("pb-plate").textContent = v.plate_number || "#" + vehicleId;
    const endMs = end ? end.getTime() : (v.fix_time ? Date.parse(v.fix_time) + 60e3 : Date.now());
    $("pb-end").value = toInput(endMs);
    $("pb-start").value = toInput(start ? start.getTime() : endMs - 24 * 3600e3);
    showError(null);
    $("playback").hidden = false;
    document.body.classList.add("pb-open");
    place();
    if (loadNow) load();
  }
  function close() {
    clear();
    $("playback").hidden = true;
    document.body.classList.remove("pb-open");
    $("map").style.height = ""; $("map").style.alignSelf = "";
    if (g.map) g.map.invalidateSize();
  }
  function clear() {
    pause();
    if (P.layer && g.map) g.map.removeLayer(P.layer);
    P.layer = null; P.data = null; P.i = 0;
    $("pb-chart").innerHTML = "";
    $("pb-table").tBodies[0].innerHTML = "";
    ["pb-now", "pb-speed", "pb-info"].forEach((id) => { $(id).textContent = ""; });
  }
  function showError(key, vars, detail) {
    const el = $("pb-error");
    if (!key) { el.hidden = true; el.textContent = ""; return; }
    let text = t(key);
    Object.entries(vars || {}).forEach(([k, v]) => { text = text.replace("{" + k + "}", v); });
    el.textContent = text; el.title = detail || ""; el.hidden = false;
  }
  function errorOf(status, detail) {
    if (status === 404) return ["pb_err_vehicle"];
    if (status === 422) {
      const days = /at most ([\d.]+) days/.exec(detail);
      if (days) return ["pb_err_long", { days: days[1] }];
      if (/end after start/.test(detail)) return ["pb_err_order"];
      return ["pb_err_time"];
    }
    return ["pb_err_network"];
  }

  // ---------------------------------------------------------------- load
  async function load() {
    clear();
    const startMs = fromInput($("pb-start").value), endMs = fromInput($("pb-end").value);
    if (!Number.isFinite(startMs) || !Number.isFinite(endMs)) { showError("pb_err_time"); return; }
    if (endMs <= startMs) { showError("pb_err_order"); return; }
    showError(null);
    $("pb-info").textContent = t("pb_loading");
    const q = new URLSearchParams({ start: new Date(startMs).toISOString(), end: new Date(endMs).toISOString() });
    let r;
    try { r = await fetch(`/api/vehicles/${P.vehicleId}/track?${q}`, { credentials: "same-origin" }); } catch (err) { r = null; }
    if (!r || !r.ok) {
      const body = r ? await r.json().catch(() => ({})) : {};
      const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail || "");
      $("pb-info").textContent = "";
      const [key, vars] = errorOf(r ? r.status : 0, detail);
      showError(key, vars, detail);
      return;
    }
    show(await r.json());
  }
  function show(fc) {
    g.map.closePopup();
    const track = fc.features.find((f) => f.properties.kind === "track");
    const tp = track.properties;
    const layer = L.layerGroup().addTo(g.map);
    const pts = track.geometry.coordinates.map(([lon, lat]) => g.disp(lat, lon));
    if (pts.length) L.polyline(pts, { color: "#2f6fd0", weight: 3, renderer: g.svg, className: "track-line" }).addTo(layer);
    const overspeeds = fc.features.filter((f) => f.properties.kind === "overspeed");
    overspeeds.forEach((f) => {
      const seg = f.geometry.coordinates.map(([lon, lat]) => g.disp(lat, lon));
      if (seg.length) L.polyline(seg, { color: "#e02424", weight: 6, opacity: 0.8, className: "overspeed-stretch", renderer: g.svg })
        .bindTooltip(t("overspeed_stretch") + " " + fmt(Date.parse(f.properties.started_at), "date")).addTo(layer);
    });
    fc.features.filter((f) => f.properties.kind === "flagged" && f.geometry).forEach((f) => {
      const [lon, lat] = f.geometry.coordinates;
      L.circleMarker(g.disp(lat, lon), { radius: 4, color: "#888", fillOpacity: 0.6, renderer: g.svg, className: "flagged-fix" })
        .bindTooltip(`${f.properties.quality} ${f.properties.quality_reason || ""} ${fmt(Date.parse(f.properties.fix_time), "date")}`).addTo(layer);
    });
    const cursor = L.circleMarker(pts[0] || g.map.getCenter(), { radius: 7, color: "#000", fillColor: "#ff0", fillOpacity: 1,
      renderer: g.svg, className: "pb-marker" }).addTo(layer);
    const times = tp.fix_times.map((s) => Date.parse(s));
    const over = overspeeds.map((f) => [Date.parse(f.properties.started_at), f.properties.ended_at ? Date.parse(f.properties.ended_at) : Infinity]);
    Object.assign(P, { layer, cursor, i: 0, data: { pts, times, speeds: tp.speeds_kmh, late: tp.late,
      coords: track.geometry.coordinates, alarms: fc.alarms || [], over, props: tp } });
    $("pb-info").textContent = pts.length ? `${tp.points_returned}/${tp.points_ok} ${t("points")}${tp.simplified ? " (" + t("simplified") + ")" : ""}`
      : t("pb_no_points");
    renderTable();
    drawChart();
    if (pts.length) { step(0); g.fitted = true; g.map.fitBounds(L.latLngBounds(pts).pad(0.1), { animate: false }); }
  }

  // ---------------------------------------------------------------- table
  function statusOf(i) {
    const d = P.data, ms = d.times[i];
    const moving = (d.speeds[i] || 0) >= ((g.config && g.config.moving_speed_kmh) || 5);
    const s = [t(moving ? "moving" : "stopped")];
    if (d.over.some(([a, b]) => ms >= a && ms <= b)) s.push(t("pb_overspeed"));
    if (d.late[i]) s.push(t("pb_late"));
    return s.join(" · ");
  }
  function renderTable() {
    const d = P.data; if (!d) return;
    $("pb-table").tBodies[0].innerHTML = d.times.map((ms, i) => {
      const [lon, lat] = d.coords[i];
      return `<tr data-i="${i}"${d.over.some(([a, b]) => ms >= a && ms <= b) ? ' class="over"' : ""}><td>${esc(fmt(ms, "date"))}</td>` +
        `<td class="num">${esc(String(Math.round(d.speeds[i] * 10) / 10))}</td><td>${lat.toFixed(5)}, ${lon.toFixed(5)}</td><td>${esc(statusOf(i))}</td></tr>`;
    }).join("");
  }

  // ---------------------------------------------------------------- chart
  const PAD = { left: 34, right: 8, top: 8, bottom: 34 };  // bottom: time labels + alarm row
  function scales() {
    const svg = $("pb-chart"), d = P.data;
    const w = Math.max(120, svg.clientWidth || svg.parentNode.clientWidth), h = Math.max(80, svg.clientHeight || svg.parentNode.clientHeight);
    const t0 = d.times[0], t1 = Math.max(d.times[d.times.length - 1], t0 + 1000);
    const vmax = Math.max(20, Math.ceil(Math.max(...d.speeds) / 20) * 20);
    const x = (ms) => PAD.left + (Math.min(Math.max(ms, t0), t1) - t0) / (t1 - t0) * (w - PAD.left - PAD.right);
    const y = (v) => PAD.top + (1 - v / vmax) * (h - PAD.top - PAD.bottom);
    const msAt = (px) => t0 + (px - PAD.left) / (w - PAD.left - PAD.right) * (t1 - t0);
    return { w, h, t0, t1, vmax, x, y, msAt };
  }
  function drawChart() {
    const svg = $("pb-chart"), d = P.data;
    if (!d || !d.times.length) { svg.innerHTML = ""; return; }
    const s = scales();
    svg.setAttribute("viewBox", `0 0 ${s.w} ${s.h}`);
    svg.setAttribute("aria-label", t("pb_chart"));
    svg.setAttribute("aria-valuemax", String(d.times.length - 1));
    let path = "";
    d.times.forEach((ms, i) => {
      const gap = i > 0 && ms - d.times[i - 1] > GAP_S * 1000;
      path += `${i === 0 || gap ? "M" : "L"}${s.x(ms).toFixed(1)},${s.y(d.speeds[i]).toFixed(1)}`;
    });
    const grid = [0, s.vmax / 2, s.vmax].map((v) => `<line class="pb-grid" x1="${PAD.left}" x2="${s.w - PAD.right}" y1="${s.y(v)}" y2="${s.y(v)}"/>` +
      `<text class="pb-axis" x="${PAD.left - 4}" y="${s.y(v) + 4}" text-anchor="end">${v}</text>`).join("");
    const nTicks = Math.max(2, Math.min(6, Math.floor((s.w - PAD.left) / 110)));
    const multiDay = s.t1 - s.t0 > 20 * 3600e3;
    let ticks = "";
    for (let k = 0; k <= nTicks; k += 1) {
      const ms = s.t0 + (s.t1 - s.t0) * k / nTicks;
      const label = multiDay ? fmt(ms, "date").replace(/:\d\d$/, "") : fmt(ms, "short");
      const anchor = k === 0 ? "start" : k === nTicks ? "end" : "middle";
      ticks += `<text class="pb-axis pb-tick" x="${s.x(ms)}" y="${s.h - PAD.bottom + 13}" text-anchor="${anchor}">${esc(label)}</text>`;
    }
    const rowY = s.h - 16;
    const alarms = d.alarms.map((a) => {
      const a0 = Date.parse(a.started_at), a1 = a.ended_at ? Date.parse(a.ended_at) : s.t1;
      const x0 = s.x(a0), x1 = Math.max(s.x(a1), x0 + 6);
      const title = `${t(a.alarm_type)} ${fmt(a0, "date")}${a.ended_at ? " – " + fmt(a1, "date") : ""} · ${t("pb_alarm_jump")}`;
      return `<rect class="pb-alarm lvl-${a.level}" data-alarm-id="${a.id}" data-alarm-type="${esc(a.alarm_type)}" data-start-ms="${a0}" ` +
        `x="${x0.toFixed(1)}" y="${rowY}" width="${(x1 - x0).toFixed(1)}" height="12" rx="2" fill="${LEVEL_COLORS[a.level] || "#e02424"}"><title>${esc(title)}</title></rect>`;
    }).join("");
    const unit = `<text class="pb-axis" x="${PAD.left + 4}" y="${PAD.top + 8}">${esc(t("kmh"))}</text>`;
    svg.innerHTML = `${grid}${unit}${ticks}<path class="pb-speed" d="${path}"/>` +
      `<line class="pb-timeline" x1="${PAD.left}" x2="${s.w - PAD.right}" y1="${rowY + 6}" y2="${rowY + 6}"/>${alarms}` +
      `<line id="pb-cursor" class="pb-cursor" y1="${PAD.top}" y2="${s.h - PAD.bottom}"/><circle id="pb-dot" class="pb-dot" r="4"/>`;
    moveChartCursor();
  }
  function moveChartCursor() {
    const d = P.data, line = $("pb-cursor"); if (!d || !line || !d.times.length) return;
    const s = scales();
    const cx = s.x(d.times[P.i]);
    line.setAttribute("x1", cx); line.setAttribute("x2", cx);
    $("pb-dot").setAttribute("cx", cx); $("pb-dot").setAttribute("cy", s.y(d.speeds[P.i]));
    $("pb-chart").setAttribute("aria-valuenow", String(P.i));
  }
  function indexAt(ms) {  // last fix at or before ms (binary search)
    const ts = P.data.times;
    let lo = 0, hi = ts.length - 1;
    while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (ts[mid] <= ms) lo = mid; else hi = mid - 1; }
    return lo;
  }
  function stepAtX(e) {
    if (!P.data || !P.data.times.length) return;
    const svg = $("pb-chart"), box = svg.getBoundingClientRect(), s = scales();
    const px = (e.clientX - box.left) * (s.w / box.width);
    const ms = s.msAt(px);
    let i = indexAt(ms);
    if (i + 1 < P.data.times.length && Math.abs(P.data.times[i + 1] - ms) < Math.abs(P.data.times[i] - ms)) i += 1;
    step(i);
  }
  function jumpTo(ms) {
    if (!P.data || !P.data.times.length) return;
    const ts = P.data.times;
    let i = indexAt(ms);
    if (ts[i] < ms && i + 1 < ts.length) i += 1;  // the first fix of the alarm
    step(i);
  }

  // ---------------------------------------------------------------- the cursor everywhere
  function step(i) {
    const d = P.data; if (!d || !d.times.length) return;
    P.i = i; P.simMs = d.times[i];
    P.cursor.setLatLng(d.pts[i]);
    $("pb-now").textContent = fmt(d.times[i], "date");
    $("pb-speed").textContent = `${Math.round(d.speeds[i] * 10) / 10} ${t("kmh")}`;
    moveChartCursor();
    const body = $("pb-table").tBodies[0];
    const old = body.querySelector("tr.current"); if (old) old.classList.remove("current");
    const row = body.rows[i];
    if (row) {
      row.classList.add("current");
      const wrap = $("pb-table-wrap");  // scroll the table only, never the page
      const head = $("pb-table").tHead.offsetHeight;
      if (row.offsetTop < wrap.scrollTop + head || row.offsetTop + row.offsetHeight > wrap.scrollTop + wrap.clientHeight) {
        wrap.scrollTop = Math.max(0, row.offsetTop - head - wrap.clientHeight / 3);
      }
    }
  }
  function pause() {
    if (P.timer) { clearInterval(P.timer); P.timer = null; }
    if ($("pb-play")) { $("pb-play").dataset.i18n = "play"; $("pb-play").textContent = t("play"); }
  }
  function togglePlay() {
    const d = P.data; if (!d || !d.times.length) return;
    if (P.timer) { pause(); return; }
    if (P.i >= d.times.length - 1) step(0);
    $("pb-play").dataset.i18n = "pause"; $("pb-play").textContent = t("pause");
    P.simMs = d.times[P.i];
    P.timer = setInterval(() => {
      const rate = Number($("pb-rate").value) || 1;
      P.simMs += TICK_MS * rate;
      let i = P.i;
      if (i + 1 < d.times.length && d.times[i + 1] - d.times[i] > GAP_S * 1000 && P.simMs > d.times[i] + GAP_S * 1000) {
        P.simMs = d.times[i + 1];  // a long gap is crossed at once
      }
      while (i + 1 < d.times.length && d.times[i + 1] <= P.simMs) i += 1;
      if (i !== P.i) { const sim = P.simMs; step(i); P.simMs = sim; }
      if (i >= d.times.length - 1) pause();
    }, TICK_MS);
  }

  function init(gpsm) { g = gpsm; }
  build();
  window.GpsmPlayback = { init, open, close, load: () => load(), get state() { return P; } };
})();
