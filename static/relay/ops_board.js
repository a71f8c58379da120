/* The live ops board: state from the page (board-data), then live over /ws/ops/ on the admin session:
   `zone.pressure` recolours the zones, `escalation.opened` / `escalation.updated` keep the queue. */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("board-data").textContent);
  var root = document.getElementById("board");
  var escalationUrl = root.dataset.escalationUrl;
  var map = RelayZoneMap.create(document.getElementById("board-map"), data.tiles_url);
  var zones = {};
  var escalations = {};

  function cell(text, className) {
    var td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function paintZone(zone) {
    var entry = zones[zone.code];
    entry.reading = zone;
    entry.layer.setColour(RelayZoneMap.COLOURS[zone.band]);
    entry.layer.eachLayer(function (path) {
      var element = path.getElement && path.getElement();
      if (element) {
        element.setAttribute("data-zone", zone.code);
        element.setAttribute("data-band", zone.band);
      }
    });
    entry.layer.setTooltipContent(RelayZoneMap.text(zone.name + " · " + zone.band + " ×" + zone.surge_multiplier));
    var row = entry.row;
    row.dataset.band = zone.band;
    row.replaceChildren(
      cell(zone.name),
      cell(zone.band, "band band-" + zone.band),
      cell(String(zone.pressure)),
      cell("×" + zone.surge_multiplier),
      cell(zone.open_deliveries + " (" + zone.created_last_15_min + " in 15 min)"),
      cell(zone.available_drivers + " / " + zone.busy_drivers + " / " + zone.on_break_drivers),
      cell(zone.hints_sent_last_hour + " sent, " + zone.hints_entered_last_hour + " entered"),
      cell(String(openIn(zone.code)), "zone-escalations")
    );
    row.title = "Taken " + zone.local_time + " local time";
  }

  // A zone's open escalations are counted from the queue below, which is live: the minute's reading lagged it,
  // and the board showed an escalation ops had just resolved still counted against its zone.
  function openIn(code) {
    return Object.values(escalations).filter(function (e) { return e.zone === code; }).length;
  }

  var tbody = document.querySelector("#zone-table tbody");
  data.zones.forEach(function (zone) {
    var row = document.createElement("tr");
    row.dataset.zone = zone.code;
    tbody.appendChild(row);
    zones[zone.code] = { layer: RelayZoneMap.drawZone(map, zone, RelayZoneMap.COLOURS[zone.band]), row: row };
  });
  RelayZoneMap.fit(map, Object.values(zones).map(function (z) { return z.layer; }));
  data.zones.forEach(paintZone);

  function age(openedAt) {
    var seconds = Math.max(0, Math.round((Date.now() - Date.parse(openedAt)) / 1000));
    if (seconds < 60) return seconds + " s";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min";
    return Math.floor(seconds / 3600) + " h " + Math.floor((seconds % 3600) / 60) + " min";
  }

  function renderEscalations() {
    var open = Object.values(escalations).sort(function (a, b) {
      return b.level - a.level || Date.parse(a.opened_at) - Date.parse(b.opened_at);
    });
    var body = document.querySelector("#escalation-table tbody");
    body.replaceChildren.apply(body, open.map(function (escalation) {
      var row = document.createElement("tr");
      row.className = "level-" + escalation.level;
      row.dataset.escalation = escalation.id;
      var link = document.createElement("a");
      link.href = escalationUrl.replace("/0/", "/" + escalation.id + "/");
      link.textContent = escalation.external_id;
      var delivery = cell("");
      delivery.appendChild(link);
      row.append(cell("L" + escalation.level), cell(age(escalation.opened_at)), cell(escalation.zone), delivery,
        cell(escalation.detail || escalation.reason), cell(escalation.status));
      return row;
    }));
    var levels = {};
    open.forEach(function (e) { levels[e.level] = (levels[e.level] || 0) + 1; });
    document.getElementById("escalation-levels").textContent = Object.keys(levels).sort().reverse()
      .map(function (level) { return "L" + level + ": " + levels[level]; }).join(" · ");
    document.getElementById("no-escalations").hidden = open.length > 0;
    Object.keys(zones).forEach(function (code) {
      var count = zones[code].row.querySelector(".zone-escalations");
      if (count) count.textContent = String(openIn(code));
    });
  }

  function keepEscalation(escalation) {
    if (escalation.status === "resolved") {
      delete escalations[escalation.id];
    } else {
      escalations[escalation.id] = escalation;
    }
  }

  data.escalations.forEach(keepEscalation);
  renderEscalations();
  setInterval(renderEscalations, 10000); // ages move on

  var status = document.getElementById("board-status");
  var connectedBefore = false;
  // The zones drawn came with the page: as of now, until the first `zone.pressure` (up to a minute away).
  document.getElementById("board-updated").textContent = "zones at " + new Date().toLocaleTimeString();

  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + window.location.host + "/ws/ops/");
    socket.onopen = function () {
      if (connectedBefore) {
        window.location.reload(); // messages were missed while away: start again from the database
        return;
      }
      connectedBefore = true;
      status.textContent = "connected";
    };
    socket.onmessage = function (event) {
      var message = JSON.parse(event.data);
      if (message.type === "zone.pressure") {
        message.data.zones.forEach(function (zone) { if (zones[zone.code]) paintZone(zone); });
        document.getElementById("board-updated").textContent = "zones at " + new Date(message.sent_at).toLocaleTimeString();
      } else if (message.type === "escalation.opened" || message.type === "escalation.updated") {
        keepEscalation(message.data);
        renderEscalations();
      }
    };
    socket.onclose = function (event) {
      if (event.code === 4401 || event.code === 4403) {
        status.textContent = "signed out: reload to log in again";
        return;
      }
      status.textContent = "reconnecting…";
      setTimeout(connect, 3000);
    };
  }

  connect();
})();
