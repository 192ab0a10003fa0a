// Threadline agent desk: live queue and case pages over server-sent events.
// The pages work without this script; it adds live updates and an in-place reply box.
(function () {
  "use strict";
  var body = document.body;
  var base = body.dataset.base;
  var csrf = body.dataset.csrf;
  var live = document.getElementById("live");

  function localiseTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when)) {
        el.title = el.getAttribute("datetime");
        el.textContent = when.toLocaleTimeString();
      }
    });
  }

  function connect(url, handlers) {
    var source = new EventSource(url);
    var dropped = false;
    source.addEventListener("open", function () {
      if (live) { live.textContent = "live"; live.className = "live on"; }
      if (dropped && handlers.resync) { handlers.resync(); }
    });
    source.addEventListener("error", function () {
      dropped = true;
      if (live) { live.textContent = "reconnecting"; live.className = "live off"; }
    });
    source.addEventListener("signed_out", function () { window.location.reload(); });
    Object.keys(handlers).forEach(function (kind) {
      source.addEventListener(kind, function (message) {
        handlers[kind](message.data ? JSON.parse(message.data) : {});
      });
    });
    return source;
  }

  // ------------------------------------------------------------------ queue

  function queuePage() {
    var rows = document.getElementById("queue-rows");
    var seen = {};
    var pending = null;

    // data-shown-at: when this page first showed the case (the tests read it).
    function mark(initial) {
      rows.querySelectorAll("tr[data-case-id]").forEach(function (row) {
        var id = row.dataset.caseId;
        if (!seen[id]) {
          seen[id] = String(Date.now());
          if (!initial) { row.classList.add("new"); }
        }
        row.dataset.shownAt = seen[id];
      });
      localiseTimes(rows);
    }

    var again = false;
    function refresh() {
      if (pending) { again = true; return; }
      pending = fetch(base + "/queue", { headers: { Accept: "text/html" }, credentials: "same-origin" })
        .then(function (res) {
          if (res.status === 401) { window.location.reload(); }
          return res.ok ? res.text() : null;
        })
        .then(function (html) { if (html !== null) { rows.innerHTML = html; mark(false); } })
        .finally(function () {
          pending = null;
          if (again) { again = false; refresh(); }
        });
    }

    mark(true);
    connect(base + "/events", {
      "case": refresh,
      resync: refresh,
      message: function (data) {
        var row = rows.querySelector('tr[data-case-id="' + data.case + '"]');
        if (!row) { refresh(); return; }
        if (data.event.event === "user" && data.event.text) {
          row.querySelector(".preview").textContent = data.event.text;
          row.classList.add("new");
        }
      }
    });
  }

  // ------------------------------------------------------------------- case

  function timelineItem(event, channel) {
    var li = document.createElement("li");
    if (event.event === "pause" || event.event === "resume") {
      li.className = "marker";
      li.textContent = event.event === "pause" ? "Bot paused: an agent took over" : "Bot resumed";
      return li;
    }
    var kind = event.event === "user" ? "customer" : (event.agent ? "agent" : "bot");
    li.className = "item from-" + kind;
    li.dataset.channel = channel || "";
    var badge = document.createElement("span");
    badge.className = "badge ch-" + (channel || "unknown");
    badge.textContent = channel || "unknown";
    var who = document.createElement("span");
    who.className = "who";
    who.textContent = kind === "customer" ? "Customer" : (event.agent || "Bot");
    var time = document.createElement("time");
    time.textContent = new Date((event.timestamp || Date.now() / 1000) * 1000).toLocaleTimeString();
    var text = document.createElement("p");
    text.className = "text";
    text.textContent = event.text || "";
    li.append(badge, " ", who, " ", time, text);
    if (kind === "customer" && event.intent) {
      var nlu = document.createElement("span");
      nlu.className = "nlu";
      nlu.textContent = event.intent + " " + Number(event.confidence || 0).toFixed(2);
      li.append(nlu);
    }
    (event.buttons || []).forEach(function (title) {
      var button = document.createElement("span");
      button.className = "button";
      button.textContent = title;
      li.append(" ", button);
    });
    return li;
  }

  function casePage() {
    var caseId = body.dataset.case;
    var timeline = document.getElementById("timeline");
    var status = document.querySelector(".case-head").dataset.status;

    function lastChannel() {
      var items = timeline.querySelectorAll("li[data-channel]");
      return items.length ? items[items.length - 1].dataset.channel : "";
    }

    function reloadTimeline() {
      fetch(base + "/cases/" + caseId + "/timeline", { credentials: "same-origin" })
        .then(function (res) { return res.ok ? res.text() : null; })
        .then(function (html) {
          if (html !== null) { timeline.innerHTML = html; localiseTimes(timeline); }
        });
    }

    connect(base + "/events?case=" + encodeURIComponent(caseId), {
      message: function (data) {
        var channel = data.event.event === "user" ? data.event.channel : lastChannel();
        var item = timelineItem(data.event, channel);
        item.classList.add("new");
        timeline.append(item);
        item.scrollIntoView({ block: "nearest" });
      },
      "case": function (data) {
        if (data.case && data.case.status !== status) { window.location.reload(); }
      },
      resync: reloadTimeline
    });

    var form = document.getElementById("reply");
    if (!form) { return; }
    var error = document.getElementById("reply-error");
    form.addEventListener("submit", function (submit) {
      submit.preventDefault();
      var button = form.querySelector("button");
      button.disabled = true;
      error.textContent = "";
      fetch(form.action, {
        method: "POST",
        credentials: "same-origin",
        headers: { Accept: "application/json", "X-CSRF-Token": csrf },
        body: new URLSearchParams(new FormData(form))
      })
        .then(function (res) { return res.json().catch(function () { return { ok: false, error: res.statusText }; }); })
        .then(function (result) {
          if (result.ok) { form.reset(); } else { error.textContent = result.error || "Not sent."; }
        })
        .catch(function () { error.textContent = "Not sent: the server did not answer."; })
        .finally(function () { button.disabled = false; });
    });
    form.querySelector("textarea").addEventListener("keydown", function (key) {
      if (key.key === "Enter" && (key.ctrlKey || key.metaKey)) { form.requestSubmit(); }
    });
  }

  localiseTimes(document);
  if (body.dataset.page === "queue") { queuePage(); }
  if (body.dataset.page === "case") { casePage(); }
})();
