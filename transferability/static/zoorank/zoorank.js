// zoorank: sortable tables and live progress, no framework.
(function () {
  "use strict";

  function cellValue(row, index) {
    var cell = row.children[index];
    if (!cell) return "";
    var raw = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
    var num = parseFloat(raw);
    return raw !== "" && !isNaN(num) && isFinite(raw) ? num : raw.toLowerCase();
  }

  function makeSortable(table) {
    // With two header rows (column groups above), the last row names the columns.
    var head = table.tHead;
    if (!head || !head.rows.length) return;
    var headers = Array.prototype.slice.call(head.rows[head.rows.length - 1].cells);
    headers.forEach(function (th, index) {
      th.classList.add("sortable-header");
      th.addEventListener("click", function () {
        // The first click puts the best first: descending where higher is better
        // (data-first="descending"), ascending elsewhere; the next click reverses.
        var current = th.getAttribute("aria-sort");
        var ascending = current ? current !== "ascending"
                                : th.getAttribute("data-first") !== "descending";
        headers.forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = cellValue(a, index), y = cellValue(b, index);
          var empty = function (v) { return v === "" || v === "–"; };
          if (empty(x) !== empty(y)) return empty(x) ? 1 : -1;  // blanks last
          if (x < y) return ascending ? -1 : 1;
          if (x > y) return ascending ? 1 : -1;
          return 0;
        });
        rows.forEach(function (r) { body.appendChild(r); });
        table.dispatchEvent(new CustomEvent("zoorank:sorted"));
      });
    });
  }

  // The server renders Status labels ("Running"); the API gives the values ("running").
  function statusLabel(status) {
    return status ? status.charAt(0).toUpperCase() + status.slice(1) : "";
  }

  // A score as the server writes it (Python's "%.5g"): 5 significant digits, no trailing
  // zeros, an exponent below 1e-4 and from 1e5 on ("1.2346e+05").
  function formatScore(value) {
    var v = Number(value);
    if (!isFinite(v)) return String(v);
    if (v === 0) return "0";
    var trim = function (s) { return s.indexOf(".") < 0 ? s : s.replace(/0+$/, "").replace(/\.$/, ""); };
    var parts = v.toExponential(4).split("e");
    var exponent = parseInt(parts[1], 10);
    if (exponent < -4 || exponent >= 5) {
      var digits = String(Math.abs(exponent));
      return trim(parts[0]) + "e" + (exponent < 0 ? "-" : "+") + (digits.length < 2 ? "0" : "") + digits;
    }
    return trim(v.toFixed(4 - exponent));
  }

  function watchEvaluation() {
    var state = document.getElementById("evaluation-state");
    if (!state) return;
    var finished = ["done", "failed"];
    if (finished.indexOf(state.dataset.status) >= 0) return;
    var api = state.dataset.api;
    function poll() {
      fetch(api, {credentials: "same-origin", headers: {"Accept": "application/json"}})
        .then(function (r) {
          if (!r.ok) throw new Error("HTTP " + r.status);
          return r.json();
        })
        .then(function (data) {
          document.getElementById("overall-progress").value = data.progress;
          document.getElementById("overall-percent").textContent = Math.round(data.progress * 100) + "%";
          var badge = document.getElementById("status-badge");
          badge.textContent = statusLabel(data.status);
          badge.className = "badge " + data.status;
          data.results.forEach(function (r) {
            var row = document.querySelector('tr[data-checkpoint="' + CSS.escape(r.checkpoint.name) + '"]');
            if (!row) return;
            var bar = row.querySelector(".result-progress");
            var count = row.querySelector(".result-count");
            if (bar) { bar.max = r.images_total || 1; bar.value = r.images_done; }
            if (count) count.textContent = r.images_total ? r.images_done + "/" + r.images_total : "";
            var status = row.querySelector(".result-status .badge");
            if (status) { status.textContent = statusLabel(r.status); status.className = "badge " + r.status; }
            var meter = row.querySelector(".result-meter");
            if (meter && finished.indexOf(r.status) >= 0) meter.remove();  // as the server renders it
            // Scores, d and the parameter count fill in as each checkpoint finishes.
            var dim = row.querySelector("td.dim"), params = row.querySelector("td.params");
            if (dim && r.status === "done" && r.checkpoint.feature_dim) {
              dim.setAttribute("data-sort", r.checkpoint.feature_dim);
              dim.textContent = r.checkpoint.feature_dim;
            }
            if (params && r.checkpoint.param_count) {
              params.setAttribute("data-sort", r.checkpoint.param_count);
              params.textContent = r.checkpoint.param_count.toLocaleString("en-US");
            }
            Object.keys(r.scores || {}).forEach(function (metric) {
              var value = r.scores[metric];
              var cell = row.querySelector('td[data-metric="' + CSS.escape(metric) + '"]');
              if (!cell || value === null || value === undefined) return;
              cell.setAttribute("data-sort", value);
              cell.textContent = formatScore(value);
              cell.classList.add("filled");
            });
          });
          if (finished.indexOf(data.status) >= 0) { window.location.reload(); return; }
          setTimeout(poll, 1500);
        })
        .catch(function () { setTimeout(poll, 5000); });
    }
    setTimeout(poll, 1000);
  }

  var FINISHED = ["done", "failed"];

  // Poll a JSON URL until onData returns true; back off on errors.
  function pollJSON(url, onData) {
    function poll() {
      fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
        .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
        .then(function (data) { if (!onData(data)) setTimeout(poll, 2000); })
        .catch(function () { setTimeout(poll, 5000); });
    }
    setTimeout(poll, 1500);
  }

  function reloadAt(anchor) {
    window.location.hash = anchor;
    window.location.reload();
  }

  // While the ground truth is measured: its bar, "k of n measured", each checkpoint's true
  // accuracy as it comes, and the answer's partial-truth note; the page again when done
  // (the answer then rests on the complete truth).
  function watchTruth() {
    var state = document.getElementById("truth-state");
    var evaluation = document.getElementById("evaluation-state");
    if (!state || !evaluation || FINISHED.indexOf(state.dataset.status) >= 0) return;
    pollJSON(evaluation.dataset.api, function (data) {
      var truth = data.truth;
      if (!truth) return false;
      var bar = document.getElementById("truth-progress");
      if (bar) bar.value = truth.progress;
      var accuracy = truth.accuracy || {}, errors = truth.standard_error || {};
      var count = document.getElementById("truth-count");
      if (count) count.textContent = Object.keys(accuracy).length + " of " + truth.results.length + " checkpoints measured";
      var badge = document.getElementById("truth-badge");
      if (badge) { badge.textContent = statusLabel(truth.status); badge.className = "badge " + truth.status; }
      Object.keys(accuracy).forEach(function (name) {
        var row = document.querySelector('#ranking tr[data-checkpoint="' + CSS.escape(name) + '"]');
        var cell = row && row.querySelector("td.truth-cell");
        if (!cell || cell.classList.contains("filled")) return;
        cell.setAttribute("data-sort", accuracy[name]);
        cell.textContent = accuracy[name].toFixed(1);
        if (errors[name] !== undefined && errors[name] !== null) {
          var se = document.createElement("span");
          se.className = "hint small";
          se.textContent = " ±" + errors[name].toFixed(1);
          cell.appendChild(se);
        }
        cell.classList.add("filled");
      });
      var note = document.getElementById("truth-note");
      var text = data.recommendation && data.recommendation.truth_note;
      if (note && text) note.lastChild.textContent = " " + text;
      if (FINISHED.indexOf(truth.status) < 0) return false;
      reloadAt("truth");
      return true;
    });
  }

  // Transfers in progress: their status and bars, then the page again with the results.
  function watchTransfers() {
    document.querySelectorAll("tr[data-transfer]").forEach(function (row) {
      if (FINISHED.indexOf(row.dataset.status) >= 0) return;
      pollJSON(row.dataset.api, function (data) {
        var bar = row.querySelector(".transfer-progress");
        if (bar) bar.value = data.progress;
        var badge = row.querySelector(".transfer-badge");
        if (badge) { badge.textContent = statusLabel(data.status); badge.className = "badge " + data.status + " transfer-badge"; }
        if (FINISHED.indexOf(data.status) < 0) return false;
        reloadAt("transfer");
        return true;
      });
    });
  }

  // A transfer's own page: its bar, its badge and each step's, live; reloaded (figures and
  // charts) as each step ends and when the transfer does.
  function watchTransferPage() {
    var box = document.querySelector("[data-transfer-page]");
    if (!box || FINISHED.indexOf(box.dataset.status) >= 0) return;
    var doneSteps = document.querySelectorAll('tr[data-step][data-status="done"]').length;
    pollJSON(box.dataset.api, function (data) {
      var bar = document.getElementById("transfer-progress");
      if (bar) bar.value = data.progress;
      var badge = document.getElementById("transfer-status");
      if (badge) { badge.textContent = statusLabel(data.status); badge.className = "badge " + data.status; }
      var finishedSteps = 0;
      data.steps.forEach(function (step) {
        if (step.status === "done") finishedSteps += 1;
        var row = document.querySelector('tr[data-step="' + step.index + '"]');
        if (!row) return;
        var stepBadge = row.querySelector(".step-badge");
        if (stepBadge) { stepBadge.textContent = statusLabel(step.status); stepBadge.className = "badge " + step.status + " step-badge"; }
        var stepBar = row.querySelector(".step-progress");
        if (stepBar) { stepBar.max = 1; stepBar.value = step.progress; }
      });
      if (FINISHED.indexOf(data.status) < 0 && finishedSteps === doneSteps) return false;
      window.location.reload();
      return true;
    });
  }

  // The transfer form: the proposed teachers for the student chosen, and a button that
  // selects them.
  function teacherProposals() {
    var form = document.getElementById("transfer-form");
    if (!form) return;
    var student = form.querySelector('select[name="student"]');
    var teachers = form.querySelector('select[name="teachers"]');
    function show() {
      document.querySelectorAll(".teacher-proposal").forEach(function (box) {
        box.hidden = box.dataset.student !== student.value;
      });
    }
    document.querySelectorAll(".use-proposal").forEach(function (button) {
      button.addEventListener("click", function () {
        var names = JSON.parse(button.dataset.teachers);
        Array.prototype.forEach.call(teachers.options, function (option) {
          option.selected = names.indexOf(option.value) >= 0;
        });
        var mode = form.querySelector('select[name="mode"]');
        if (mode && names.length > 1 && mode.value === "") mode.value = "sequential";
      });
    });
    student.addEventListener("change", show);
    show();
  }

  // The ranking: "Rank by" reloads the page ranked by the predictor picked (the order, the
  // rank, the column shown, the chart and the exports follow it); "all metrics" shows
  // every metric column instead of the compact one.
  function rankingControls() {
    var table = document.getElementById("ranking");
    var select = document.getElementById("rank-choice");
    var all = document.getElementById("show-all-metrics");
    if (!table) return;
    if (select) select.addEventListener("change", function () { select.form.submit(); });
    function apply() { table.classList.toggle("compact", !(all && all.checked)); }
    if (all) all.addEventListener("change", apply);
    apply();
  }

  // A long table shown a page at a time, with a filter box over its text and a count
  // ("12 of 182 pairs"). Without JavaScript every row shows.
  function pagedTable(tableId, filterId, countId, pagerId) {
    var table = document.getElementById(tableId);
    if (!table) return;
    var filter = document.getElementById(filterId);
    var count = document.getElementById(countId);
    var pager = document.getElementById(pagerId);
    var size = parseInt(table.dataset.pageSize || "25", 10);
    var total = table.tBodies[0].rows.length;
    var noun = count ? count.textContent.replace(/^[\d\s]+of\s+\d+\s*/, "") : "";
    var page = 0;
    function render() {
      var query = filter ? filter.value.trim().toLowerCase() : "";
      var rows = Array.prototype.slice.call(table.tBodies[0].rows);
      var matching = rows.filter(function (r) {
        return !query || (r.dataset.pair || r.textContent).toLowerCase().indexOf(query) >= 0;
      });
      var pages = Math.max(1, Math.ceil(matching.length / size));
      page = Math.min(page, pages - 1);
      rows.forEach(function (r) { r.hidden = true; });
      matching.slice(page * size, (page + 1) * size).forEach(function (r) { r.hidden = false; });
      if (count) count.textContent = matching.length + " of " + total + " " + noun;
      if (pager) {
        pager.hidden = pages < 2;
        pager.querySelector(".pager-page").textContent = "page " + (page + 1) + " of " + pages;
        pager.querySelector('[data-step="-1"]').disabled = page === 0;
        pager.querySelector('[data-step="1"]').disabled = page >= pages - 1;
      }
    }
    if (filter) filter.addEventListener("input", function () { page = 0; render(); });
    if (pager) pager.querySelectorAll("button").forEach(function (button) {
      button.addEventListener("click", function () {
        page += parseInt(button.dataset.step, 10);
        render();
      });
    });
    table.addEventListener("zoorank:sorted", function () { page = 0; render(); });
    render();
  }

  // Plotly figures whose cells open a pair's page: a container with data-pair-base (the
  // URL up to the ids) and data-pair-ids ({checkpoint name: id}); y is the first of the
  // pair (right), x the second (wrong).
  function pairLinks() {
    document.querySelectorAll("[data-pair-base]").forEach(function (box) {
      var ids = JSON.parse(box.dataset.pairIds || "{}");
      var plot = box.querySelector(".js-plotly-plot, .plotly-graph-div");
      if (!plot) return;
      // plotly.min.js may be deferred: its figures are drawn at DOMContentLoaded (base.html),
      // and a figure has .on once drawn.
      // Figures drawn late (plotly loaded when they come near the viewport) announce it.
      var attached = false;
      function attach(tries) {
        if (attached) return;
        if (typeof plot.on !== "function") {
          if (document.readyState === "loading") {
            document.addEventListener("DOMContentLoaded", function () { attach(tries); });
          } else if (tries > 0) {
            setTimeout(function () { attach(tries - 1); }, 100);
          }
          return;
        }
        attached = true;
        plot.on("plotly_click", function (event) {
          var point = event.points && event.points[0];
          if (!point || point.x === point.y) return;
          var a = ids[point.y], b = ids[point.x];
          if (a === undefined || b === undefined) return;
          window.location.href = box.dataset.pairBase + a + "/" + b + "/";
        });
      }
      attach(50);
      document.addEventListener("zoorank:plotted", function () { attach(0); });
    });
  }

  // A form with data-confirm="..." is sent only once the person agrees to that question
  // (the page escapes its text; an inline onsubmit would need its hash in the CSP). One
  // listener on the document also covers buttons that name their form (form="...").
  function confirmForms() {
    document.addEventListener("submit", function (event) {
      var question = event.target.getAttribute && event.target.getAttribute("data-confirm");
      if (question && !window.confirm(question)) event.preventDefault();
    });
  }

  document.querySelectorAll("table.sortable").forEach(makeSortable);
  rankingControls();
  confirmForms();
  window.zoorank = {watchEvaluation: watchEvaluation, watchTruth: watchTruth,
                    watchTransfers: watchTransfers, watchTransferPage: watchTransferPage,
                    teacherProposals: teacherProposals,
                    makeSortable: makeSortable,
                    pagedTable: pagedTable, pairLinks: pairLinks};
})();
