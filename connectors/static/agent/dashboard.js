// The dashboard's charts (Chart.js, vendored as static/vendor/chart.umd.js). The tables are already on
// the page; this only draws the KPI rates and volumes by day from /dashboard/data (same filters).
(function () {
  "use strict";
  const box = document.querySelector(".charts[data-source]");
  if (!box || typeof Chart === "undefined") { return; }
  const rates = [["containment", "Containment"], ["handoff_rate", "Handoff rate"],
                 ["channel_switch_success", "Channel-switch success"], ["zero_repeat_rate", "Zero-repeat rate"],
                 ["fallback_rate", "Fallback rate"], ["csat", "CSAT"]];
  fetch(box.dataset.source, { headers: { Accept: "application/json" }, credentials: "same-origin" })
    .then(function (reply) { return reply.ok ? reply.json() : Promise.reject(reply.status); })
    .then(function (report) {
      const channel = new URLSearchParams(box.dataset.source.split("?")[1] || "").get("channel") || "all";
      const rows = report.rows.filter(function (r) { return r.channel === channel; });
      const days = rows.map(function (r) { return r.day; });
      new Chart(document.getElementById("chart-rates"), {
        type: "line",
        data: { labels: days, datasets: rates.map(function (pair) {
          return { label: pair[1], data: rows.map(function (r) { return r[pair[0]] === null ? null : r[pair[0]] * 100; }),
                   spanGaps: true };
        }) },
        options: { animation: false, scales: { y: { min: 0, max: 100, title: { display: true, text: "%" } } } }
      });
      new Chart(document.getElementById("chart-volume"), {
        type: "bar",
        data: { labels: days, datasets: [
          { label: "Sessions", data: rows.map(function (r) { return r.sessions; }) },
          { label: "Switches", data: rows.map(function (r) { return r.switches; }) },
          { label: "Handoff cases", data: rows.map(function (r) { return r.handoff_cases; }) }
        ] },
        options: { animation: false }
      });
      box.dataset.drawn = "true";
    })
    .catch(function (status) { box.dataset.drawn = "failed"; box.title = "charts unavailable (" + status + ")"; });
}());
