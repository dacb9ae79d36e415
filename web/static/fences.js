// Geofences and routes on the map page: drawn, listed on the map, edited through a form (name,
// type, speed limit, time window, corridor width, vehicle classes, assignment to vehicles and
// whole companies), vertices dragged and saved, deleted after a confirmation. Bureau users change
// them; everybody sees what concerns them (GET /api/geofences answers both kinds).
//
// Drawing uses Leaflet core only: a click adds a vertex, the vertex edit puts a draggable
// L.marker on each vertex (and a half-way handle on each edge to add one). A plugin (Leaflet.draw,
// leaflet-geoman) would add ~100-300 kB for these two gestures.
//
// Validation is the API's (gps_monitor.geofences): the form checks the same bounds before it
// sends, and the API's 422/404/409 answers are mapped to a field and a message in the page
// language (errorKey). Coordinates are drawn in the tiles' CRS and sent with coordinates_crs.
(function () {
  "use strict";
  const t = (k) => GpsmI18n.t(k);
  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s == null ? "" : s).replace(/[&<>"']/g, (c) => (
    { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const MAX_CORRIDOR_M = 50000;  // gps_monitor.geofences.MAX_CORRIDOR_M
  const FENCE_KINDS = ["forbidden", "keep_in", "speed_zone", "watch"];
  const CLASSES = ["coach", "tour_bus", "hazmat", "heavy_truck", "freight"];
  const COLORS = { forbidden: "#d33", keep_in: "#2a7", speed_zone: "#e90", watch: "#36c", route: "#83c" };

  GpsmI18n.register({
    "zh-CN": {
      fence_forbidden: "禁入区域", fence_keep_in: "禁出区域", fence_speed_zone: "限速区域",
      fence_watch: "进出区域报警", fence_route: "路线（偏离报警）",
      fence_forbidden_hint: "驶入即报警，如危险货物运输车辆禁行区", fence_keep_in_hint: "驶出即报警",
      fence_speed_zone_hint: "区域内按此限速判定超速", fence_watch_hint: "进入、离开各报警一次",
      fence_new_geofence: "新建电子围栏", fence_new_route: "新建路线", fence_edit: "编辑属性",
      fence_edit_vertices: "编辑顶点", fence_save: "保存", fence_type: "类型",
      fence_speed_limit: "限速 (km/h)", fence_corridor: "走廊半宽 (米)", fence_hours: "生效时段",
      fence_hours_always: "留空 = 全天", fence_classes: "适用车辆类型", fence_classes_all: "不选 = 全部类型",
      fence_assign: "分配给车辆", fence_assign_hint_geofence: "不选车辆：对全部车辆生效",
      fence_assign_hint_route: "只对所选车辆判定偏离路线；未分配的路线不产生报警",
      fence_assign_company: "整个企业（当前全部车辆）", fence_assigned: "已分配", fence_all_vehicles: "全部车辆",
      fence_no_vehicles: "未分配", fence_filter: "筛选车牌或企业", fence_delete_confirm: "确定删除「{name}」？删除后不可恢复。",
      fence_deleted: "已删除", fence_saved: "已保存", fence_vertex_help: "拖动顶点修改形状，拖动边中点增加顶点，然后保存",
      fence_draw_help_polygon: "在地图上点击画出区域的各个顶点（至少 3 个），然后点“完成”",
      fence_draw_help_route: "沿行驶方向在地图上依次点击路线各点（至少 2 个），然后点“完成”",
      err_name: "请填写名称（最多 200 个字符）", err_speed: "限速应为大于 0 的数字 (km/h)",
      err_speed_required: "限速区域需要填写限速", err_corridor: "走廊半宽应为大于 0、不超过 50000 的米数",
      err_hours: "生效时段需同时填写开始和结束时间，24 小时制“时:分”，如 08:00", err_classes: "车辆类型无效",
      err_self_intersect: "图形自相交：请调整顶点，使边不交叉", err_range: "坐标超出范围（经纬度颠倒？）",
      err_points_polygon: "区域至少需要 3 个顶点", err_points_route: "路线至少需要 2 个点",
      err_assign_unknown: "所选车辆或企业已不存在，请刷新页面", err_exists: "同一编号已存在",
      err_gone: "该围栏或路线已被删除，请刷新", err_forbidden: "无权执行此操作",
      err_invalid: "输入无效，请检查各项", err_network: "网络或服务器错误，请稍后重试",
    },
    en: {
      fence_forbidden: "Forbidden zone", fence_keep_in: "Keep-in zone", fence_speed_zone: "Speed-limit zone",
      fence_watch: "Enter/exit alarm", fence_route: "Route (deviation alarm)",
      fence_forbidden_hint: "alarm on entry, e.g. no-go area for hazmat", fence_keep_in_hint: "alarm on leaving",
      fence_speed_zone_hint: "its limit decides overspeed inside", fence_watch_hint: "one alarm on entry, one on exit",
      fence_new_geofence: "New geofence", fence_new_route: "New route", fence_edit: "Edit",
      fence_edit_vertices: "Edit vertices", fence_save: "Save", fence_type: "Type",
      fence_speed_limit: "Speed limit (km/h)", fence_corridor: "Corridor half-width (m)", fence_hours: "Active hours",
      fence_hours_always: "empty = all day", fence_classes: "Vehicle classes", fence_classes_all: "none ticked = all classes",
      fence_assign: "Assign to vehicles", fence_assign_hint_geofence: "no vehicle ticked: applies to every vehicle",
      fence_assign_hint_route: "deviation is checked only for the ticked vehicles; an unassigned route raises nothing",
      fence_assign_company: "whole company (its vehicles now)", fence_assigned: "assigned", fence_all_vehicles: "all vehicles",
      fence_no_vehicles: "not assigned", fence_filter: "Filter plate or company", fence_delete_confirm: "Delete “{name}”? This cannot be undone.",
      fence_deleted: "Deleted", fence_saved: "Saved", fence_vertex_help: "Drag a vertex to change the shape, drag an edge's middle to add one, then save",
      fence_draw_help_polygon: "Click the corners of the area on the map (at least 3), then Finish",
      fence_draw_help_route: "Click the route's points in driving order (at least 2), then Finish",
      err_name: "Enter a name (at most 200 characters)", err_speed: "Speed limit: a number above 0 (km/h)",
      err_speed_required: "A speed-limit zone needs its limit", err_corridor: "Corridor: metres above 0 and at most 50000",
      err_hours: "Active hours need both a start and an end, 24-hour HH:MM such as 08:00", err_classes: "Unknown vehicle class",
      err_self_intersect: "The shape crosses itself: move the vertices so that no edges cross", err_range: "Coordinates out of range (latitude and longitude swapped?)",
      err_points_polygon: "An area needs at least 3 vertices", err_points_route: "A route needs at least 2 points",
      err_assign_unknown: "A chosen vehicle or company no longer exists: reload the page", err_exists: "That id exists already",
      err_gone: "This geofence or route was deleted meanwhile: reload", err_forbidden: "You may not do this",
      err_invalid: "Invalid input: check the fields", err_network: "Network or server error: try again",
    },
  });

  let g = null;  // window.gpsm: state and helpers of app.js
  const F = { byKey: new Map(), vehicles: null, companies: null };

  // ---------------------------------------------------------------- API errors -> field + text
  // The API's messages name the field they are about ("corridor_m: expected ..."): the first
  // match gives the form field to mark and the message key in the page language.
  const ERROR_RULES = [
    [/self-intersection|expected a valid/i, "geometry", "err_self_intersect"],
    [/latitude|longitude|lon\/lat/i, "geometry", "err_range"],
    [/at least 2 points|LineString/i, "geometry", "err_points_route"],
    [/corridor_m/, "corridor", "err_corridor"],
    [/speed_zone/, "speed", "err_speed_required"],
    [/speed_limit_kmh/, "speed", "err_speed"],
    [/active_hours/, "hours", "err_hours"],
    [/vehicle_classes/, "classes", "err_classes"],
    [/vehicle_ids|company_ids/, "assign", "err_assign_unknown"],
    [/\bname\b/, "name", "err_name"],
  ];
  function errorKey(status, detail) {
    if (status === 404) return { field: null, key: /vehicle_ids|company_ids/.test(detail) ? "err_assign_unknown" : "err_gone" };
    if (status === 409) return { field: "name", key: "err_exists" };
    if (status === 403 || status === 401) return { field: null, key: "err_forbidden" };
    if (status === 422) {
      for (const [re, field, key] of ERROR_RULES) if (re.test(detail)) return { field, key };
      return { field: null, key: "err_invalid" };
    }
    return { field: null, key: "err_network" };
  }
  async function call(path, method, body) {
    let r;
    try {
      r = await fetch(path, { method, credentials: "same-origin", headers: { "Content-Type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (err) { return { ok: false, status: 0, detail: String(err) }; }
    if (r.ok) return { ok: true, status: r.status, data: r.status === 204 ? null : await r.json() };
    const payload = await r.json().catch(() => ({}));
    const detail = typeof payload.detail === "string" ? payload.detail : JSON.stringify(payload.detail || r.statusText);
    return { ok: false, status: r.status, detail };
  }

  // ---------------------------------------------------------------- display
  function toDisplay(coords) {
    if (typeof coords[0] === "number") { const [lat, lon] = g.disp(coords[1], coords[0]); return [lon, lat]; }
    return coords.map(toDisplay);
  }
  const isBureau = () => Boolean(g && g.user && g.user.role === "bureau");
  const typeOf = (p) => (p.kind === "route" ? "routes" : "geofences");
  function kindLabel(p) { return t("fence_" + p.kind); }
  function summary(p) {
    const parts = [kindLabel(p)];
    if (p.speed_limit_kmh) parts.push(`${t("limit")} ${p.speed_limit_kmh} ${t("kmh")}`);
    if (p.kind === "route" || p.corridor_m) parts.push(`${t("corridor")} ±${p.corridor_m} m`);
    if (p.active_hours) parts.push(`${t("fence_hours")} ${p.active_hours}`);
    const n = (p.vehicle_ids || []).length;
    parts.push(n ? `${t("fence_assigned")} ${n} ${t("vehicles_shown")}` : t(p.kind === "route" ? "fence_no_vehicles" : "fence_all_vehicles"));
    return parts;
  }
  async function load() {
    const r = await call("/api/geofences", "GET");
    if (!r.ok) return;
    g.fences.clearLayers();
    F.byKey.clear();
    (r.data.features || []).forEach(drawFence);
  }
  function drawFence(f) {
    const p = f.properties || {};
    const key = typeOf(p) + ":" + p.db_id;
    const geom = Object.assign({}, f.geometry, { coordinates: toDisplay(f.geometry.coordinates) });
    const color = COLORS[p.kind] || "#36c";
    const style = { color, weight: p.kind === "route" ? 4 : 2, dashArray: p.kind === "route" ? "8 6" : null,
      fillOpacity: 0.1, renderer: g.svg, className: "fence fence-" + p.kind };
    const layer = geom.type === "Point" && p.radius_m
      ? L.circle([geom.coordinates[1], geom.coordinates[0]], Object.assign({ radius: p.radius_m }, style))
      : L.geoJSON(geom, { style });
    if (p.kind === "route" && geom.type === "LineString" && p.corridor_m) {  // the corridor itself
      const band = L.polyline(geom.coordinates.map(([x, y]) => [y, x]), { color, opacity: 0.15, lineCap: "round",
        lineJoin: "round", renderer: g.svg, className: "fence-corridor", interactive: false });
      band.corridorM = p.corridor_m;
      sizeBand(band);
      layer.addLayer(band);
    }
    F.byKey.set(key, { feature: f, props: p, layer });
    // a popup on click, except while drawing or editing: then the click belongs to the map
    layer.on("click", (e) => {
      if (g.drawing) return;
      L.popup().setLatLng(e.latlng).setContent(popupHtml(p, key)).openOn(g.map);
    });
    g.fences.addLayer(layer);
  }
  // a corridor band is 2 × corridor_m wide on the ground: its stroke width in pixels at this zoom
  function sizeBand(band) {
    const lat = band.getBounds().getCenter().lat;
    const metresPerPixel = 40075016.686 * Math.cos(lat * Math.PI / 180) / Math.pow(2, g.map.getZoom() + 8);
    band.setStyle({ weight: Math.max(2, 2 * band.corridorM / metresPerPixel) });
  }
  function sizeBands() {
    g.fences.eachLayer((layer) => { if (layer.eachLayer) layer.eachLayer((l) => { if (l.corridorM) sizeBand(l); }); });
  }
  function popupHtml(p, key) {
    let html = `<div class="fence-popup" data-fence-key="${esc(key)}"><b>${esc(p.name || p.id)}</b><br>` +
      summary(p).map(esc).join("<br>");
    if (isBureau()) {
      html += `<div class="fence-actions"><button type="button" class="btn-fence-edit">${esc(t("fence_edit"))}</button>` +
        (ringOf(F.byKey.get(key)) ? `<button type="button" class="btn-fence-vertices">${esc(t("fence_edit_vertices"))}</button>` : "") +
        `<button type="button" class="btn-fence-delete danger">${esc(t("delete"))}</button></div>`;
    }
    return html + "</div>";
  }
  document.addEventListener("click", (e) => {
    const box = e.target.closest(".fence-popup");
    if (!box) return;
    const item = F.byKey.get(box.dataset.fenceKey);
    if (!item) return;
    if (e.target.closest(".btn-fence-edit")) { g.map.closePopup(); openForm({ item }); }
    else if (e.target.closest(".btn-fence-vertices")) { g.map.closePopup(); startVertexEdit(item); }
    else if (e.target.closest(".btn-fence-delete")) { g.map.closePopup(); confirmDelete(item); }
  });

  // ---------------------------------------------------------------- the bar: draw, finish, cancel
  function setBar(mode, help) {
    $("draw-polygon").disabled = mode !== "idle";
    $("draw-route").disabled = mode !== "idle";
    $("draw-finish").disabled = mode === "idle";
    $("draw-cancel").disabled = mode === "idle";
    $("draw-finish").dataset.i18n = mode === "vertices" ? "fence_save" : "finish";
    $("draw-finish").textContent = t($("draw-finish").dataset.i18n);
    $("draw-help").dataset.i18n = help || "";
    $("draw-help").textContent = help ? t(help) : "";
  }
  function startDrawing(kind) {
    stopEditing();
    g.fitted = true;  // never move the view under the user's clicks
    g.drawing = { kind, points: [], layer: L.polyline([], { color: "#f0f", dashArray: "4 4", renderer: g.svg }).addTo(g.map) };
    $("map").classList.add("drawing");
    g.map.doubleClickZoom.disable();
    setBar("drawing", kind === "route" ? "fence_draw_help_route" : "fence_draw_help_polygon");
  }
  function stopEditing() {
    const d = g.drawing;
    if (d) { g.map.removeLayer(d.layer); if (d.handles) d.handles.forEach((m) => g.map.removeLayer(m)); }
    if (d && d.item) g.fences.addLayer(d.item.layer);
    g.drawing = null;
    $("map").classList.remove("drawing");
    if (g.map) g.map.doubleClickZoom.enable();
    setBar("idle");
  }
  function onMapClick(e) {
    const d = g.drawing;
    if (!d || d.kind === "vertices") return;
    d.points.push([e.latlng.lng, e.latlng.lat]);  // display CRS; the server converts back
    d.layer.setLatLngs(d.points.map(([x, y]) => [y, x]));
  }
  function finish() {
    const d = g.drawing; if (!d) return;
    if (d.kind === "vertices") { saveVertices(); return; }
    const closed = d.kind === "polygon";
    if (d.points.length < (closed ? 3 : 2)) { toast(t(closed ? "err_points_polygon" : "err_points_route"), true); return; }
    const geometry = closed ? { type: "Polygon", coordinates: [[...d.points, d.points[0]]] }
      : { type: "LineString", coordinates: d.points };
    openForm({ geometry, isRoute: !closed });
  }

  // ---------------------------------------------------------------- vertex edit (drag)
  function ringOf(item) {  // [ [lon, lat], ... ] in display CRS, open (no repeated last point)
    const geom = item.feature.geometry;
    const c = toDisplay(geom.coordinates);
    if (geom.type === "LineString") return { closed: false, pts: c.map((x) => x.slice()) };
    if (geom.type === "Polygon" && c.length === 1) return { closed: true, pts: c[0].slice(0, -1).map((x) => x.slice()) };
    return null;
  }
  function startVertexEdit(item) {
    const shape = ringOf(item);
    if (!shape) { toast(t("err_invalid"), true); return; }
    stopEditing();
    g.fitted = true;
    g.fences.removeLayer(item.layer);
    const latlngs = () => shape.pts.map(([x, y]) => [y, x]);
    const layer = (shape.closed ? L.polygon : L.polyline)(latlngs(), {
      color: COLORS[item.props.kind] || "#36c", weight: 3, dashArray: "4 4", renderer: g.svg, className: "fence-editing" }).addTo(g.map);
    g.drawing = { kind: "vertices", item, shape, layer, handles: [] };
    const rebuild = () => {
      g.drawing.handles.forEach((m) => g.map.removeLayer(m));
      g.drawing.handles = [];
      shape.pts.forEach((pt, i) => {
        const m = L.marker([pt[1], pt[0]], { draggable: true, icon: L.divIcon({ className: "vertex-handle", iconSize: [14, 14] }) }).addTo(g.map);
        m.on("drag", (e) => { shape.pts[i] = [e.latlng.lng, e.latlng.lat]; layer.setLatLngs(latlngs()); });
        m.on("dragend", rebuild);
        g.drawing.handles.push(m);
      });
      const n = shape.pts.length;
      for (let i = 0; i < (shape.closed ? n : n - 1); i += 1) {  // half-way handles add a vertex
        const a = shape.pts[i], b = shape.pts[(i + 1) % n];
        const m = L.marker([(a[1] + b[1]) / 2, (a[0] + b[0]) / 2], { draggable: true, icon: L.divIcon({ className: "vertex-handle mid", iconSize: [10, 10] }) }).addTo(g.map);
        m.on("dragstart", () => { shape.pts.splice(i + 1, 0, [m.getLatLng().lng, m.getLatLng().lat]); });
        m.on("drag", (e) => { shape.pts[i + 1] = [e.latlng.lng, e.latlng.lat]; layer.setLatLngs(latlngs()); });
        m.on("dragend", rebuild);
        g.drawing.handles.push(m);
      }
    };
    rebuild();
    $("map").classList.add("drawing");
    setBar("vertices", "fence_vertex_help");
  }
  async function saveVertices() {
    const d = g.drawing;
    const p = d.item.props;
    const geometry = d.shape.closed ? { type: "Polygon", coordinates: [[...d.shape.pts, d.shape.pts[0]]] }
      : { type: "LineString", coordinates: d.shape.pts };
    const r = await call(`/api/${typeOf(p)}/${encodeURIComponent(p.db_id)}`, "PUT",
      { feature: { type: "Feature", properties: editableProps(p), geometry }, coordinates_crs: g.config.tile_crs });
    if (!r.ok) { const e = errorKey(r.status, r.detail); toast(t(e.key), true, r.detail); return; }
    d.item = null;  // replaced: load() draws the saved one
    stopEditing();
    toast(t("fence_saved"));
    await load();
  }
  function editableProps(p) {  // what a PUT carries: everything but ids and assignments
    const props = Object.assign({}, p);
    delete props.db_id; delete props.vehicle_ids; delete props.id;
    return props;
  }

  // ---------------------------------------------------------------- the form
  async function registry() {
    if (!F.vehicles) {
      const r = await call("/api/vehicles", "GET");
      F.vehicles = r.ok ? r.data : [];
    }
    return F.vehicles;
  }
  function companiesOf(vehicles) {
    const byCompany = new Map();
    vehicles.forEach((v) => {
      if (!byCompany.has(v.company_id)) byCompany.set(v.company_id, { id: v.company_id, name: v.company_name, vehicles: [] });
      byCompany.get(v.company_id).vehicles.push(v);
    });
    return Array.from(byCompany.values()).sort((a, b) => String(a.name).localeCompare(String(b.name), "zh-CN"));
  }
  // a label of the form: its text now and its key, so the language switch relabels it while the
  // form is open (GpsmI18n.apply rewrites every [data-i18n] of the page)
  const i18nSpan = (key) => `<span data-i18n="${esc(key)}">${esc(t(key))}</span>`;
  function field(name, labelKey, input, hintKey) {
    return `<label class="ff" data-field="${name}"><span class="ff-label">${i18nSpan(labelKey)}</span>${input}` +
      (hintKey ? `<small class="ff-hint" data-i18n="${esc(hintKey)}">${esc(t(hintKey))}</small>` : "") +
      `<small class="ff-error" id="ff-error-${name}"></small></label>`;
  }
  // opts: { item } to edit an existing one, or { geometry, isRoute } for a new drawing
  async function openForm(opts) {
    const p = opts.item ? opts.item.props : (opts.isRoute ? { kind: "route", corridor_m: 100 } : { kind: "forbidden" });
    const isRoute = p.kind === "route";
    const [from, to] = (p.active_hours || "-").split("-");
    const companies = companiesOf(await registry());
    const assigned = new Set(p.vehicle_ids || []);
    const title = opts.item ? `${i18nSpan("fence_edit")} · ${esc(p.name)}` : i18nSpan(isRoute ? "fence_new_route" : "fence_new_geofence");
    const kindInput = isRoute ? `<input type="text" value="${esc(t("fence_route"))}" data-i18n-value="fence_route" disabled>`
      : `<select name="kind">${FENCE_KINDS.map((k) => `<option value="${k}"${k === p.kind ? " selected" : ""} data-i18n="fence_${k}">${esc(t("fence_" + k))}</option>`).join("")}</select>`;
    const tree = companies.map((c) => {
      const all = c.vehicles.every((v) => assigned.has(v.id)) && c.vehicles.length > 0;
      return `<li class="tree-company" data-company-id="${c.id}" data-search="${esc(c.name)}">` +
        `<label><input type="checkbox" class="assign-company" value="${c.id}"${all ? " checked" : ""}> <b>${esc(c.name)}</b> ` +
        `<small>${i18nSpan("fence_assign_company")}</small></label><ul>` +
        c.vehicles.map((v) => `<li data-search="${esc(v.plate_number)} ${esc(c.name)}"><label><input type="checkbox" class="assign-vehicle" value="${v.id}"` +
          `${assigned.has(v.id) ? " checked" : ""}> ${esc(v.plate_number)} <small>${i18nSpan(v.vehicle_class)}</small></label></li>`).join("") +
        "</ul></li>";
    }).join("");
    const html = `<form id="fence-form" class="gpsm-dialog" novalidate>
      <h3>${title}</h3>
      <div class="ff-error form-error" id="ff-error-form" role="alert"></div>
      ${field("name", "name", `<input name="name" maxlength="200" value="${esc(p.name || "")}" required>`)}
      ${field("kind", "fence_type", kindInput, isRoute ? "" : "fence_" + p.kind + "_hint")}
      ${field("speed", "fence_speed_limit", `<input name="speed_limit_kmh" type="number" min="1" step="any" value="${esc(p.speed_limit_kmh == null ? "" : p.speed_limit_kmh)}">`)}
      ${isRoute ? field("corridor", "fence_corridor", `<input name="corridor_m" type="number" min="1" max="${MAX_CORRIDOR_M}" step="any" value="${esc(p.corridor_m || 100)}">`) : ""}
      ${field("hours", "fence_hours", `<span class="ff-row"><input name="hours_from" class="hhmm" inputmode="numeric" maxlength="5" placeholder="08:00" value="${esc(from || "")}"> – <input name="hours_to" class="hhmm" inputmode="numeric" maxlength="5" placeholder="18:00" value="${esc(to || "")}"></span>`, "fence_hours_always")}
      ${isRoute ? "" : field("classes", "fence_classes", `<span class="ff-row">${CLASSES.map((c) => `<label class="chk"><input type="checkbox" name="vehicle_classes" value="${c}"${(p.vehicle_classes || []).includes(c) ? " checked" : ""}> ${i18nSpan(c)}</label>`).join("")}</span>`, "fence_classes_all")}
      <div class="ff" data-field="geometry" hidden><small class="ff-error" id="ff-error-geometry"></small></div>
      <fieldset class="ff" data-field="assign"><legend>${i18nSpan("fence_assign")}</legend>
        <small class="ff-hint">${i18nSpan(isRoute ? "fence_assign_hint_route" : "fence_assign_hint_geofence")}</small>
        <input type="search" class="assign-filter" data-i18n-placeholder="fence_filter" placeholder="${esc(t("fence_filter"))}">
        <ul class="assign-tree">${tree}</ul><small class="ff-error" id="ff-error-assign"></small></fieldset>
      <div class="dialog-buttons"><button type="submit" class="primary" data-i18n="fence_save">${esc(t("fence_save"))}</button>
        <button type="button" class="btn-cancel" data-i18n="cancel">${esc(t("cancel"))}</button></div>
    </form>`;
    const dialog = showDialog(html);
    const form = dialog.querySelector("form");
    const syncKind = () => {
      const kind = isRoute ? "route" : form.elements.kind.value;
      form.querySelector('[data-field="speed"]').hidden = !(kind === "speed_zone" || kind === "route");
      if (!isRoute) {
        const hint = form.querySelector('[data-field="kind"] .ff-hint');
        hint.dataset.i18n = "fence_" + kind + "_hint";
        hint.textContent = t(hint.dataset.i18n);
      }
    };
    syncKind();
    if (!isRoute) form.elements.kind.addEventListener("change", syncKind);
    form.addEventListener("change", (e) => {  // a company box ticks / unticks all its vehicles
      if (e.target.classList.contains("assign-company")) {
        e.target.closest(".tree-company").querySelectorAll(".assign-vehicle").forEach((box) => { box.checked = e.target.checked; });
      } else if (e.target.classList.contains("assign-vehicle")) {
        const li = e.target.closest(".tree-company");
        li.querySelector(".assign-company").checked = Array.from(li.querySelectorAll(".assign-vehicle")).every((b) => b.checked);
      }
    });
    form.querySelector(".assign-filter").addEventListener("input", (e) => {
      const q = e.target.value.trim().toUpperCase();
      form.querySelectorAll(".assign-tree li").forEach((li) => {
        li.hidden = Boolean(q) && !li.textContent.toUpperCase().includes(q) && !li.dataset.search.toUpperCase().includes(q);
      });
    });
    form.addEventListener("input", (e) => {  // an edited field is no longer marked wrong
      const box = e.target.closest(".ff");
      if (box && box.classList.contains("invalid")) {
        box.classList.remove("invalid");
        const err = box.querySelector(".ff-error"); if (err) { err.textContent = ""; delete err.dataset.i18n; }
      }
    });
    form.querySelector(".btn-cancel").addEventListener("click", () => closeDialog());
    form.addEventListener("submit", (e) => { e.preventDefault(); submitForm(form, opts, p, isRoute); });
    form.elements.name.focus();
  }
  function markError(form, fieldName, key, detail) {
    const el = form.querySelector("#ff-error-" + (fieldName || "form")) || form.querySelector("#ff-error-form");
    el.textContent = t(key);
    el.dataset.i18n = key;  // relabelled by a language switch
    if (detail) el.title = detail;  // the API's own words, for support
    const box = el.closest(".ff"); if (box) { box.classList.add("invalid"); box.hidden = false; }
    el.scrollIntoView({ block: "nearest" });
  }
  function readForm(form, p, isRoute) {  // -> { props, errors: [[field, key]] }, the API's rules
    const errors = [];
    const name = form.elements.name.value.trim();
    if (!name || name.length > 200) errors.push(["name", "err_name"]);
    const kind = isRoute ? "route" : form.elements.kind.value;
    const props = Object.assign(editableProps(p), { name, kind });
    const speedText = form.elements.speed_limit_kmh.value.trim();
    delete props.speed_limit_kmh;
    if (kind === "speed_zone" || kind === "route") {
      const speed = Number(speedText);
      if (speedText && !(Number.isFinite(speed) && speed > 0)) errors.push(["speed", "err_speed"]);
      else if (speedText) props.speed_limit_kmh = speed;
      else if (kind === "speed_zone" && !String(props.road_class || "").startsWith("unsigned_")) errors.push(["speed", "err_speed_required"]);
    }
    if (isRoute) {
      const corridor = Number(form.elements.corridor_m.value);
      if (!(Number.isFinite(corridor) && corridor > 0 && corridor <= MAX_CORRIDOR_M)) errors.push(["corridor", "err_corridor"]);
      props.corridor_m = corridor;
    }
    // 24-hour "HH:MM" as the API reads it (a time input would show AM/PM in some browsers)
    const hhmm = (v) => { const m = /^(\d{1,2}):(\d{2})$/.exec(v.trim()); return m && +m[1] <= 24 && +m[2] <= 59 ? m[1].padStart(2, "0") + ":" + m[2] : null; };
    const from = form.elements.hours_from.value.trim(), to = form.elements.hours_to.value.trim();
    delete props.active_hours;
    if (from && to && hhmm(from) && hhmm(to)) props.active_hours = `${hhmm(from)}-${hhmm(to)}`;
    else if (from || to) errors.push(["hours", "err_hours"]);
    if (!isRoute) {
      const classes = Array.from(form.querySelectorAll('input[name="vehicle_classes"]:checked')).map((b) => b.value);
      delete props.vehicle_classes;
      if (classes.length) props.vehicle_classes = classes;
    }
    return { props, errors };
  }
  function assignment(form) {
    const companyIds = [], vehicleIds = [];
    form.querySelectorAll(".tree-company").forEach((li) => {
      const company = li.querySelector(".assign-company");
      if (company.checked) companyIds.push(Number(company.value));
      else li.querySelectorAll(".assign-vehicle:checked").forEach((b) => vehicleIds.push(Number(b.value)));
    });
    return { vehicle_ids: vehicleIds, company_ids: companyIds };
  }
  async function submitForm(form, opts, p, isRoute) {
    form.querySelectorAll(".ff-error").forEach((el) => { el.textContent = ""; el.title = ""; delete el.dataset.i18n; });
    form.querySelectorAll(".invalid").forEach((el) => el.classList.remove("invalid"));
    const { props, errors } = readForm(form, p, isRoute);
    if (errors.length) { errors.forEach(([f, k]) => markError(form, f, k)); return; }
    const type = isRoute ? "routes" : "geofences";
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      let id = opts.item ? opts.item.props.db_id : opts.createdId;
      if (!id) {  // new: the drawn geometry
        const r = await call(`/api/${type}`, "POST", { feature: { type: "Feature", properties: props, geometry: opts.geometry },
          coordinates_crs: g.config.tile_crs });
        if (!r.ok) { const e = errorKey(r.status, r.detail); markError(form, e.field, e.key, r.detail); return; }
        id = r.data.properties.db_id;
        opts.createdId = id;  // saved: a retry after an assignment error edits it
        opts.item = null;
      } else {
        // an existing one keeps its stored (WGS-84) geometry; a just-created one its drawing
        const body = opts.item ? { feature: { type: "Feature", properties: props, geometry: opts.item.feature.geometry } }
          : { feature: { type: "Feature", properties: props, geometry: opts.geometry }, coordinates_crs: g.config.tile_crs };
        const r = await call(`/api/${type}/${encodeURIComponent(id)}`, "PUT", body);
        if (!r.ok) { const e = errorKey(r.status, r.detail); markError(form, e.field, e.key, r.detail); return; }
      }
      // the assignment, when it changed (a new one with nothing ticked has none to write)
      const wanted = assignment(form);
      const ticked = new Set(Array.from(form.querySelectorAll(".assign-vehicle:checked")).map((b) => Number(b.value)));
      const before = new Set(p.vehicle_ids || []);
      const changed = wanted.company_ids.length > 0 || ticked.size !== before.size || [...ticked].some((v) => !before.has(v));
      if (changed) {
        const r = await call(`/api/${type}/${encodeURIComponent(id)}/vehicles`, "PUT", wanted);
        if (!r.ok) { const e = errorKey(r.status, r.detail); markError(form, "assign", e.key, r.detail); return; }
      }
      closeDialog();
      if (g.drawing && !g.drawing.item) stopEditing();
      toast(t("fence_saved"));
      await load();
    } finally { button.disabled = false; }
  }

  // ---------------------------------------------------------------- dialogs and notes
  function showDialog(html) {
    closeDialog();
    const back = document.createElement("div");
    back.id = "fence-dialog"; back.className = "gpsm-modal";
    back.innerHTML = html;
    back.addEventListener("keydown", (e) => { if (e.key === "Escape") closeDialog(); });
    document.body.appendChild(back);
    return back;
  }
  function closeDialog() { const d = $("fence-dialog"); if (d) d.remove(); }
  // a confirmation in the page (resolves true / false); Escape or Cancel is "no"
  function confirmDialog(text, okLabel) {
    return new Promise((resolve) => {
      const d = showDialog(`<form class="gpsm-dialog confirm" id="confirm-form"><p>${esc(text)}</p>
        <div class="dialog-buttons"><button type="submit" class="danger">${esc(okLabel)}</button>
        <button type="button" class="btn-cancel">${esc(t("cancel"))}</button></div></form>`);
      const done = (v) => { closeDialog(); resolve(v); };
      d.querySelector("form").addEventListener("submit", (e) => { e.preventDefault(); done(true); });
      d.querySelector(".btn-cancel").addEventListener("click", () => done(false));
      d.addEventListener("keydown", (e) => { if (e.key === "Escape") resolve(false); });
      d.querySelector(".btn-cancel").focus();
    });
  }
  async function confirmDelete(item) {
    const p = item.props;
    g.map.closePopup();
    if (!await confirmDialog(t("fence_delete_confirm").replace("{name}", p.name || p.id), t("delete"))) return;
    const r = await call(`/api/${typeOf(p)}/${encodeURIComponent(p.db_id)}`, "DELETE");
    if (!r.ok) { toast(t(errorKey(r.status, r.detail).key), true, r.detail); }
    else toast(t("fence_deleted"));
    await load();
  }
  function toast(text, isError, detail) {
    const el = $("fence-toast");
    el.textContent = text; el.title = detail || "";
    el.className = isError ? "error" : "";
    el.hidden = false;
    clearTimeout(F.toastTimer);
    F.toastTimer = setTimeout(() => { el.hidden = true; }, isError ? 8000 : 3000);
  }

  // ---------------------------------------------------------------- start (called by app.js)
  function start(gpsm) {
    g = gpsm;
    g.map.on("click", onMapClick);
    g.map.on("zoomend", sizeBands);
    if (!$("fence-toast")) {
      const el = document.createElement("div");
      el.id = "fence-toast"; el.hidden = true; el.setAttribute("role", "status");
      document.body.appendChild(el);
    }
    $("draw-bar").style.display = isBureau() ? "block" : "none";
    setBar("idle");
    load();
  }
  $("draw-polygon").addEventListener("click", () => startDrawing("polygon"));
  $("draw-route").addEventListener("click", () => startDrawing("route"));
  $("draw-cancel").addEventListener("click", () => stopEditing());
  $("draw-finish").addEventListener("click", () => finish());
  document.addEventListener("gpsm:lang", () => {
    if (g && g.map) load();  // popups relabelled
    // an open form's labels follow through [data-i18n]; a disabled input's value does not
    document.querySelectorAll("#fence-dialog [data-i18n-value]").forEach((el) => { el.value = t(el.dataset.i18nValue); });
  });
  window.GpsmFences = { start, reload: () => load(), errorKey, confirm: confirmDialog };
})();
