// Herald console: live updates, the page's only script. The server renders every
// page; this file listens to the page's server-sent events (named by the data-live
// attribute of the live status line, at the page's end: a namespace page's rows are
// sent before it is known) and puts the HTML they carry in place of the elements of the
// same id, keeping the keyboard focus where it was. Without it the pages work as they
// are, and a reload shows the latest.
(function () {
  "use strict";
  var status = document.getElementById("live-status");
  if (!status || !status.getAttribute("data-live") || !window.EventSource) {
    if (status) status.textContent = "Reload the page for the latest.";
    return;
  }
  function say(text) { if (status) status.textContent = text; }
  var source = new EventSource(status.getAttribute("data-live"));
  source.onopen = function () { say("Live updates: on."); };
  source.onerror = function () { say("Live updates: reconnecting…"); };
  source.addEventListener("notice", function (e) {
    var text = JSON.parse(e.data);
    say(text ? "Live updates: " + text : "Live updates: on.");
  });
  source.addEventListener("patch", function (e) {
    var patches = JSON.parse(e.data);
    for (var i = 0; i < patches.length; i++) {
      var old = document.getElementById(patches[i].id);
      if (!old) continue;
      var focused = document.activeElement;
      var href = old.contains(focused) && focused.getAttribute ? focused.getAttribute("href") : null;
      var box = document.createElement(old.tagName === "TR" ? "tbody" : "div");
      box.innerHTML = patches[i].html;
      var fresh = box.firstElementChild;
      if (!fresh) continue;
      old.replaceWith(fresh);
      if (href) {
        var again = fresh.querySelector('a[href="' + CSS.escape(href) + '"]');
        if (again) again.focus();
      }
    }
    say("Live updates: on, last at " + new Date().toLocaleTimeString() + ".");
  });
})();
