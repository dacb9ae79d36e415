// KPI dashboard: cards for the period, a trend line over days and companies ranked, drawn as
// plain SVG (no chart library, no CDN). Data: GET /api/reports/kpi?from&to[&company_id].
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const PERCENT = new Set(["connection_rate", "online_rate", "track_completeness", "data_quality",
    "drift_rate", "handling_rate", "supervision_rate"]);
  PERCENT.add("platform_query_rate").add("platform_connectivity");  // JT/T 809 (issue 10)
  let labels = {};
  let report = null;
  const I18N = window.GpsmI18n;
  const t = (key) => I18N.t(key);
  I18N.register({
    "zh-CN": {
      db_title: "联网联控考核指标", db_county: "全县", db_total: "合计", db_query: "查询", db_export: "导出 Excel",
      db_map: "地图", db_trend: "日趋势", db_ranking: "企业排名", db_details: "明细", db_unit: "单位",
      db_loading: "加载中…", db_error: "错误", db_login_failed: "用户名或密码错误",
      db_period: "期间", db_today_live: "（含今日，实时）", db_no_data: "无数据",
    },
    en: {
      db_title: "KPI dashboard", db_county: "County", db_total: "Total", db_query: "Show", db_export: "Export Excel",
      db_map: "Map", db_trend: "Trend over days", db_ranking: "Companies ranked", db_details: "Details",
      db_unit: "Unit", db_loading: "Loading…", db_error: "Error", db_login_failed: "Wrong username or password",
      db_period: "Period", db_today_live: "(including today, live)", db_no_data: "no data",
      kpi_connection_rate: "Connection rate %", kpi_online_rate: "Online rate %",
      kpi_track_completeness: "Track completeness %", kpi_data_quality: "Data quality %",
      kpi_drift_rate: "Drifting vehicles %", kpi_overspeed_per_vehicle: "Overspeed alarms / vehicle",
      kpi_fatigue_hours_per_vehicle: "Fatigue hours / vehicle", kpi_handling_rate: "Handling rate %",
      kpi_supervision_rate: "Supervision answered in time %",
      kpi_platform_query_rate: "Platform queries answered %", kpi_platform_connectivity: "Platform link up %",
      def_platform_query_rate: "queries (查岗) of the superior platform answered by their deadline / received",
      def_platform_connectivity: "time the JT/T 809 main link was up / period",
      def_connection_rate: "must-connect vehicles that sent a valid fix / must-connect vehicles",
      def_online_rate: "Σ vehicles online per day / Σ vehicles connected per day (vehicle-days)",
      def_track_completeness: "mileage without gaps (> 300 s and > 1 km) / mileage",
      def_data_quality: "valid records / records",
      def_drift_rate: "vehicles with drifting fixes / online vehicles",
      def_overspeed_per_vehicle: "overspeed alarms started in the period / online vehicles",
      def_fatigue_hours_per_vehicle: "hours of fatigue driving in the period (open episodes up to now) / online vehicles",
      def_handling_rate: "violations handled or with a penalty decision / violations",
      def_supervision_rate: "supervision orders (督办) answered by their deadline / orders issued",
    },
  });
  // a KPI's label and definition in the page language: the server's (Chinese) or English
  // (a KPI without an English label yet shows the server's Chinese one)
  const english = (key, fallback) => (I18N.lang === "en" && t(key) !== key ? t(key) : fallback);
  const kpiLabel = (key) => english("kpi_" + key, labels[key]);
  const kpiDefinition = (key) => english("def_" + key, report.definitions[key] || "");

  function el(name, attrs, text) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function fmt(key, value) {
    if (value === null || value === undefined) return "–";
    return PERCENT.has(key) ? value.toFixed(2) + " %" : String(value);
  }
  function localDay(offset) {
    const d = new Date(Date.now() + 8 * 3600e3 + offset * 86400e3);  // Asia/Shanghai
    return d.toISOString().slice(0, 10);
  }

  async function api(path) {
    const r = await fetch(path, { credentials: "same-origin" });
    if (r.status === 401) { $("login").hidden = false; throw new Error("401"); }
    if (!r.ok) throw new Error((await r.json().catch(() => ({}))).detail || r.statusText);
    return r.json();
  }

  function query(format) {
    const p = new URLSearchParams({ from: $("from").value, to: $("to").value, format });
    if ($("company").value) p.set("company_id", $("company").value);
    return "/api/reports/kpi?" + p.toString();
  }

  let scopedUser = null;  // an operator: every report is of his company (known after the first)
  // the first unit of the report: the county's, or the total of the one company it covers
  const totalKey = () => (report && report.scope === "company" ? "db_total" : "db_county");

  async function load() {
    $("status").textContent = t("db_loading");
    try {
      report = await api(query("json"));
      labels = report.labels;
      $("xlsx").href = query("xlsx");
      fillSelectors();
      render();
      $("status").textContent = "";
    } catch (error) {
      if (error.message !== "401") $("status").textContent = t("db_error") + ": " + error.message;
    }
  }

  function fillSelectors() {
    for (const id of ["trend-kpi", "rank-kpi"]) {
      const select = $(id);
      const chosen = select.value || (id === "trend-kpi" ? "online_rate" : "track_completeness");
      select.textContent = "";
      for (const key of Object.keys(labels)) select.add(new Option(kpiLabel(key), key));
      select.value = chosen;
      if (!select.dataset.wired) { select.addEventListener("change", render); select.dataset.wired = "1"; }
    }
    const companies = $("company");
    // an operator's report is his company's from the start: no county to choose
    if (scopedUser === null) scopedUser = report.scope === "company" && !companies.value;
    companies.options[0].textContent = t(scopedUser ? "db_total" : "db_county");
    if (companies.options.length === 1) {
      for (const c of report.companies) companies.add(new Option(c.name, c.id));
    }
  }

  function render() {
    const cards = $("cards");
    cards.textContent = "";
    const period = report.period;
    const today = localDay(0);
    $("period-note").textContent = `${t("db_period")} ${period.from_local} – ${period.to_local}` +
      (period.to_local >= today && period.from_local <= today ? " " + t("db_today_live") : "") +
      ` · ${period.timezone}`;
    for (const key of Object.keys(labels)) {
      const card = document.createElement("div");
      card.className = "card";
      card.dataset.kpi = key;
      card.innerHTML = '<div class="label"></div><div class="value"></div><div class="sub"></div>';
      card.querySelector(".label").textContent = kpiLabel(key);
      card.querySelector(".value").textContent = fmt(key, report.county.kpis[key]);
      card.querySelector(".sub").textContent = kpiDefinition(key);
      cards.appendChild(card);
    }
    drawTrend($("trend"), $("trend-kpi").value);
    drawRanking($("ranking"), $("rank-kpi").value);
    drawTable();
  }

  function axisMax(values, key) {
    const max = Math.max(0, ...values.filter((v) => v !== null));
    if (PERCENT.has(key)) return 100;
    return max > 0 ? max * 1.15 : 1;
  }

  function drawTrend(box, key) {
    const days = report.county.days;
    const W = 900, H = 260, L = 50, R = 16, T = 14, B = 34;
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "trend" });
    const values = days.map((d) => d.kpis[key]);
    const top = axisMax(values, key);
    const x = (i) => L + (days.length <= 1 ? 0 : (i * (W - L - R)) / (days.length - 1));
    const y = (v) => T + (H - T - B) * (1 - v / top);
    for (let k = 0; k <= 4; k++) {
      const v = (top * k) / 4;
      svg.appendChild(el("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#e3e3e3" }));
      svg.appendChild(el("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" },
        PERCENT.has(key) ? v.toFixed(0) + "%" : v.toFixed(2)));
    }
    const step = Math.max(1, Math.ceil(days.length / 12));
    days.forEach((d, i) => {
      if (i % step === 0 || i === days.length - 1)
        svg.appendChild(el("text", { x: x(i), y: H - 12, "text-anchor": "middle" }, d.day.slice(5)));
    });
    let path = "";
    values.forEach((v, i) => {
      if (v === null) return;
      path += (path ? " L" : "M") + x(i).toFixed(1) + " " + y(v).toFixed(1);
    });
    svg.appendChild(el("path", { d: path, fill: "none", stroke: "#1f77b4", "stroke-width": 2 }));
    values.forEach((v, i) => {
      if (v === null) return;
      const dot = el("circle", { cx: x(i), cy: y(v), r: 3.5, fill: "#1f77b4" });
      dot.appendChild(el("title", {}, `${days[i].day}: ${fmt(key, v)}`));
      svg.appendChild(dot);
    });
    box.textContent = "";
    box.appendChild(svg);
  }

  // one row per company: its full name on a line of its own (long Chinese company names were
  // clipped in a fixed label column), the bar and the value under it
  function drawRanking(box, key) {
    const rows = report.companies
      .map((c) => ({ name: c.name, v: c.kpis[key] }))
      .sort((a, b) => (b.v ?? -1) - (a.v ?? -1));
    const top = axisMax(rows.map((r) => r.v), key);
    box.textContent = "";
    rows.forEach((r, i) => {
      const row = document.createElement("div");
      row.className = "rank-row";
      const name = document.createElement("div");
      name.className = "rank-name";
      name.textContent = `${i + 1}. ${r.name}`;
      const bar = document.createElement("div");
      bar.className = "rank-bar";
      const fill = document.createElement("span");
      fill.className = "bar";
      fill.style.width = r.v === null ? "0" : `${Math.max(0, (85 * r.v) / top).toFixed(1)}%`;
      const value = document.createElement("span");
      value.className = "value";
      value.textContent = fmt(key, r.v);
      bar.append(fill, value);
      row.append(name, bar);
      box.appendChild(row);
    });
    if (!rows.length) box.textContent = t("db_no_data");
  }

  function drawTable() {
    const keys = Object.keys(labels);
    const head = $("table").tHead;
    head.innerHTML = "";
    const hr = head.insertRow();
    for (const text of [t("db_unit"), ...keys.map(kpiLabel)]) {
      const th = document.createElement("th");
      th.textContent = text;
      hr.appendChild(th);
    }
    const body = $("table").tBodies[0];
    body.innerHTML = "";
    for (const unit of [report.county, ...report.companies]) {
      const tr = body.insertRow();
      tr.insertCell().textContent = unit.id == null ? t(totalKey()) : unit.name;
      for (const k of keys) tr.insertCell().textContent = fmt(k, unit.kpis[k]);
    }
  }

  $("period").addEventListener("submit", (e) => { e.preventDefault(); load(); });
  $("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const r = await fetch("/api/auth/login", {
      method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username: $("login-username").value, password: $("login-password").value }),
    });
    if (!r.ok) {
      $("login-error").textContent = r.status === 429 ? I18N.loginError(r.status, r.headers.get("Retry-After")) : t("db_login_failed");
      return;
    }
    $("login").hidden = true;
    load();
  });
  // the language switch: labels in the page, then the charts and table drawn again
  $("lang").value = I18N.lang;
  $("lang").addEventListener("change", () => I18N.setLang($("lang").value));
  document.addEventListener("gpsm:lang", () => {
    if (report) { fillSelectors(); render(); }
    const county = $("company").options[0];
    if (county) county.textContent = t(scopedUser ? "db_total" : "db_county");
  });
  I18N.apply();
  // default period: this month so far, today included (month to date, the usual reporting
  // period of 联网联控 assessments), so a new system, or `make demo`, shows today at once
  const params = new URLSearchParams(location.search);
  $("from").value = params.get("from") || localDay(0).slice(0, 8) + "01";
  $("to").value = params.get("to") || localDay(0);
  load();
})();
