// simsys explore: the page's only script. It reads the controls, posts the settings (and the
// previous ones) to /api/state, and shows what the server answers: the results as HTML, and the
// ids of the graph's elements to light. All computing and all words are on the server.
(function () {
  "use strict";
  var root = document.getElementById("explorer");
  var errorBox = document.getElementById("sx-error");
  var panel = document.getElementById("sx-panel");
  var graph = document.querySelector("#sx-graph svg");
  var initial = JSON.parse(document.getElementById("sx-initial").textContent);
  var current = JSON.parse(JSON.stringify(initial));  // the settings the page shows
  var pending = null;  // the latest settings waiting to be sent
  var inFlight = false;

  function showError(text) {
    errorBox.textContent = text || "";
    errorBox.hidden = !text;
  }

  function fmt(input, value) {
    if (input.dataset.kind === "integer") { return Number(value).toLocaleString("en-US"); }
    var v = Number(value);
    return String(Number(v.toPrecision(4)));
  }

  // The settings with one control's value: only what the reader moved is sent as changed (a
  // slider cannot always show a scenario's own value exactly, e.g. 1/3 on a 0.001 grid).
  function readSetting(el) {
    var out = JSON.parse(JSON.stringify(pending || current));
    var key = el.dataset.key;
    var policy = document.querySelector('[data-policy-for="' + key + '"]');
    if (el.dataset.kind === "choice") { out[key] = el.value; }
    else if (policy && policy.checked) { out[key] = "policy"; }
    else { out[key] = el.dataset.kind === "integer" ? parseInt(el.value, 10) : parseFloat(el.value); }
    return out;
  }

  function writeControls(settings) {
    document.querySelectorAll("[data-key][data-kind]").forEach(function (el) {
      var key = el.dataset.key, v = settings[key];
      var policy = document.querySelector('[data-policy-for="' + key + '"]');
      if (el.dataset.kind === "choice") { el.value = v; return; }
      if (policy) { policy.checked = v === "policy"; el.disabled = v === "policy"; }
      if (v !== "policy") { el.value = v; }
      var out = document.querySelector('output[data-for="' + key + '"]');
      if (out) { out.textContent = v === "policy" ? "policy" : fmt(el, v); }
    });
  }

  function light(ids) {
    if (!graph) { return; }
    graph.querySelectorAll(".lit").forEach(function (el) { el.classList.remove("lit"); });
    ids.forEach(function (id) {
      var el = document.getElementById(id);
      if (el) { el.classList.add("lit"); }
    });
    graph.classList.toggle("has-lit", ids.length > 0);
    graph.setAttribute("data-lit", ids.join(" "));
  }

  function send() {
    if (inFlight || pending === null) { return; }
    var settings = pending;
    pending = null;
    inFlight = true;
    root.dataset.busy = "1";
    fetch("api/state", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({settings: settings, previous: current})
    }).then(function (r) {
      return r.json().then(function (body) { return {ok: r.ok, body: body}; });
    }).then(function (res) {
      if (!res.ok) { throw new Error(res.body.error || "the server refused the request"); }
      showError("");
      current = res.body.settings;
      panel.innerHTML = res.body.panel;
      light(res.body.highlight);
      writeControls(current);
      root.dataset.serverMs = String(Math.round(res.body.server_ms));
      root.dataset.updates = String(Number(root.dataset.updates || "0") + 1);
    }).catch(function (err) {
      showError(String(err.message || err));
      writeControls(current);
    }).then(function () {
      inFlight = false;
      root.dataset.busy = pending === null ? "0" : "1";
      send();
    });
  }

  function changed(el) {
    pending = readSetting(el);
    send();
  }

  document.querySelectorAll("[data-key][data-kind]").forEach(function (el) {
    el.addEventListener("input", function () {
      var out = document.querySelector('output[data-for="' + el.dataset.key + '"]');
      if (out && el.type === "range") { out.textContent = fmt(el, el.value); }
    });
    el.addEventListener("change", function () { changed(el); });
  });
  document.querySelectorAll("[data-policy-for]").forEach(function (box) {
    box.addEventListener("change", function () {
      var slider = document.querySelector('[data-key="' + box.dataset.policyFor + '"][data-kind]');
      slider.disabled = box.checked;
      changed(slider);
    });
  });
  document.getElementById("sx-reset").addEventListener("click", function () {
    writeControls(initial);
    pending = JSON.parse(JSON.stringify(initial));
    send();
  });
  root.dataset.ready = "1";
}());
