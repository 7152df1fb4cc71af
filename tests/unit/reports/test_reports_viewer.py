"""The slice viewer's markup and the shared page (reports/viewer.py), from in-memory slice lists."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

from mri_seg.reports.viewer import LEGEND, PAGE_STYLE, ViewerSlice, page, viewer_html
from mri_seg.reports.web import BASE_STYLE


class _Viewer(HTMLParser):
    def __init__(self):
        super().__init__()
        self.attrs: dict[str, dict[str, str | None]] = {}
        self.data: str | None = None
        self.caption = ""
        self._in_data = False
        self._in_caption = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        key = {"img": f"img.{a.get('class')}", "input": f"input.{a.get('type')}"}.get(tag, a.get("id") or tag)
        self.attrs.setdefault(key, a)
        self._in_data = a.get("id") == "viewer-data"
        self._in_caption = a.get("class") == "caption"

    def handle_endtag(self, tag):
        self._in_data = self._in_caption = False

    def handle_data(self, data):
        if self._in_data:
            self.data = data
        elif self._in_caption:
            self.caption += data


def _slices(n: int) -> list[ViewerSlice]:
    return [ViewerSlice(f"P1/slice_{i:03d}.jpg", f"P1/slice_{i:03d}_overlay.png", f"slice {i} | Dice 0.{i}")
            for i in range(n)]  # fmt: skip


def _parse(text: str) -> _Viewer:
    parser = _Viewer()
    parser.feed(text)
    return parser


def test_viewer_lists_every_slice_and_opens_on_the_start():
    doc = _parse(viewer_html(_slices(5), start=3))
    assert doc.attrs["viewer"]["data-index"] == "3" and doc.attrs["viewer"]["data-start"] == "3"
    assert doc.attrs["img.slice"]["src"] == "P1/slice_003.jpg" and doc.attrs["img.overlay"]["src"] == "P1/slice_003_overlay.png"
    assert doc.attrs["input.range"]["min"] == "0" and doc.attrs["input.range"]["max"] == "4"
    assert doc.attrs["input.range"]["value"] == "3" and "checked" in doc.attrs["input.checkbox"]
    assert doc.caption == "slice 3 | Dice 0.3"
    slices = json.loads(doc.data)
    assert slices == [{"image": s.image, "overlay": s.overlay, "caption": s.caption} for s in _slices(5)]


def test_viewer_start_is_clamped_and_an_empty_list_says_so():
    assert _parse(viewer_html(_slices(3), start=10)).attrs["viewer"]["data-index"] == "2"
    assert _parse(viewer_html(_slices(3), start=-4)).attrs["viewer"]["data-index"] == "0"
    empty = viewer_html([])
    assert "No slices." in empty and 'id="viewer"' not in empty and "<script" not in empty


def test_viewer_data_cannot_close_its_script_and_captions_are_escaped():
    nasty = [ViewerSlice("a.jpg", "a.png", 'x </script><script>alert(1)</script> & "q"')]
    text = viewer_html(nasty)
    assert text.count("</script>") == 2  # the JSON block's and the viewer script's own, nothing injected
    doc = _parse(text)
    assert json.loads(doc.data)[0]["caption"] == nasty[0].caption  # the JSON still decodes to the caption
    assert doc.caption == nasty[0].caption  # shown as text
    assert "<script>alert" not in text


def test_page_is_complete_with_the_shared_style():
    text = page("P1 <x> — mri_seg", ["<h1>P1</h1>", LEGEND, viewer_html(_slices(2))])
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</body></html>")
    assert re.search(r"<title>P1 &lt;x&gt; — mri_seg</title>", text)
    assert f"<style>{PAGE_STYLE}</style>" in text and PAGE_STYLE.startswith(BASE_STYLE)
    assert ".viewer{" in PAGE_STYLE and "truth" in LEGEND and "prediction" in LEGEND
    assert text.count("<script") == 2  # the viewer's data and script; no page script given
    with_script = page("t", ["<p>x</p>"], scripts="console.log(1)")
    assert "<script>console.log(1)</script>" in with_script
