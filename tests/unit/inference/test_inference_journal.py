"""inference.journal: the resume journal, the re-run decision and the merge into predictions.csv."""

from __future__ import annotations

import pandas as pd
import pytest

from mri_seg.config import InferConfig
from mri_seg.inference.journal import (
    COLUMNS,
    DICE_COLUMN,
    PREDICTIONS,
    REUSED,
    Journal,
    can_skip,
    empty_row,
    merge_rows,
    part_path,
    previous_rows,
    read_rows,
    remove_journals,
    status_counts,
    write_table,
)
from mri_seg.io.registry import OutputPaths

MADE_BY = {"checkpoint_sha256": "c1", "settings_hash": "s1", "input_stamp": "i1"}


def _row(path: str, status: str = "ok", **extra) -> dict:
    return {**empty_row(False), "path": path, "format": "png", "status": status, **MADE_BY, **extra}


def _journal(path, rows) -> None:
    journal = Journal(path)
    for row in rows:
        journal.append(row)
    journal.close()


def test_journal_round_trip_and_a_line_cut_short_by_a_kill(tmp_path):
    path = part_path(tmp_path, 0)
    _journal(path, [_row("a.png", tumour_pixels=3), _row("b.png", status="error", message="bad")])
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"path": "c.png", "sta')  # killed mid-line
    rows = read_rows(path)
    assert [r["path"] for r in rows] == ["a.png", "b.png"]
    assert rows[0]["tumour_pixels"] == "3" and rows[1]["message"] == "bad"  # values read back as text


def test_previous_rows_table_then_journals_of_an_interrupted_run(tmp_path):
    write_table(tmp_path / PREDICTIONS, [_row("a.png"), _row("b.png", tumour_pixels=1)], with_truth=False)
    _journal(part_path(tmp_path, 1), [_row("b.png", tumour_pixels=2)])  # the later run got further
    previous = previous_rows(tmp_path)
    assert sorted(previous) == ["a.png", "b.png"] and previous["b.png"]["tumour_pixels"] == "2"


def test_unreadable_previous_table_means_recompute(tmp_path):
    (tmp_path / PREDICTIONS).write_bytes(b"")  # e.g. cut short: pandas cannot read it
    assert previous_rows(tmp_path) == {}


@pytest.fixture
def outputs(tmp_path):
    paths = OutputPaths([tmp_path / "a_mask.png"], [tmp_path / "a_prob.png"], tmp_path / "a_overlay.png")
    for p in (*paths.masks, paths.overlay):
        p.write_bytes(b"x")
    return paths


def test_can_skip_only_an_ok_row_made_the_same_way_with_its_outputs(tmp_path, outputs):
    cfg = InferConfig()
    assert can_skip(_row("a.png"), outputs, cfg, False, MADE_BY)
    assert not can_skip(None, outputs, cfg, False, MADE_BY)
    assert not can_skip(_row("a.png", status="error"), outputs, cfg, False, MADE_BY)
    for key in MADE_BY:  # another checkpoint, other settings, an edited input
        assert not can_skip(_row("a.png"), outputs, cfg, False, {**MADE_BY, key: "other"}), key
        assert not can_skip(_row("a.png"), outputs, cfg, False, {**MADE_BY, key: ""}), key
    assert not can_skip(_row("a.png"), outputs, InferConfig(overwrite=True), False, MADE_BY)
    assert not can_skip(_row("a.png"), outputs, InferConfig(save_probabilities=True), False, MADE_BY)  # no prob file
    assert not can_skip(_row("a.png"), outputs, cfg, False, MADE_BY, page=tmp_path / "page.html")  # page missing
    assert not can_skip(_row("a.png"), outputs, cfg, True, MADE_BY)  # --with-truth: no dice yet
    assert can_skip(_row("a.png", **{DICE_COLUMN: "0.5"}), outputs, cfg, True, MADE_BY)
    outputs.overlay.unlink()
    assert not can_skip(_row("a.png"), outputs, cfg, False, MADE_BY)


def test_merge_takes_every_rank_and_drops_rows_of_other_inputs(tmp_path):
    _journal(part_path(tmp_path, 1), [_row("b.png"), _row("gone.png")])
    mine = [_row("a.png"), _row("new.png")]
    folder = {**_row("locked", status="error"), "format": "folder"}
    old_folder = {**_row("old", status="skipped"), "format": "folder"}
    _journal(part_path(tmp_path, 2), [old_folder])
    merged = merge_rows(tmp_path, mine, rank=0, world_size=3, planned={"a.png", "b.png"}, extra=[folder])
    assert sorted(r["path"] for r in merged) == ["a.png", "b.png", "locked", "new.png", "old"]


def test_merge_prefers_this_ranks_rows(tmp_path):
    _journal(part_path(tmp_path, 1), [_row("a.png", tumour_pixels=1)])
    merged = merge_rows(tmp_path, [_row("a.png", tumour_pixels=2)], rank=0, world_size=2, planned={"a.png"}, extra=[])
    assert [r["tumour_pixels"] for r in merged] == [2]


def test_table_columns_order_and_journals_removed(tmp_path):
    _journal(part_path(tmp_path, 0), [_row("b.png")])
    (tmp_path / ".predictions.part-3.csv").write_text("old format\n")
    rows = [_row("b.png", **{REUSED: True, DICE_COLUMN: ""}), _row("a.png", **{DICE_COLUMN: 0.5})]
    write_table(tmp_path / PREDICTIONS, rows, with_truth=True)
    remove_journals(tmp_path)
    table = pd.read_csv(tmp_path / PREDICTIONS, dtype=str, keep_default_na=False)
    assert list(table.columns) == COLUMNS + [DICE_COLUMN]  # the reuse mark is not a column
    assert list(table["path"]) == ["a.png", "b.png"] and list(table["dice"]) == ["0.5", ""]
    assert sorted(p.name for p in tmp_path.iterdir()) == [PREDICTIONS]


def test_status_counts():
    rows = [_row("a"), {**_row("b"), REUSED: True}, _row("c", status="error"), _row("d", status="skipped")]
    assert status_counts(rows) == {"ok": 2, "error": 1, "reused": 1}
