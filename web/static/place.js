// Place names (issue 11, item 1): the vehicle card shows the coordinates at once and, where the
// server has a geocoder (config.geocoder, GET /api/geocode: 天地图, cached), replaces them with the
// place name when it arrives; the coordinates stay in the tooltip. Never blocks the page: a slow
// or failed lookup leaves the coordinates.
(function (global) {
  "use strict";
  const names = new Map();  // "lat,lon" rounded to 4 decimals -> place name (this page's cache)

  function coords(lat, lon) { return `${Number(lat).toFixed(5)}, ${Number(lon).toFixed(5)}`; }
  // `el` shows the coordinates now and the place name when known; lat/lon WGS-84
  async function fill(el, lat, lon, config) {
    if (!el || lat == null || lon == null) return;
    el.textContent = coords(lat, lon);
    el.title = coords(lat, lon);
    if (!config || !config.geocoder) return;
    const key = `${Number(lat).toFixed(4)},${Number(lon).toFixed(4)}`;
    let name = names.get(key);
    if (name === undefined) {
      try {
        const r = await fetch(`/api/geocode?lat=${encodeURIComponent(lat)}&lon=${encodeURIComponent(lon)}`,
          { credentials: "same-origin" });
        if (!r.ok) return;
        name = (await r.json()).place;
        names.set(key, name);
      } catch (err) { return; }
    }
    if (name && el.isConnected) { el.textContent = name; el.classList.add("place-named"); }
  }
  global.GpsmPlace = { fill, coords };
})(window);
