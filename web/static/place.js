// Place names (issue 11, item 1): the vehicle card and the alarm list show the coordinates at
// once and, where the server has a geocoder (config.geocoder; GET /api/geocode: 天地图, cached),
// replace them with the place name when it arrives; the coordinates stay in the tooltip. Never
// blocks the page: lookups run in the background, at most MAX_PARALLEL at a time, one per
// rounded position per page, and a slow or failed lookup leaves the coordinates.
(function (global) {
  "use strict";
  const MAX_PARALLEL = 4;
  const names = new Map();  // "lat,lon" rounded to 4 decimals -> Promise of the name (or null)
  const queue = [];
  let running = 0;

  function coords(lat, lon) { return `${Number(lat).toFixed(5)}, ${Number(lon).toFixed(5)}`; }
  function pump() {
    while (running < MAX_PARALLEL && queue.length) {
      const job = queue.shift();
      running += 1;
      fetch(`/api/geocode?lat=${encodeURIComponent(job.lat)}&lon=${encodeURIComponent(job.lon)}`,
        { credentials: "same-origin" })
        .then((r) => (r.ok ? r.json() : null)).then((a) => job.resolve(a ? a.place : null))
        .catch(() => job.resolve(null))
        .finally(() => { running -= 1; pump(); });
    }
  }
  function lookup(lat, lon) {
    const key = `${Number(lat).toFixed(4)},${Number(lon).toFixed(4)}`;
    if (!names.has(key)) {
      const p = new Promise((resolve) => queue.push({ lat, lon, resolve }));
      names.set(key, p);
      p.then((name) => { if (name == null) names.delete(key); });  // failures are asked again later
      pump();
    }
    return names.get(key);
  }
  // `el` shows the coordinates now and the place name when known; lat/lon WGS-84
  async function fill(el, lat, lon, config) {
    if (!el || lat == null || lon == null) return;
    el.textContent = coords(lat, lon);
    el.title = coords(lat, lon);
    if (!config || !config.geocoder) return;
    const name = await lookup(lat, lon);
    if (name && el.isConnected) { el.textContent = name; el.classList.add("place-named"); }
  }
  // every `.place[data-lat][data-lon]` below `root`
  function fillAll(root, config) {
    root.querySelectorAll(".place[data-lat][data-lon]").forEach((el) =>
      fill(el, Number(el.dataset.lat), Number(el.dataset.lon), config));
  }
  global.GpsmPlace = { fill, fillAll, coords };
})(window);
