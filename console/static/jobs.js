// Progress of a long report without reloading the page: asks /jobs/ID.json every second and loads the
// page once the report is ready. Progressive enhancement only: without JavaScript the page's
// <noscript><meta http-equiv="refresh"> reloads it every second instead.
(function () {
  "use strict";
  var box = document.getElementById("job");
  var step = document.getElementById("job-step");
  var bar = document.getElementById("job-bar");
  if (!box || !step || !window.fetch) { return; }
  function poll() {
    fetch(box.getAttribute("data-progress"), {credentials: "same-origin", cache: "no-store"})
      .then(function (r) { if (!r.ok) { throw new Error(String(r.status)); } return r.json(); })
      .then(function (p) {
        if (p.state !== "running") { window.location.replace(box.getAttribute("data-page")); return; }
        step.textContent = "step " + Math.min(p.step + 1, p.steps) + " of " + p.steps;
        if (bar) { bar.value = p.step; }
        setTimeout(poll, 1000);
      })
      .catch(function () { window.location.replace(box.getAttribute("data-page")); });
  }
  setTimeout(poll, 1000);
})();
