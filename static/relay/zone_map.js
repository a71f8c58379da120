/* Zones on a Leaflet map (vendored: static/vendor/leaflet/), shared by the zone admin page and the ops board.
   No tiles unless RELAY_MAP_TILES_URL is set: the polygons are drawn on a plain background, offline. */
window.RelayZoneMap = (function () {
  "use strict";
  var COLOURS = {
    normal: "#2e7d32", busy: "#ef6c00", critical: "#c62828",
    self: "#1565c0", neighbour: "#7b1fa2", other: "#9e9e9e"
  };

  function create(element, tilesUrl) {
    var map = L.map(element, { zoomSnap: 0.25, attributionControl: Boolean(tilesUrl) });
    if (tilesUrl) {
      L.tileLayer(tilesUrl, { maxZoom: 19 }).addTo(map);
    }
    return map;
  }

  function style(colour) {
    return { color: colour, weight: 2, fillColor: colour, fillOpacity: 0.35 };
  }

  /* Tooltip content that is shown as text: Leaflet puts a string in as HTML, and zone names are typed by ops
     (a name holding markup ran as script in the console of whoever opened the map). */
  function text(value) {
    return function () {
      var label = document.createElement("span");
      label.textContent = value;
      return label;
    };
  }

  /* A zone's polygon with its name on it; `layer.setColour(c)` recolours it later. */
  function drawZone(map, zone, colour) {
    var layer = L.geoJSON(zone.polygon, { style: style(colour) });
    layer.bindTooltip(text(zone.name), { permanent: true, direction: "center", className: "zone-label" });
    layer.setColour = function (c) { layer.setStyle(style(c)); };
    layer.addTo(map);
    return layer;
  }

  function fit(map, layers) {
    if (layers.length) {
      map.fitBounds(L.featureGroup(layers).getBounds(), { padding: [16, 16] });
    } else {
      map.setView([0, 0], 2);
    }
  }

  return { COLOURS: COLOURS, create: create, drawZone: drawZone, fit: fit, text: text };
})();
