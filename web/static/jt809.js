// JT/T 809 duty panel (上级平台查岗): the superior platform's 查岗 questions with a countdown to
// their deadline and an answer box; POST /api/jt809/queries/{id}/answer sends the answer back
// as 0x1301 (via gps-monitor jt809). The bureau sees every question and the links' status
// (GET /api/jt809/status: main/slave link, login refusals, bad frames); a company's operators
// see the questions naming their company. Enforcement sees the questions read-only (no answer box:
// the API answers 403 to any role but bureau and operator). Nothing is asked before app.js has logged in. Self-contained: a floating panel added to the page,
// labels registered in GpsmI18n (zh/en). Polls every 5 s; the countdown ticks every second.
(function (global) {
  "use strict";
  const I18N = global.GpsmI18n;
  I18N.register({
    "zh-CN": {
      jt809_title: "上级平台查岗", jt809_none: "暂无查岗", jt809_answer: "应答",
      jt809_placeholder: "输入应答内容", jt809_left: "剩余", jt809_overdue: "已超时",
      jt809_answered: "已应答", jt809_answered_late: "超时应答", jt809_object_1: "本平台",
      jt809_object_2: "企业", jt809_object_3: "全部企业", jt809_main: "主链路",
      jt809_slave: "从链路", jt809_unanswered: "未应答", jt809_today: "今日查岗",
      jt809_sent: "已发送至上级平台",
    },
    en: {
      jt809_title: "Superior platform checks", jt809_none: "No checks", jt809_answer: "Answer",
      jt809_placeholder: "Type the answer", jt809_left: "left", jt809_overdue: "overdue",
      jt809_answered: "answered", jt809_answered_late: "answered late", jt809_object_1: "this platform",
      jt809_object_2: "company", jt809_object_3: "all companies", jt809_main: "main link",
      jt809_slave: "slave link", jt809_unanswered: "unanswered", jt809_today: "checks today",
      jt809_sent: "sent to the superior platform",
    },
  });
  const t = I18N.t;
  let queries = [];
  let loadedAt = 0;
  let panel = null;

  async function api(path, options) {
    const r = await fetch(path, Object.assign({ credentials: "same-origin",
      headers: { "Content-Type": "application/json" } }, options || {}));
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      const error = new Error(typeof body.detail === "string" ? body.detail : r.statusText);
      error.status = r.status;
      throw error;
    }
    return r.json();
  }

  function build() {
    panel = document.createElement("section");
    panel.id = "jt809-panel";
    panel.hidden = true;
    panel.style.cssText = "position:fixed;left:12px;bottom:12px;z-index:4500;width:330px;" +
      "max-height:45vh;overflow:auto;background:#fff;border:2px solid #c62828;border-radius:6px;" +
      "padding:8px;font-size:13px;box-shadow:0 2px 8px rgba(0,0,0,.3)";
    panel.innerHTML = '<b class="jt809-title"></b> <span class="jt809-count"></span>' +
      '<div class="jt809-links" style="color:#555;margin:2px 0"></div><ul class="jt809-list" ' +
      'style="list-style:none;margin:0;padding:0"></ul>';
    document.body.appendChild(panel);
  }

  function secondsLeft(q) {
    return Math.max(0, q.seconds_left - (Date.now() - loadedAt) / 1000);
  }
  function clock(seconds) {
    const s = Math.floor(seconds);
    return String(Math.floor(s / 60)).padStart(2, "0") + ":" + String(s % 60).padStart(2, "0");
  }

  function render() {
    panel.querySelector(".jt809-title").textContent = t("jt809_title");
    const open = queries.filter((q) => !q.answered_at);
    panel.querySelector(".jt809-count").textContent = open.length ? "(" + open.length + ")" : "";
    const list = panel.querySelector(".jt809-list");
    const typing = document.activeElement && list.contains(document.activeElement);
    if (typing) { tick(); return; }
    list.textContent = "";
    if (!queries.length) {
      const li = document.createElement("li");
      li.textContent = t("jt809_none");
      list.appendChild(li);
    }
    for (const q of queries.slice(0, 20)) {
      const li = document.createElement("li");
      li.className = "jt809-query";
      li.dataset.queryId = q.id;
      li.dataset.infoId = q.info_id;
      li.style.cssText = "border-top:1px solid #eee;padding:4px 0";
      const who = t("jt809_object_" + q.object_type) + (q.company_name ? " " + q.company_name : "");
      li.innerHTML = '<div><b class="jt809-question"></b></div><div style="color:#666">' +
        '<span class="jt809-who"></span> · <span class="jt809-countdown"></span></div>';
      li.querySelector(".jt809-question").textContent = q.question;
      li.querySelector(".jt809-who").textContent = who + " #" + q.info_id;
      if (!q.answered_at && canAnswer()) {
        const form = document.createElement("form");
        form.innerHTML = '<input name="answer" maxlength="500" style="width:70%"> ' +
          '<button type="submit"></button><div class="jt809-error" style="color:#c62828"></div>';
        form.answer.placeholder = t("jt809_placeholder");
        form.querySelector("button").textContent = t("jt809_answer");
        form.addEventListener("submit", (event) => { event.preventDefault(); answer(q, form); });
        li.appendChild(form);
      } else if (q.answered_at) {
        const done = document.createElement("div");
        done.className = "jt809-done";
        done.textContent = "✓ " + q.answer;
        li.appendChild(done);
      }
      list.appendChild(li);
    }
    tick();
  }

  function tick() {
    for (const li of panel.querySelectorAll(".jt809-query")) {
      const q = queries.find((item) => String(item.id) === li.dataset.queryId);
      if (!q) continue;
      const span = li.querySelector(".jt809-countdown");
      if (q.answered_at) {
        span.textContent = t(q.state === "answered_late" ? "jt809_answered_late" : "jt809_answered");
        span.style.color = "#2e7d32";
        continue;
      }
      const left = secondsLeft(q);
      span.textContent = left > 0 ? t("jt809_left") + " " + clock(left) : t("jt809_overdue");
      span.style.color = left > 60 ? "#e65100" : "#c62828";
    }
  }

  async function answer(q, form) {
    const text = form.answer.value.trim();
    if (!text) return;
    form.querySelector("button").disabled = true;
    try {
      await api("/api/jt809/queries/" + q.id + "/answer", { method: "POST",
        body: JSON.stringify({ answer: text }) });
      document.activeElement && document.activeElement.blur();
      await load();
    } catch (error) {
      form.querySelector(".jt809-error").textContent = error.message;
      form.querySelector("button").disabled = false;
    }
  }

  async function loadStatus() {
    try {
      const status = await api("/api/jt809/status");
      const links = status.links.map((l) => t("jt809_" + l.link) + ": " + l.status);
      const today = status.queries_today;
      links.push(t("jt809_today") + " " + today.received + ", " + t("jt809_unanswered") + " " +
        today.unanswered);
      panel.querySelector(".jt809-links").textContent = status.configured ? links.join(" · ") : "";
      return status.configured;
    } catch (error) {
      panel.querySelector(".jt809-links").textContent = "";
      return false;
    }
  }

  function user() {
    return global.gpsm && global.gpsm.user;  // set by app.js once logged in
  }

  function canAnswer() {  // as POST /api/jt809/queries/{id}/answer (HandlerUser) allows
    const role = user() && user().role;
    return role === "bureau" || role === "operator";
  }

  async function load() {
    if (!user()) { panel.hidden = true; return; }  // not logged in yet: nothing to ask
    try {
      queries = await api("/api/jt809/queries");
      loadedAt = Date.now();
    } catch (error) {
      if (error.status === 401) { panel.hidden = true; return; }
      throw error;
    }
    const configured = user().role === "bureau" ? await loadStatus() : false;
    panel.hidden = !(queries.length || configured);
    render();
  }

  function start() {
    build();
    const poll = () => load().catch(() => {});
    poll();
    setInterval(poll, 5000);
    setInterval(() => { if (!panel.hidden) tick(); }, 1000);
    document.addEventListener("gpsm:lang", () => render());
  }
  global.GpsmJt809 = { reload: () => load(), get queries() { return queries; } };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})(window);
