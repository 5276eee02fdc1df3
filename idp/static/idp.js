// Shared progressive enhancement of the hosted pages; every page works without it.
(function () {
  "use strict";
  // After a failed submit, put the keyboard focus on the first field in error.
  var firstError = document.querySelector('[aria-invalid="true"]');
  if (firstError) { firstError.focus(); }
})();
