"""The slice viewer shared by patient pages and scan pages: plain HTML + vanilla JS, no network.

A page lists its slices as JSON (picture, contour overlay, caption). The viewer shows one
slice at a time: a slider, the arrow keys (left/down: previous, right/up: next, Home/End)
and an "overlay" checkbox (key ``o``) that hides the contour picture stacked over the
slice. The shown slice's position is kept in ``data-index`` on the viewer element (the
browser tests read it).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass

from mri_seg.reports.web import BASE_STYLE

PAGE_STYLE = BASE_STYLE + """.note{color:#555;font-size:13px;max-width:900px}
.legend span{display:inline-block;width:14px;height:3px;margin:0 4px 3px 12px;vertical-align:middle}
.viewer{display:inline-block;border:1px solid #ccc;padding:8px;background:#fafafa}
.stack{position:relative;display:inline-block;background:#000;line-height:0}
.stack img{display:block;width:384px;height:auto;image-rendering:auto}
.stack img.overlay{position:absolute;left:0;top:0}
.viewer input[type=range]{width:384px;display:block;margin:8px 0 4px}
.viewer .caption{font-size:13px;min-height:1.3em}
.gallery{display:flex;flex-wrap:wrap;gap:10px}
.gallery figure{margin:0;font-size:12px;width:192px}
.gallery .stack img{width:192px}
.flag{color:#b00;font-weight:bold}
.columns{display:flex;flex-wrap:wrap;gap:28px;align-items:flex-start}
.columns table{font-size:12px}
td.thumb img{width:64px;height:auto;display:block}
td.left,th.left{text-align:left}
td.error{color:#b00;font-weight:bold}
"""

_VIEWER_JS = """
(function () {
  var viewer = document.getElementById('viewer');
  if (!viewer) { return; }
  var slices = JSON.parse(document.getElementById('viewer-data').textContent);
  var image = viewer.querySelector('img.slice');
  var overlay = viewer.querySelector('img.overlay');
  var slider = viewer.querySelector('input[type=range]');
  var caption = viewer.querySelector('.caption');
  var toggle = viewer.querySelector('input[type=checkbox]');
  function show(i) {
    i = Math.max(0, Math.min(slices.length - 1, i));
    var s = slices[i];
    slider.value = i;
    image.src = s.image;
    overlay.src = s.overlay;
    image.alt = s.caption;
    caption.textContent = (i + 1) + ' / ' + slices.length + ': ' + s.caption;
    viewer.setAttribute('data-index', String(i));
  }
  function current() { return parseInt(viewer.getAttribute('data-index'), 10) || 0; }
  slider.addEventListener('input', function () { show(parseInt(slider.value, 10)); });
  toggle.addEventListener('change', function () {
    overlay.style.visibility = toggle.checked ? 'visible' : 'hidden';
  });
  document.addEventListener('keydown', function (e) {
    var step = {ArrowRight: 1, ArrowUp: 1, ArrowLeft: -1, ArrowDown: -1}[e.key];
    if (step) { show(current() + step); e.preventDefault(); }
    else if (e.key === 'Home') { show(0); e.preventDefault(); }
    else if (e.key === 'End') { show(slices.length - 1); e.preventDefault(); }
    else if (e.key === 'o' || e.key === 'O') { toggle.checked = !toggle.checked; toggle.dispatchEvent(new Event('change')); }
  });
  show(parseInt(viewer.getAttribute('data-start'), 10) || 0);
})();
"""

LEGEND = (
    '<p class="legend">FLAIR with contours:<span style="background:#00e000"></span>truth'
    '<span style="background:#ff2a2a"></span>prediction</p>'
)


@dataclass(frozen=True)
class ViewerSlice:
    image: str  # relative URL of the slice picture
    overlay: str  # relative URL of the transparent contour picture
    caption: str


def _json_for_script(obj) -> str:
    """JSON safe inside a ``<script>`` element (no ``</script>`` can close it early)."""
    return json.dumps(obj).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def viewer_html(slices: list[ViewerSlice], start: int = 0) -> str:
    """The viewer's markup, its slice list and script (one viewer per page)."""
    if not slices:
        return '<p class="note">No slices.</p>'
    start = max(0, min(len(slices) - 1, start))
    first = slices[start]
    data = [{"image": s.image, "overlay": s.overlay, "caption": s.caption} for s in slices]
    return (
        f'<div class="viewer" id="viewer" data-index="{start}" data-start="{start}">'
        f'<div class="stack"><img class="slice" src="{html.escape(first.image)}" alt="{html.escape(first.caption)}">'
        f'<img class="overlay" src="{html.escape(first.overlay)}" alt=""></div>'
        f'<input type="range" min="0" max="{len(slices) - 1}" value="{start}" aria-label="slice">'
        '<label><input type="checkbox" checked> overlay (o)</label> '
        '<span class="note">&larr;/&rarr; or the slider: previous/next slice</span>'
        f'<div class="caption">{html.escape(first.caption)}</div></div>'
        f'<script type="application/json" id="viewer-data">{_json_for_script(data)}</script>'
        f"<script>{_VIEWER_JS}</script>"
    )


def page(title: str, body: list[str], scripts: str = "") -> str:
    """A complete HTML page with the shared style."""
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(title)}</title><style>{PAGE_STYLE}</style></head><body>",
            *body,
            f"<script>{scripts}</script>" if scripts else "",
            "</body></html>",
        ]
    )
