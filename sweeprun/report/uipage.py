"""The results page of ``sweeprun ui`` (live, served) and of ``sweeprun report`` (static).

One document for both: the markup here, the behaviour in ``assets/ui.js``, the style in
``assets/ui.css``, Vega inlined from ``vl-convert-python`` — no request leaves the page.
Served, it reads ``/api/state`` and follows ``/api/events``; static, its state is inlined
as JSON (``</`` escaped, so a value such as ``</script><script>…`` stays text) and the
live parts say they are not there.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from importlib import resources
from typing import Any

#: What the page says about itself: it only reads.
READ_ONLY = (
    "read-only: this page changes nothing in the repository — copy a command to act on an "
    "experiment"
)

_BODY = """
<header><h1>{title}</h1>
<label>baseline <select id="baseline"></select></label>
<input id="filter" placeholder="filter rows (any text)">
<span id="count"></span><span class="ro">{read_only}</span></header>
<main>
{before}<section><h2>Experiments</h2>
<div class="bar"><details><summary>columns</summary><div id="cols" class="cols"></div></details>
<button id="diffcmd" disabled title="select two experiments">copy diff command</button>
<input id="cmd" readonly placeholder="a copied command shows here"></div>
<div id="scroller"><div id="spacer" style="position:absolute;width:1px"></div>
<table id="results"><thead id="thead"></thead><tbody id="tbody"></tbody></table></div>
</section>
<section><h2>Running now</h2><div id="running"></div></section>
<section><h2>Parallel coordinates</h2>
<div class="bar"><label>colour by <select id="color"></select></label>
<button id="clear">clear brushes</button>
<span class="note">drag along an axis to keep the experiments in that range (the table and
the other views follow)</span></div><div id="pc"></div></section>
<section><h2>Metric vs param</h2>
<div class="bar"><label>metric <select id="metric"></select></label>
<label>param <select id="param"></select></label><span id="band-note" class="note"></span></div>
<div id="bands" class="charts"></div></section>
<section><h2>Step curves of the selected experiments</h2>
<div id="curves" class="charts"></div></section>
<section><h2>Parameter importance</h2>
<div class="bar"><label>metric <select id="imp-metric"></select></label>
<button id="imp-go">compute</button></div><div id="importance"></div></section>
<section><h2>Optimisation history</h2><div id="history" class="charts"></div></section>
{after}</main>
"""


def _asset(name: str) -> str:
    return (resources.files("sweeprun.report") / "assets" / name).read_text()


def script_json(data: Any) -> str:
    """JSON safe inside a ``<script>`` element (and for ``JSON.parse``: no NaN)."""
    try:
        text = json.dumps(data, default=str, allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(data), default=str, allow_nan=False)
    # Every "<" as \u003c (JSON has it only inside strings): no "</script>" and no
    # "<!--" that would send the HTML parser into a state where the element never ends.
    return text.replace("<", "\\u003c")


def _finite(data: Any) -> Any:
    """``data`` with NaN and infinities as ``null``."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(v) for v in data]
    return data


def ui_page(
    title: str,
    bundle: str,
    state: dict[str, Any] | None = None,
    before: Sequence[tuple[str, str]] = (),
    after: Sequence[tuple[str, str]] = (),
) -> str:
    """The page: served (``state`` None: it fetches its state) or static (``state``
    inlined); ``before`` and ``after`` the views: ``(heading, HTML)`` sections, their HTML
    escaped by the caller."""
    live = state is None
    opening, closing = (
        "".join(f"<section><h2>{html.escape(h)}</h2>{inner}</section>" for h, inner in part)
        for part in (before, after)
    )
    body = _BODY.format(
        title=html.escape(title), read_only=READ_ONLY, before=opening, after=closing
    )
    inline = (
        "" if live else f'<script type="application/json" id="state">{script_json(state)}</script>'
    )
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title><style>{_asset('ui.css')}</style>"
        f"<script>{bundle}</script>"
        f"<script>window.SWEEPRUN_LIVE = {'true' if live else 'false'};</script>"
        f"</head><body>{body}"
        f"{inline}<script>(() => {{{_asset('ui.js')}}})();</script></body></html>\n"
    )
