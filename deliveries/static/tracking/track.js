// The customer's tracking page: renders the link's state, keeps it live over the socket and polls the JSON
// every few seconds while the socket is down. Every sentence comes translated from the server.
(function () {
  "use strict";
  const read = (id) => JSON.parse(document.getElementById(id).textContent);
  const config = read("tracking-config");
  const labels = read("tracking-labels");
  let state = read("tracking-state");
  const STEPS = ["pending", "assigned", "picked_up"];
  const ACTIVE = ["assigned", "picked_up"];

  const clock = (iso) =>
    new Date(iso).toLocaleTimeString(config.language, {
      hour: "2-digit", minute: "2-digit", hour12: false, timeZone: config.time_zone,
    });
  const fill = (text, values) => text.replace(/\{(\w+)\}/g, (_, key) => values[key]);

  // The map: pickup, dropoff and the straight route on a plain background, tiles only when configured.
  const map = L.map("map", { attributionControl: Boolean(config.tiles) });
  if (config.tiles) L.tileLayer(config.tiles, { maxZoom: 19 }).addTo(map);
  const dot = (at, color, className, label) =>
    L.circleMarker(at, { radius: 9, color: "#fff", weight: 2, fillColor: color, fillOpacity: 1, className })
      .bindTooltip(label);
  dot(config.pickup, "#1d4ed8", "pickup-marker", labels.pickup).addTo(map);
  dot(config.dropoff, "#16a34a", "dropoff-marker", labels.dropoff).addTo(map);
  L.polyline([config.pickup, config.dropoff], { color: "#64748b", dashArray: "6 8", weight: 3 }).addTo(map);
  map.fitBounds(L.latLngBounds([config.pickup, config.dropoff]).pad(0.4));
  let driver = null;

  function render() {
    document.body.dataset.status = state.status;
    document.getElementById("status").textContent = labels.status[state.status] || state.status;
    const finished = state.timeline.find((step) => !STEPS.includes(step.status));
    let eta = "";
    if (state.eta && ACTIVE.includes(state.status)) {
      eta = fill(labels.arrives, { start: clock(state.eta.window_start), end: clock(state.eta.window_end) });
    } else if (state.status === "delivered" && finished) {
      eta = fill(labels.delivered_at, { time: clock(finished.at) });
    } else if (finished) {
      eta = fill(labels.finished_at, { time: clock(finished.at) });
    }
    document.getElementById("eta").textContent = eta;
    document.getElementById("driver").textContent = state.driver
      ? fill(labels.driver, { name: state.driver.first_name, vehicle: labels.vehicle[state.driver.vehicle] || state.driver.vehicle })
      : "";

    const reached = Object.fromEntries(state.timeline.map((step) => [step.status, step.at]));
    const steps = finished ? [...STEPS, finished.status] : [...STEPS, "delivered"];
    const list = document.getElementById("timeline");
    list.replaceChildren(...steps.map((step) => {
      const item = document.createElement("li");
      item.textContent = labels.step[step];
      if (reached[step]) {
        item.className = "done";
        const when = document.createElement("time");
        when.dateTime = reached[step];
        when.textContent = clock(reached[step]);
        item.append(when);
      }
      return item;
    }));

    if (state.location) {
      const at = [state.location.lat, state.location.lng];
      if (!driver) driver = dot(at, "#dc2626", "driver-marker", labels.you_driver).addTo(map);
      driver.setLatLng(at);
    } else if (driver) {
      driver.remove();
      driver = null;
    }
    document.getElementById("legend-driver").hidden = !driver;
  }

  function apply(message) {
    if (message.type === "status") state = message.data;
    else if (message.type === "eta") state.eta = message.data;
    else if (message.type === "location" && state.status === "picked_up") state.location = message.data;
    else return;
    render();
  }

  // Live over the socket; while it is down, the JSON every poll_every_s seconds (and a new socket now and then).
  let poller = null;
  function poll() {
    fetch(config.api, { headers: { Accept: "application/json" } }).then((answer) => {
      if (answer.status === 410 || answer.status === 404) window.location.reload();
      else if (answer.ok) answer.json().then((data) => { state = data; render(); });
    }).catch(() => {});
  }
  function connect() {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${window.location.host}${config.socket}`);
    socket.onopen = () => { clearInterval(poller); poller = null; };
    socket.onmessage = (event) => {
      document.body.dataset.live = "socket";  // for people and tests alike: updates arrive by themselves
      apply(JSON.parse(event.data));
    };
    socket.onclose = () => {
      if (!poller) { poll(); poller = setInterval(poll, config.poll_every_s * 1000); }
      setTimeout(connect, 30000);
    };
  }
  render();
  connect();
})();
