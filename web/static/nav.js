// Role-dependent links in a page's nav: an <a data-roles="bureau"> shows only for those roles.
// Checked on load and again whenever the page's login overlay (#login) is shown or hidden.
(function () {
  "use strict";
  async function refresh() {
    const r = await fetch("/api/auth/session", { credentials: "same-origin" }).catch(() => null);
    const user = r && r.ok ? (await r.json()).user : null;
    document.querySelectorAll("a[data-roles]").forEach((a) => {
      a.hidden = !(user && a.dataset.roles.split(" ").includes(user.role));
    });
  }
  const login = document.getElementById("login");
  if (login) new MutationObserver(refresh).observe(login, { attributes: true });
  refresh();
})();
