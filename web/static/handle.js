// Alarm handling dialog (处理报警): 处理方式 (提醒驾驶员 sends the driver a text, a template per
// alarm type, editable), 处理意见, submit -> POST /api/alarms/{id}/handle. The reminder's state
// and the terminal's answer are followed until final. Public API, used by the alarm list and by
// the new-alarm pop-up:
//   openHandleDialog(alarm)      alarm: a row of GET /api/alarms (id, alarm_type, plate_number...);
//                                resolves to true once handled, false when cancelled
//   GpsmHandle.summaryHtml(a)    the handling line shown on an alarm row (method, 已提醒 + time)
// Updated alarms are announced as a "gpsm:alarm-updated" event (detail: the alarm fields).
// The dialog also shows the alarm's photos (GET /api/media?alarm_id=) and offers 拍照核实.
(function (global) {
  "use strict";
  const LABELS = {
    "zh-CN": {
      title: "处理报警", method: "处理方式", remind_driver: "提醒驾驶员", phone_call: "电话联系",
      notify_company: "通知企业", false_alarm: "误报/设备故障", other: "其他", note: "处理意见",
      remind_text: "提醒内容（发送到车载终端）", tts: "语音播报", display: "终端显示", emergency: "紧急",
      submit: "提交", cancel: "取消", bytes: "字节", reminded: "已提醒", confirmed: "终端确认",
      awaiting: "等待终端确认", queued: "终端离线，上线后下发", expired: "终端未确认（已过期）",
      failed: "终端拒绝", need_note: "请选择处理方式或填写处理意见",
      supervision: "督办", deadline: "截止", overdue: "已逾期", answered: "已答复",
      answered_late: "逾期答复", answer: "答复督办", issue: "督办", sv_note: "督办要求",
      sv_answer: "答复内容", company_wide: "企业督办",
      photos: "照片证据", take_photo: "拍照核实", photo_asked: "已下发拍照指令，等待终端上传",
      no_photos: "暂无照片", incomplete: "不完整",
    },
    en: {
      title: "Handle alarm", method: "Method", remind_driver: "Remind driver", phone_call: "Phone call",
      notify_company: "Notify company", false_alarm: "False alarm / device fault", other: "Other",
      note: "Note", remind_text: "Reminder text (sent to the terminal)", tts: "Read aloud (TTS)",
      display: "Show on display", emergency: "Emergency", submit: "Submit", cancel: "Cancel",
      bytes: "bytes", reminded: "Reminded", confirmed: "terminal confirmed", awaiting: "awaiting the terminal",
      queued: "terminal offline, sent when it connects", expired: "not confirmed (expired)",
      failed: "terminal refused", need_note: "Choose a method or write a note",
      supervision: "Supervision", deadline: "due", overdue: "overdue", answered: "answered",
      answered_late: "answered late", answer: "Answer", issue: "Supervise", sv_note: "Request",
      sv_answer: "Answer", company_wide: "Company supervision",
      photos: "Photo evidence", take_photo: "Take a photo", photo_asked: "Photo requested, waiting for the terminal",
      no_photos: "No photos yet", incomplete: "incomplete",
    },
  };
  const METHODS = ["remind_driver", "phone_call", "notify_company", "false_alarm", "other"];
  const L = (k) => (LABELS[global.GpsmI18n && GpsmI18n.lang === "en" ? "en" : "zh-CN"][k] || k);
  const esc = (s) => String(s == null ? "" : s).replace(/[&<>"']/g, (c) => (
    { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  let templates = null;
  const followed = new Set();

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
    return new Intl.DateTimeFormat("zh-CN", { timeZone: "Asia/Shanghai", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false }).format(new Date(iso));
  }
  function gbkBytes(text) {  // GBK: ASCII 1 byte, everything else 2 (the server checks exactly)
    let n = 0; for (const ch of text) n += ch.codePointAt(0) < 0x80 ? 1 : 2; return n;
  }
  function templateFor(alarm) {
    if (!templates) return "";
    const name = alarm.details && alarm.details.name;
    return (name && templates.templates[`${alarm.alarm_type}.${name}`]) ||
      templates.templates[alarm.alarm_type] || templates.default;
  }
  function announce(alarm) {
    document.dispatchEvent(new CustomEvent("gpsm:alarm-updated", { detail: alarm }));
  }

  // follow a reminder until the terminal answered or it expired (the page shows each change)
  function follow(alarm) {
    if (!alarm.remind_command_id || followed.has(alarm.remind_command_id)) return;
    if (alarm.remind_state !== "queued" && alarm.remind_state !== "sent") return;
    const id = alarm.remind_command_id;
    followed.add(id);
    const timer = setInterval(async () => {
      try {
        const c = await api(`/api/commands/${id}`);
        announce({ id: alarm.id, remind_state: c.state, remind_sent_at: c.sent_at,
          remind_answered_at: c.answered_at, remind_result: c.result });
        if (c.state !== "queued" && c.state !== "sent") { clearInterval(timer); followed.delete(id); }
      } catch (err) { clearInterval(timer); followed.delete(id); }
    }, 1000);
  }

  function summaryHtml(a) {
    const parts = [];
    if (a.handling_method) parts.push(esc(L(a.handling_method)));
    if (a.remind_command_id) {
      follow(a);
      let s;
      if (a.remind_state === "acknowledged") s = `<b class="reminded">${L("reminded")}</b> · ${L("confirmed")} ${fmtTime(a.remind_answered_at)}`;
      else if (a.remind_state === "failed") s = `${L("failed")} (${esc(a.remind_result)}) ${fmtTime(a.remind_answered_at)}`;
      else if (a.remind_state === "expired") s = L("expired");
      else if (a.remind_state === "queued") s = L("queued");
      else s = L("awaiting");
      parts.push(`<span class="remind-state" data-state="${esc(a.remind_state)}">${s}</span>`);
      if (a.remind_text) parts.push(`「${esc(a.remind_text)}」`);
    }
    return parts.length ? `<div class="meta handling">${parts.join(" · ")}</div>` : "";
  }

  async function openHandleDialog(alarm) {
    if (!alarm) return;
    if (!templates) templates = await api("/api/commands/templates").catch(() => ({ templates: {}, default: "", text_max_bytes: 1000 }));
    const old = document.getElementById("handle-dialog"); if (old) old.remove();
    const dlg = document.createElement("dialog");
    dlg.id = "handle-dialog";
    const typeLabel = global.GpsmAlerts ? GpsmAlerts.typeName(alarm)  // 紧急报警(SOS)...
      : (global.GpsmI18n ? GpsmI18n.t(alarm.alarm_type) : alarm.alarm_type);
    dlg.innerHTML =
      `<form method="dialog" class="handle-form">` +
      `<h3>${L("title")}: ${esc(alarm.plate_number || "#" + alarm.vehicle_id)} ${esc(typeLabel)}</h3>` +
      `<fieldset><legend>${L("method")}</legend>` +
      METHODS.map((m, i) => `<label><input type="radio" name="method" value="${m}"${i === 0 ? " checked" : ""}> ${L(m)}</label>`).join(" ") +
      `</fieldset>` +
      `<div class="remind-part"><label>${L("remind_text")} <small class="bytes"></small><br>` +
      `<textarea name="remind_text" rows="3"></textarea></label><br>` +
      `<label><input type="checkbox" name="tts" checked> ${L("tts")}</label> ` +
      `<label><input type="checkbox" name="display" checked> ${L("display")}</label> ` +
      `<label><input type="checkbox" name="emergency"> ${L("emergency")}</label></div>` +
      `<label>${L("note")}<br><textarea name="note" rows="2"></textarea></label>` +
      `<fieldset class="media-part"><legend>${L("photos")}</legend><div class="media-list"></div>` +
      `<button type="button" class="btn-photo">${L("take_photo")}</button> <small class="photo-state"></small></fieldset>` +
      `<div class="track-part"></div>` +  // 临时跟踪 (params.js)
      `<div class="error"></div>` +
      `<div class="buttons"><button type="submit" value="submit" class="btn-submit">${L("submit")}</button> ` +
      `<button type="button" class="btn-cancel">${L("cancel")}</button></div></form>`;
    document.body.appendChild(dlg);
    const form = dlg.querySelector("form");
    const text = form.elements.remind_text;
    text.value = templateFor(alarm);
    const bytes = dlg.querySelector(".bytes");
    const count = () => { bytes.textContent = `${gbkBytes(text.value)} / ${templates.text_max_bytes} ${L("bytes")}`; };
    text.addEventListener("input", count); count();
    const sync = () => { dlg.querySelector(".remind-part").hidden = form.elements.method.value !== "remind_driver"; };
    form.addEventListener("change", sync); sync();
    let settle;
    const done = new Promise((resolve) => { settle = resolve; });
    dlg.addEventListener("close", () => { dlg.remove(); settle(false); });  // Esc or cancel
    dlg.querySelector(".btn-cancel").addEventListener("click", () => dlg.close());
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const method = form.elements.method.value;
      const body = { method, note: form.elements.note.value.trim() };
      if (method === "remind_driver") {
        body.remind = { text: text.value.trim(), tts: form.elements.tts.checked,
          display: form.elements.display.checked, emergency: form.elements.emergency.checked };
      }
      try {
        const a = await api(`/api/alarms/${alarm.id}/handle`, { method: "POST", body: JSON.stringify(body) });
        a.isNew = false;
        announce(a);
        follow(a);
        settle(true);
        dlg.close();
      } catch (err) {
        dlg.querySelector(".error").textContent = err.message;
      }
    });
    showMedia(dlg, alarm);
    if (global.GpsmParams) GpsmParams.mountTrack(dlg.querySelector(".track-part"), alarm);
    dlg.showModal();
    return done;
  }

  // 照片证据: the alarm's photos as thumbnails (each links to the full image; its SHA-256 is the
  // tooltip), and 拍照核实, which asks the terminal for one and watches for it for 2 minutes
  function mediaHtml(items) {
    if (!items.length) return `<small class="no-photos">${L("no_photos")}</small>`;
    return items.map((i) => {
      const label = `${fmtTime(i.fix_time || i.received_at)}${i.complete ? "" : " · " + L("incomplete")}`;
      const img = i.sha256 && i.media_type === "image"
        ? `<a href="/api/media/${i.id}/content" target="_blank" rel="noopener"><img class="media-thumb" data-media-id="${i.id}" src="/api/media/${i.id}/content" alt="#${i.id}" title="SHA-256 ${esc(i.sha256)}" width="160"></a>`
        : `<span class="media-file" title="SHA-256 ${esc(i.sha256 || "-")}">#${i.id} ${esc(i.media_type)}</span>`;
      return `<figure class="media-item">${img}<figcaption>${esc(label)}</figcaption></figure>`;
    }).join("");
  }
  async function showMedia(dlg, alarm) {
    const box = dlg.querySelector(".media-list");
    const load = async () => {
      const items = await api(`/api/media?alarm_id=${alarm.id}`).catch(() => []);
      if (box.isConnected) box.innerHTML = mediaHtml(items);
      return items.length;
    };
    await load();
    dlg.querySelector(".btn-photo").addEventListener("click", async () => {
      const state = dlg.querySelector(".photo-state");
      try {
        await api("/api/media/take-photo", { method: "POST", body: JSON.stringify({ alarm_id: alarm.id }) });
        state.textContent = L("photo_asked");
        const before = box.querySelectorAll(".media-item").length;
        const until = Date.now() + 120e3;
        const timer = setInterval(async () => {
          const n = await load();
          if (n > before || Date.now() > until || !box.isConnected) { clearInterval(timer); state.textContent = ""; }
        }, 2000);
      } catch (err) { state.textContent = err.message; }
    });
  }

  // ------------------------------------------------------------------ 督办 (supervision)
  let role = null;
  function svState(deadline, answeredAt) {
    if (answeredAt) return new Date(answeredAt) <= new Date(deadline) ? "answered" : "answered_late";
    return new Date(deadline) < new Date() ? "overdue" : "open";
  }
  // the 督办 flag of an alarm row, with the buttons the user's role may use
  function supervisionHtml(a) {
    let html = "";
    if (a.supervision_id) {
      const st = svState(a.supervision_deadline, a.supervision_answered_at);
      html += `<div class="meta supervision sv-${st}" data-supervision-id="${a.supervision_id}">` +
        `<b>${L("supervision")}</b> ${L("deadline")} ${fmtTime(a.supervision_deadline)}` +
        (st === "open" ? "" : ` · ${L(st)}`) +
        (st === "open" || st === "overdue"
          ? ` <button class="btn-sv-answer" data-supervision-id="${a.supervision_id}">${L("answer")}</button>` : "") +
        `</div>`;
    }
    if (role === "bureau" && !(a.supervision_id && !a.supervision_answered_at)) {
      html += `<button class="btn-sv-issue" data-alarm-id="${a.id}">${L("issue")}</button>`;
    }
    return html;
  }
  function smallDialog(title, fields, onSubmit) {
    const old = document.getElementById("sv-dialog"); if (old) old.remove();
    const dlg = document.createElement("dialog");
    dlg.id = "sv-dialog";
    dlg.innerHTML = `<form method="dialog"><h3>${esc(title)}</h3>${fields}<div class="error"></div>` +
      `<div class="buttons"><button type="submit" class="btn-submit">${L("submit")}</button> ` +
      `<button type="button" class="btn-cancel">${L("cancel")}</button></div></form>`;
    document.body.appendChild(dlg);
    const form = dlg.querySelector("form");
    dlg.querySelector(".btn-cancel").addEventListener("click", () => { dlg.close(); dlg.remove(); });
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      try { await onSubmit(form); dlg.close(); dlg.remove(); } catch (err) { dlg.querySelector(".error").textContent = err.message; }
    });
    dlg.showModal();
    return dlg;
  }
  async function refreshAlarm(alarmId) {
    if (alarmId == null) return;
    const a = await api(`/api/alarms/${alarmId}`);
    delete a.positions; delete a.audit; delete a.penalties;
    announce(a);
  }
  function openIssueDialog(alarmId) {
    const due = new Date(Date.now() + 24 * 3600e3 + 8 * 3600e3).toISOString().slice(0, 16);
    return smallDialog(`${L("issue")} #${alarmId}`,
      `<label>${L("deadline")} <input type="datetime-local" name="deadline" value="${due}"></label><br>` +
      `<label>${L("sv_note")}<br><textarea name="note" rows="3"></textarea></label>`,
      async (form) => {
        const deadline = new Date(form.elements.deadline.value + ":00+08:00").toISOString();
        await api("/api/supervisions", { method: "POST", body: JSON.stringify({ alarm_id: alarmId, deadline, note: form.elements.note.value.trim() }) });
        await refreshAlarm(alarmId);
        await loadSupervisions();
      });
  }
  function openAnswerDialog(supervisionId) {
    return smallDialog(`${L("answer")} #${supervisionId}`,
      `<label>${L("sv_answer")}<br><textarea name="answer" rows="3"></textarea></label>`,
      async (form) => {
        const sv = await api(`/api/supervisions/${supervisionId}/answer`, { method: "POST", body: JSON.stringify({ answer: form.elements.answer.value.trim() }) });
        await refreshAlarm(sv.alarm_id);
        await loadSupervisions();
      });
  }
  // the 督办 list above the alarms: unanswered orders first, overdue ones marked
  async function loadSupervisions(user) {
    if (user) role = user.role;
    const box = document.getElementById("supervision-list");
    if (!box) return;
    let rows = [];
    try { rows = await api("/api/supervisions?limit=50"); } catch (err) { return; }
    const pending = rows.filter((r) => r.state === "open" || r.state === "overdue");
    box.innerHTML = pending.map((r) =>
      `<li class="sv-item sv-${esc(r.state)}" data-supervision-id="${r.id}"><b>${L("supervision")}</b> ` +
      `${esc(r.plate_number ? r.plate_number + " " + (global.GpsmI18n ? GpsmI18n.t(r.alarm_type) : r.alarm_type) : L("company_wide") + " " + r.company_name)}` +
      `<div class="meta">${L("deadline")} ${fmtTime(r.deadline)}${r.state === "overdue" ? " · " + L("overdue") : ""} · ${esc(r.note)}</div>` +
      (role === "operator" || role === "bureau" ? `<button class="btn-sv-answer" data-supervision-id="${r.id}">${L("answer")}</button>` : "") +
      `</li>`).join("");
  }
  document.addEventListener("click", (e) => {
    const issue = e.target.closest(".btn-sv-issue");
    const answer = e.target.closest(".btn-sv-answer");
    if (issue) { e.stopPropagation(); openIssueDialog(Number(issue.dataset.alarmId)); }
    if (answer) { e.stopPropagation(); openAnswerDialog(Number(answer.dataset.supervisionId)); }
  }, true);

  global.openHandleDialog = openHandleDialog;
  global.GpsmHandle = { summaryHtml, supervisionHtml, loadSupervisions, follow, open: openHandleDialog };
})(window);
