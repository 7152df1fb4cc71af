"""The batch-inference report: ``OUT/report.html`` and a page per scan in ``OUT/report_files/``.

While a scan is segmented (any rank under torchrun) :func:`write_scan_page` writes its
slice pictures (FLAIR JPEG + predicted-contour PNG per slice, longer side at most
``MAX_SIDE``), a small thumbnail and ``report_files/<scan>.html`` with the slice viewer.
After the batch, rank 0 writes ``report.html`` from the merged ``predictions.csv`` rows:
one sortable row per scan (thumbnail, path, status, tumour volume in mm³ where the voxel
size is known else pixels, slices with tumour, review flag, warnings; error rows show
their message). Only thumbnails load on the index (lazily), so 1,000 scans open quickly;
full slices load only on a scan's page. Every link is relative.
"""

from __future__ import annotations

import hashlib
import html
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from mri_seg.io.sequences import FLAIR_CHANNEL
from mri_seg.reports.slice_images import THUMB_SIDE, thumbnail_jpeg, volume_window, write_slice_pictures
from mri_seg.reports.viewer import ViewerSlice, page, viewer_html
from mri_seg.reports.web import SORT_JS, key_value_table
from mri_seg.utils.atomic import atomic_write_bytes, atomic_write_text

REPORT_FILE = "report.html"
ASSETS_DIR = "report_files"
MAX_SIDE = 512  # scan-page slice pictures: longer side in pixels
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def scan_key(rel: str) -> str:
    """A unique, file-name-safe name for a scan's page and picture folder (from its relative path)."""
    text = str(rel)
    readable = _UNSAFE.sub("_", text.replace("/", "__")).strip("_")[:80] or "scan"
    return f"{readable}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def page_href(rel: str) -> str:
    """Link from ``report.html`` to the scan's page."""
    return f"{ASSETS_DIR}/{quote(scan_key(rel))}.html"


def thumb_href(rel: str) -> str:
    return f"{ASSETS_DIR}/{quote(scan_key(rel))}/thumb.jpg"


def _num(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(number) else number


def volume_text(row: dict[str, Any]) -> tuple[str, float | None]:
    """("12,345 mm³" or "6,789 px", sort value): mm³ where the voxel size was known."""
    mm3, pixels = _num(row.get("tumour_volume_mm3")), _num(row.get("tumour_pixels"))
    if mm3 is not None:
        return f"{mm3:,.0f} mm³", mm3
    if pixels is not None:
        return f"{pixels:,.0f} px", pixels
    return "", None


def _flagged(row: dict[str, Any]) -> bool:
    return str(row.get("review_flag", "")).strip().lower() in ("true", "1")


def _facts(row: dict[str, Any]) -> list[tuple[str, str]]:
    volume, _ = volume_text(row)
    facts = [
        ("path", str(row.get("path", ""))),
        ("format", str(row.get("format", ""))),
        ("shape", str(row.get("shape", ""))),
        ("status", str(row.get("status", ""))),
        ("tumour volume", volume),
        ("slices with tumour", str(row.get("slices_with_tumour", ""))),
        ("uncertainty", str(row.get("uncertainty", ""))),
        ("review flag", "yes" if _flagged(row) else "no"),
    ]
    if str(row.get("dice", "")) != "":
        facts.append(("Dice (reference mask)", str(row["dice"])))
    for key, label in (("sequences", "sequences"), ("series", "DICOM series"), ("series_reason", "series choice")):
        if str(row.get(key, "") or "") != "":  # a DICOM study: which series fed the model, and why
            facts.append((label, str(row[key])))
    for key in ("warnings", "message"):
        if str(row.get(key, "") or "") != "":
            facts.append((key, str(row[key])))
    return facts


def write_scan_page(
    out_dir: str | Path,
    row: dict[str, Any],
    slices: np.ndarray,
    mask: np.ndarray,
    names: list[str] | None = None,
) -> Path:
    """Pictures, thumbnail and viewer page of one segmented scan (``D x H x W x C``, ``D x H x W``)."""
    key = scan_key(row["path"])
    assets = Path(out_dir) / ASSETS_DIR
    folder = assets / key
    channel = slices[..., min(FLAIR_CHANNEL, slices.shape[-1] - 1)]
    window = volume_window(channel)
    names = names or [str(i) for i in range(len(slices))]
    area = mask.reshape(len(mask), -1).sum(axis=1)
    views = []
    for i in range(len(slices)):
        files = write_slice_pictures(folder, f"slice_{i:04d}", channel[i], None, mask[i], MAX_SIDE, window)
        caption = f"slice {names[i]} | predicted tumour {int(area[i]):,} px"
        views.append(ViewerSlice(f"{quote(key)}/{files.image}", f"{quote(key)}/{files.overlay}", caption))
    best = int(np.argmax(area)) if area.max(initial=0) > 0 else len(slices) // 2
    atomic_write_bytes(folder / "thumb.jpg", thumbnail_jpeg(channel[best], mask[best], THUMB_SIDE, window))
    flag = '<p class="flag">Flagged for review: check this prediction.</p>' if _flagged(row) else ""
    body = [
        f'<p><a href="../{REPORT_FILE}">&larr; inference report</a></p>',
        f"<h1>{html.escape(str(row['path']))}</h1>",
        flag,
        '<p class="legend">FLAIR (or the only channel) with the predicted contour'
        '<span style="background:#ff2a2a"></span>prediction</p>',
        viewer_html(views, best),
        key_value_table(_facts(row)),
    ]
    path = assets / f"{key}.html"
    atomic_write_text(path, page(f"{row['path']} — mri_seg inference", body))
    return path


def _three(value: Any) -> str:
    number = _num(value)
    return "" if number is None else f"{number:.3f}"


def _cell(text: str, sort: Any = None, raw: bool = False, css: str = "") -> str:
    value = text if sort is None else sort
    cls = f' class="{css}"' if css else ""
    content = text if raw else html.escape(text)
    return f'<td{cls} data-v="{html.escape(str(value))}">{content}</td>'


def render_index(rows: list[dict[str, Any]], out_dir: str | Path) -> str:
    """``report.html``: one sortable row per scan (links only to pages that exist)."""
    out_dir = Path(out_dir)
    with_dice = any("dice" in r for r in rows)
    head = ["", "path", "status", "tumour volume", "slices with tumour", "uncertainty", "review flag"]
    head += ["Dice"] if with_dice else []
    head += ["warnings / message"]
    counts = {s: sum(str(r.get("status")) == s for r in rows) for s in ("ok", "skipped", "error")}
    flagged = sum(_flagged(r) for r in rows)
    body_rows = []
    for row in sorted(rows, key=lambda r: str(r.get("path", ""))):
        rel = str(row.get("path", ""))
        has_page = (out_dir / ASSETS_DIR / f"{scan_key(rel)}.html").is_file()
        has_thumb = (out_dir / ASSETS_DIR / scan_key(rel) / "thumb.jpg").is_file()
        thumb = (
            f'<a href="{html.escape(page_href(rel))}"><img loading="lazy" src="{html.escape(thumb_href(rel))}" '
            f'alt="thumbnail {html.escape(rel)}"></a>'
            if has_thumb and has_page
            else ""
        )
        link = f'<a href="{html.escape(page_href(rel))}">{html.escape(rel)}</a>' if has_page else html.escape(rel)
        volume, volume_sort = volume_text(row)
        notes = "; ".join(str(row.get(k)) for k in ("warnings", "message") if str(row.get(k, "") or "") != "")
        status = str(row.get("status", ""))
        cells = [
            _cell(thumb, "", raw=True, css="thumb"),
            _cell(link, rel, raw=True, css="left"),
            _cell(status, css="error" if status == "error" else ""),
            _cell(volume, "" if volume_sort is None else volume_sort),
            _cell(str(row.get("slices_with_tumour", ""))),
            _cell(_three(row.get("uncertainty")), str(row.get("uncertainty", ""))),
            _cell("yes" if _flagged(row) else "", 1 if _flagged(row) else 0, css="flag" if _flagged(row) else ""),
        ]
        if with_dice:
            cells.append(_cell(_three(row.get("dice")), str(row.get("dice", ""))))
        cells.append(_cell(notes, css="left"))
        body_rows.append(f"<tr>{''.join(cells)}</tr>")
    left = {"path", "warnings / message"}
    header = "".join(f'<th{" class=left" if h in left else ""}>{html.escape(h)}</th>' for h in head)
    table = f'<table class="sortable"><thead><tr>{header}</tr></thead><tbody>{"".join(body_rows)}</tbody></table>'
    summary = (
        f"<p>{len(rows)} scans: {counts['ok']} ok, {counts['skipped']} skipped (done earlier), "
        f"{counts['error']} failed; <b>{flagged}</b> flagged for review.</p>"
    )
    note = (
        '<p class="note">Click a column header to sort, a scan for its slice viewer. Tumour volume is in mm³ '
        "where the file states the voxel size (NIfTI), else in pixels. The review flag marks scans whose "
        "prediction passes disagree (uncertainty above the configured threshold): check those first.</p>"
    )
    return page("mri_seg inference report", ["<h1>mri_seg inference report</h1>", summary, note, table], SORT_JS)


def write_inference_report(out_dir: str | Path, rows: list[dict[str, Any]]) -> Path:
    """Write ``OUT/report.html`` (atomically) from the batch's rows."""
    path = Path(out_dir) / REPORT_FILE
    atomic_write_text(path, render_index(rows, out_dir))
    return path
