"""The HTML pages in a real headless browser (Playwright driving the system Chromium).

Opens the evaluation report, a patient page, the inference report and a scan page:
no console or page errors, no failed requests, every link and picture resolves to an
existing file, and the slice viewer changes the shown slice on the slider and the arrow
keys. Skipped (with the reason) only where Playwright or a Chromium binary is missing --
and failed for that same reason with ``MRI_SEG_REQUIRE_BROWSER=1`` (CI, ``ci_switches.py``);
the plain HTML-parsing tests (test_reports_*.py, test_report_outputs.py, test_infer.py)
cover the machines without one. A browser that is there but does not start is a failure.
Playwright never downloads a browser here: it launches the system one
(``MRI_SEG_BROWSER`` or the first of chromium / chromium-browser / google-chrome on PATH;
``apt-get install chromium``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
import pytest
from ci_switches import REQUIRE_BROWSER, unavailable

from mri_seg.config import EvalConfig
from mri_seg.evaluation.scoring import EvalOptions, PatientCase, evaluate_cases
from mri_seg.reports.inference_report import write_inference_report, write_scan_page
from mri_seg.reports.outputs import write_eval_outputs
from mri_seg.reports.patient_pages import PatientSliceWriter

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# root needs --no-sandbox; the rest keep Chromium from reaching for the network (closed here) at start
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]


def _browser_path() -> str | None:
    explicit = os.environ.get("MRI_SEG_BROWSER")
    if explicit:
        assert Path(explicit).is_file(), f"MRI_SEG_BROWSER={explicit} is not a file"  # asked for: a failure
        return explicit
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright import sync_api
    except ImportError:
        unavailable("playwright is not installed (pip install playwright)", REQUIRE_BROWSER)
    path = _browser_path()
    if path is None:
        unavailable("no Chromium found (apt-get install chromium, or set MRI_SEG_BROWSER)", REQUIRE_BROWSER)
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=LAUNCH_ARGS)  # present but not starting: a failure
        yield b
        b.close()


def _cases(n: int = 4) -> list[PatientCase]:
    rng = np.random.default_rng(0)
    cases = []
    for i in range(n):
        truth = np.zeros((7, 48, 48), bool)
        truth[2:5, 10 : 20 + 3 * i, 12:30] = True
        prob = np.clip(truth * 0.85 + rng.uniform(0, 0.3, truth.shape), 0, 1).astype(np.float32)
        flair = rng.integers(0, 255, truth.shape).astype(np.uint8)
        passes = np.stack([prob, np.roll(prob, i, axis=2)])
        cases.append(PatientCase(f"TCGA_XX_{i:04d}_20000101", list(range(1, 8)), passes.mean(0), truth, flair,
                                 passes=passes))
    return cases


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "eval" / "test"
    result = evaluate_cases(_cases(), EvalOptions(), EvalConfig(bootstrap_samples=50), "test",
                            on_case=PatientSliceWriter(out))
    write_eval_outputs(result, out, patient_pages=True)
    return out


@pytest.fixture(scope="module")
def infer_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("infer")
    rng = np.random.default_rng(1)
    rows = []
    for k, (name, depth) in enumerate([("scans/a.nii.gz", 9), ("b.png", 1), ("c/TCGA_YY_0001_20000101", 5)]):
        slices = rng.integers(0, 255, (depth, 40, 36, 3)).astype(np.uint8)
        mask = np.zeros((depth, 40, 36), bool)
        mask[depth // 2, 10:20, 8:20] = True
        row = {"path": name, "format": "x", "shape": "x", "tumour_pixels": int(mask.sum()),
               "tumour_volume_mm3": 1.5 * mask.sum() if k == 0 else "", "slices_with_tumour": 1,
               "status": "ok", "message": "", "uncertainty": 0.1 * k, "review_flag": k == 2}
        write_scan_page(out, row, slices, mask)
        rows.append(row)
    rows.append({"path": "bad/corrupt.png", "format": "png", "status": "error",
                 "message": "bad/corrupt.png: not a readable image"})
    write_inference_report(out, rows)
    return out


def _open(browser, path: Path):
    page = browser.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, problems


def _assert_links_resolve(page) -> int:
    urls = page.eval_on_selector_all(
        "a[href], img[src]", "els => els.map(e => e.tagName === 'A' ? e.href : e.src)"
    )
    files = [url for url in urls if not url.startswith("data:image/")]  # embedded pictures need no file
    for url in files:
        parsed = urlparse(url)
        assert parsed.scheme == "file", f"non-local link {url[:200]}"
        assert Path(unquote(parsed.path)).is_file(), f"broken link {url}"
    return len(files)


def _viewer_index(page) -> int:
    return int(page.get_attribute("#viewer", "data-index"))


def _check_viewer(page) -> None:
    first_src = page.get_attribute("#viewer img.slice", "src")
    start = _viewer_index(page)
    total = int(page.get_attribute("#viewer input[type=range]", "max")) + 1
    assert total >= 2
    step = 1 if start < total - 1 else -1
    page.keyboard.press("ArrowRight" if step == 1 else "ArrowLeft")
    assert _viewer_index(page) == start + step
    assert page.get_attribute("#viewer img.slice", "src") != first_src
    page.eval_on_selector("#viewer input[type=range]",
                          "el => { el.value = '0'; el.dispatchEvent(new Event('input')); }")
    assert _viewer_index(page) == 0
    # the new picture loads (asynchronously: waited for, up to 10 s, else a timeout error)
    page.wait_for_function("() => { const i = document.querySelector('#viewer img.slice');"
                           " return i.complete && i.naturalWidth > 0; }", timeout=10_000)
    page.keyboard.press("End")
    assert _viewer_index(page) == total - 1
    page.click("#viewer input[type=checkbox]")
    assert page.eval_on_selector("#viewer img.overlay", "el => getComputedStyle(el).visibility") == "hidden"


def test_evaluation_report_in_browser(browser, eval_dir):
    page, problems = _open(browser, eval_dir / "report.html")
    assert _assert_links_resolve(page) == 4  # one page link per patient (plots are embedded)
    links = page.eval_on_selector_all("table.sortable a", "els => els.map(e => e.getAttribute('href'))")
    assert len(links) == 4 and all(h.startswith("patients/") for h in links)
    # rows start by Dice, best first; one click on the Dice header sorts ascending: worst first
    first = page.inner_text("table.sortable tbody tr:first-child td:first-child")
    page.click("table.sortable th:nth-child(2)")
    assert page.inner_text("table.sortable tbody tr:first-child td:first-child") != first
    page.click("table.sortable a >> nth=0")
    page.wait_for_load_state("load")
    assert "/patients/" in page.url and page.query_selector("#viewer") is not None
    assert problems == []
    page.close()


def test_patient_page_viewer_in_browser(browser, eval_dir):
    page, problems = _open(browser, eval_dir / "patients" / "TCGA_XX_0002_20000101.html")
    assert _assert_links_resolve(page) >= 1 + 2 * 3  # back link + the 3 tumour slices (picture + contours)
    slices = pd.read_csv(eval_dir / "slices.csv")
    mine = slices[slices["patient_id"] == "TCGA_XX_0002_20000101"].sort_values("slice_index")
    amount = (mine["true_pixels"] + mine["pred_pixels"]).to_numpy()
    assert _viewer_index(page) == int(np.argmax(amount))  # starts on the slice with the most tumour
    _check_viewer(page)
    assert problems == []
    page.close()


def test_inference_report_and_scan_page_in_browser(browser, infer_dir):
    page, problems = _open(browser, infer_dir / "report.html")
    assert _assert_links_resolve(page) == 3 * 3  # per ok scan: thumbnail, its link, path link; none for errors
    assert "not a readable image" in page.inner_text("table.sortable")
    assert "4 scans: 3 ok, 0 skipped (done earlier), 1 failed; 1 flagged for review" in page.inner_text("body")
    rows = page.query_selector_all("table.sortable tbody tr")
    assert len(rows) == 4
    page.click("table.sortable a:text('scans/a.nii.gz')")  # the 9-slice volume
    page.wait_for_load_state("load")
    assert "report_files/scans__a.nii.gz" in page.url
    assert _assert_links_resolve(page) >= 3
    _check_viewer(page)
    assert problems == []
    page.close()
