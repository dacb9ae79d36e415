// Notification settings page (/notify): the user's push channels and subscriptions (the bureau's:
// everyone's) and the delivery log, over /api/notify/*. Secrets are write-only: the API answers
// has_secret, never the secret.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const KIND_NAMES = { wecom: "企业微信", dingtalk: "钉钉", feishu: "飞书", webhook: "Webhook",
    email: "E-mail", sms: "短信" };
  let channels = [];

  async function api(method, path, body) {
    const r = await fetch(path, {
      method, credentials: "same-origin",
      headers: body ? { "Content-Type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
    if (r.status === 401) { $("login").hidden = false; throw new Error("401"); }
    if (r.status === 204) return null;
    const data = await r.json().catch(() => ({}));
    if (!r.ok) {
      const detail = Array.isArray(data.detail)
        ? data.detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ")
        : data.detail;
      throw new Error(detail || r.statusText);
    }
    return data;
  }
  function cell(row, text) {
    const td = row.insertCell();
    td.textContent = text === null || text === undefined ? "–" : String(text);
    return td;
  }
  function button(row, label, action) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.addEventListener("click", () => run(action));
    row.insertCell().append(b);
  }
  function targetOf(channel) {
    const c = channel.config || {};
    return c.url || (c.to || c.phones || []).join(", ");
  }
  async function run(action) {
    $("status").textContent = "";
    try {
      await action();
      await load();
    } catch (error) {
      if (error.message !== "401") $("status").textContent = "错误: " + error.message;
    }
  }

  async function load() {
    channels = await api("GET", "/api/notify/channels");
    const names = Object.fromEntries(channels.map((c) => [c.id, c.name]));
    const chBody = $("channels").tBodies[0];
    chBody.replaceChildren();
    for (const c of channels) {
      const row = chBody.insertRow();
      row.dataset.id = c.id;
      cell(row, c.name);
      cell(row, KIND_NAMES[c.kind] || c.kind);
      cell(row, targetOf(c));
      cell(row, c.has_secret ? "已设置" : "无");
      cell(row, c.enabled ? "是" : "否");
      button(row, "删除", () => api("DELETE", `/api/notify/channels/${c.id}`));
    }
    const select = $("sub-channel");
    select.replaceChildren(...channels.map((c) => new Option(c.name, c.id)));
    const subs = await api("GET", "/api/notify/subscriptions");
    const subBody = $("subscriptions").tBodies[0];
    subBody.replaceChildren();
    for (const s of subs) {
      const row = subBody.insertRow();
      row.dataset.id = s.id;
      cell(row, names[s.channel_id] || s.channel_id);
      cell(row, s.alarm_types ? s.alarm_types.join(", ") : "全部");
      cell(row, s.min_level);
      cell(row, s.events.join(", "));
      cell(row, s.quiet_start_local ? `${s.quiet_start_local}-${s.quiet_end_local}` : "–");
      button(row, "删除", () => api("DELETE", `/api/notify/subscriptions/${s.id}`));
    }
    const log = await api("GET", "/api/notify/deliveries?limit=50");
    const logBody = $("deliveries").tBodies[0];
    logBody.replaceChildren();
    for (const d of log) {
      const row = logBody.insertRow();
      cell(row, new Date(d.received_at).toLocaleString("zh-CN", { timeZone: "Asia/Shanghai" }));
      cell(row, d.alarm_type);
      cell(row, d.event);
      cell(row, names[d.channel_id] || d.target);
      cell(row, d.status);
      cell(row, d.attempts);
      cell(row, [d.last_reply_code, d.last_reply].filter((x) => x !== null).join(" "));
    }
  }

  $("channel-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const kind = $("ch-kind").value;
    const items = $("ch-target").value.split(",").map((s) => s.trim()).filter(Boolean);
    const config = kind === "email" ? { to: items } : kind === "sms" ? { phones: items }
      : { url: $("ch-target").value.trim() };
    const secret = $("ch-secret").value || null;
    run(async () => {
      await api("POST", "/api/notify/channels", { name: $("ch-name").value, kind, config, secret });
      $("channel-form").reset();
    });
  });
  $("sub-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const types = $("sub-types").value.split(",").map((s) => s.trim()).filter(Boolean);
    const events = ["opened", "closed"].filter((ev) => $(`sub-${ev}`).checked);
    const body = {
      channel_id: Number($("sub-channel").value),
      alarm_types: types.length ? types : null,
      min_level: Number($("sub-level").value),
      events,
      quiet_start_local: $("sub-quiet-start").value.trim() || null,
      quiet_end_local: $("sub-quiet-end").value.trim() || null,
    };
    run(() => api("POST", "/api/notify/subscriptions", body));
  });
  $("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const r = await fetch("/api/auth/login", {
      method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username: $("login-username").value, password: $("login-password").value }),
    });
    if (!r.ok) {  // this page has no language switch: both languages, a lock said as one
      $("login-error").textContent = r.status === 429
        ? `登录尝试过多，请 ${Math.max(1, Math.ceil((Number(r.headers.get("Retry-After")) || 900) / 60))} 分钟后再试 · too many login attempts, try again later`
        : "登录失败 login failed";
      return;
    }
    $("login").hidden = true;
    run(() => Promise.resolve());
  });
  run(() => Promise.resolve());
})();
