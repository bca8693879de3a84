// Light progressive enhancement: every page works without it.
// 1. Times are written in UTC by the server; shown in the viewer's own time zone here.
// 2. A conversation's thread refreshes itself every few seconds, so new messages appear without a reload.
// 3. A form that cannot be undone (revoke a key, disconnect a channel, delete) asks first: its data-confirm words.
"use strict";
(function () {
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (node) {
      var at = new Date(node.getAttribute("datetime"));
      if (!isNaN(at)) { node.textContent = at.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }); }
    });
  }
  function refreshThread(thread) {
    var url = thread.getAttribute("data-refresh");
    setInterval(function () {
      if (document.hidden) { return; }
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (html) {
          if (!html) { return; }
          var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("thread");
          // Replaced only when the server's thread changed (its messages' count and newest id), so a selection
          // and the reader's place are kept, and a screen reader hears one short notice, not the whole thread.
          if (fresh && fresh.getAttribute("data-version") !== thread.getAttribute("data-version")) {
            thread.innerHTML = fresh.innerHTML;
            thread.setAttribute("data-version", fresh.getAttribute("data-version"));
            localTimes(thread);
            var news = document.getElementById("thread-news");
            if (news) { news.textContent = "New messages in this conversation."; }
          }
        })
        .catch(function () { /* offline for a moment: the next tick tries again */ });
    }, 4000);
  }
  document.addEventListener("submit", function (event) {
    var words = event.target.getAttribute && event.target.getAttribute("data-confirm");
    if (words && !window.confirm(words)) { event.preventDefault(); }
  });
  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    var thread = document.getElementById("thread");
    if (thread) { refreshThread(thread); }
  });
})();
