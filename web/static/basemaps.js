// Basemaps (issue 11, item 1): Leaflet's own layer switcher with the basemaps the server offers
// (GET /api/config: OpenStreetMap, 天地图 roads + names, 高德, a custom template; web/basemaps.py).
// The user's choice is kept in localStorage. The chosen basemap's datum is written to
// config.tile_crs, which every display conversion in app.js reads (GCJ-02 for 高德); when it
// changes, app.js redraws markers, fences and track in the new datum.
//
// Offline or blocked tiles: when the chosen basemap's tiles fail (tileerror) and none has loaded
// within a few seconds, the tiles are hidden and the plain background shows with a note (zh/en)
// instead of grey squares; a tile that loads later (network back) removes the note. A 天地图
// basemap without a key shows the setting to set instead of asking for tiles.
(function (global) {
  "use strict";
  const t = (k) => GpsmI18n.t(k);
  const STORE = "gpsm_basemap";
  const FAIL_AFTER_ERRORS = 2;   // failed tiles, none loaded: give up at once
  const FAIL_AFTER_MS = 6000;    // or no tile at all after this long
  const s = { map: null, config: null, entries: [], control: null, note: null, active: null, timer: null };

  function chosenId(config) {
    const ids = (config.basemaps || []).map((b) => b.id);
    const kept = localStorage.getItem(STORE);
    return ids.includes(kept) ? kept : config.basemap_default;
  }
  // before the map exists: the datum of the basemap that will be shown first
  function prepare(config) {
    const b = (config.basemaps || []).find((x) => x.id === chosenId(config));
    if (b) config.tile_crs = b.crs;
  }

  function label(b) { return t("basemap_" + b.id); }
  function makeLayer(b) {
    const layers = b.missing ? [] : b.layers.map((url, i) => L.tileLayer(url, Object.assign({
      subdomains: b.subdomains, maxZoom: b.max_zoom, className: "basemap-" + b.id,
      attribution: i === 0 ? b.attribution : "",
    }, b.options)));
    const group = L.layerGroup(layers);
    group.basemap = b;
    group.tiles = layers;
    if (b.missing) group.getAttribution = () => b.attribution;
    return group;
  }

  function setNote(key, extra) {
    $map().classList.toggle("tiles-failed", Boolean(key));
    if (!key) { s.note.getContainer().style.display = "none"; return; }
    const el = s.note.getContainer();
    el.dataset.noteKey = key;
    el.dataset.noteExtra = extra || "";
    el.textContent = t(key).replace("{name}", label(s.active.basemap)).replace("{setting}", extra || "");
    el.style.display = "";
  }
  function $map() { return s.map.getContainer(); }

  function watch(group) {
    clearTimeout(s.timer);
    setNote(null);
    const b = group.basemap;
    if (b.missing) { setNote("basemap_needs_key", b.missing); return; }
    let loaded = 0;
    let errors = 0;
    const fail = () => { if (!loaded && s.active === group) setNote("basemap_unavailable"); };
    group.tiles.forEach((layer) => {
      layer.off("tileload tileerror");
      layer.on("tileload", () => {
        loaded += 1;
        if (s.active === group && $map().classList.contains("tiles-failed")) setNote(null);
      });
      layer.on("tileerror", () => { errors += 1; if (errors >= FAIL_AFTER_ERRORS) fail(); });
    });
    s.timer = setTimeout(fail, FAIL_AFTER_MS);
  }

  function onChange(e, redisplay) {
    const group = s.entries.find((g) => g.layer === e.layer);
    if (!group) return;
    s.active = e.layer;
    localStorage.setItem(STORE, group.basemap.id);
    const before = s.config.tile_crs;
    s.config.tile_crs = group.basemap.crs;
    watch(e.layer);
    if (before !== s.config.tile_crs && redisplay) redisplay();
  }

  function buildControl() {
    const bases = {};
    s.entries.forEach((g) => { bases[label(g.basemap)] = g.layer; });
    if (s.control) s.control.remove();
    s.control = L.control.layers(bases, null, { position: "topright", collapsed: true }).addTo(s.map);
    s.control.getContainer().id = "basemap-switcher";
  }

  // the switcher, the first basemap and the fallback note on `map`; redisplay() is called when
  // the datum changes
  function install(map, config, redisplay) {
    Object.assign(s, { map, config });
    s.note = L.control({ position: "topright" });
    s.note.onAdd = () => { const div = L.DomUtil.create("div", "notice basemap-note"); div.id = "basemap-note"; return div; };
    s.note.addTo(map);
    const offered = config.basemaps || [];
    if (!offered.length) {  // no basemap at all: plain background, as configured
      map.getContainer().classList.add("no-tiles");
      s.note.getContainer().dataset.noteKey = "no_tiles";
      s.note.getContainer().textContent = t("no_tiles");
      return;
    }
    s.entries = offered.map((b) => ({ basemap: b, layer: makeLayer(b) }));
    buildControl();
    map.on("baselayerchange", (e) => onChange(e, redisplay));
    const first = s.entries.find((g) => g.basemap.id === chosenId(config)) || s.entries[0];
    s.active = first.layer;
    first.layer.addTo(map);
    config.tile_crs = first.basemap.crs;
    watch(first.layer);
    document.getElementById("lang").addEventListener("change", relabel);
  }

  function relabel() {  // the page language changed: switcher names and the note
    if (!s.map) return;
    const el = s.note.getContainer();
    if (el.dataset.noteKey === "no_tiles") { el.textContent = t("no_tiles"); return; }
    if (!s.entries.length) return;
    buildControl();
    if (el.style.display !== "none" && el.dataset.noteKey) setNote(el.dataset.noteKey, el.dataset.noteExtra);
  }

  global.GpsmBasemaps = { prepare, install, relabel, get active() { return s.active && s.active.basemap.id; } };
})(window);
