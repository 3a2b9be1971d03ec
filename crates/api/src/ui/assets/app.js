// Switchyard dashboard: the live parts of otherwise server-rendered pages. Every lookup is
// guarded, so a page without a live part runs nothing; rows are built with textContent only,
// so nothing from an event is ever parsed as HTML.
(function () {
  "use strict";

  function cell(text) {
    var td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    return td;
  }

  function eventRow(event) {
    var id = event.event_id || event.id;
    if (!id) return null;
    var row = document.createElement("tr");
    row.className = "event fresh";
    row.setAttribute("data-id", id);
    var first = document.createElement("td");
    var link = document.createElement("a");
    link.href = "/ui/events/" + encodeURIComponent(id);
    link.textContent = id;
    first.appendChild(link);
    row.appendChild(first);
    row.appendChild(cell(event.event_type));
    row.appendChild(cell(event.source));
    var meta = event.metadata || {};
    row.appendChild(cell(meta.correlation_id || event.correlation_id));
    row.appendChild(cell(event.timestamp));
    return row;
  }

  function liveTail() {
    var table = document.getElementById("events");
    if (!table || table.getAttribute("data-live") !== "on" || !window.EventSource) return;
    var body = table.tBodies && table.tBodies[0];
    if (!body) return;
    var status = document.getElementById("live-status");
    var say = function (text) {
      if (status) status.textContent = text;
    };
    var source = null;
    // The stream position the page was rendered at, then the last frame seen: a new connection
    // resumes there, so nothing published since the page was read is missed.
    var after = table.getAttribute("data-after");

    function connect() {
      source = new EventSource("/ui/events/stream" + (after ? "?after=" + encodeURIComponent(after) : ""));
      source.addEventListener("open", function () {
        say("");
      });
      source.addEventListener("event", function (message) {
        if (message.lastEventId) after = message.lastEventId;
        var event;
        try {
          event = JSON.parse(message.data);
        } catch (e) {
          return;
        }
        var row = eventRow(event);
        if (!row) return;
        var id = row.getAttribute("data-id");
        for (var i = 0; i < body.rows.length; i++) {
          if (body.rows[i].getAttribute("data-id") === id) return;
        }
        body.insertBefore(row, body.firstChild);
        while (body.rows.length > 200) body.deleteRow(body.rows.length - 1);
        var empty = document.querySelector("p.empty");
        if (empty && empty.parentNode) empty.parentNode.removeChild(empty);
      });
      source.addEventListener("lagged", function (message) {
        try {
          var resume = JSON.parse(message.data).cursor;
          if (resume) after = resume;
        } catch (e) {
          // Without a cursor the tail resumes from the last frame it showed.
        }
        say("The live tail fell behind; catching up.");
        source.close();
        window.setTimeout(connect, 1000);
      });
      source.addEventListener("error", function () {
        if (source.readyState === EventSource.CLOSED) {
          say("The live tail is disconnected; retrying.");
          window.setTimeout(connect, 5000);
        } else {
          say("The live tail is reconnecting.");
        }
      });
    }

    connect();
    window.addEventListener("pagehide", function () {
      if (source) source.close();
    });
  }

  function replayProgress() {
    var section = document.getElementById("replay-status");
    if (!section || !window.fetch) return;
    var ids = section.getAttribute("data-ids");
    var bar = document.getElementById("replay-progress");
    var text = document.getElementById("replay-text");
    if (!ids) return;

    function poll() {
      window
        .fetch("/ui/dead-letters/progress?ids=" + encodeURIComponent(ids), {
          credentials: "same-origin",
          headers: { Accept: "application/json" },
        })
        .then(function (response) {
          if (!response.ok) throw new Error("status " + response.status);
          return response.json();
        })
        .then(function (progress) {
          if (bar) {
            bar.max = progress.total;
            bar.value = progress.done;
          }
          if (text) {
            var line = progress.done + " of " + progress.total + " replayed";
            if (progress.done >= progress.total && progress.dead > 0) {
              line += " (" + progress.dead + " failed again)";
            }
            text.textContent = line;
          }
          if (progress.done < progress.total) window.setTimeout(poll, 1000);
        })
        .catch(function () {
          window.setTimeout(poll, 5000);
        });
    }

    poll();
  }

  function start() {
    liveTail();
    replayProgress();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
