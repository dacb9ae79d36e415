// Alarm alerting in the map page (issue 9): a sound per level (WebAudio oscillators, no audio
// files), a mute switch kept in localStorage, pop-up cards (确认 / 处理 / 查看轨迹), the page-title
// badge "(3) 车辆动态监控", desktop notifications where the user allowed them, and a level-1 sound
// that repeats until someone acknowledges. What counts as unhandled comes from the server
// (GET /api/alarms/summary): app.js passes the counts in, so a reload or a second screen shows
// the same badge. Also the shared alarm formatting (level names, key figure) used by the list.
(function (global) {
  "use strict";
  const t = (k) => GpsmI18n.t(k);
  const esc = (s) => String(s == null ? "" : s).replace(/[&<>"']/g, (c) => (
    { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const MAX_CARDS = 4;
  const state = {
    audio: null, muted: localStorage.getItem("gpsm_mute") === "1", minLevel: 2, repeatS: 30,
    badge: 0, ringing: false, repeatTimer: null, cards: new Map(), handlers: {}, sounds: [],
  };

  // ---------------------------------------------------------------- formatting
  function fmtTime(iso) {
    if (!iso) return "-";
    return new Intl.DateTimeFormat(GpsmI18n.lang === "en" ? "en-GB" : "zh-CN", {
      timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
    }).format(new Date(iso));
  }
  const num = (x, digits) => (x == null || !Number.isFinite(Number(x)) ? null : Number(Number(x).toFixed(digits || 0)));
  // 1小时05分, 12分, 45秒: under a minute in seconds, so a young episode does not read "0分"
  function duration(s) {
    if (s == null || !Number.isFinite(Number(s))) return "-";
    const sec = Math.round(Number(s));
    if (sec < 60) return `${sec}${t("seconds_short")}`;
    const min = Math.round(sec / 60);
    const h = Math.floor(min / 60);
    return h ? `${h}${t("hours_short")}${String(min % 60).padStart(2, "0")}${t("minutes_short")}` : `${min}${t("minutes_short")}`;
  }
  function distance(m) {
    if (m == null) return "-";
    return Number(m) >= 1000 ? `${num(Number(m) / 1000, 1)} km` : `${num(m)} m`;
  }
  // the one figure that says how bad it is: speed and limit, driving time, distance off route...
  // an alarm raised by a report without a usable fix (an SOS from a tunnel) is placed at the
  // vehicle's last good fix: the line says so
  function keyFigure(a) {
    const figure = figureOf(a);
    if (!(a.details || {}).without_fix) return figure;
    return [figure, t("without_fix")].filter(Boolean).join(" · ");
  }
  function figureOf(a) {
    const d = a.details || {};
    switch (a.alarm_type) {
      case "overspeed":
        return `${t("max_speed")} ${num(d.max_speed_kmh, 1) ?? "-"} / ${t("limit")} ${num(d.limit_kmh, 1) ?? "-"} km/h` +
          (d.duration_s ? ` · ${duration(d.duration_s)}` : "");
      case "fatigue_driving": case "fatigue_warning":
        return `${t("continuous_driving")} ${duration(d.continuous_driving_s)} / ${t("limit")} ${duration(d.limit_s)}`;
      case "daily_driving_limit":
        return `${t("daily_driving")} ${duration(d.driving_s)} / ${t("limit")} ${duration(d.limit_s)}`;
      case "route_deviation":
        return `${t("off_route")} ${distance(d.max_offset_m)} (${t("corridor")} ${distance(d.corridor_m)})`;
      case "night_ban":
        return `${d.window || ""} ${t("speed")} ${num(d.max_speed_kmh != null ? d.max_speed_kmh : d.speed_kmh, 1) ?? "-"} km/h`;
      case "offline":
        return `${t("offline_for")} ${duration(d.offline_s != null ? d.offline_s : d.threshold_s)}`;
      case "offline_displacement":
        return `${t("displacement")} ${distance(d.displacement_m)} · ${t("offline_for")} ${duration(d.gap_s)}`;
      case "forbidden_area_entry": case "keep_in_area_exit": case "geofence_enter": case "geofence_exit":
        return d.geofence_name || d.geofence_id || "";
      case "device_alarm":  // the type name already says which bit (typeName)
        return d.bit != null ? `${t("alarm_bit")} ${d.bit}` : "";
      case "active_safety":  // T/JSATL: the standard's words (前向碰撞报警...) or, in English,
        // our name spelled out (adas_forward_collision -> ADAS forward collision), its level
        return [activeSafetyType(d), d.jsatl_level ? t("jsatl_level_" + d.jsatl_level) : ""]
          .filter(Boolean).join(" · ");
      default:
        return "";
    }
  }
  function activeSafetyType(d) {
    if (GpsmI18n.lang !== "en" && d.type_text) return d.type_text;
    const [source, ...rest] = String(d.name || "").split("_");
    return [source.toUpperCase(), ...rest].join(" ");
  }
  function levelTag(level) {
    const l = Number(level) || 3;
    return `<span class="lvl lvl-${l}" data-level="${l}">${esc(t("level_" + l))}</span>`;
  }
  function typeName(a) {  // a device alarm by its JT/T 808 bit name where one is known
    const name = a.alarm_type === "device_alarm" && a.details ? "device_" + a.details.name : null;
    return name && t(name) !== name ? t(name) : t(a.alarm_type);
  }

  // ---------------------------------------------------------------- sound
  // Browsers start an AudioContext only after a user gesture: the login click (or, after a
  // reload with a session, the first click anywhere) calls unlock().
  function unlock() {
    const Ctx = global.AudioContext || global.webkitAudioContext;
    if (Ctx && !state.audio) state.audio = new Ctx();
    if (state.audio && state.audio.state === "suspended") state.audio.resume().catch(() => null);
    if ("Notification" in global && Notification.permission === "default") {
      Notification.requestPermission().catch(() => null);
    }
  }
  document.addEventListener("click", unlock, { capture: true });
  // [frequency Hz, start s, length s] per level: 1 a fast two-tone siren, 2 two beeps,
  // 3 one beep, 4 one short soft tone
  const PATTERNS = {
    1: { wave: "square", gain: 0.25, notes: [[988, 0, 0.16], [740, 0.18, 0.16], [988, 0.36, 0.16], [740, 0.54, 0.16], [988, 0.72, 0.16], [740, 0.9, 0.16]] },
    2: { wave: "square", gain: 0.2, notes: [[880, 0, 0.15], [880, 0.25, 0.15]] },
    3: { wave: "sine", gain: 0.3, notes: [[660, 0, 0.25]] },
    4: { wave: "sine", gain: 0.15, notes: [[520, 0, 0.12]] },
  };
  function play(level) {
    if (state.muted) return false;
    unlock();
    const ctx = state.audio;
    if (!ctx) return false;
    const p = PATTERNS[level] || PATTERNS[3];
    const t0 = ctx.currentTime + 0.02;
    p.notes.forEach(([freq, at, len]) => {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.type = p.wave;
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(p.gain, t0 + at);
      gain.gain.exponentialRampToValueAtTime(0.001, t0 + at + len);
      osc.connect(gain).connect(ctx.destination);
      osc.start(t0 + at);
      osc.stop(t0 + at + len + 0.02);
    });
    state.sounds.push({ level, at: Date.now() });
    return true;
  }
  function renderMute() {
    const b = document.getElementById("mute");
    if (!b) return;
    b.textContent = t(state.muted ? "sound_off" : "sound_on");
    b.classList.toggle("muted", state.muted);
    b.setAttribute("aria-pressed", String(state.muted));
  }
  function setMuted(muted) {
    state.muted = Boolean(muted);
    localStorage.setItem("gpsm_mute", state.muted ? "1" : "0");
    renderMute();
  }

  // ---------------------------------------------------------------- badge and level-1 repeat
  function renderTitle() {
    document.title = (state.badge ? `(${state.badge}) ` : "") + t("title");
  }
  // counts: GET /api/alarms/summary. Badge = open alarms at or above the alert level; the
  // level-1 sound repeats while any level-1 alarm is open (not yet acknowledged by anyone).
  function setCounts(summary) {
    const open = summary.open_by_level || {};
    let n = 0;
    for (let l = 1; l <= state.minLevel; l += 1) n += Number(open[String(l)] || 0);
    state.badge = n;
    renderTitle();
    setRinging(Number(open["1"] || 0) > 0);
  }
  function setRinging(on) {
    state.ringing = on;
    if (on && !state.repeatTimer) {
      state.repeatTimer = setInterval(() => { if (state.ringing) play(1); }, state.repeatS * 1000);
    } else if (!on && state.repeatTimer) {
      clearInterval(state.repeatTimer);
      state.repeatTimer = null;
    }
  }

  // ---------------------------------------------------------------- pop-up cards
  function cardHtml(a) {
    return `<div class="pop-head">${levelTag(a.level)} <b>${esc(typeName(a))}</b>` +
      `<button class="pop-close" title="×">×</button></div>` +
      `<table><tr><td>${t("plate")}</td><td class="pop-plate"><b>${esc(a.plate_number || "#" + a.vehicle_id)}</b></td></tr>` +
      `<tr><td>${t("company")}</td><td>${esc(a.company_name || "")}</td></tr>` +
      `<tr><td>${t("key_figure")}</td><td class="pop-figure">${esc(keyFigure(a))}</td></tr>` +
      `<tr><td>${t("time")}</td><td>${fmtTime(a.started_at)}</td></tr></table>` +
      `<div class="pop-actions">` +
      (state.handlers.acknowledge ? `<button class="pop-ack">${t("acknowledge")}</button>` : "") +
      (state.handlers.handle ? `<button class="pop-handle">${t("handle")}</button>` : "") +
      `<button class="pop-track">${t("view_track")}</button></div>`;
  }
  function show(a) {
    const box = document.getElementById("alarm-popups");
    if (!box || state.cards.has(a.id)) return;
    const card = document.createElement("div");
    card.className = `alarm-pop lvl-border-${Number(a.level) || 3}`;
    card.dataset.alarmId = a.id;
    card.dataset.level = a.level;
    card.innerHTML = cardHtml(a);
    card.addEventListener("click", (e) => onCardClick(e, a));
    box.prepend(card);
    state.cards.set(a.id, card);
    while (state.cards.size > MAX_CARDS) dismiss(state.cards.keys().next().value);
  }
  async function onCardClick(e, a) {
    const h = state.handlers;
    if (e.target.closest(".pop-close")) { dismiss(a.id); return; }
    if (e.target.closest(".pop-ack") && h.acknowledge) { if (await h.acknowledge(a)) dismiss(a.id); return; }
    if (e.target.closest(".pop-handle") && h.handle) { if (await h.handle(a)) dismiss(a.id); return; }
    if (e.target.closest(".pop-track") && h.track) h.track(a);
  }
  function dismiss(id) {
    const card = state.cards.get(id);
    if (card) card.remove();
    state.cards.delete(id);
  }
  function notify(a) {
    if (!("Notification" in global) || Notification.permission !== "granted") return;
    try {
      const n = new Notification(`${t("level_" + (Number(a.level) || 3))} · ${typeName(a)} · ${a.plate_number || ""}`, {
        body: `${a.company_name || ""} ${keyFigure(a)} ${fmtTime(a.started_at)}`, tag: "gpsm-alarm-" + a.id,
      });
      n.onclick = () => { global.focus(); n.close(); };
    } catch (err) { /* some browsers allow notifications only from a service worker */ }
  }
  // a new live alarm: alert when it is at or above the alert level (level number <= minLevel)
  function onNewAlarm(a) {
    if (!(Number(a.level) <= state.minLevel)) return false;
    play(Number(a.level));
    show(a);
    notify(a);
    return true;
  }
  // someone (here or on another screen) acknowledged or handled it
  function onStatus(a) { if (a.status !== "open") dismiss(a.id); }

  function configure(config, handlers) {
    state.minLevel = Number(config.alert_min_level) || 2;
    state.repeatS = Math.max(5, Number(config.alert_repeat_s) || 30);
    state.handlers = handlers || {};
    const b = document.getElementById("mute");
    if (b && !b.dataset.bound) { b.dataset.bound = "1"; b.addEventListener("click", () => setMuted(!state.muted)); }
    renderMute();
    renderTitle();
  }
  global.GpsmAlerts = {
    state, configure, unlock, play, onNewAlarm, onStatus, setCounts, dismiss, renderTitle,
    renderMute, setMuted, keyFigure, levelTag, typeName, fmtTime,
  };
})(window);
