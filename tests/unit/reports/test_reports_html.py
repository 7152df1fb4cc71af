"""The evaluation report's HTML (reports/html.py) and the shared page pieces (reports/web.py), from in-memory inputs."""

from __future__ import annotations

import base64
import math
from html.parser import HTMLParser

import numpy as np
import pandas as pd

from mri_seg.reports.html import PATIENT_TABLE_COLUMNS, render_report
from mri_seg.reports.web import BASE_STYLE, SORT_JS, fmt, key_value_table


class _Tables(HTMLParser):
    """Every table as rows of cell texts, each cell's data-v, the links and images, the heading texts."""

    def __init__(self):
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.sort_keys: list[list[str | None]] = []
        self.row_ids: list[str] = []
        self.links: list[str] = []
        self.images: list[tuple[str, str]] = []
        self.headings: list[str] = []
        self._cell: list[str] | None = None
        self._heading: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
            if a.get("id"):
                self.row_ids.append(a["id"])
        elif tag in ("td", "th"):
            self._cell = []
            if tag == "td" and "data-v" in a:
                self.sort_keys.append([a["data-v"]])
        elif tag == "a":
            self.links.append(a.get("href", ""))
        elif tag == "img":
            self.images.append((a.get("src", ""), a.get("alt", "")))
        elif tag in ("h1", "h2", "h3"):
            self._heading = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None
        elif tag in ("h1", "h2", "h3") and self._heading is not None:
            self.headings.append("".join(self._heading))
            self._heading = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._heading is not None:
            self._heading.append(data)


def _parse(text: str) -> _Tables:
    parser = _Tables()
    parser.feed(text)
    return parser


def _summary(**extra) -> dict:
    summary = {
        "split": "test", "n_patients": 3, "n_slices": 30, "seconds": 1.5, "input_sequences": "all",
        "options": {"threshold": 0.5, "min_component_pixels": 0, "min_component_voxels": 0, "largest_only": False,
                    "tta_flip": True},
        "conventions": "Dice: both empty -> 1 <b>",
        "dice_mean": 0.61234, "dice_median": 0.7, "dice_std": 0.2, "dice_min": 0.3, "dice_max": 0.9,
        "dice_ci95": [0.41, 0.8], "dice_n_undefined": 0,
        "hd95_mean": 4.0, "hd95_median": 4.0, "hd95_std": 0.0, "hd95_min": 4.0, "hd95_max": 4.0,
        "hd95_ci95": [4.0, 4.0], "hd95_n_undefined": 1,
    }  # fmt: skip
    summary.update(extra)
    return summary


def _patients() -> pd.DataFrame:
    return pd.DataFrame({
        "patient_id": ["P_mid", "P_best", "P_<worst>"],
        "dice": [0.6, 0.9, 0.3],
        "hd95": [4.0, np.nan, 4.0],
        "true_volume": [100, 200, 300],
        "not_a_report_column": [1, 2, 3],
    })  # fmt: skip


def _report(**kwargs) -> str:
    args = {"summary": _summary(), "patients": _patients(), "plots": {"dice_by_patient.png": b"\x89PNG fake"},
            "montages": [("best", "P_best", 0.9, b"\x89PNG best")], "clusters": pd.DataFrame()}  # fmt: skip
    args.update(kwargs)
    return render_report(**args)


def test_fmt_and_key_value_table():
    assert fmt(None) == "" and fmt(math.nan) == "" and fmt(0.123456) == "0.1235" and fmt(3) == "3"
    assert fmt(12345.678) == "1.235e+04" and fmt("text") == "text" and fmt(True) == "True"
    table = _parse(key_value_table([("a<b", 0.5), ("none", None)]))
    assert table.tables == [[["a<b", "0.5"], ["none", ""]]]  # escaped in, readable out


def test_patient_table_sorted_by_dice_with_row_ids_links_and_sort_keys():
    text = _report(links={"P_best": "patients/P_best.html", "P_<worst>": "patients/P__worst_.html"})
    doc = _parse(text)
    patients_table = doc.tables[-1]
    header = patients_table[0]
    assert header == [c for c in PATIENT_TABLE_COLUMNS if c in _patients().columns]  # report columns only, in order
    assert [row[0] for row in patients_table[1:]] == ["P_best", "P_mid", "P_<worst>"]  # best Dice first
    assert doc.row_ids == ["patient-P_best", "patient-P_mid", "patient-P_<worst>"]  # the report's anchors
    assert "patients/P_best.html" in doc.links and "patients/P__worst_.html" in doc.links
    assert "P_<worst>" not in text  # every patient id escaped
    assert patients_table[1][header.index("hd95")] == ""  # NaN shown blank ...
    assert 'data-v="">' in text  # ... and sorted last (blank sort key)
    assert '<table class="sortable">' in text and SORT_JS in text and BASE_STYLE in text
    assert "Click a patient for their page" in text
    assert "Click a patient" not in _report()  # no pages, no promise of them


def test_run_facts_summary_statistics_plots_and_montages():
    summary = _summary(checkpoint={"path": "/x/best.pt", "epoch": 7},
                       checkpoints=[{"path": "/x/f0.pt", "epoch": 7, "fold": 0}, {"path": "/x/f1.pt", "epoch": 9}])
    doc = _parse(_report(summary=summary))
    facts = dict(doc.tables[0][i] for i in range(len(doc.tables[0])))
    assert list(facts) == ["split", "patients", "slices", "checkpoint", "checkpoint epoch", "threshold",
                           "min component (pixels)", "min 3D component (voxels)", "largest 3D component only",
                           "flip TTA", "input sequences", "seconds", "checkpoint (fold 0)", "checkpoint (member)"]
    assert facts["checkpoint"] == "/x/best.pt" and facts["flip TTA"] == "True" and facts["seconds"] == "1.5"
    assert facts["checkpoint (fold 0)"] == "/x/f0.pt (epoch 7)"
    stats = doc.tables[1]
    assert stats[0][0] == "metric" and [row[0] for row in stats[1:]] == ["dice", "hd95"]  # metrics in the summary only
    assert stats[1][1:4] == ["0.6123", "0.7", "0.2"] and "[0.41, 0.8]" in stats[1]
    assert stats[2][-1] == "1"  # undefined values counted
    pictures = dict((alt, src) for src, alt in doc.images)
    assert base64.b64decode(pictures["dice_by_patient.png"].split(",", 1)[1]) == b"\x89PNG fake"
    assert base64.b64decode(pictures["montage best P_best"].split(",", 1)[1]) == b"\x89PNG best"
    assert "best: P_best (Dice 0.9)" in doc.headings
    one = _parse(_report())  # one checkpoint, no members listed; missing facts are left out
    assert [row[0] for row in one.tables[0]] == ["split", "patients", "slices", "threshold", "min component (pixels)",
                                                 "min 3D component (voxels)", "largest 3D component only", "flip TTA",
                                                 "input sequences", "seconds"]  # fmt: skip


def test_folds_clusters_review_and_escaping():
    review = {"n": 3, "n_flagged": 1, "threshold": 0.3, "spearman_uncertainty_dice": -0.5, "worst_n": 2,
              "worst_flagged": 1}  # fmt: skip
    summary = _summary(folds=[{"fold": 0, "n_patients": 2, "dice_mean": 0.5}], review=review)
    clusters = pd.DataFrame({"cluster": ["RNASeqCluster"], "value": [1.0], "n_patients": [3]})
    text = _report(summary=summary, clusters=clusters, title="my <run>")
    doc = _parse(text)
    assert "my <run> — split test" in doc.headings and "<run>" not in text
    assert "By fold" in doc.headings and ["fold", "n_patients", "dice_mean"] in doc.tables[2]
    assert ["RNASeqCluster", "1", "3"] in doc.tables[3]
    assert "1 of 3 patients have an uncertainty above 0.3" in text and "Spearman correlation" in text
    assert "-0.50" in text and "Of the 2 lowest-Dice patients, 1 are flagged." in text
    assert "both empty -&gt; 1 &lt;b&gt;" in text  # the conventions are text, not markup
    plain = _report()
    assert "By fold" not in _parse(plain).headings and "No cluster columns in patients.csv." in plain
    assert "Review flags" not in plain
