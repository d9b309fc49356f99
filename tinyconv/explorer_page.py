"""The page :mod:`tinyconv.explorer` writes: one HTML file with its style, its script and its data, nothing fetched.

The style and the script are ``explorer_page.css`` and ``explorer_page.js`` beside this module, copied into every
page. The script reads the JSON in ``<script id="tinyconv-data">``, draws the graph in forward order (left), the
current node of the backward pass (right) and the controls (top), and makes every picture in the browser from the
int8 arrays embedded there. ``window.tinyconvExplorer`` lets tests and other tools drive it.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["render"]

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tinyconv · backward pass</title>
<style>{style}</style>
</head>
<body>
<header>
  <h1>tinyconv · backward pass of <span id="title"></span></h1>
  <span class="ctl"><button id="prev" title="previous node (←)">◀ prev</button><span id="position"></span>
    <button id="next" title="next node in the backward order (→)">next ▶</button></span>
  <label class="ctl" id="snap-box">snapshot <input type="range" id="snapshot" min="0" max="0" step="1" value="0">
    <span id="snap-label"></span></label>
  <label class="ctl" id="image-box">image <select id="image"></select></label>
  <span id="loss" class="muted"></span>
</header>
<main><nav id="graph"></nav><section id="detail"></section></main>
<script type="application/json" id="tinyconv-data">{data}</script>
<script>{script}</script>
</body>
</html>
"""


def render(data_json: str) -> str:
    """The page for the JSON text ``data_json`` (what :meth:`tinyconv.explorer.Snapshots.data` returns)."""
    # Inside <script> only "</" can end the element early; JSON allows "<\\/" for it.
    safe = data_json.replace("</", "<\\/").replace("<!--", "<\\u0021--")
    here = Path(__file__).resolve().parent
    style = (here / "explorer_page.css").read_text(encoding="utf-8")
    script = (here / "explorer_page.js").read_text(encoding="utf-8")
    return _PAGE.format(style=style, script=script, data=safe)
