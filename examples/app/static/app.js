// Live updates: the list on the home page follows changes made anywhere, through the /ws WebSocket.
(function () {
  "use strict";
  var badge = document.getElementById("live");
  var list = document.getElementById("notes");

  function escapeHtml(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  function render(notes) {
    if (!list) return;
    if (notes.length === 0) {
      list.innerHTML = '<li class="empty">No notes yet.</li>';
      return;
    }
    list.innerHTML = notes.map(function (n) {
      return '<li data-id="' + n.id + '"><a href="/notes/' + n.id + '">' + escapeHtml(n.title) + "</a></li>";
    }).join("\n");
  }

  function refresh() {
    fetch("/api/notes").then(function (r) { return r.json(); }).then(function (data) { render(data.notes); });
  }

  function connect(delay) {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var ws = new WebSocket(scheme + location.host + "/ws");
    ws.onopen = function () { badge.textContent = "live"; badge.className = "live on"; delay = 500; };
    ws.onmessage = function (msg) {
      var ev = JSON.parse(msg.data);
      if (ev.event === "created" || ev.event === "deleted") refresh();
    };
    ws.onclose = function () {
      badge.textContent = "offline";
      badge.className = "live";
      setTimeout(function () { connect(Math.min(delay * 2, 10000)); }, delay);
    };
  }

  if (badge) connect(500);
})();
