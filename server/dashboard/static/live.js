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

// The jobs page: polls jobs.json for the jobs it lists once a second and updates each
// row's state, vendor status, held mark and progress in place; a job that ended loses
// its buttons. Says when jobs appear that the page does not list (reload to see them).
(function () {
  "use strict";
  var table = document.querySelector("[data-poll-url]");
  if (!table) return;
  var base = table.getAttribute("data-poll-url");
  var said = document.getElementById("jobs-live");
  var ENDED = { completed: 1, failed: 1, cancelled: 1 };
  function rows() { return table.querySelectorAll("tbody tr[data-job]"); }
  function url() {
    var ids = [];
    rows().forEach(function (r) { ids.push("id=" + encodeURIComponent(r.getAttribute("data-job"))); });
    return base + (ids.length ? "?" + ids.join("&") : "");
  }
  function update(row, job) {
    var badge = row.querySelector(".state .badge");
    badge.textContent = job.status;
    badge.className = "badge " + job.status;
    badge.title = job.vendor_status;
    row.querySelector(".state .held").hidden = !job.held;
    row.querySelector(".vendor").textContent = job.vendor_status;
    var bar = row.querySelector(".progress progress");
    bar.max = job.total || 1;
    bar.value = job.processed;
    row.querySelector(".progress .count").textContent = job.processed + "/" + job.total;
    if (ENDED[job.status]) {
      row.querySelectorAll(".actions form").forEach(function (f) { f.remove(); });
    }
  }
  function tick() {
    fetch(url(), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (body) {
        if (!body) { setTimeout(tick, 5000); return; }
        var byId = {};
        body.jobs.forEach(function (j) { byId[j.id] = j; });
        var listedActive = 0;
        rows().forEach(function (row) {
          var job = byId[row.getAttribute("data-job")];
          if (job) {
            update(row, job);
            if (!ENDED[job.status]) listedActive += 1;
          }
        });
        said.textContent = body.active > listedActive
          ? (body.active - listedActive) + " more job(s) in progress: reload to list them." : "";
        setTimeout(tick, 1000);
      })
      .catch(function () { setTimeout(tick, 5000); });
  }
  setTimeout(tick, 1000);
})();
