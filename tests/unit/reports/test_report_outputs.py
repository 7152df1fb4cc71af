"""Report files from an evaluation result: CSVs, strict JSON, PNG plots, a self-contained HTML."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser

import numpy as np
import pandas as pd

from mri_seg.config import EvalConfig
from mri_seg.evaluation.scoring import EvalOptions, PatientCase, evaluate_cases
from mri_seg.reports.outputs import OUTPUT_FILES, write_eval_outputs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images: list[str] = []
        self.rows: list[str] = []
        self.tables = 0
        self.scripts = 0
        self.sortable = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src", ""))
        elif tag == "tr" and a.get("id", "").startswith("patient-"):
            self.rows.append(a["id"][len("patient-") :])
        elif tag == "table":
            self.tables += 1
            self.sortable += "sortable" in (a.get("class") or "")
        elif tag == "script":
            self.scripts += 1


def _cases(n: int = 5, seed: int = 0) -> list[PatientCase]:
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        truth = np.zeros((6, 64, 64), bool)
        r = 5 + 2 * i
        truth[1:5, 30 - r : 30 + r, 30 - r : 30 + r] = True
        prob = np.clip(truth * 0.8 + rng.uniform(0, 0.3, truth.shape), 0, 1).astype(np.float32)
        prob = np.roll(prob, i, axis=2)
        if i == 4:
            prob[:] = 0.0  # one patient with no prediction at all
        flair = rng.integers(0, 255, truth.shape).astype(np.uint8)
        cases.append(PatientCase(f"TCGA_XX_{i:04d}_20000101", list(range(6)), prob, truth, flair))
    return cases


def test_write_eval_outputs(tmp_path):
    result = evaluate_cases(_cases(), EvalOptions(threshold=0.6), EvalConfig(bootstrap_samples=200), "test")
    result.patients["RNASeqCluster"] = [1, 1, 2, 2, np.nan]
    result.summary["checkpoint"] = {"path": "/x/best.pt", "epoch": 3}
    paths = write_eval_outputs(result, tmp_path / "eval" / "test")
    assert sorted(p.name for p in (tmp_path / "eval" / "test").iterdir()) == sorted(OUTPUT_FILES)

    patients = pd.read_csv(paths["patients.csv"])
    assert len(patients) == 5 and patients["dice"].between(0, 1).all()
    assert len(pd.read_csv(paths["slices.csv"])) == 30

    def reject(constant):  # strict JSON: no NaN/Infinity
        raise ValueError(constant)

    summary = json.loads(paths["summary.json"].read_text(), parse_constant=reject)
    assert summary["n_patients"] == 5 and summary["hd95_n_undefined"] == 1 and summary["checkpoint"]["epoch"] == 3

    html_text = paths["report.html"].read_text()
    parser = _Collector()
    parser.feed(html_text)
    parser.close()
    for name in ("dice_by_patient.png", "volume_scatter.png", "dice_vs_size.png", "uncertainty_vs_dice.png"):
        png = paths[name].read_bytes()
        assert png.startswith(PNG_MAGIC)
        assert "data:image/png;base64," + base64.b64encode(png).decode() in parser.images
    montages = [src for src in parser.images if src.startswith("data:image/png;base64,")]
    assert len(montages) == 4 + 3  # four plots + best/median/worst montages
    for src in montages:
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    assert sorted(parser.rows) == sorted(result.patients["patient_id"])
    assert parser.sortable == 1 and parser.scripts == 1
    assert "RNASeqCluster" in html_text  # cluster table
    assert "http://" not in html_text and "https://" not in html_text  # self-contained
    assert "truth" in html_text and "prediction" in html_text  # montage legend

    # re-running overwrites in place, leaves no temp files, and does not touch other files
    other = tmp_path / "eval" / "test" / "mine.txt"
    other.write_text("keep")
    write_eval_outputs(result, tmp_path / "eval" / "test")
    assert other.read_text() == "keep"
    assert not [p for p in (tmp_path / "eval" / "test").iterdir() if p.name.endswith(".tmp")]


def test_single_patient_report(tmp_path):
    result = evaluate_cases(_cases(1), EvalOptions(), EvalConfig(bootstrap_samples=50), "test")
    paths = write_eval_outputs(result, tmp_path)
    parser = _Collector()
    parser.feed(paths["report.html"].read_text())
    assert len(parser.images) == 4 + 1  # best = median = worst: one montage
    assert parser.rows == ["TCGA_XX_0000_20000101"]


def test_patient_pages_written_from_the_evaluation_stream(tmp_path):
    from mri_seg.reports.patient_pages import PatientSliceWriter

    out = tmp_path / "eval" / "val"
    cases = _cases(3)
    cases[1].patient_id = "TCGA_XX_0001 odd/id"  # unsafe characters become a safe file name
    result = evaluate_cases(cases, EvalOptions(threshold=0.6), EvalConfig(bootstrap_samples=50), "val",
                            on_case=PatientSliceWriter(out))
    result.patients["age_at_initial_pathologic"] = [40, 50, 60]
    write_eval_outputs(result, out, patient_pages=True)

    class Links(HTMLParser):
        def __init__(self):
            super().__init__()
            self.hrefs, self.srcs, self.viewer = [], [], None

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "a":
                self.hrefs.append(a["href"])
            if tag == "img":
                self.srcs.append(a["src"])
            if a.get("id") == "viewer":
                self.viewer = a

    report = Links()
    report.feed((out / "report.html").read_text())
    pages = [h for h in report.hrefs if h.startswith("patients/")]
    assert sorted(pages) == sorted(["patients/TCGA_XX_0000_20000101.html", "patients/TCGA_XX_0001_odd_id.html",
                                    "patients/TCGA_XX_0002_20000101.html"])
    for href in pages:
        page = out / href
        text = page.read_text()
        parsed = Links()
        parsed.feed(text)
        assert all((page.parent / src).is_file() for src in parsed.srcs)  # every picture exists beside the page
        assert parsed.viewer is not None
        assert "age_at_initial_pathologic" in text  # the data.csv row
        assert "http://" not in text and "https://" not in text
    # patient 0: 6 slices, tumour on slices 1..4 -> 6 viewer slices, 4 gallery figures (+ the viewer's)
    text = (out / "patients" / "TCGA_XX_0000_20000101.html").read_text()
    assert text.count("<figure>") == 4
    assert len(list((out / "patients" / "TCGA_XX_0000_20000101").glob("slice_*.jpg"))) == 6
    assert "slice 1 | Dice" in text
    jpeg = (out / "patients" / "TCGA_XX_0000_20000101" / "slice_002.jpg").read_bytes()
    assert jpeg[:2] == b"\xff\xd8"


def test_report_shows_learning_curves_when_the_run_has_a_log(tmp_path):
    from mri_seg.training.runlog import LOG_COLUMNS

    run = tmp_path / "run"
    (run / "checkpoints" / "fold0").mkdir(parents=True)
    rows = [{**{c: 0.5 for c in LOG_COLUMNS}, "epoch": e, "val_patient_dice_mean": 0.1 * e} for e in (1, 2, 3)]
    pd.DataFrame(rows).to_csv(run / "checkpoints" / "fold0" / "train_log.csv", index=False)
    result = evaluate_cases(_cases(2), EvalOptions(), EvalConfig(bootstrap_samples=50), "test")
    without = write_eval_outputs(result, tmp_path / "a", run_dir=tmp_path / "nothing_here")["report.html"].read_text()
    assert "learning_curves.png" not in without
    report = write_eval_outputs(result, tmp_path / "b", run_dir=run)["report.html"].read_text()
    parser = _Collector()
    parser.feed(report)
    assert "learning_curves.png" in report and len(parser.images) == 4 + 2 + 1  # plots + 2 montages + curves
