// The admin delivery page's map: pickup, dropoff and the driver's breadcrumb trail (tiles only when configured).
(function () {
  "use strict";
  const route = JSON.parse(document.getElementById("route-data").textContent);
  const map = L.map("route-map", { attributionControl: Boolean(route.tiles) });
  if (route.tiles) L.tileLayer(route.tiles, { maxZoom: 19 }).addTo(map);
  const dot = (at, color, label) =>
    L.circleMarker(at, { radius: 8, color: "#fff", weight: 2, fillColor: color, fillOpacity: 1 }).bindTooltip(label);
  dot(route.pickup, "#1d4ed8", "pickup").addTo(map);
  dot(route.dropoff, "#16a34a", "dropoff").addTo(map);
  const points = [route.pickup, route.dropoff, ...route.trail];
  if (route.trail.length) {
    L.polyline(route.trail, { color: "#dc2626", weight: 3, className: "breadcrumb-trail" }).addTo(map);
  }
  map.fitBounds(L.latLngBounds(points).pad(0.2));
})();
