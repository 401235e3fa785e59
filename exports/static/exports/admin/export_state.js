/* Keeps the state cells of queued, running and waiting exports current on the admin's export list
 * and change page: every data-poll-ms it asks the admin's progress endpoint
 * (exports/admin.py: ExportAdmin.progress_view) for those exports and redraws their cells with the
 * HTML it answers. It stops once no export on the page can change any more. */
(function () {
  "use strict";
  var MOVING = ["queued", "running", "waiting"];

  function moving() {
    return Array.prototype.filter.call(document.querySelectorAll("[data-export-state]"), function (cell) {
      return MOVING.indexOf(cell.dataset.status) !== -1;
    });
  }

  function redraw(cell, state) {
    var oldFill = cell.querySelector(".export-bar-fill");
    cell.innerHTML = state.html;
    cell.dataset.status = state.status;
    var fill = cell.querySelector(".export-bar-fill");
    if (oldFill && fill) {  // let the bar slide from where it was
      var target = fill.style.width;
      fill.style.width = oldFill.style.width;
      void fill.offsetWidth;
      fill.style.width = target;
    }
  }

  function ended(cell, before) {
    // on an export's own page, show the whole page of an export that just ended (its clip, Retry)
    return document.body.classList.contains("change-form") && MOVING.indexOf(before) !== -1 &&
      MOVING.indexOf(cell.dataset.status) === -1;
  }

  function poll(delay) {
    window.setTimeout(function () {
      var cells = moving();
      if (!cells.length) { return; }
      var url = new URL(cells[0].dataset.progressUrl, window.location.href);
      cells.forEach(function (cell) { url.searchParams.append("id", cell.dataset.exportId); });
      fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
        .then(function (response) { return response.ok ? response.json() : Promise.reject(response.status); })
        .then(function (body) {
          body.exports.forEach(function (state) {
            cells.forEach(function (cell) {
              if (cell.dataset.exportId !== String(state.id)) { return; }
              var before = cell.dataset.status;
              redraw(cell, state);
              if (ended(cell, before)) { window.location.reload(); }
            });
          });
          poll(body.poll_ms || delay);
        })
        .catch(function () { poll(Math.min(delay * 2, 60000)); });  // logged out, server away: slower
    }, delay);
  }

  function start() {
    var cells = moving();
    if (cells.length) { poll(parseInt(cells[0].dataset.pollMs, 10) || 2000); }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
