/* The report's explorer: sliders over the swept settings swap pre-rendered frames, the numbers
   (formatted by simsys, embedded as JSON in #explorer-data) and the findings' sentences of that
   setting. Nothing is computed here; text is set with textContent only. */
(function () {
  "use strict";
  var root = document.getElementById("explorer");
  if (!root) { return; }
  var data = JSON.parse(document.getElementById("explorer-data").textContent);
  var sliders = Array.prototype.slice.call(root.querySelectorAll("input[type=range]"));
  var lastAxis = 0;
  function each(sel, fn) { Array.prototype.forEach.call(root.querySelectorAll(sel), fn); }
  function sentences(list) {
    var ul = document.getElementById("explorer-sentences");
    if (!ul) { return; }
    while (ul.firstChild) { ul.removeChild(ul.firstChild); }
    list.forEach(function (s) {
      var li = document.createElement("li");
      li.setAttribute("data-finding", s.key);
      if (s.verdict !== "supported") {
        var tag = document.createElement("span");
        tag.className = "verdict " + s.verdict.replace(/ /g, "-");
        tag.textContent = s.verdict;
        li.appendChild(tag);
      }
      var text = document.createElement("span");
      text.className = "text";
      text.textContent = s.text;
      li.appendChild(text);
      ul.appendChild(li);
    });
  }
  function show(p) {
    if (!(p >= 0 && p < data.coords.length)) { p = data.initial; }
    var c = data.coords[p];
    sliders.forEach(function (s, i) {
      s.value = String(c[i]);
      var out = document.getElementById("value-" + i);
      if (out) { out.textContent = data.axes[i].values[c[i]]; }
    });
    each("img.frame", function (img) { img.hidden = img.getAttribute("data-point") !== String(p); });
    var path = data.axes.length ? data.axes[lastAxis].path : "";
    var frames = root.querySelectorAll("img.graph-frame");
    var any = false;
    Array.prototype.forEach.call(frames, function (img) {
      var on = img.getAttribute("data-path") === path;
      img.hidden = !on; any = any || on;
    });
    if (!any && frames.length) { frames[0].hidden = false; }
    var nums = data.numbers[p];
    each("[data-key]", function (el) {
      var k = el.getAttribute("data-key");
      el.textContent = Object.prototype.hasOwnProperty.call(nums, k) ? nums[k] : "n/a";
    });
    sentences(data.sentences[p]);
    document.getElementById("explorer-missing").hidden = true;
    root.setAttribute("data-point", String(p));
  }
  function fromSliders() {
    var key = sliders.map(function (s) { return s.value; }).join(",");
    var p = data.pointOf[key];
    if (p === undefined) {
      document.getElementById("explorer-missing").hidden = false;
      return;
    }
    try { history.replaceState(null, "", "#point=" + p); } catch (err) { /* file:// in some browsers */ }
    show(p);
  }
  sliders.forEach(function (s, i) {
    s.addEventListener("input", function () { lastAxis = i; fromSliders(); });
  });
  function fromHash() {
    var m = /point=(\d+)/.exec(window.location.hash);
    show(m ? parseInt(m[1], 10) : data.initial);
    // #slide=A:I moves slider A to position I the way a reader does (its input event)
    var s = /slide=(\d+):(\d+)/.exec(window.location.hash);
    if (s && +s[1] < sliders.length) {
      sliders[+s[1]].value = s[2];
      sliders[+s[1]].dispatchEvent(new Event("input"));
    }
  }
  window.addEventListener("hashchange", fromHash);
  fromHash();
  root.setAttribute("data-ready", "1");
})();
