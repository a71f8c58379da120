/* django-celery-beat's periodic task form (templates/admin/djcelery/change_periodictask_form.html): the chosen
   crontab, read out in words under its field, as the package's inline script did. */
(function () {
  "use strict";
  var readable = JSON.parse(document.getElementById("readable-crontabs").textContent);
  var field = document.querySelector(".field-crontab");
  var help = field && field.querySelector(".help");
  var translation = document.querySelector(".field-crontab_translation");
  if (translation) translation.style.display = "none"; // a style set from a script file: the CSP allows it
  if (!help) return;
  var original = help.textContent;
  field.addEventListener("change", function () {
    var words = readable[document.getElementById("id_crontab").value];
    help.replaceChildren(original, document.createElement("br"), "Translation: " + words);
  });
})();
