// gps-monitor live map: vehicles (clustered, coloured by status, heading arrow), vehicle card,
// plate search, alarm worklist (levels, filters, counts, paging; acknowledge / handle; alerts in
// alerts.js); track playback is playback.js's, geofences and routes fences.js's (both started
// from start() below with window.gpsm). Positions arrive in WGS-84 and are converted for display
// only when the tiles are GCJ-02.
(function () {
  "use strict";
  const t = (k) => GpsmI18n.t(k);
  const state = {
    config: null, user: null, map: null, cluster: null, ws: null, wsBackoff: 1000,
    vehicles: new Map(), markers: new Map(), alarms: new Map(), lastMessageAt: 0,
    fences: null, drawing: null, received: { snapshot: 0, positions: 0, alarm: 0 },
  };
  window.gpsm = state;  // also read by fences.js and playback.js (with disp below)

  const esc = (s) => String(s == null ? "" : s).replace(/[&<>"']/g, (c) => (
    { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const $ = (id) => document.getElementById(id);

  async function api(path, options) {
    const opts = Object.assign({ credentials: "same-origin", headers: { "Content-Type": "application/json" } }, options || {});
    const r = await fetch(path, opts);
    if (r.status === 401 && !path.startsWith("/api/auth/login")) { showLogin(); throw new Error("401"); }
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      const err = new Error(typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail || r.statusText));
      err.status = r.status;
      err.retryAfter = r.headers.get("Retry-After");
      throw err;
    }
    return r.status === 204 ? null : r.json();
  }

  state.disp = disp;
  function disp(lat, lon) {
    return state.config && state.config.tile_crs === "gcj02" ? GpsmCoords.wgs84ToGcj02(lat, lon) : [lat, lon];
  }
  // speeds are float32 in the database: show one decimal (13.0600004196167 -> "13.1")
  function fmtSpeed(kmh) {
    return kmh == null || !Number.isFinite(Number(kmh)) ? "-" : String(Math.round(Number(kmh) * 10) / 10);
  }
  function fmtTime(iso) {
    if (!iso) return "-";
    return new Intl.DateTimeFormat(GpsmI18n.lang === "en" ? "en-GB" : "zh-CN", {
      timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
    }).format(new Date(iso));
  }

  // ---------------------------------------------------------------- login
  function showLogin() {
    $("login").style.display = "flex";
    if (state.ws) { state.ws.onclose = null; state.ws.close(); state.ws = null; }
  }
  $("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    GpsmAlerts.unlock();  // the login click is the gesture browsers want before playing sound
    $("login-error").textContent = "";
    try {
      await api("/api/auth/login", { method: "POST", body: JSON.stringify({
        username: $("login-username").value, password: $("login-password").value }) });
    } catch (err) {
      $("login-error").textContent = GpsmI18n.loginError(err.status, err.retryAfter);
      return;
    }
    $("login").style.display = "none";
    await start();
  });
  $("logout").addEventListener("click", async () => {
    await api("/api/auth/logout", { method: "POST" }).catch(() => null);
    location.reload();
  });
  function renderConn() {
    $("conn").hidden = !state.user;  // no red 连接中断 behind the login box before anyone logged in
    const up = Boolean(state.ws && state.ws.readyState === 1 && state.received.snapshot);
    $("conn").classList.toggle("up", up);
    $("conn").textContent = t(up ? "connected" : "disconnected");
  }
  function renderWho() {
    if (!state.user) return;
    $("who").textContent = `${state.user.username} · ${t("role_" + state.user.role)}` +
      (state.user.company_name ? ` · ${state.user.company_name}` : "");
  }
  $("lang").addEventListener("change", (e) => {
    GpsmI18n.setLang(e.target.value); fillAlarmFilters(); renderAlarms(); renderList(); renderConn(); renderWho();
    GpsmAlerts.renderTitle(); GpsmAlerts.renderMute();
  });

  // ---------------------------------------------------------------- map
  function initMap() {
    if (state.map) return;
    const c = state.config;
    state.map = L.map("map", { preferCanvas: true, zoomControl: true, maxZoom: c.tile_max_zoom, minZoom: 2 }).setView(disp(c.center[0], c.center[1]), c.zoom);
    GpsmBasemaps.install(state.map, c, redisplay);  // layer switcher, offline fallback (basemaps.js)
    L.control.scale({ imperial: false, metric: true }).addTo(state.map);
    state.cluster = L.markerClusterGroup({ chunkedLoading: true, maxClusterRadius: 50, disableClusteringAtZoom: 15 });
    state.map.addLayer(state.cluster);
    state.fences = L.layerGroup().addTo(state.map);
    state.svg = L.svg();  // tracks and fences as SVG (few, styled, testable); markers on canvas
    state.map.on("dragstart", () => { state.fitted = true; });  // the user took over the view
  }

  // the basemap's datum changed (WGS-84 <-> GCJ-02, basemaps.js): draw everything again in it
  function redisplay() {
    state.map.closePopup();
    if (state.drawing) $("draw-cancel").click();  // a half-drawn shape is in the old datum (fences.js)
    state.markers.forEach((m, id) => {
      const v = state.vehicles.get(id);
      if (v && v.latitude != null) m.setLatLng(disp(v.latitude, v.longitude));
    });
    GpsmFences.reload();
    if (GpsmPlayback.state.layer) GpsmPlayback.load();
  }
  function statusOf(v) {
    const now = Date.now();
    if (!v.last_seen || now - v.last_seen > state.config.offline_after_s * 1000) return "offline";
    if (openAlarmVehicles().has(v.vehicle_id)) return "in_alarm";
    return (v.speed_kmh || 0) >= state.config.moving_speed_kmh ? "moving" : "stopped";
  }
  let openAlarmCache = null;
  function openAlarmVehicles() {
    if (openAlarmCache) return openAlarmCache;
    openAlarmCache = new Set();
    state.alarms.forEach((a) => {
      if (!a.ended_at && (a.status === "open" || a.status === "acknowledged")) openAlarmCache.add(a.vehicle_id);
    });
    return openAlarmCache;
  }
  function icon(v) {
    return L.divIcon({
      className: "", iconSize: [22, 22], iconAnchor: [11, 11],
      html: `<div class="veh st-${v.status}" data-vehicle-id="${v.vehicle_id}" data-status="${v.status}">` +
        `<div class="arrow" style="transform:rotate(${Math.round(v.heading_deg || 0)}deg)"></div>` +
        `<div class="label">${esc(v.plate_number)}</div></div>`,
    });
  }
  function upsertMarker(v, batch) {
    const ll = disp(v.latitude, v.longitude);
    let m = state.markers.get(v.vehicle_id);
    if (!m) {
      m = L.marker(ll, { icon: icon(v), title: v.plate_number });
      m.vehicleId = v.vehicle_id;
      m.iconKey = v.status + ":" + Math.round((v.heading_deg || 0) / 10);
      m.on("click", () => openCard(v.vehicle_id));
      state.markers.set(v.vehicle_id, m);
      if (batch) batch.push(m); else state.cluster.addLayer(m);
      return;
    }
    m.setLatLng(ll);
    const key = v.status + ":" + Math.round((v.heading_deg || 0) / 10);
    if (key !== m.iconKey) { m.iconKey = key; m.setIcon(icon(v)); }
  }

  // ---------------------------------------------------------------- live feed
  function connect() {
    const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/live");
    state.ws = ws;
    ws.onopen = () => { state.wsBackoff = 1000; };
    ws.onmessage = (e) => { state.lastMessageAt = Date.now(); onMessage(JSON.parse(e.data)); };
    ws.onclose = (e) => {
      renderConn();
      if (e.code === 4401) { showLogin(); return; }
      setTimeout(connect, state.wsBackoff);
      state.wsBackoff = Math.min(state.wsBackoff * 2, 30000);
    };
  }
  setInterval(() => {  // watchdog: heartbeats stopped -> reconnect
    if (state.ws && state.ws.readyState === 1 && Date.now() - state.lastMessageAt > 45000) state.ws.close();
  }, 5000);

  function onMessage(msg) {
    state.received[msg.type] = (state.received[msg.type] || 0) + 1;
    if (msg.type === "snapshot") {
      renderConn();
      applySnapshot(msg.vehicles);
    } else if (msg.type === "positions") {
      msg.positions.forEach(applyPosition);
      scheduleList();
    } else if (msg.type === "alarm") {
      onAlarm(msg.alarm, msg.live);
    } else if (msg.type === "alarm_status") {
      onAlarmStatus(msg.alarm);
    }
  }
  function applySnapshot(rows) {
    state.cluster.clearLayers();
    state.markers.clear();
    // vehicles stay: those without a position (GET /api/fleet) are in no snapshot
    const batch = [];
    rows.forEach((r) => {
      const v = Object.assign(state.vehicles.get(r.vehicle_id) || {}, r,
        { last_seen: r.last_message_at ? Date.parse(r.last_message_at) : 0 });
      state.vehicles.set(v.vehicle_id, v);
      v.status = r.status;
      upsertMarker(v, batch);
    });
    state.cluster.addLayers(batch);
    scheduleFit();
    renderList();
  }
  function scheduleFit() {  // once: frame the user's vehicles when the first ones are known
    if (state.fitted || state.fitTimer) return;
    state.fitTimer = setTimeout(() => {
      state.fitTimer = null;
      if (state.fitted) return;
      const pts = Array.from(state.vehicles.values()).filter((v) => v.latitude != null)
        .map((v) => disp(v.latitude, v.longitude));
      if (!pts.length) return;
      state.fitted = true;
      state.map.fitBounds(L.latLngBounds(pts).pad(0.3), { maxZoom: 15 });
    }, 500);
  }
  async function applyPosition(p) {
    let v = state.vehicles.get(p.vehicle_id);
    if (!v) {
      v = { vehicle_id: p.vehicle_id, company_id: p.company_id, plate_number: "#" + p.vehicle_id };
      state.vehicles.set(p.vehicle_id, v);
      api("/api/vehicles/" + p.vehicle_id).then((info) => {
        v.plate_number = info.plate_number; v.vehicle_class = info.vehicle_class;
        const m = state.markers.get(v.vehicle_id); if (m) { m.setIcon(icon(v)); }
        scheduleList();
      }).catch(() => null);
    }
    if (v.fix_time && p.fix_time <= v.fix_time) return;  // never move back
    Object.assign(v, p, { last_seen: Date.now() });
    v.status = statusOf(v);
    upsertMarker(v);
    scheduleFit();
  }
  function refreshVehicle(id) {
    const v = state.vehicles.get(id);
    if (!v || v.latitude == null) return;
    v.status = statusOf(v);
    upsertMarker(v);
  }
  setInterval(() => { state.vehicles.forEach((v) => { if (v.latitude != null) refreshVehicle(v.vehicle_id); }); scheduleList(); }, 30000);

  // ---------------------------------------------------------------- vehicle list and card
  let listTimer = null;
  function scheduleList() { if (!listTimer) listTimer = setTimeout(() => { listTimer = null; renderList(); }, 1000); }
  function renderList() { GpsmTree.render(); }  // the company tree (tree.js)
  GpsmTree.init(state);
  $("vehicle-list").addEventListener("click", (e) => {
    const li = e.target.closest("li[data-vehicle-id]"); if (!li) return;
    showVehicle(Number(li.dataset.vehicleId));
  });

  function showVehicle(id) {
    // centre at a zoom where clustering is off, then open the card (no lingering listeners)
    const m = state.markers.get(id);
    state.fitted = true;  // the user chose a view: no automatic framing after this
    if (m) state.map.setView(m.getLatLng(), Math.max(state.map.getZoom(), 15), { animate: false });
    openCard(id);
  }
  function driverRow(d) {  // the driver whose IC card is in (JT/T 808 0x0702)
    const who = d ? `${esc(d.name || "")} <span class="cert">${esc(d.certificate_no)}</span>` : t("no_driver_card");
    return `<tr class="card-driver"><td>${t("driver")}</td><td>${who}</td></tr>`;
  }
  async function openCard(id) {
    const info = await api("/api/vehicles/" + id);
    const v = state.vehicles.get(id) || {};
    const latest = info.latest || {};
    const alarms = info.open_alarms.length
      ? info.open_alarms.map((a) => `${esc(t(a.alarm_type))} ${fmtTime(a.started_at)}`).join("<br>") : t("none");
    const html = `<table class="card" data-card-vehicle="${id}">` +
      `<tr><td>${t("plate")}</td><td><b>${esc(info.plate_number)}</b></td></tr>` +
      `<tr><td>${t("company")}</td><td>${esc(info.company_name)}</td></tr>` +
      `<tr><td>${t("vehicle_class")}</td><td>${esc(t(info.vehicle_class))}</td></tr>` +
      driverRow(info.driver) +
      `<tr><td>${t("speed")}</td><td>${fmtSpeed(v.speed_kmh != null ? v.speed_kmh : latest.speed_kmh)} ${t("kmh")}</td></tr>` +
      `<tr><td>${t("last_fix")}</td><td>${fmtTime(v.fix_time || latest.fix_time)}</td></tr>` +
      `<tr><td>${t("where")}</td><td class="card-place place"></td></tr>` +
      `<tr><td>${t("open_alarms")}</td><td>${alarms}</td></tr></table>` +
      `<button class="btn-track" data-vehicle-id="${id}">${t("track")}</button>` +
      (window.GpsmParams ? GpsmParams.buttonHtml(id, info.plate_number) : "");  // params.js
    const m = state.markers.get(id);
    const ll = m ? m.getLatLng() : (latest.latitude != null ? disp(latest.latitude, latest.longitude) : state.map.getCenter());
    const popup = L.popup().setLatLng(ll).setContent(html).openOn(state.map);
    const lat = v.latitude != null ? v.latitude : latest.latitude;  // WGS-84, as stored
    const lon = v.longitude != null ? v.longitude : latest.longitude;
    GpsmPlace.fill(popup.getElement().querySelector(".card-place"), lat, lon, state.config);
  }
  document.addEventListener("click", (e) => {
    const b = e.target.closest(".btn-track"); if (b) GpsmPlayback.open(Number(b.dataset.vehicleId));
  });

  // ---------------------------------------------------------------- alarms
  // The panel shows the server's worklist (GET /api/alarms: unhandled first, then by level, then
  // newest) one page at a time, its counts per status and level (GET /api/alarms/summary) in the
  // header, and the filters. A live alarm alerts at once (alerts.js) and refreshes list and
  // counts from the server (debounced), so every screen shows the same unhandled state;
  // state.alarms keeps every alarm seen, for the vehicles' in-alarm status.
  const ALARM_TYPES = ["overspeed", "fatigue_driving", "fatigue_warning", "daily_driving_limit", "night_ban",
    "route_deviation", "forbidden_area_entry", "keep_in_area_exit", "geofence_enter", "geofence_exit",
    "offline", "offline_displacement", "device_alarm"];
  const alarmView = { page: 0, rows: [], summary: null, refreshTimer: null, loading: null };
  function alarmFilters() {
    const f = {
      alarm_type: $("af-type").value, level: $("af-level").value, status: $("af-status").value,
      company_id: $("af-company").value, plate: $("af-plate").value.trim(),
      start: $("af-start").value ? fromLocalInput($("af-start").value) : "",
      end: $("af-end").value ? fromLocalInput($("af-end").value) : "",
    };
    const q = new URLSearchParams();
    Object.entries(f).forEach(([k, v]) => { if (v) q.set(k, v); });
    return q;
  }
  function fillAlarmFilters() {
    const opt = (value, label) => `<option value="${esc(value)}">${esc(label)}</option>`;
    const keep = (id, html) => { const v = $(id).value; $(id).innerHTML = html; $(id).value = v; };
    keep("af-type", opt("", t("all_types")) + ALARM_TYPES.map((k) => opt(k, t(k))).join(""));
    keep("af-level", opt("", t("all_levels")) + [1, 2, 3, 4].map((l) => opt(l, t("level_" + l))).join(""));
    keep("af-status", opt("", t("all_statuses")) + ["unhandled", "open", "acknowledged", "handled", "closed"]
      .map((k) => opt(k, t("status_" + k))).join(""));
    keep("af-company", opt("", t("all_companies")) + (state.companies || []).map((c) => opt(c.id, c.name)).join(""));
    $("af-company").style.display = state.user && state.user.role !== "operator" ? "" : "none";
  }
  async function loadAlarms() {
    if (alarmView.loading) { alarmView.again = true; return alarmView.loading; }
    alarmView.loading = (async () => {
      const q = alarmFilters();
      const size = state.config.alarm_page_size || 50;
      const page = alarmView.page;
      const pageQ = new URLSearchParams(q);
      pageQ.set("limit", size);
      pageQ.set("offset", page * size);
      const filtered = q.toString() !== "";
      const [rows, summary, all] = await Promise.all([
        api("/api/alarms?" + pageQ), api("/api/alarms/summary?" + q),
        filtered ? api("/api/alarms/summary") : null]);
      // the user moved on (page or filters) meanwhile: show only the answer to the last request
      if (page !== alarmView.page || alarmFilters().toString() !== q.toString()) { alarmView.again = true; return; }
      if (!rows.length && alarmView.page > 0 && summary.total) {  // the page emptied: step back
        alarmView.page = Math.max(0, Math.ceil(summary.total / size) - 1);
        alarmView.again = true;
      }
      rows.forEach((a) => {
        const known = state.alarms.get(a.id) || {};
        state.alarms.set(a.id, Object.assign(known, a, { isNew: Boolean(known.isNew) && a.status === "open" }));
      });
      alarmView.rows = rows.map((a) => a.id);
      alarmView.summary = summary;
      GpsmAlerts.setCounts(all || summary);
      openAlarmCache = null;
      renderAlarms();
    })();
    try { await alarmView.loading; } catch (err) { /* shown by api(); the next refresh retries */ } finally {
      alarmView.loading = null;
      if (alarmView.again) { alarmView.again = false; loadAlarms(); }
    }
  }
  function scheduleAlarmRefresh() {
    if (alarmView.refreshTimer) return;
    alarmView.refreshTimer = setTimeout(() => { alarmView.refreshTimer = null; loadAlarms(); }, 300);
  }
  function onAlarm(a, live) {
    if (a.id == null) return;
    const known = state.alarms.get(a.id) || {};
    const merged = Object.assign({}, known, a);
    if (known.status && known.status !== "open" && a.status === "open") merged.status = known.status;
    const fresh = live && a.event === "opened" && !a.late && merged.status === "open" && !known.alerted;
    // highlighted from its live opening until someone acknowledges, handles or opens it
    merged.isNew = Boolean(known.isNew) || fresh;
    merged.plate_number = merged.plate_number || (state.vehicles.get(a.vehicle_id) || {}).plate_number;
    if (fresh) merged.alerted = GpsmAlerts.onNewAlarm(merged);
    state.alarms.set(a.id, merged);
    openAlarmCache = null;
    refreshVehicle(a.vehicle_id);
    scheduleAlarmRefresh();
  }
  function onAlarmStatus(change) {
    const a = state.alarms.get(change.id);
    if (a) Object.assign(a, change, { isNew: a.isNew && change.status === "open" });
    GpsmAlerts.onStatus(change);
    openAlarmCache = null;
    if (a) refreshVehicle(a.vehicle_id);
    scheduleAlarmRefresh();
  }
  function fmtPlace(a) {  // coordinates now, the place name when the geocoder answers (place.js)
    if (a.latitude == null || a.longitude == null) return "";
    return `<span class="place" data-lat="${Number(a.latitude)}" data-lon="${Number(a.longitude)}">` +
      `${esc(GpsmPlace.coords(a.latitude, a.longitude))}</span>`;
  }
  function renderAlarmCounts() {
    const s = alarmView.summary;
    if (!s) return;
    const st = s.by_status;
    const chip = (attr, value, label, n, cls) =>
      `<button class="cnt ${cls || ""}" data-${attr}="${value}">${esc(label)} <b>${n}</b></button>`;
    $("alarm-counts").innerHTML =
      `<div>${chip("status", "unhandled", t("status_unhandled"), st.open + st.acknowledged, "cnt-unhandled")}` +
      chip("status", "open", t("status_open"), st.open) + chip("status", "acknowledged", t("status_acknowledged"), st.acknowledged) +
      chip("status", "handled", t("status_handled"), st.handled + st.closed) + `</div><div>` +
      [1, 2, 3, 4].map((l) => chip("level", l, t("level_" + l), s.by_level[String(l)], "lvl-" + l)).join("") + `</div>`;
    $("alarm-total").textContent = `(${s.total})`;
    const size = state.config.alarm_page_size || 50;
    const pages = Math.max(1, Math.ceil(s.total / size));
    $("af-page").textContent = `${alarmView.page + 1} / ${pages} · ${t("total")} ${s.total}`;
    $("af-prev").disabled = alarmView.page <= 0;
    $("af-next").disabled = alarmView.page + 1 >= pages;
  }
  function renderAlarms() {
    renderAlarmCounts();
    const canHandle = state.user && (state.user.role === "bureau" || state.user.role === "operator");
    const showCompany = state.user && state.user.role !== "operator";
    const rows = alarmView.rows.map((id) => state.alarms.get(id)).filter(Boolean);
    $("alarm-list").innerHTML = rows.map((a) => {
      const cls = ["alarm-item", "lvl-row-" + (a.level || 3), a.isNew ? "new" : "", a.late ? "late" : ""].join(" ");
      const actions = canHandle && (a.status === "open" || a.status === "acknowledged")
        ? (a.status === "open" ? `<button class="btn-ack" data-alarm-id="${a.id}">${t("acknowledge")}</button>` : "") +
          `<button class="btn-handle" data-alarm-id="${a.id}">${t("handle")}</button>` : "";
      const figure = GpsmAlerts.keyFigure(a);
      const place = fmtPlace(a);
      return `<li class="${cls}" data-alarm-id="${a.id}" data-status="${esc(a.status)}" data-level="${esc(a.level)}">` +
        `${GpsmAlerts.levelTag(a.level)} <b>${esc(GpsmAlerts.typeName(a))}</b> ${esc(a.plate_number || "#" + a.vehicle_id)}` +
        `${showCompany && a.company_name ? ` <small class="company">${esc(a.company_name)}</small>` : ""}` +
        `${a.late ? ` <small>[${t("late")}]</small>` : ""}<div class="meta">${fmtTime(a.started_at)}` +
        `${a.ended_at ? " – " + fmtTime(a.ended_at) : ""} · <span class="alarm-status">${esc(t("status_" + a.status))}</span></div>` +
        `${figure ? `<div class="figure">${esc(figure)}</div>` : ""}` +
        `${place ? `<div class="meta where" >${esc(t("where"))} ${place}</div>` : ""}` +
        `${window.GpsmHandle ? GpsmHandle.summaryHtml(a) + GpsmHandle.supervisionHtml(a) : ""}` +
        `${a.handling_note ? `<div class="meta">${esc(a.handling_note)}</div>` : ""}${actions}` +
        `<button class="btn-alarm-track" data-alarm-id="${a.id}">${t("track")}</button>` +
        (window.GpsmEnforce ? GpsmEnforce.rowHtml(a)  // evidence PDF/Excel/CSV, 处罚 (enforce.js)
          : ` <a class="evidence" target="_blank" href="/api/reports/evidence?alarm_id=${a.id}&format=pdf">${t("evidence")}</a>`) + `</li>`;
    }).join("") || `<li class="alarm-empty">${t("none")}</li>`;
    GpsmPlace.fillAll($("alarm-list"), state.config);
  }
  // the three actions, shared by the list and the pop-up cards; each resolves to true when the
  // alarm no longer needs the card
  async function acknowledgeAlarm(alarm) {
    try {
      const a = await api(`/api/alarms/${alarm.id}/acknowledge`, { method: "POST" });
      onAlarmStatus(Object.assign(a, { isNew: false }));
      return true;
    } catch (err) { alert(err.message); scheduleAlarmRefresh(); return false; }
  }
  // Handling an alarm: the dialog of handle.js (处理方式, 提醒驾驶员 with its text, 处理意见), shared
  // by the list and the pop-up cards; resolves to true once handled, false when cancelled.
  async function openHandleDialog(alarm) { return window.openHandleDialog(alarm); }
  function showAlarmTrack(alarm) {  // the episode with 30 min either side
    const start = new Date(Date.parse(alarm.started_at) - 30 * 60e3);
    const endAt = alarm.ended_at ? Date.parse(alarm.ended_at) : Date.now();
    GpsmPlayback.open(alarm.vehicle_id, start, new Date(Math.max(endAt, Date.parse(alarm.started_at)) + 30 * 60e3), true);
  }
  // the handling dialog (handle.js) reports the handled alarm and its reminder's progress
  document.addEventListener("gpsm:alarm-updated", (e) => {
    const a = e.detail;
    if (!a || a.id == null) return;
    if (a.status) { onAlarmStatus(Object.assign(a, { isNew: false })); return; }  // handled
    const known = state.alarms.get(a.id);  // a reminder's progress
    if (known) { Object.assign(known, a); renderAlarms(); }
  });
  $("alarm-list").addEventListener("click", async (e) => {
    const button = e.target.closest("button");
    const item = e.target.closest(".alarm-item");
    if (!item || e.target.closest("a")) return;
    const a = state.alarms.get(Number(item.dataset.alarmId));
    if (!a) return;
    if (button && button.classList.contains("btn-ack")) await acknowledgeAlarm(a);
    else if (button && button.classList.contains("btn-handle")) await openHandleDialog(a);
    else if (button && button.classList.contains("btn-alarm-track")) showAlarmTrack(a);
    else if (!button) {
      if (a.isNew) { a.isNew = false; renderAlarms(); }
      showVehicle(a.vehicle_id);
    }
  });
  $("alarm-counts").addEventListener("click", (e) => {
    const chip = e.target.closest(".cnt"); if (!chip) return;
    if (chip.dataset.status) { $("af-status").value = $("af-status").value === chip.dataset.status ? "" : chip.dataset.status; }
    if (chip.dataset.level) { $("af-level").value = $("af-level").value === chip.dataset.level ? "" : chip.dataset.level; }
    alarmView.page = 0; loadAlarms();
  });
  ["af-type", "af-level", "af-status", "af-company", "af-start", "af-end"].forEach((id) =>
    $(id).addEventListener("change", () => { alarmView.page = 0; loadAlarms(); }));
  let plateTimer = null;
  $("af-plate").addEventListener("input", () => {
    clearTimeout(plateTimer);
    plateTimer = setTimeout(() => { alarmView.page = 0; loadAlarms(); }, 300);
  });
  $("af-prev").addEventListener("click", () => { alarmView.page = Math.max(0, alarmView.page - 1); loadAlarms(); });
  $("af-next").addEventListener("click", () => { alarmView.page += 1; loadAlarms(); });

  // ---------------------------------------------------------------- local time inputs (alarm filters)
  function fromLocalInput(s) { return new Date(Date.parse(s + ":00Z") - 8 * 3600e3).toISOString(); }
  // track playback: playback.js; geofences and routes: fences.js (started below)

  // ---------------------------------------------------------------- start
  async function start() {
    state.user = await api("/api/auth/me");
    renderWho();
    if (window.GpsmEnforce) GpsmEnforce.start(state.user);  // 处罚, evidence list (enforce.js)
    initMap();
    const handles = state.user.role === "bureau" || state.user.role === "operator";  // enforcement reads
    GpsmAlerts.configure(state.config, {
      acknowledge: handles ? acknowledgeAlarm : null, handle: handles ? openHandleDialog : null,
      track: showAlarmTrack,
    });
    state.companies = state.user.role === "operator" ? [] : await api("/api/companies").catch(() => []);
    GpsmTree.merge(await api("/api/fleet").catch(() => []));  // every vehicle, also never-connected
    renderList();
    scheduleFit();
    fillAlarmFilters();
    await loadAlarms();
    if (window.GpsmHandle) GpsmHandle.loadSupervisions(state.user);  // 督办 list (handle.js)
    GpsmPlayback.init(state);
    GpsmFences.start(state);
    connect();
  }
  async function boot() {
    $("lang").value = GpsmI18n.lang;
    GpsmI18n.apply();
    GpsmAlerts.renderTitle();
    GpsmAlerts.renderMute();
    renderConn();
    state.config = await api("/api/config");
    GpsmBasemaps.prepare(state.config);  // the datum of the basemap shown first
    const session = await api("/api/auth/session");
    if (!session.user) { showLogin(); return; }
    $("login").style.display = "none";
    await start();
  }
  boot();
})();
