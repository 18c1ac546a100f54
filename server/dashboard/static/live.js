// Live progress of a run still going: polls its progress.json once a second and updates
// the status and progress bar in place (no reload, no library). Stops when the run ends.
(function () {
  "use strict";
  var box = document.querySelector("[data-progress-url]");
  if (!box) return;
  var url = box.getAttribute("data-progress-url");
  var status = document.getElementById("run-status");
  var vendor = document.getElementById("run-vendor-status");
  var progress = document.querySelector("#run-progress progress");
  var count = document.querySelector("#run-progress .count");
  var finished = document.getElementById("run-finished");
  function tick() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (p) {
        if (!p) { setTimeout(tick, 5000); return; }
        var badge = status.querySelector(".badge");
        badge.textContent = p.status;
        badge.className = "badge " + p.status;
        badge.title = String(p.vendor_status);
        vendor.textContent = String(p.vendor_status);
        progress.max = p.total || 1;
        progress.value = p.processed;
        count.textContent = p.processed + "/" + p.total;
        if (p.done) { finished.hidden = false; return; }
        setTimeout(tick, 1000);
      })
      .catch(function () { setTimeout(tick, 5000); });
  }
  setTimeout(tick, 1000);
})();
