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

  async function load() {
    $("status").textContent = "加载中…";
    try {
      report = await api(query("json"));
      labels = report.labels;
      $("xlsx").href = query("xlsx");
      fillSelectors();
      render();
      $("status").textContent = "";
    } catch (error) {
      if (error.message !== "401") $("status").textContent = "错误: " + error.message;
    }
  }

  function fillSelectors() {
    for (const id of ["trend-kpi", "rank-kpi"]) {
      const select = $(id);
      if (select.options.length) continue;
      for (const [key, label] of Object.entries(labels)) select.add(new Option(label, key));
      select.value = id === "trend-kpi" ? "online_rate" : "track_completeness";
      select.addEventListener("change", render);
    }
    const companies = $("company");
    if (companies.options.length === 1) {
      for (const c of report.companies) companies.add(new Option(c.name, c.id));
    }
  }

  function render() {
    const cards = $("cards");
    cards.textContent = "";
    for (const [key, label] of Object.entries(labels)) {
      const card = document.createElement("div");
      card.className = "card";
      card.dataset.kpi = key;
      card.innerHTML = '<div class="label"></div><div class="value"></div><div class="sub"></div>';
      card.querySelector(".label").textContent = label;
      card.querySelector(".value").textContent = fmt(key, report.county.kpis[key]);
      card.querySelector(".sub").textContent = report.definitions[key] || "";
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

  function drawRanking(box, key) {
    const rows = report.companies
      .map((c) => ({ name: c.name, v: c.kpis[key] }))
      .sort((a, b) => (b.v ?? -1) - (a.v ?? -1));
    const W = 900, bar = 22, L = 200, R = 70, T = 6;
    const H = T * 2 + rows.length * (bar + 6);
    const svg = el("svg", { viewBox: `0 0 ${W} ${Math.max(H, 40)}`, role: "img", "aria-label": "ranking" });
    const top = axisMax(rows.map((r) => r.v), key);
    box.textContent = "";
    box.appendChild(svg);  // in the page, so labels can be measured
    rows.forEach((r, i) => {
      const yy = T + i * (bar + 6);
      const label = el("text", { x: L - 8, y: yy + bar * 0.7, "text-anchor": "end" }, `${i + 1}. ${r.name}`);
      svg.appendChild(label);
      fitLabel(label, `${i + 1}. `, r.name, L - 12);
      const w = r.v === null ? 0 : ((W - L - R) * r.v) / top;
      svg.appendChild(el("rect", { x: L, y: yy, width: Math.max(w, 0), height: bar, fill: "#2ca02c", rx: 3 }));
      svg.appendChild(el("text", { x: L + w + 6, y: yy + bar * 0.7 }, fmt(key, r.v)));
    });
  }

  // A company name wider than the label column (Chinese company names often are) ran off the
  // chart's left edge, rank number first: shorten it with "…", the full name as its tooltip.
  function fitLabel(label, prefix, name, maxWidth) {
    if (label.getComputedTextLength() <= maxWidth) return;
    label.appendChild(el("title", {}, name));
    let n = name.length;
    while (n > 1 && label.getComputedTextLength() > maxWidth) {
      n -= 1;
      label.firstChild.nodeValue = `${prefix}${name.slice(0, n)}…`;
    }
  }

  function drawTable() {
    const keys = Object.keys(labels);
    const head = $("table").tHead;
    head.innerHTML = "";
    const hr = head.insertRow();
    for (const text of ["单位 Unit", ...keys.map((k) => labels[k])]) {
      const th = document.createElement("th");
      th.textContent = text;
      hr.appendChild(th);
    }
    const body = $("table").tBodies[0];
    body.innerHTML = "";
    for (const unit of [report.county, ...report.companies]) {
      const tr = body.insertRow();
      tr.insertCell().textContent = unit.name;
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
    if (!r.ok) { $("login-error").textContent = "登录失败 login failed"; return; }
    $("login").hidden = true;
    load();
  });
  // default period: the last 30 local days up to and including today (so far), so a new
  // system, or `make demo`, shows today's figures instead of an empty yesterday
  const params = new URLSearchParams(location.search);
  $("from").value = params.get("from") || localDay(-29);
  $("to").value = params.get("to") || localDay(0);
  load();
})();
