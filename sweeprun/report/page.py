"""The offline page of ``sweeprun plots``: its charts, each drawn by Vega-Embed.

No request leaves the page: the JavaScript (Vega, Vega-Lite, Vega-Embed) comes from the
``vl-convert-python`` package and is inlined; the charts' data is in the page. (``sweeprun
report`` is the page of ``sweeprun ui``, static: see ``report.uipage``.)
"""

from __future__ import annotations

import html
from typing import Any

from sweeprun.report.uipage import script_json

_STYLE = """
body{font:14px system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:20px} h2{font-size:16px;margin-top:28px}
.charts{display:flex;flex-wrap:wrap;gap:16px}
"""
_SCRIPT = """
const specs = JSON.parse(document.getElementById('specs').textContent);
for (const [id, spec] of Object.entries(specs)) {
  vegaEmbed('#' + id, spec, {actions: false, renderer: 'svg'}).catch(e => console.error(e));
}
"""


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
        f'<script type="application/json" id="specs">{script_json(specs)}</script>'
        f"<script>{_SCRIPT}</script></body></html>\n"
    )
