"""One self-contained HTML page: the table, the charts, failures, the sweep definitions.

No request leaves the page: the JavaScript (Vega, Vega-Lite, Vega-Embed) comes from the
``vl-convert-python`` package and is inlined; the charts' data is in the page; the table's
sorting and filtering is a few lines of our own.
"""

from __future__ import annotations

import html
import json
from typing import Any

_STYLE = """
body{font:14px system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:20px} h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse} th,td{padding:3px 8px;border-bottom:1px solid #ddd;
text-align:right;white-space:nowrap} th{cursor:pointer;background:#f4f4f4;position:sticky;top:0}
td:first-child,th:first-child,td:nth-child(2){text-align:left}
th[aria-sort=ascending]::after{content:" ▲"} th[aria-sort=descending]::after{content:" ▼"}
.failed td:nth-child(2){color:#b00} .charts{display:flex;flex-wrap:wrap;gap:16px}
pre{background:#f7f7f7;padding:8px;overflow:auto;max-height:320px}
#filter{margin:6px 0;padding:4px;width:280px}
"""
_SCRIPT = """
const specs = JSON.parse(document.getElementById('specs').textContent);
for (const [id, spec] of Object.entries(specs)) {
  vegaEmbed('#' + id, spec, {actions: false, renderer: 'svg'}).catch(e => console.error(e));
}
const table = document.getElementById('results');
if (table) {
  const body = table.tBodies[0];
  table.querySelectorAll('th').forEach((th, col) => th.addEventListener('click', () => {
    const asc = th.getAttribute('aria-sort') !== 'ascending';
    table.querySelectorAll('th').forEach(h => h.removeAttribute('aria-sort'));
    th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
    const key = r => r.cells[col].dataset.v ?? r.cells[col].textContent;
    const num = v => v === '' || isNaN(Number(v)) ? null : Number(v);
    const rows = Array.from(body.rows).sort((a, b) => {
      const x = key(a), y = key(b), nx = num(x), ny = num(y);
      if (nx === null && ny === null) return asc ? x.localeCompare(y) : y.localeCompare(x);
      if (nx === null) return 1;
      if (ny === null) return -1;
      return asc ? nx - ny : ny - nx;
    });
    rows.forEach(r => body.appendChild(r));
  }));
  document.getElementById('filter').addEventListener('input', e => {
    const q = e.target.value.toLowerCase();
    Array.from(body.rows).forEach(r => {
      r.hidden = q !== '' && !r.textContent.toLowerCase().includes(q);
    });
  });
}
"""


def _script_json(data: Any) -> str:
    """JSON safe inside a ``<script>`` element."""
    return json.dumps(data, default=str).replace("</", "<\\/")


def results_table(header: list[str], rows: list[list[tuple[str, Any]]], failed: set[int]) -> str:
    """The experiments table: each cell ``(text, sort value)``; ``failed`` rows marked."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cells = "".join(
            f'<td data-v="{html.escape(str(v))}">{html.escape(text)}</td>' for text, v in row
        )
        body.append(f'<tr class="{"failed" if i in failed else ""}">{cells}</tr>')
    return (
        '<input id="filter" placeholder="filter rows (any text)">'
        f'<table id="results"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    )


def charts_html(prefix: str, charts: list[dict[str, Any]], specs: dict[str, Any]) -> str:
    """Placeholders for ``charts`` (their specs go into ``specs`` by element id)."""
    parts = []
    for i, spec in enumerate(charts):
        cid = f"{prefix}{i}"
        specs[cid] = spec
        parts.append(f'<div id="{cid}" class="chart"></div>')
    return f'<div class="charts">{"".join(parts)}</div>'


def page(title: str, sections: list[tuple[str, str]], specs: dict[str, Any], bundle: str) -> str:
    """The whole document: ``sections`` are ``(heading, inner HTML)``."""
    body = "".join(
        f"<section><h2>{html.escape(h)}</h2>{inner}</section>" if h else inner
        for h, inner in sections
    )
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style>"
        f"<script>{bundle}</script></head><body><h1>{html.escape(title)}</h1>{body}"
        f'<script type="application/json" id="specs">{_script_json(specs)}</script>'
        f"<script>{_SCRIPT}</script></body></html>\n"
    )
