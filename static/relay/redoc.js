/* Redoc on the API reference page (templates/relay/redoc.html). Redoc adds its styles as <style> elements; the
   page's Content-Security-Policy allows those only with its nonce, which this script's own tag carries. */
(function () {
  "use strict";
  var script = document.currentScript;
  Redoc.init(script.dataset.schemaUrl, { nonce: script.nonce }, document.getElementById("redoc-container"));
})();
