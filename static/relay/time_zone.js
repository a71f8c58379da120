// The browser's time zone, for the console to show and read times in (core/time_zones.py). Set on every console
// page, the login page included, so the first page after logging in is already in it. An IANA name needs no
// escaping in a cookie ("America/Los_Angeles", "Etc/GMT+8"), and the server reads cookies unescaped.
(function () {
  var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (!zone || !/^[A-Za-z0-9_+\/-]+$/.test(zone)) {
    return;
  }
  var secure = location.protocol === "https:" ? "; Secure" : "";
  document.cookie = "relay_tz=" + zone + "; path=/; max-age=31536000; SameSite=Lax" + secure;
})();
