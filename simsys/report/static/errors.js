window.simsysErrors = [];
window.addEventListener("error", function (e) {
  var msg = (e && e.message) ? e.message : "error loading a resource";
  window.simsysErrors.push(msg);
  var el = document.getElementById("js-errors");
  if (el) { el.textContent += msg + "\n"; el.hidden = false; }
}, true);
