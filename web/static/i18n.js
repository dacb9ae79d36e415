// UI labels: zh-CN by default, English available (toggle in the top bar, kept in localStorage).
(function (global) {
  "use strict";
  const LABELS = {
    "zh-CN": {
      title: "车辆动态监控", login: "登录", username: "用户名", password: "密码",
      login_failed: "用户名或密码错误", login_locked: "登录尝试过多，已暂时锁定，请 {min} 分钟后再试", logout: "退出", search_plate: "搜索车牌或企业",
      vehicles: "车辆", alarms: "报警", acknowledge: "确认", handle: "处理",
      handle_note: "处理情况（如：已电话提醒驾驶员）", acknowledged: "已确认", handled: "已处理",
      open: "未处理", closed: "已关闭", late: "补报", plate: "车牌", company: "企业",
      vehicle_class: "车辆类型", driver: "驾驶员", no_driver_card: "未插卡", speed: "速度", last_fix: "最后定位", open_alarms: "未处理报警",
      none: "无", track: "轨迹回放", load: "加载", play: "播放", pause: "暂停",
      start: "开始", end: "结束", moving: "行驶", stopped: "停车", offline: "离线",
      in_alarm: "报警中", connected: "实时连接", disconnected: "连接中断", kmh: "km/h",
      geofences: "电子围栏", draw_polygon: "画多边形", draw_route: "画路线", finish: "完成",
      cancel: "取消", name: "名称", kind: "类型", delete: "删除", role_bureau: "交通运输局",
      role_operator: "运输企业", role_enforcement: "执法人员", overspeed_stretch: "超速路段",
      no_tiles: "未配置底图：显示空白背景与比例尺", points: "点", simplified: "已抽稀",
      coach: "客运班车", tour_bus: "旅游包车", hazmat: "危险货物运输车", heavy_truck: "重型货车",
      freight: "普通货车", overspeed: "超速", fatigue_driving: "疲劳驾驶",
      fatigue_warning: "疲劳预警", daily_driving_limit: "日累计驾驶超时", night_ban: "凌晨2-5时违规运行",
      route_deviation: "偏离路线", forbidden_area_entry: "驶入禁入区域", keep_in_area_exit: "驶出限定区域",
      geofence_enter: "进入围栏", geofence_exit: "离开围栏", offline_displacement: "离线位移",
      device_alarm: "终端报警", active_safety: "主动安全报警", penalty: "处罚", vehicles_shown: "辆", kpi: "考核指标",
      notify_settings: "推送设置", registry_admin: "登记管理",
      tree_online: "在线", tree_in_alarm: "报警", tree_offline: "离线", tree_never: "未入网",
      tree_no_match: "无匹配车辆", tree_no_vehicles: "暂无车辆", tree_more: "另有 {n} 辆未列出，请缩小搜索范围",
      all_classes: "全部类型",
      basemap_osm: "OpenStreetMap", basemap_tianditu: "天地图", basemap_amap: "高德地图", basemap_custom: "自定义底图",
      basemap_unavailable: "{name}底图无法加载（离线或网络受限），显示纯色背景",
      basemap_needs_key: "{name}需要密钥（设置 {setting}），显示纯色背景",
      evidence: "证据报告", redraw: "重画形状",
      level_1: "紧急", level_2: "严重", level_3: "一般", level_4: "提示",
      status_unhandled: "待处理", status_open: "未确认", status_acknowledged: "已确认",
      status_handled: "已处理", status_closed: "已关闭", all_types: "全部类型", all_levels: "全部级别",
      all_statuses: "全部状态", all_companies: "全部企业", from: "从", to: "至", total: "共",
      where: "位置", key_figure: "关键数据", time: "时间", view_track: "查看轨迹",
      sound_on: "♪ 声音开", sound_off: "✕ 已静音", alarm_bit: "报警标志位", max_speed: "最高", limit: "限", continuous_driving: "连续驾驶",
      daily_driving: "当日驾驶", off_route: "偏离", corridor: "走廊", offline_for: "离线",
      displacement: "位移", hours_short: "小时", minutes_short: "分", seconds_short: "秒", device_sos: "紧急报警(SOS)", jsatl_level_1: "一级", jsatl_level_2: "二级", without_fix: "无有效定位(位置为最后有效定位)",
      device_overspeed: "终端超速报警", device_fatigue_driving: "终端疲劳驾驶报警",
      device_overtime_parking: "超时停车", device_illegal_movement: "非法位移",
    },
    en: {
      title: "Live vehicle monitoring", login: "Log in", username: "Username", password: "Password",
      login_failed: "Wrong username or password", login_locked: "Too many login attempts: locked for now, try again in {min} min", logout: "Log out", search_plate: "Search plate or company",
      vehicles: "Vehicles", alarms: "Alarms", acknowledge: "Acknowledge", handle: "Handle",
      handle_note: "What was done (e.g. called the driver)", acknowledged: "acknowledged",
      handled: "handled", open: "open", closed: "closed", late: "late", plate: "Plate",
      company: "Company", vehicle_class: "Class", driver: "Driver", no_driver_card: "no IC card in", speed: "Speed", last_fix: "Last fix",
      open_alarms: "Open alarms", none: "none", track: "Track playback", load: "Load",
      play: "Play", pause: "Pause", start: "Start", end: "End", moving: "moving",
      stopped: "stopped", offline: "offline", in_alarm: "in alarm", connected: "live",
      disconnected: "disconnected", kmh: "km/h", geofences: "Geofences",
      draw_polygon: "Draw polygon", draw_route: "Draw route", finish: "Finish", cancel: "Cancel",
      name: "Name", kind: "Kind", delete: "Delete", role_bureau: "Transport bureau",
      role_operator: "Operator", role_enforcement: "Enforcement", overspeed_stretch: "overspeed",
      no_tiles: "No basemap configured: plain background with a scale", points: "points",
      simplified: "simplified", coach: "coach", tour_bus: "tour bus", hazmat: "hazmat",
      heavy_truck: "heavy truck", freight: "freight", overspeed: "overspeed",
      fatigue_driving: "fatigue driving", fatigue_warning: "fatigue warning",
      daily_driving_limit: "daily driving limit", night_ban: "night ban 02-05",
      route_deviation: "route deviation", forbidden_area_entry: "forbidden area entry",
      keep_in_area_exit: "keep-in area exit", geofence_enter: "geofence enter",
      geofence_exit: "geofence exit", offline_displacement: "offline displacement",
      device_alarm: "device alarm", active_safety: "active safety alarm", penalty: "Penalty", vehicles_shown: "vehicles", kpi: "KPIs",
      notify_settings: "Notifications", registry_admin: "Registry",
      tree_online: "online", tree_in_alarm: "alarm", tree_offline: "offline", tree_never: "never connected",
      tree_no_match: "No vehicle matches", tree_no_vehicles: "No vehicles yet", tree_more: "{n} more not listed: narrow the search",
      all_classes: "all classes",
      basemap_osm: "OpenStreetMap", basemap_tianditu: "Tianditu", basemap_amap: "AMap", basemap_custom: "Custom basemap",
      basemap_unavailable: "{name} tiles cannot load (offline or blocked): plain background",
      basemap_needs_key: "{name} needs a key (set {setting}): plain background",
      evidence: "evidence report", redraw: "Redraw",
      level_1: "critical", level_2: "major", level_3: "minor", level_4: "info",
      status_unhandled: "unhandled", status_open: "open", status_acknowledged: "acknowledged",
      status_handled: "handled", status_closed: "closed", all_types: "all types", all_levels: "all levels",
      all_statuses: "all statuses", all_companies: "all companies", from: "from", to: "to", total: "total",
      where: "where", key_figure: "key figure", time: "time", view_track: "View track",
      sound_on: "♪ sound on", sound_off: "✕ muted", alarm_bit: "alarm bit", max_speed: "max", limit: "limit", continuous_driving: "driving",
      daily_driving: "today", off_route: "off route", corridor: "corridor", offline_for: "offline",
      displacement: "moved", hours_short: " h ", minutes_short: " min", seconds_short: " s", device_sos: "SOS", jsatl_level_1: "level 1", jsatl_level_2: "level 2", without_fix: "no valid fix (placed at the last good fix)",
      device_overspeed: "device overspeed", device_fatigue_driving: "device fatigue",
      device_overtime_parking: "overtime parking", device_illegal_movement: "illegal movement",
    },
  };
  let lang = localStorage.getItem("gpsm_lang") || "zh-CN";
  function t(key) {
    return (LABELS[lang] && LABELS[lang][key]) || LABELS.en[key] || key;
  }
  function apply(root) {
    (root || document).querySelectorAll("[data-i18n]").forEach((el) => {
      el.textContent = t(el.dataset.i18n);
    });
    (root || document).querySelectorAll("[data-i18n-placeholder]").forEach((el) => {
      el.placeholder = t(el.dataset.i18nPlaceholder);
    });
    document.documentElement.lang = lang;
    // a page other than the map names its own title key: <body data-i18n-title="...">
    document.title = "gps-monitor · " + t((document.body && document.body.dataset.i18nTitle) || "title");
  }
  function setLang(value) {
    lang = value;
    localStorage.setItem("gpsm_lang", value);
    apply();
    document.dispatchEvent(new CustomEvent("gpsm:lang", { detail: value }));
  }
  // a page's own labels ({"zh-CN": {...}, en: {...}}), merged into the shared table
  function register(labels) {
    for (const [code, table] of Object.entries(labels)) LABELS[code] = Object.assign(LABELS[code] || {}, table);
  }
  // the line under a login form for a refused login: a lock (429, its Retry-After in seconds)
  // says so and for how long, anything else is the wrong username or password
  function loginError(status, retryAfter) {
    if (status !== 429) return t("login_failed");
    const minutes = Math.max(1, Math.ceil((Number(retryAfter) || 900) / 60));
    return t("login_locked").replace("{min}", String(minutes));
  }
  global.GpsmI18n = { t, apply, setLang, register, loginError, get lang() { return lang; } };
})(window);
