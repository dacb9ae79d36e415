// The bureau's registry page (/admin): companies, vehicles, bulk import and users over
// /api/companies, /api/vehicles, /api/vehicle-import and /api/users. A refused input is shown
// next to its field in the page language: the API answers pydantic's 422 list (or the same
// shape for registry refusals: taken, unknown company, has history), and each {loc, type, ctx}
// becomes a message of admin-labels.js. Confirmations use a <dialog>, never browser prompts.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const t = GpsmI18n.t;
  const COLORS = [1, 2, 3, 4, 5, 9];
  const CLASSES = ["coach", "tour_bus", "hazmat", "heavy_truck", "freight"];
  const ROLES = ["bureau", "operator", "enforcement"];
  const state = { user: null, companies: [], vehicles: [], users: [], report: null, file: null };

  class ApiError extends Error {
    constructor(status, detail) {
      super(typeof detail === "string" ? detail : JSON.stringify(detail));
      this.status = status;
      this.detail = detail;
    }
  }

  async function api(method, path, body, raw) {
    const init = { method, credentials: "same-origin", headers: {} };
    if (raw !== undefined) {
      init.body = raw;
      init.headers["Content-Type"] = "application/octet-stream";
    } else if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json";
    }
    const r = await fetch(path, init);
    if (r.status === 401) { $("login").hidden = false; throw new ApiError(401, "401"); }
    if (r.status === 204) return null;
    const data = await r.json().catch(() => ({}));
    if (!r.ok) throw new ApiError(r.status, data.detail || r.statusText);
    return data;
  }

  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, (m, k) => (values && k in values ? values[k] : m));
  }
  // One refused field -> a sentence in the page language (the API's text when none fits).
  function message(field, type, ctx, fallback) {
    for (const key of [`msg_${type}__${field}`, `msg_${type}`]) {
      const text = t(key);
      if (text !== key) return fill(text, ctx || {});
    }
    return fallback || type;
  }
  function fieldOf(d) {
    const loc = d.loc || [];
    return String(loc.length ? loc[loc.length - 1] : "");
  }

  // -------------------------------------------------------------- field errors in a form
  function clearErrors(form) {
    form.querySelectorAll(".err").forEach((el) => { el.textContent = ""; });
    form.querySelectorAll(".invalid").forEach((el) => el.classList.remove("invalid"));
    form.lastDetail = null;
  }
  function showErrors(form, detail) {
    clearErrors(form);
    form.lastDetail = detail;
    const loose = [];
    for (const d of Array.isArray(detail) ? detail : [{ msg: String(detail) }]) {
      const field = fieldOf(d);
      const slot = field && form.querySelector(`.err[data-err="${field}"]`);
      const text = message(field, d.type, d.ctx, d.msg);
      if (slot) {
        slot.textContent = text;
        const input = form.querySelector(`[name="${field}"]`) || slot.previousElementSibling;
        if (input) input.classList.add("invalid");
      } else {
        loose.push(field ? `${t("field_" + field)}: ${text}` : text);
      }
    }
    setStatus(loose.join("; "), true);
  }
  function setStatus(text, isError) {
    $("status").textContent = text ? (isError ? t("error") + ": " : "") + text : "";
    $("status").classList.toggle("ok", !isError);
  }
  // Run a change; a refusal goes to the form's fields, anything else to the status line.
  async function submit(form, action, done) {
    clearErrors(form);
    setStatus("");
    try {
      await action();
      setStatus(t(done || "saved"));
      return true;
    } catch (error) {
      if (error.status === 401) return false;
      if (error.detail !== undefined) showErrors(form, error.detail);
      else setStatus(error.message, true);
      return false;
    }
  }

  // -------------------------------------------------------------- confirmation dialog
  // Resolves after onOk succeeded (true) or on cancel (false); a refusal of onOk stays in the
  // dialog next to its field.
  function confirmDialog(text, okLabel, onOk, withPassword) {
    const dialog = $("confirm");
    const form = dialog.querySelector("form");
    clearErrors(form);
    $("confirm-text").textContent = text;
    $("confirm-ok").textContent = okLabel;
    $("confirm-password").hidden = !withPassword;
    $("confirm-password-input").value = "";
    dialog.showModal();
    return new Promise((resolve) => {
      form.onsubmit = async (e) => {
        e.preventDefault();
        if (e.submitter && e.submitter.value === "cancel") { dialog.close(); resolve(false); return; }
        const ok = await submit(form, () => onOk($("confirm-password-input").value));
        if (ok) { dialog.close(); resolve(true); }
      };
      dialog.oncancel = () => resolve(false);
    });
  }

  // -------------------------------------------------------------- tables
  function cell(row, text, className) {
    const td = row.insertCell();
    const th = row.closest("table").tHead.rows[0].cells[td.cellIndex];
    if (th) td.dataset.label = th.textContent;  // the phone layout shows it before the value
    td.textContent = text === null || text === undefined || text === "" ? "–" : String(text);
    if (className) td.className = className;
    return td;
  }
  function buttons(row, specs) {
    const td = row.insertCell();
    td.className = "row-actions";
    for (const [label, action, danger] of specs) {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = label;
      if (danger) b.className = "danger";
      b.addEventListener("click", action);
      td.append(b);
    }
  }
  const colorName = (code) => t("color_" + code);
  const companyName = (id) => (state.companies.find((c) => c.id === id) || {}).name;

  // -------------------------------------------------------------- selects
  function options(select, items, chooseLabel) {
    const value = select.value;
    select.replaceChildren();
    if (chooseLabel) select.add(new Option(chooseLabel, ""));
    for (const [v, label] of items) select.add(new Option(label, v));
    select.value = value;
  }
  function fillSelects() {
    const form = $("vehicle-form");
    options(form.plate_color, COLORS.map((c) => [c, `${colorName(c)} (${c})`]));
    options(form.vehicle_class, CLASSES.map((c) => [c, t(c)]), t("choose"));
    document.querySelectorAll(".company-select").forEach((s) =>
      options(s, state.companies.map((c) => [c.id, c.name]), "–"));
    options($("user-form").role, ROLES.map((r) => [r, t("role_" + r)]));
    roleChanged();
  }
  function roleChanged() {
    const form = $("user-form");
    const operator = form.role.value === "operator";
    form.company_id.disabled = !operator;
    if (!operator) form.company_id.value = "";
  }

  // -------------------------------------------------------------- edit mode of a form
  function editMode(form, id) {
    form.dataset.editId = id === null ? "" : String(id);
    const editing = id !== null;
    const title = form.querySelector("h2");
    title.textContent = t(editing ? title.dataset.editI18n : title.dataset.i18n);
    form.querySelector(".cancel").hidden = !editing;
    form.querySelectorAll(".new-only").forEach((el) => { el.hidden = editing; });
    form.querySelectorAll(".edit-only").forEach((el) => { el.hidden = !editing; });
    if (!editing) {
      form.reset();
      fillSelects();
      if (form.plate_color) form.plate_color.value = "2";  // yellow, as the API's default
    }
    clearErrors(form);
  }
  const editing = (form) => (form.dataset.editId ? Number(form.dataset.editId) : null);

  // -------------------------------------------------------------- companies
  async function loadCompanies() {
    state.companies = await api("GET", "/api/companies");
    renderCompanies();
    fillSelects();
  }
  function renderCompanies() {
    const body = $("companies").tBodies[0];
    body.replaceChildren();
    for (const c of state.companies) {
      const row = body.insertRow();
      row.dataset.id = c.id;
      cell(row, c.name);
      cell(row, c.vehicles, "num");
      buttons(row, [[t("edit"), () => {
        const form = $("company-form");
        editMode(form, c.id);
        form.name.value = c.name;
        form.name.focus();
      }]]);
    }
  }
  $("company-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = e.target;
    const id = editing(form);
    const body = { name: form.name.value.trim() };
    const ok = await submit(form, () => (id === null
      ? api("POST", "/api/companies", body) : api("PATCH", `/api/companies/${id}`, body)));
    if (ok) { editMode(form, null); await loadCompanies(); }
  });

  // -------------------------------------------------------------- vehicles
  function vehicleBody(form) {
    const body = {
      plate_number: form.plate_number.value.trim(),
      plate_color: Number(form.plate_color.value),
      terminal_id: form.terminal_id.value.trim(),
      speed_limit_kmh: form.speed_limit_kmh.value.trim() || null,
      night_ban_exempt: form.night_ban_exempt.checked,
    };
    if (form.vehicle_class.value) body.vehicle_class = form.vehicle_class.value;
    if (form.company_id.value) body.company_id = Number(form.company_id.value);
    return body;
  }
  async function loadVehicles() {
    state.vehicles = await api("GET", "/api/vehicles");
    renderVehicles();
  }
  function renderVehicles() {
    const needle = $("vehicle-filter").value.trim().toLowerCase();
    const shown = state.vehicles.filter((v) => !needle
      || v.plate_number.toLowerCase().includes(needle) || v.company_name.toLowerCase().includes(needle));
    $("vehicle-total").textContent = `${shown.length} / ${state.vehicles.length}`;
    const body = $("vehicles").tBodies[0];
    body.replaceChildren();
    for (const v of shown) {
      const row = body.insertRow();
      row.dataset.id = v.id;
      row.classList.toggle("inactive", !v.active);
      cell(row, v.plate_number);
      cell(row, colorName(v.plate_color));
      cell(row, t(v.vehicle_class));
      cell(row, v.terminal_id);
      cell(row, v.speed_limit_kmh, "num");
      cell(row, v.company_name);
      cell(row, t(v.active ? "active" : "inactive"));
      buttons(row, [
        [t("edit"), () => editVehicle(v)],
        v.active
          ? [t("deactivate"), () => confirmDialog(fill(t("confirm_deactivate"), { plate: v.plate_number }),
            t("deactivate"), () => api("PATCH", `/api/vehicles/${v.id}`, { active: false }))
            .then((ok) => ok && reload())]
          : [t("reactivate"), () => submit($("vehicle-form"),
            () => api("PATCH", `/api/vehicles/${v.id}`, { active: true })).then(reload)],
        [t("delete"), () => confirmDialog(fill(t("confirm_delete_vehicle"), { plate: v.plate_number }),
          t("delete"), () => api("DELETE", `/api/vehicles/${v.id}`)).then((ok) => ok && reload()), true],
      ]);
    }
  }
  function editVehicle(v) {
    const form = $("vehicle-form");
    editMode(form, v.id);
    form.plate_number.value = v.plate_number;
    form.plate_color.value = String(v.plate_color);
    form.vehicle_class.value = v.vehicle_class;
    form.terminal_id.value = v.terminal_id;
    form.speed_limit_kmh.value = v.speed_limit_kmh === null ? "" : v.speed_limit_kmh;
    form.company_id.value = String(v.company_id);
    form.night_ban_exempt.checked = v.night_ban_exempt;
    form.scrollIntoView({ block: "nearest" });
    form.plate_number.focus();
  }
  $("vehicle-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = e.target;
    const id = editing(form);
    const body = vehicleBody(form);
    const ok = await submit(form, () => (id === null
      ? api("POST", "/api/vehicles", body) : api("PATCH", `/api/vehicles/${id}`, body)));
    if (ok) { editMode(form, null); await reload(); }
  });
  $("vehicle-filter").addEventListener("input", renderVehicles);

  // -------------------------------------------------------------- import
  function renderReport() {
    const report = state.report;
    const table = $("import-report");
    table.hidden = !report;
    $("import-summary").textContent = "";
    const commit = $("import-commit");
    const valid = report ? report.counts.added + report.counts.updated : 0;
    commit.disabled = !report || report.committed || valid === 0;
    commit.textContent = report && report.committed ? t("import_done_button")
      : report && valid === 0 ? t("import_no_valid") : fill(t("import_commit"), { n: valid });
    if (!report) return;
    let summary = fill(t(report.committed ? "import_committed" : "import_previewed"), report.counts);
    if (report.ignored_columns.length) {
      summary += " · " + fill(t("import_ignored"), { cols: report.ignored_columns.join(", ") });
    }
    $("import-summary").textContent = summary;
    const body = table.tBodies[0];
    body.replaceChildren();
    for (const r of report.rows) {
      const row = body.insertRow();
      row.className = "outcome-" + r.outcome;
      cell(row, r.line, "num");
      cell(row, r.plate_number);
      cell(row, t("outcome_" + r.outcome));
      const reasons = r.errors.map((e) =>
        `${t("field_" + e.field)}: ${message(e.field, e.type, e.ctx, e.msg)}`);
      for (const [field, was] of Object.entries(r.changes || {})) {
        const shown = field === "company_id" ? companyName(was) || was
          : field === "plate_color" ? colorName(was) : field === "vehicle_class" ? t(was) : was;
        reasons.push(`${t("field_" + field)} ${t("was")} ${shown === null ? "–" : shown}`);
      }
      cell(row, reasons.join("; "));
    }
  }
  async function runImport(commit) {
    setStatus("");
    if (!state.file) { setStatus(t("import_choose_file"), true); return; }
    try {
      state.report = await api("POST", "/api/vehicle-import" + (commit ? "?commit=true" : ""),
        undefined, state.file);
      renderReport();
      if (commit) await reload();
    } catch (error) {
      if (error.status !== 401) setStatus(String(error.detail || error.message), true);
    }
  }
  $("import-file").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    state.file = file ? await file.arrayBuffer() : null;
    state.report = null;
    renderReport();
  });
  $("import-form").addEventListener("submit", (e) => { e.preventDefault(); runImport(false); });
  $("import-commit").addEventListener("click", () => runImport(true));

  // -------------------------------------------------------------- users
  async function loadUsers() {
    state.users = await api("GET", "/api/users");
    renderUsers();
  }
  function renderUsers() {
    const body = $("users").tBodies[0];
    body.replaceChildren();
    for (const u of state.users) {
      const row = body.insertRow();
      row.dataset.id = u.id;
      row.classList.toggle("inactive", !u.active);
      cell(row, u.username);
      cell(row, u.display_name);
      cell(row, t("role_" + u.role));
      cell(row, u.company_name);
      cell(row, t(u.active ? "enabled" : "disabled"));
      const edit = (active) => api("PUT", `/api/users/${u.id}`, {
        role: u.role, company_id: u.company_id, display_name: u.display_name, active });
      const self = state.user && u.id === state.user.id;
      buttons(row, [
        [t("edit"), () => editUser(u)],
        [t("reset_password"), () => confirmDialog(fill(t("confirm_reset"), { name: u.username }),
          t("save"), (password) => api("PUT", `/api/users/${u.id}/password`, { password }), true)
          .then((ok) => ok && setStatus(t("password_set")))],
        ...(self ? [] : [u.active
          ? [t("disable"), () => confirmDialog(fill(t("confirm_disable"), { name: u.username }),
            t("disable"), () => edit(false)).then((ok) => ok && loadUsers()), true]
          : [t("enable"), () => submit($("user-form"), () => edit(true)).then(loadUsers)]]),
      ]);
    }
  }
  function editUser(u) {
    const form = $("user-form");
    editMode(form, u.id);
    form.username.value = u.username;
    form.username.readOnly = true;
    form.display_name.value = u.display_name || "";
    form.role.value = u.role;
    roleChanged();
    form.company_id.value = u.company_id === null ? "" : String(u.company_id);
    form.active.checked = u.active;
    form.scrollIntoView({ block: "nearest" });
  }
  $("user-form").role.addEventListener("change", roleChanged);
  $("user-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = e.target;
    const id = editing(form);
    const common = {
      role: form.role.value,
      company_id: form.company_id.value ? Number(form.company_id.value) : null,
      display_name: form.display_name.value.trim() || null,
    };
    const ok = await submit(form, () => (id === null
      ? api("POST", "/api/users", { ...common, username: form.username.value.trim(),
        password: form.password.value })
      : api("PUT", `/api/users/${id}`, { ...common, active: form.active.checked })));
    if (ok) { editMode(form, null); form.username.readOnly = false; await loadUsers(); }
  });
  document.querySelectorAll(".registry-form .cancel").forEach((b) => b.addEventListener("click", () => {
    const form = b.closest("form");
    editMode(form, null);
    if (form.username) form.username.readOnly = false;
  }));

  // -------------------------------------------------------------- tabs, language, login
  function showTab(name) {
    document.querySelectorAll("#tabs [data-tab]").forEach((b) => {
      const on = b.dataset.tab === name;
      b.setAttribute("aria-selected", String(on));
      $("tab-" + b.dataset.tab).hidden = !on;
    });
    if (location.hash !== "#" + name) history.replaceState(null, "", "#" + name);
  }
  document.querySelectorAll("#tabs [data-tab]").forEach((b) =>
    b.addEventListener("click", () => showTab(b.dataset.tab)));

  function relabel() {
    GpsmI18n.apply();
    document.querySelectorAll(".registry-form h2[data-edit-i18n]").forEach((title) => {
      const form = title.closest("form");
      title.textContent = t(editing(form) === null ? title.dataset.i18n : title.dataset.editI18n);
    });
    fillSelects();
    renderVehicles();
    renderReport();
    renderUsers();
    renderCompanies();
    document.querySelectorAll("form").forEach((form) => {
      if (form.lastDetail) showErrors(form, form.lastDetail);
    });
    if (state.user) $("who").textContent = `${state.user.username} · ${t("role_" + state.user.role)}`;
  }
  $("lang").addEventListener("change", (e) => { GpsmI18n.setLang(e.target.value); relabel(); });

  async function reload() {
    await loadCompanies();
    await loadVehicles();
  }
  async function start() {
    state.user = (await api("GET", "/api/auth/session")).user;
    if (!state.user) { $("login").hidden = false; return; }
    $("who").textContent = `${state.user.username} · ${t("role_" + state.user.role)}`;
    if (state.user.role !== "bureau") {
      $("tabs").hidden = true;
      setStatus(t("bureau_only"), true);
      return;
    }
    const tab = location.hash.slice(1);
    showTab(["companies", "vehicles", "import", "users"].includes(tab) ? tab : "vehicles");
    try {
      await reload();
      await loadUsers();
    } catch (error) {
      if (error.status !== 401) setStatus(error.message, true);
    }
  }
  $("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("login-error").textContent = "";
    const r = await fetch("/api/auth/login", {
      method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username: $("login-username").value, password: $("login-password").value }),
    });
    if (!r.ok) { $("login-error").textContent = GpsmI18n.loginError(r.status, r.headers.get("Retry-After")); return; }
    $("login").hidden = true;
    start();
  });

  $("lang").value = GpsmI18n.lang;
  GpsmI18n.apply();
  renderReport();
  editMode($("company-form"), null);
  editMode($("vehicle-form"), null);
  editMode($("user-form"), null);
  start();
})();
