// Terminal parameters (终端参数, JT/T 808 0x8104/0x8106/0x0104/0x8103) and temporary tracking
// (临时跟踪, 0x8202), for the bureau and for an operator's own vehicles. Everything goes through
// the downlink command channel (POST /api/commands, then GET /api/commands/{id} until the
// terminal answered or the command expired); the terminal's answer is shown as it came.
// Public API:
//   GpsmParams.buttonHtml(vehicleId, plate)  the 终端参数 button for the vehicle card
//   GpsmParams.open(vehicleId, plate)        the parameters dialog
//   GpsmParams.mountTrack(box, alarm)        the 临时跟踪 button in the alarm handling dialog
(function (global) {
  "use strict";
  global.GpsmI18n.register({
    "zh-CN": {
      prm_button: "终端参数", prm_title: "终端参数", prm_query: "查询参数", prm_set: "设置参数",
      prm_close: "关闭", prm_param: "参数", prm_value: "终端当前值", prm_new: "新值",
      prm_answered: "终端应答于", prm_none: "尚未查询：点击“查询参数”", prm_queued: "终端离线，上线后下发",
      prm_sent: "已下发，等待终端应答", prm_acknowledged: "终端已确认", prm_failed: "终端应答失败",
      prm_expired: "终端未应答（已过期）", prm_result: "应答结果", prm_nothing: "请填写要修改的参数",
      prm_raw: "未知参数（原始数据）", prm_history: "最近指令", prm_query_params: "查询参数",
      prm_set_params: "设置参数", prm_track: "临时跟踪",
      trk_button: "临时跟踪（每5秒，10分钟）", trk_asked: "临时跟踪指令",
    },
    en: {
      prm_button: "Terminal parameters", prm_title: "Terminal parameters", prm_query: "Query",
      prm_set: "Set", prm_close: "Close", prm_param: "Parameter", prm_value: "Terminal value",
      prm_new: "New value", prm_answered: "answered at", prm_none: "Not queried yet: press Query",
      prm_queued: "terminal offline, sent when it connects", prm_sent: "sent, awaiting the terminal",
      prm_acknowledged: "terminal confirmed", prm_failed: "terminal answered failure",
      prm_expired: "no answer (expired)", prm_result: "result", prm_nothing: "Enter a value to change",
      prm_raw: "unknown parameter (raw)", prm_history: "Recent commands", prm_query_params: "query",
      prm_set_params: "set", prm_track: "temporary tracking",
      trk_button: "Track (every 5 s for 10 min)", trk_asked: "tracking command",
    },
  });
  const t = (k) => GpsmI18n.t(k);
  const esc = (s) => String(s == null ? "" : s).replace(/[&<>"']/g, (c) => (
    { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  let catalogue = null;  // GET /api/commands/parameters

  async function api(path, options) {
    const r = await fetch(path, Object.assign({ credentials: "same-origin", headers: { "Content-Type": "application/json" } }, options || {}));
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      throw new Error(typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail || r.statusText));
    }
    return r.json();
  }
  function fmtTime(iso) {
    if (!iso) return "-";
    return new Intl.DateTimeFormat(GpsmI18n.lang === "en" ? "en-GB" : "zh-CN", { timeZone: "Asia/Shanghai",
      month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false }).format(new Date(iso));
  }
  function mayCommand() {
    const user = global.gpsm && global.gpsm.user;
    return !!user && (user.role === "bureau" || user.role === "operator");
  }
  // English label from our name: overspeed_limit_kmh -> overspeed limit (km/h)
  function englishName(name) {
    const units = { kmh: "km/h", s: "s", m: "m", km: "km", deg: "°", ms: "ms" };
    const parts = name.split("_");
    const unit = units[parts[parts.length - 1]];
    return unit ? `${parts.slice(0, -1).join(" ")} (${unit})` : parts.join(" ");
  }
  function label(meta, item) {
    if (!meta) return `${t("prm_raw")} ${item.id}`;
    return GpsmI18n.lang === "en" ? englishName(meta.name) : meta.zh;
  }
  function stateText(c) {
    const s = t("prm_" + c.state);
    return c.result != null && c.result !== 0 ? `${s} (${t("prm_result")} ${c.result}${c.result_detail ? ": " + c.result_detail : ""})` : s;
  }
  // follow one command until final; onChange(row) at every poll
  function follow(id, onChange) {
    return new Promise((resolve) => {
      const timer = setInterval(async () => {
        try {
          const c = await api(`/api/commands/${id}`);
          onChange(c);
          if (c.state !== "queued" && c.state !== "sent") { clearInterval(timer); resolve(c); }
        } catch (err) { clearInterval(timer); resolve(null); }
      }, 1000);
    });
  }
  function send(vehicleId, name, body, alarmId) {
    const payload = { vehicle_id: vehicleId, name, body };
    if (alarmId != null) payload.alarm_id = alarmId;
    return api("/api/commands", { method: "POST", body: JSON.stringify(payload) });
  }

  function buttonHtml(vehicleId, plate) {
    if (!mayCommand()) return "";
    return ` <button class="btn-params" data-vehicle-id="${vehicleId}" data-plate="${esc(plate)}">${t("prm_button")}</button>`;
  }

  // the newest value the terminal reported for each parameter, from its answers newest first
  function latestItems(answers) {
    const seen = new Map();
    for (const a of answers) for (const item of a.result_body.params) if (!seen.has(item.id)) seen.set(item.id, item);
    return [...seen.values()];
  }
  function tableHtml(items) {
    const byId = new Map(catalogue.map((m) => [m.id, m]));
    const shown = new Set();
    const rows = [];
    for (const item of items) {
      const meta = byId.get(item.id);
      shown.add(item.id);
      const value = item.value != null ? item.value : item.raw_hex;
      rows.push(rowHtml(meta, item, value));
    }
    for (const meta of catalogue) {  // settable ones the terminal did not report
      if (meta.settable && !shown.has(meta.id)) rows.push(rowHtml(meta, { id: meta.id }, null));
    }
    return `<table class="params-table"><tr><th>${t("prm_param")}</th><th>ID</th><th>${t("prm_value")}</th><th>${t("prm_new")}</th></tr>${rows.join("")}</table>`;
  }
  function rowHtml(meta, item, value) {
    const input = meta && meta.settable
      // the range as a hint only: the server checks it and its 422 names parameter and range
      ? `<input type="number" step="any" name="${esc(meta.name)}" data-param-id="${esc(meta.id)}" placeholder="${meta.minimum}-${meta.maximum}" title="${meta.minimum} - ${meta.maximum}">`
      : "";
    const raw = item.raw_hex != null ? ` class="raw" title="${esc(item.problem || t("prm_raw"))}"` : "";
    return `<tr data-param-id="${esc(item.id)}"><td>${esc(label(meta, item))}</td><td>${esc(item.id)}</td>` +
      `<td class="param-value"${raw}>${value == null ? "-" : esc(value)}</td><td>${input}</td></tr>`;
  }
  function historyHtml(rows) {
    return rows.slice(0, 5).map((c) => `<li>${fmtTime(c.created_at)} ${esc(t("prm_" + c.name))} · ${esc(stateText(c))}` +
      (c.name === "set_params" ? ` · ${esc(Object.entries(c.body.params || {}).map(([k, v]) => `${k}=${v}`).join(", "))}` : "") + `</li>`).join("");
  }

  async function open(vehicleId, plate) {
    if (!catalogue) catalogue = await api("/api/commands/parameters");
    const old = document.getElementById("params-dialog"); if (old) old.remove();
    const dlg = document.createElement("dialog");
    dlg.id = "params-dialog";
    dlg.innerHTML = `<form method="dialog" class="params-form"><h3>${t("prm_title")}: ${esc(plate || "#" + vehicleId)}</h3>` +
      `<div class="params-answered"></div><div class="params-body"></div>` +
      `<div class="params-state" aria-live="polite"></div><div class="error"></div>` +
      `<div class="buttons"><button type="button" class="btn-query">${t("prm_query")}</button> ` +
      `<button type="submit" class="btn-set">${t("prm_set")}</button> ` +
      `<button type="button" class="btn-close">${t("prm_close")}</button></div>` +
      `<h4>${t("prm_history")}</h4><ul class="params-history"></ul></form>`;
    document.body.appendChild(dlg);
    const $ = (sel) => dlg.querySelector(sel);
    const render = async () => {
      const rows = await api(`/api/commands?vehicle_id=${vehicleId}&limit=50`);
      const mine = rows.filter((c) => c.name === "query_params" || c.name === "set_params" || c.name === "track");
      const answers = rows.filter((c) => c.name === "query_params" && c.state === "acknowledged" && c.result_body && c.result_body.params);
      $(".params-answered").textContent = answers.length ? `${t("prm_answered")} ${fmtTime(answers[0].answered_at)}` : t("prm_none");
      $(".params-body").innerHTML = tableHtml(latestItems(answers));
      $(".params-history").innerHTML = historyHtml(mine);
    };
    const run = async (name, body) => {
      $(".error").textContent = "";
      const created = await send(vehicleId, name, body);
      const show = (c) => { $(".params-state").textContent = `${t("prm_" + name)}: ${stateText(c)}`; $(".params-state").dataset.state = c.state; };
      show(created);
      const final = await follow(created.id, show);
      if (dlg.isConnected) await render();
      return final;
    };
    $(".btn-close").addEventListener("click", () => dlg.close());
    dlg.addEventListener("close", () => dlg.remove());
    $(".btn-query").addEventListener("click", () => run("query_params", {}).catch((err) => { $(".error").textContent = err.message; }));
    $("form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const params = {};
      dlg.querySelectorAll(".params-body input[data-param-id]").forEach((input) => {
        if (input.value !== "") params[input.name] = Number(input.value);
      });
      if (!Object.keys(params).length) { $(".error").textContent = t("prm_nothing"); return; }
      try {
        const final = await run("set_params", { params });
        // the terminal took it: read the values back, so the table shows what it holds now
        if (final && final.state === "acknowledged" && dlg.isConnected) await run("query_params", { names: Object.keys(params) });
      } catch (err) { $(".error").textContent = err.message; }
    });
    await render();
    dlg.showModal();
    return dlg;
  }
  document.addEventListener("click", (e) => {
    const b = e.target.closest(".btn-params");
    if (b) open(Number(b.dataset.vehicleId), b.dataset.plate);
  });

  // 临时跟踪 on an alarm: every 5 s for 10 min (JT/T 808 0x8202), linked to the alarm
  function mountTrack(box, alarm) {
    if (!box || !mayCommand()) return;
    box.innerHTML = `<button type="button" class="btn-track-temp">${t("trk_button")}</button> <small class="track-state"></small>`;
    box.querySelector(".btn-track-temp").addEventListener("click", async () => {
      const state = box.querySelector(".track-state");
      try {
        const created = await send(alarm.vehicle_id, "track", { interval_s: 5, duration_s: 600 }, alarm.id);
        const show = (c) => { state.textContent = `${t("trk_asked")}: ${stateText(c)}`; state.dataset.state = c.state; };
        show(created);
        await follow(created.id, show);
      } catch (err) { state.textContent = err.message; }
    });
  }

  global.GpsmParams = { buttonHtml, open, mountTrack };
})(window);
