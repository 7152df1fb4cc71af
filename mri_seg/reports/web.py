"""Pieces every HTML page of the package shares: the base style, the click-to-sort script, cell text.

The evaluation report (:mod:`.html`), the patient pages (:mod:`.patient_pages`) and the
inference report (:mod:`.inference_report`) are separate self-contained pages; they share
these few strings rather than a template engine.
"""

from __future__ import annotations

import html
import math
from typing import Any, Iterable

BASE_STYLE = """
body{font-family:system-ui,Arial,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;margin:8px 0 20px;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f0f0f0}
td:first-child,th:first-child{text-align:left}
table.sortable th{cursor:pointer}
table.sortable th:hover{background:#dde}
"""

# Sorts a ``table.sortable`` by the clicked column: numbers numerically, text alphabetically,
# blanks last; each cell's sort key is its ``data-v`` attribute.
SORT_JS = """
document.querySelectorAll('table.sortable th').forEach(function (th, col) {
  th.addEventListener('click', function () {
    var body = th.closest('table').tBodies[0];
    var asc = th.getAttribute('data-dir') !== 'asc';
    th.parentNode.querySelectorAll('th').forEach(function (h) { h.removeAttribute('data-dir'); });
    th.setAttribute('data-dir', asc ? 'asc' : 'desc');
    var key = function (row) {
      var t = row.cells[col].getAttribute('data-v');
      var n = parseFloat(t);
      return isNaN(n) ? t : n;
    };
    Array.from(body.rows).sort(function (a, b) {
      var x = key(a), y = key(b);
      if (x === '' || y === '') { return x === y ? 0 : (x === '' ? 1 : -1); }  // blanks last
      var c = (typeof x === 'number' && typeof y === 'number') ? x - y : String(x).localeCompare(String(y));
      return asc ? c : -c;
    }).forEach(function (r) { body.appendChild(r); });
  });
});
"""


def fmt(value: Any) -> str:
    """A cell's text: 4 significant digits for floats, blank for None and NaN."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.4g}"
    return str(value)


def key_value_table(items: Iterable[tuple[str, Any]]) -> str:
    """A two-column table, one ``<th>`` name and ``<td>`` value per row (values through :func:`fmt`)."""
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(fmt(v))}</td></tr>" for k, v in items)
    return f"<table>{rows}</table>"
