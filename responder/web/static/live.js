// The incident list re-reads itself when the daemon announces a new incident (server-sent
// events). Without JavaScript the page is the same, one reload behind.
(function () {
  "use strict";
  var list = document.getElementById("incident-list");
  var status = document.getElementById("live-status");
  if (!list || !window.EventSource || list.dataset.live !== "yes") { return; }
  var source = new EventSource("/events/incidents?after=" + encodeURIComponent(list.dataset.newest || "0"));
  source.addEventListener("open", function () {
    if (status) { status.textContent = "Live: new incidents appear by themselves."; status.className = "live on"; }
  });
  source.addEventListener("error", function () {
    if (status) { status.textContent = "Live updates interrupted; retrying (or reload)."; status.className = "live off"; }
  });
  source.addEventListener("incident", function () {
    fetch(window.location.pathname + window.location.search, {credentials: "same-origin"})
      .then(function (resp) { return resp.ok ? resp.text() : Promise.reject(resp.status); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("incident-list");
        if (fresh) { list.replaceWith(fresh); list = fresh; }
      })
      .catch(function () { if (status) { status.textContent = "Could not refresh; reload the page."; } });
  });
}());
