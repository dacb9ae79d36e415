// Phone layout (issue 11, item 8): below 760 px wide the vehicle tree (#side) and the alarm
// panel (#alarm-panel) leave the row beside the map and become drawers over it, so the map
// fills the screen. The 车辆 / 报警 buttons in the top bar (shown only then, phone.css) open one
// drawer at a time and close it again; choosing a vehicle or an alarm closes the drawer so the
// map shows what was chosen. The top bar wraps onto as many rows as it needs. On a wide screen
// the buttons are hidden and nothing changes.
(function () {
  "use strict";
  const DRAWERS = { "drawer-vehicles": "side", "drawer-alarms": "alarm-panel" };
  const phone = window.matchMedia("(max-width: 760px)");

  function open(panelId) {
    Object.entries(DRAWERS).forEach(([buttonId, id]) => {
      const on = id === panelId;
      document.getElementById(id).classList.toggle("drawer-open", on);
      document.getElementById(buttonId).setAttribute("aria-expanded", String(on));
      document.getElementById(buttonId).classList.toggle("active", on);
    });
  }
  Object.entries(DRAWERS).forEach(([buttonId, id]) => {
    document.getElementById(buttonId).addEventListener("click", () => {
      open(document.getElementById(id).classList.contains("drawer-open") ? null : id);
    });
  });
  document.getElementById("vehicle-list").addEventListener("click", (e) => {
    if (phone.matches && e.target.closest("li[data-vehicle-id]")) open(null);
  });
  document.getElementById("alarm-list").addEventListener("click", (e) => {
    if (phone.matches && e.target.closest(".alarm-item") && (!e.target.closest("button") || e.target.closest(".btn-alarm-track"))) open(null);
  });
  phone.addEventListener("change", () => { if (!phone.matches) open(null); });
  // on a phone the top bar wraps onto as many rows as its controls need: the map and the drawers
  // start below it (--top-h), and the map learns its new size
  const top = document.getElementById("top");
  new ResizeObserver(() => {
    document.documentElement.style.setProperty("--top-h", top.offsetHeight + "px");
    if (window.gpsm && window.gpsm.map) window.gpsm.map.invalidateSize();
  }).observe(top);
  window.GpsmDrawer = { open };
})();
