/* The zone admin page's map: this zone (as saved), its neighbours and the other active zones. */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("zone-map-data").textContent);
  var map = RelayZoneMap.create(document.getElementById("zone-map"), data.tiles_url);
  var layers = data.zones.map(function (zone) {
    return RelayZoneMap.drawZone(map, zone, RelayZoneMap.COLOURS[zone.role]);
  });
  RelayZoneMap.fit(map, layers);
})();
