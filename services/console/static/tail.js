// The delivery log's live tail: an EventSource on the tail endpoint (the
// address is in #tail-state's data-src) fills table#tail, newest first.
// Rows are made with textContent only, never markup, so whatever a
// delivery holds stays text.
(function () {
  "use strict";
  var state = document.getElementById("tail-state");
  var table = document.getElementById("tail");
  if (!state || !table || !window.EventSource) {
    return;
  }
  var body = table.tBodies[0];
  // Enough to read; a busy org does not make the page grow without end.
  var max = 200;

  function show(text, cls) {
    state.textContent = text;
    state.className = cls;
  }

  function cell(tr, text) {
    var td = document.createElement("td");
    td.textContent = text === undefined || text === null ? "" : String(text);
    tr.appendChild(td);
    return td;
  }

  function row(d) {
    var tr = document.createElement("tr");
    tr.setAttribute("data-event-id", d.event_id || "");
    tr.setAttribute("data-outcome", d.outcome || "");
    cell(tr, d.time);
    var sub = cell(tr, "");
    var code = document.createElement("code");
    code.textContent = d.subscription_id || "";
    // The server makes the address under /console/; nothing else is linked.
    if (typeof d.subscription_url === "string" && d.subscription_url.charAt(0) === "/") {
      var a = document.createElement("a");
      a.href = d.subscription_url;
      a.appendChild(code);
      sub.appendChild(a);
    } else {
      sub.appendChild(code);
    }
    cell(tr, d.event_id);
    cell(tr, d.attempt || "");
    cell(tr, d.status || "");
    var outcome = cell(tr, "");
    var badge = document.createElement("span");
    badge.className = "badge " + (d.outcome || "");
    badge.textContent = d.outcome || "";
    outcome.appendChild(badge);
    cell(tr, d.latency);
    cell(tr, d.error).className = "error";
    cell(tr, d.next_attempt);
    return tr;
  }

  show("Connecting…", "muted");
  var source = new EventSource(state.getAttribute("data-src"));
  source.onopen = function () {
    show("Live: new attempts appear at the top.", "ok");
  };
  source.onerror = function () {
    if (source.readyState === EventSource.CLOSED) {
      show("The live tail stopped (has the session ended?): reload the page to start it again.", "error");
    } else {
      show("Connection lost: reconnecting…", "muted");
    }
  };
  source.onmessage = function (e) {
    var d;
    try {
      d = JSON.parse(e.data);
    } catch (err) {
      return;
    }
    body.insertBefore(row(d), body.firstChild);
    while (body.rows.length > max) {
      body.deleteRow(body.rows.length - 1);
    }
  };
})();
