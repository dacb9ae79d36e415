// Enforcement in the map page (执法): the evidence downloads of an alarm (PDF / Excel / CSV, one
// report number across the three), the penalty form (处罚决定: decision, 处罚决定书编号, 罚款金额,
// date, note; record and correct) and the list of evidence reports generated (report log),
// each with its downloads. Public API, used by app.js:
//   GpsmEnforce.start(user)      after login: the top-bar button of the report list (bureau and
//                                enforcement, who may read the log)
//   GpsmEnforce.rowHtml(alarm)   the evidence links of an alarm row, and for enforcement the
//                                处罚 button
//   GpsmEnforce.openPenaltyDialog(alarmId)   the penalty form of one alarm
// Labels in zh and en (GpsmI18n.lang); no browser prompts.
(function (global) {
  "use strict";
  const LABELS = {
    "zh-CN": {
      evidence: "证据报告", penalty: "处罚", penalty_title: "处罚决定", decision: "处罚种类",
      fine: "罚款", warning: "警告", no_penalty: "不予处罚", decision_number: "处罚决定书编号",
      fine_yuan: "罚款金额（元）", decided_on: "决定日期", note: "备注", save: "保存",
      save_edit: "保存修改", cancel: "取消", close: "关闭", edit: "修改", recorded: "已录入的处罚决定",
      none_recorded: "暂无处罚决定", recorded_by: "录入", updated_by: "修改",
      downloads: "下载证据报告", report_list: "证据报告列表", report_no: "报告编号", alarm: "报警",
      plate: "车牌", generated_at: "生成时间", generated_by: "生成人", formats: "已生成格式",
      no_reports: "尚无证据报告", need_fine: "罚款须填写罚款金额", need_number: "请填写处罚决定书编号",
      future_date: "决定日期不能晚于今天", early_date: "决定日期不能早于报警当天", bad_fine: "罚款金额须为大于0、最多两位小数的数字",
      saved: "已保存", yuan: "元", window: "时段",
      duplicate: "此处罚决定已录入（同一决定书编号或完全相同的决定）；如需更正请点“修改”",
    },
    en: {
      evidence: "Evidence", penalty: "Penalty", penalty_title: "Penalty decision", decision: "Decision",
      fine: "Fine", warning: "Warning", no_penalty: "No penalty", decision_number: "Decision number",
      fine_yuan: "Fine (yuan)", decided_on: "Decision date", note: "Note", save: "Save",
      save_edit: "Save changes", cancel: "Cancel", close: "Close", edit: "Edit",
      recorded: "Decisions recorded", none_recorded: "No penalty decision yet", recorded_by: "recorded by",
      updated_by: "changed by", downloads: "Download the evidence report", report_list: "Evidence reports",
      report_no: "Report no.", alarm: "Alarm", plate: "Plate", generated_at: "Generated",
      generated_by: "By", formats: "Formats generated", no_reports: "No evidence report yet",
      need_fine: "A fine needs its amount", need_number: "Enter the decision number",
      future_date: "The decision date cannot be after today",
      early_date: "The decision date cannot be before the alarm's day",
      bad_fine: "The fine must be a number above 0 with at most 2 decimals",
      saved: "Saved", yuan: "yuan", window: "window",
      duplicate: "This decision is already recorded (same decision number, or the very same decision); use Edit to correct it",
    },
  };
  // the decision kinds the form offers, stored as their Chinese names (the API's free text)
  const DECISIONS = [["罚款", "fine"], ["警告", "warning"], ["不予处罚", "no_penalty"]];
  const FORMATS = [["pdf", "PDF"], ["xlsx", "Excel"], ["csv", "CSV"]];
  const L = (k) => LABELS[global.GpsmI18n && GpsmI18n.lang === "en" ? "en" : "zh-CN"][k] || k;
  const esc = (s) => String(s == null ? "" : s).replace(/[&<>"']/g, (c) => (
    { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  let user = null;

  async function api(path, options) {
    const r = await fetch(path, Object.assign({ credentials: "same-origin", headers: { "Content-Type": "application/json" } }, options || {}));
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      const detail = Array.isArray(body.detail)
        ? body.detail.map((d) => `${(d.loc || []).slice(-1)[0]}: ${d.msg}`).join("; ") : body.detail;
      const err = new Error(typeof detail === "string" ? detail : r.statusText);
      err.status = r.status;
      throw err;
    }
    return r.json();
  }
  function fmtTime(iso) {
    if (!iso) return "-";
    return new Intl.DateTimeFormat(GpsmI18n.lang === "en" ? "en-GB" : "zh-CN", {
      timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", hour12: false }).format(new Date(iso));
  }
  function todayLocal() {  // Asia/Shanghai, the rules' and reports' zone
    return new Date(Date.now() + 8 * 3600e3).toISOString().slice(0, 10);
  }
  const isEnforcement = () => user && user.role === "enforcement";

  function evidenceQuery(params, fmt) {
    return "/api/reports/evidence?" + new URLSearchParams(Object.assign({}, params, { format: fmt })).toString();
  }
  function downloadLinks(params) {
    return FORMATS.map(([fmt, label]) =>
      `<a class="evidence evidence-${fmt}" href="${esc(evidenceQuery(params, fmt))}" download>${label}</a>`).join(" · ");
  }
  function rowHtml(a) {
    const penalty = isEnforcement()
      ? ` <button class="btn-penalty" type="button" data-alarm-id="${a.id}">${L("penalty")}</button>` : "";
    return `<div class="meta evidence-links">${L("evidence")}: ${downloadLinks({ alarm_id: a.id })}${penalty}</div>`;
  }

  function decisionText(p) {
    const kind = DECISIONS.find(([zh]) => zh === p.decision);
    const parts = [kind ? L(kind[1]) : p.decision];
    if (p.decision_number) parts.push(p.decision_number);
    if (p.fine_yuan != null) parts.push(`${Number(p.fine_yuan).toFixed(2)} ${L("yuan")}`);
    if (p.decided_on) parts.push(p.decided_on);
    return parts.join(" · ");
  }

  function localDay(iso) {  // the Asia/Shanghai calendar day of an instant
    return new Date(new Date(iso).getTime() + 8 * 3600e3).toISOString().slice(0, 10);
  }
  // client-side checks, so the common mistakes read in the page language; the API checks too
  function formErrors(body, alarmDay) {
    if (!body.decision_number) return L("need_number");
    if (body.fine_yuan !== null && (!(body.fine_yuan > 0) || Math.round(body.fine_yuan * 100) !== body.fine_yuan * 100)) return L("bad_fine");
    if (body.decision === "罚款" && body.fine_yuan === null) return L("need_fine");
    if (body.decided_on && body.decided_on > todayLocal()) return L("future_date");
    if (body.decided_on && alarmDay && body.decided_on < alarmDay) return L("early_date");
    return "";
  }

  async function openPenaltyDialog(alarmId) {
    const old = document.getElementById("penalty-dialog"); if (old) old.remove();
    const alarm = await api(`/api/alarms/${alarmId}`);
    const dlg = document.createElement("dialog");
    dlg.id = "penalty-dialog";
    const typeName = global.GpsmAlerts ? GpsmAlerts.typeName(alarm) : alarm.alarm_type;
    dlg.innerHTML =
      `<form class="penalty-form" novalidate>` +
      `<h3>${L("penalty_title")}: ${esc(alarm.plate_number)} ${esc(typeName)} <small>#${alarm.id} · ${esc(fmtTime(alarm.started_at))}</small></h3>` +
      `<div class="recorded"><b>${L("recorded")}</b><ul class="penalty-list"></ul></div>` +
      `<fieldset class="decision"><legend>${L("decision")}</legend>` +
      DECISIONS.map(([zh, key], i) => `<label><input type="radio" name="decision" value="${zh}"${i === 0 ? " checked" : ""}> ${L(key)}</label>`).join(" ") +
      `</fieldset>` +
      `<label>${L("decision_number")}<input name="decision_number" maxlength="100" required></label>` +
      `<label class="fine-part">${L("fine_yuan")}<input name="fine_yuan" type="number" min="0.01" step="0.01" inputmode="decimal"></label>` +
      `<label>${L("decided_on")}<input name="decided_on" type="date"></label>` +
      `<label>${L("note")}<textarea name="note" rows="2" maxlength="2000"></textarea></label>` +
      `<div class="error" role="alert"></div>` +
      `<div class="buttons"><span class="saved" role="status"></span> <button type="submit" class="btn-submit">${L("save")}</button> ` +
      `<button type="button" class="btn-cancel">${L("close")}</button></div>` +
      `<div class="meta downloads">${L("downloads")}: ${downloadLinks({ alarm_id: alarm.id })}</div></form>`;
    document.body.appendChild(dlg);
    const form = dlg.querySelector("form");
    const error = dlg.querySelector(".error");
    let editing = null;  // the id of the decision being corrected
    const reset = () => {
      editing = null;
      form.reset();
      form.elements.decided_on.value = todayLocal();
      form.elements.decided_on.max = todayLocal();
      form.elements.decided_on.min = localDay(alarm.started_at);
      dlg.querySelector(".btn-submit").textContent = L("save");
      sync();
    };
    const sync = () => { dlg.querySelector(".fine-part").hidden = form.elements.decision.value !== "罚款"; };
    function renderList(penalties) {
      dlg.querySelector(".penalty-list").innerHTML = penalties.length ? penalties.map((p) =>
        `<li data-penalty-id="${p.id}">${esc(decisionText(p))}${p.note ? ` · ${esc(p.note)}` : ""}` +
        ` <small>${L("recorded_by")} ${esc(p.recorded_by)} ${esc(fmtTime(p.recorded_at))}` +
        `${p.updated_by ? ` · ${L("updated_by")} ${esc(p.updated_by)} ${esc(fmtTime(p.updated_at))}` : ""}</small>` +
        ` <button type="button" class="btn-edit-penalty" data-penalty-id="${p.id}">${L("edit")}</button></li>`).join("")
        : `<li class="none">${L("none_recorded")}</li>`;
      dlg.querySelectorAll(".btn-edit-penalty").forEach((button) => button.addEventListener("click", () => {
        const p = penalties.find((x) => String(x.id) === button.dataset.penaltyId);
        editing = p.id;
        for (const radio of form.elements.decision) radio.checked = radio.value === p.decision;
        form.elements.decision_number.value = p.decision_number || "";
        form.elements.fine_yuan.value = p.fine_yuan == null ? "" : p.fine_yuan;
        form.elements.decided_on.value = p.decided_on || todayLocal();
        form.elements.note.value = p.note || "";
        dlg.querySelector(".btn-submit").textContent = L("save_edit");
        error.textContent = "";
        sync();
      }));
    }
    renderList(alarm.penalties || []);
    reset();
    form.addEventListener("change", sync);
    dlg.querySelector(".btn-cancel").addEventListener("click", () => dlg.close());
    dlg.addEventListener("close", () => dlg.remove());
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const decision = form.elements.decision.value;
      const fine = form.elements.fine_yuan.value.trim();
      const body = {
        decision,
        decision_number: form.elements.decision_number.value.trim(),
        fine_yuan: decision === "罚款" && fine !== "" ? Number(fine) : null,
        decided_on: form.elements.decided_on.value || null,
        note: form.elements.note.value.trim() || null,
      };
      const problem = formErrors(body, localDay(alarm.started_at));
      dlg.querySelector(".saved").textContent = "";
      if (problem) { error.textContent = problem; return; }
      const button = dlg.querySelector(".btn-submit");
      if (button.disabled) return;  // a double click sends one decision
      button.disabled = true;
      try {
        if (editing) await api(`/api/penalties/${editing}`, { method: "PUT", body: JSON.stringify(body) });
        else await api(`/api/alarms/${alarm.id}/penalty`, { method: "POST", body: JSON.stringify(body) });
        const fresh = await api(`/api/alarms/${alarm.id}`);
        renderList(fresh.penalties || []);
        reset();
        error.textContent = "";
        const saved = dlg.querySelector(".saved");
        saved.textContent = `${L("saved")} ${fmtTime(new Date().toISOString())}`;
        dlg.querySelector(".downloads").dataset.saved = "1";
        document.dispatchEvent(new CustomEvent("gpsm:penalty-saved", { detail: { alarm_id: alarm.id } }));
      } catch (err) {
        error.textContent = err.status === 409 && !editing ? L("duplicate") : err.message;
        error.title = err.message;
      } finally {
        button.disabled = false;
      }
    });
    dlg.showModal();
    return dlg;
  }

  // the evidence reports generated (report log), one line per report number with its downloads
  async function openReportList() {
    const old = document.getElementById("report-list-dialog"); if (old) old.remove();
    const dlg = document.createElement("dialog");
    dlg.id = "report-list-dialog";
    dlg.innerHTML = `<h3>${L("report_list")}</h3><div class="error" role="alert"></div>` +
      `<div class="table-box"><table><thead><tr><th>${L("report_no")}</th><th>${L("plate")}</th><th>${L("alarm")}</th>` +
      `<th>${L("generated_at")}</th><th>${L("formats")}</th><th>${L("downloads")}</th></tr></thead><tbody></tbody></table></div>` +
      `<div class="buttons"><button type="button" class="btn-cancel">${L("close")}</button></div>`;
    document.body.appendChild(dlg);
    dlg.querySelector(".btn-cancel").addEventListener("click", () => dlg.close());
    dlg.addEventListener("close", () => dlg.remove());
    dlg.showModal();
    let rows = [];
    try { rows = await api("/api/reports/log?kind=evidence&limit=500"); } catch (err) {
      dlg.querySelector(".error").textContent = err.message; return;
    }
    const sets = new Map();  // newest first; one line per report number
    for (const r of rows) {
      const set = sets.get(r.report_number);
      if (set) { set.formats.add(r.format); continue; }
      sets.set(r.report_number, Object.assign({ formats: new Set([r.format]) }, r));
    }
    dlg.querySelector("tbody").innerHTML = [...sets.values()].map((r) => {
      const params = r.alarm_id != null ? { alarm_id: r.alarm_id }
        : Object.assign({ vehicle_id: r.vehicle_id, start: r.window_start, end: r.window_end },
          r.parameters && r.parameters.speed_limit_kmh ? { speed_limit_kmh: r.parameters.speed_limit_kmh } : {});
      const what = r.alarm_id != null
        ? `#${r.alarm_id} ${esc(global.GpsmI18n ? GpsmI18n.t(r.alarm_type || "") : r.alarm_type || "")}`
        : `${L("window")} ${esc(fmtTime(r.window_start))}–${esc(fmtTime(r.window_end))}`;
      const penalty = isEnforcement() && r.alarm_id != null
        ? ` <button type="button" class="btn-penalty" data-alarm-id="${r.alarm_id}">${L("penalty")}</button>` : "";
      return `<tr data-report-number="${esc(r.report_number)}"><td>${esc(r.report_number)}</td><td>${esc(r.plate_number)}</td>` +
        `<td>${what}</td><td>${esc(fmtTime(r.generated_at))} <small>${esc(r.generated_by)}</small></td>` +
        `<td>${FORMATS.concat([["json", "JSON"]]).filter(([f]) => r.formats.has(f)).map(([, label]) => label).join(" ")}</td><td>${downloadLinks(params)}${penalty}</td></tr>`;
    }).join("") || `<tr><td colspan="6">${L("no_reports")}</td></tr>`;
  }

  function start(u) {
    user = u;
    if (!user || (user.role !== "enforcement" && user.role !== "bureau")) return;
    if (document.getElementById("report-list-btn")) return;
    const button = document.createElement("button");
    button.id = "report-list-btn";
    button.type = "button";
    button.textContent = L("report_list");
    button.addEventListener("click", openReportList);
    const top = document.getElementById("top");
    const lang = document.getElementById("lang");
    if (top) top.insertBefore(button, lang && lang.parentNode === top ? lang : null);
    document.addEventListener("gpsm:lang", () => { button.textContent = L("report_list"); });
  }

  document.addEventListener("click", (e) => {
    const button = e.target.closest && e.target.closest(".btn-penalty");
    if (button) { e.stopPropagation(); openPenaltyDialog(Number(button.dataset.alarmId)); }
  }, true);

  global.GpsmEnforce = { start, rowHtml, openPenaltyDialog, openReportList };
})(window);
