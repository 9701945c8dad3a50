// Live count for the segment editor: asks /api/segments/count as the expression changes.
// Progressive enhancement only: without this script the Count button posts the form.
(function () {
  "use strict";
  var expr = document.getElementById("expr");
  var out = document.getElementById("live-count");
  var saveExpr = document.getElementById("save-expr");
  if (!expr || !out) { return; }
  var timer = null;
  var asked = 0;
  function update() {
    var text = expr.value.trim();
    if (saveExpr) { saveExpr.value = expr.value; }
    if (!text) { out.textContent = ""; return; }
    var mine = ++asked;
    out.textContent = "counting…";
    fetch("/api/segments/count?expr=" + encodeURIComponent(text), {credentials: "same-origin"})
      .then(function (r) { return r.json(); })
      .then(function (body) {
        if (mine !== asked) { return; }
        out.textContent = body.error ? body.error : body.count.toLocaleString() + " households";
        out.className = body.error ? "error" : "";
      })
      .catch(function () { if (mine === asked) { out.textContent = "count unavailable"; } });
  }
  expr.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(update, 300); });
})();
