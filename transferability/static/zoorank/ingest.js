// A dataset being ingested: its progress, polled from the API; the page reloads when the
// ingest ends (ready: the dataset page; refused or failed: the reasons).
(function () {
  "use strict";
  var state = document.getElementById("ingest-state");
  if (!state || state.dataset.state !== "ingesting") return;
  var bar = document.getElementById("ingest-progress");
  var count = document.getElementById("ingest-count");
  function poll() {
    fetch(state.dataset.api, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (data) {
        if (data.state !== "ingesting") { window.location.reload(); return; }
        bar.max = data.ingest_total || 1;
        bar.value = data.ingest_done;
        count.textContent = data.ingest_total
          ? data.ingest_done.toLocaleString() + " of " + data.ingest_total.toLocaleString() + " images"
          : "reading the archive";
        setTimeout(poll, 1000);
      })
      .catch(function () { setTimeout(poll, 3000); });
  }
  setTimeout(poll, 500);
})();
