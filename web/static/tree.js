// The vehicle tree (issue 11, item 2): companies -> vehicles, with online / offline / alarming /
// never-connected (未入网) counts per company and in total, status colours, filters by status and
// vehicle class, a plate / company search that says when nothing matches.
//
// The vehicles are app.js's state.vehicles: filled once from GET /api/fleet (every registered
// vehicle in the user's scope, also those that never reported) and kept current by the live feed.
// Counting: 在线 (online) = moving + stopped + 报警中; 报警 (alarming) is the part of the online
// vehicles with an open, unhandled alarm, as on CMSV6-style platforms; 离线 (offline) = reported
// once, silent longer than web.offline_after_s; 未入网 (never) = no message ever. A vehicle
// counts once in online or offline or never, so those three add up to the total.
(function (global) {
  "use strict";
  const t = (k) => GpsmI18n.t(k);
  const esc = (s) => String(s == null ? "" : s).replace(/[&<>"']/g, (c) => (
    { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const $ = (id) => document.getElementById(id);
  const CLASSES = ["coach", "tour_bus", "hazmat", "heavy_truck", "freight"];
  const FILTERS = ["online", "in_alarm", "offline", "never"];
  const MAX_ROWS = 500;  // vehicles drawn per render (the counts always cover all)
  const collapsed = new Set();  // company ids folded by the user
  let app = null;
  let filtersLang = null;  // the language the filter options are written in

  function statusOf(v) {
    if (v.status === "never" || (v.latitude == null && !v.last_seen && !v.last_message_at)) return "never";
    return v.status || "offline";
  }
  function bucket(status) {  // the count a status adds to
    return status === "never" || status === "offline" ? status : "online";
  }
  function matches(v, status, filter) {
    if (filter === "online") return bucket(status) === "online";
    return !filter || status === filter;
  }
  function emptyCounts() { return { total: 0, online: 0, in_alarm: 0, offline: 0, never: 0 }; }
  function add(counts, status) {
    counts.total += 1;
    counts[bucket(status)] += 1;
    if (status === "in_alarm") counts.in_alarm += 1;
  }
  function chips(c, cls) {
    return FILTERS.map((k) => `<span class="${cls} cnt-${k}" data-filter="${k}" title="${esc(t("tree_" + k))}">` +
      `${esc(t("tree_" + k))} <b>${c[k]}</b></span>`).join("");
  }

  // (re)written only when the language changes: the tree redraws every second under live
  // positions, and rewriting a <select> would close it under the user's pointer
  function fillFilters() {
    if (filtersLang === GpsmI18n.lang) return;
    filtersLang = GpsmI18n.lang;
    const opt = (value, label) => `<option value="${esc(value)}">${esc(label)}</option>`;
    const keep = (id, html) => { const el = $(id); const v = el.value; el.innerHTML = html; el.value = v; };
    keep("tree-status", opt("", t("all_statuses")) + FILTERS.map((k) => opt(k, t("tree_" + k))).join(""));
    keep("tree-class", opt("", t("all_classes")) + CLASSES.map((k) => opt(k, t(k))).join(""));
  }

  // companies in scope: those with vehicles, plus (bureau) the registered ones without any
  function companies(vehicles) {
    const byId = new Map();
    (app.companies || []).forEach((c) => byId.set(c.id, { id: c.id, name: c.name, vehicles: [] }));
    vehicles.forEach((v) => {
      if (!byId.has(v.company_id)) byId.set(v.company_id, { id: v.company_id, name: v.company_name || "#" + v.company_id, vehicles: [] });
      const c = byId.get(v.company_id);
      if (v.company_name) c.name = v.company_name;
      c.vehicles.push(v);
    });
    return Array.from(byId.values()).sort((a, b) => String(a.name).localeCompare(String(b.name), "zh-CN"));
  }

  function render() {
    if (!app) return;
    fillFilters();
    const q = $("plate-search").value.trim().toUpperCase();
    const statusFilter = $("tree-status").value;
    const classFilter = $("tree-class").value;
    const total = emptyCounts();
    const html = [];
    let shown = 0;
    let drawn = 0;
    companies(Array.from(app.vehicles.values())).forEach((c) => {
      const counts = emptyCounts();
      const rows = [];
      const companyHit = q && String(c.name).toUpperCase().includes(q);
      c.vehicles.sort((a, b) => String(a.plate_number).localeCompare(String(b.plate_number)));
      c.vehicles.forEach((v) => {
        const status = statusOf(v);
        add(counts, status);
        add(total, status);
        if (!matches(v, status, statusFilter) || (classFilter && v.vehicle_class !== classFilter)) return;
        if (q && !companyHit && !String(v.plate_number).toUpperCase().includes(q)) return;
        shown += 1;
        if (drawn >= MAX_ROWS) return;
        drawn += 1;
        rows.push(`<li class="veh-row" data-vehicle-id="${v.vehicle_id}" data-status="${status}">` +
          `<span class="dot st-${status}"></span><span class="plate">${esc(v.plate_number)}</span>` +
          `<small class="st-text st-text-${status}">${esc(t(status === "never" ? "tree_never" : status))}</small></li>`);
      });
      const filtering = q || statusFilter || classFilter;
      if (filtering && !rows.length) return;
      const folded = collapsed.has(c.id) && !q;
      html.push(`<li class="company${folded ? " folded" : ""}" data-company-id="${c.id}">` +
        `<div class="company-head"><span class="fold">${folded ? "▸" : "▾"}</span>` +
        `<span class="company-name" title="${esc(c.name)}">${esc(c.name)}</span>` +
        `<span class="company-total">${counts.total}</span></div>` +
        `<div class="company-counts">${chips(counts, "cc")}</div></li>`);
      if (!folded) html.push(...rows);
    });
    $("vehicle-count").textContent = `(${total.total})`;
    $("fleet-counts").innerHTML = chips(total, "cnt");
    $("fleet-counts").querySelectorAll(".cnt").forEach((el) => el.classList.toggle("active", el.dataset.filter === statusFilter));
    if (!shown) {
      html.push(`<li class="tree-empty">${esc(t(app.vehicles.size ? "tree_no_match" : "tree_no_vehicles"))}</li>`);
    } else if (drawn < shown) {
      html.push(`<li class="tree-more">${esc(t("tree_more").replace("{n}", shown - drawn))}</li>`);
    }
    $("vehicle-list").innerHTML = html.join("");
  }

  // GET /api/fleet into the vehicles map (kept entries are updated, not replaced)
  function merge(rows) {
    rows.forEach((r) => {
      const v = Object.assign(app.vehicles.get(r.vehicle_id) || {}, r);
      v.last_seen = r.last_message_at ? Date.parse(r.last_message_at) : (v.last_seen || 0);
      app.vehicles.set(r.vehicle_id, v);
    });
  }

  function init(state, onChange) {
    app = state;
    $("plate-search").addEventListener("input", render);
    $("tree-status").addEventListener("change", render);
    $("tree-class").addEventListener("change", render);
    $("fleet-counts").addEventListener("click", (e) => {
      const chip = e.target.closest(".cnt"); if (!chip) return;
      $("tree-status").value = $("tree-status").value === chip.dataset.filter ? "" : chip.dataset.filter;
      render();
    });
    $("vehicle-list").addEventListener("click", (e) => {
      const head = e.target.closest("li.company"); if (!head) return;
      const id = Number(head.dataset.companyId);
      if (collapsed.has(id)) collapsed.delete(id); else collapsed.add(id);
      render();
    });
    if (onChange) onChange();
  }

  global.GpsmTree = { init, render, merge, statusOf, bucket };
})(window);
