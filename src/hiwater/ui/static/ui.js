// hiwater ui: sort a table by a column (click its header), and refresh the streams page.
// The pages work without this file; it fetches nothing.
"use strict";
(function () {
  function key(td) {
    if (!td) return "";
    var v = td.getAttribute("data-v");
    if (v === null) return td.textContent.trim();
    var n = Number(v);
    return v !== "" && !isNaN(n) ? n : v;
  }
  function compare(a, b) {
    if (a === b) return 0;
    if (a === "") return 1;   // empty cells last, either way
    if (b === "") return -1;
    if (typeof a === "number" && typeof b === "number") return a - b;
    return String(a).localeCompare(String(b), undefined, {numeric: true});
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("th").forEach(function (th, col) {
      th.addEventListener("click", function () {
        var desc = th.classList.contains("asc");
        table.querySelectorAll("th").forEach(function (h) { h.classList.remove("asc", "desc"); });
        th.classList.add(desc ? "desc" : "asc");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var c = compare(key(a.cells[col]), key(b.cells[col]));
          return desc ? -c : c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  var every = Number(document.body.getAttribute("data-refresh"));
  if (every > 0) {
    setTimeout(function () { window.location.reload(); }, every * 1000);
  }
})();
