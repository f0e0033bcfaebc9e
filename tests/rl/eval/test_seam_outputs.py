"""The SEAM stage's outputs from hand-made scores: what each selection keeps, the errors that name
the flag when none is kept, the files (kept prompts readable through data.path, dropped with their
reasons), the summary's counts and histogram, and the plot."""

import json

import pytest

from rl import data
from rl.eval.seam_outputs import Selection, markdown, select, write_outputs
from rl.eval.seam_stage import SeamStageError

SCORES = [0.91, 0.11, None, 0.42, 0.12, 0.72]  # prompt 2: undefined SEAM; none on a bin edge
RECORDS = [
    {
        "id": f"toy/train/{i}",
        "question": f"Q: {i}+1",
        "answer": str(i + 1),
        "solution": "",
        "seam": s,
    }
    for i, s in enumerate(SCORES)
]


def _kept(sel):
    return [i for i, k in enumerate(select(RECORDS, sel)) if k]


def test_what_each_selection_keeps():
    # Lowest half: 0.11, 0.12, then 0.42 beats the undefined prompt's 0.5.
    assert _kept(Selection(keep=0.5)) == [1, 3, 4]
    assert _kept(Selection(keep=0.5, mode="high")) == [0, 2, 5]
    assert _kept(Selection(keep=0.5, mode="high", undefined=None)) == [0, 3, 5]
    assert _kept(Selection(band=(0.1, 0.45))) == [1, 3, 4]
    assert _kept(Selection(band=(0.45, 0.55))) == [2]  # the undefined prompt counted as 0.5
    assert _kept(Selection(band=(0.0, 1.0), undefined=None)) == [0, 1, 3, 4, 5]


def test_selections_that_keep_nothing_name_their_flag():
    with pytest.raises(SeamStageError, match=r"--keep=0.05 keeps no prompt of the 6: round"):
        Selection(keep=0.05).check(6)
    with pytest.raises(SeamStageError, match=r"--keep=1.5: must be a fraction in \(0, 1\]"):
        Selection(keep=1.5).check(6)
    with pytest.raises(SeamStageError, match="--band=0.8,0.2: must be LO,HI"):
        Selection(band=(0.8, 0.2)).check(6)
    with pytest.raises(SeamStageError, match="give exactly one"):
        Selection(keep=0.5, band=(0.0, 1.0)).check(6)
    with pytest.raises(SeamStageError, match="--undefined=2.0"):
        Selection(keep=0.5, undefined=2.0).check(6)
    assert Selection(keep=0.1).check(6).keep == 0.1  # round(0.6) = 1 prompt
    # Known only once scored: a band no score falls in, or only undefined scores to drop.
    with pytest.raises(
        SeamStageError, match=r"--band=0.95,1.0 keeps no prompt: .* \[0.110, 0.910\]"
    ):
        select(RECORDS, Selection(band=(0.95, 1.0)))
    undefined = [dict(r, seam=None) for r in RECORDS]
    with pytest.raises(SeamStageError, match="--undefined=drop: all 6 prompts"):
        select(undefined, Selection(keep=0.5, undefined=None))


def test_the_files_and_the_summary(tmp_path):
    summary = write_outputs(tmp_path, RECORDS, Selection(keep=0.5))
    kept = [json.loads(line) for line in (tmp_path / "kept.jsonl").read_text().splitlines()]
    assert [r["id"] for r in kept] == ["toy/train/1", "toy/train/3", "toy/train/4"]
    assert kept[0] == {
        "id": "toy/train/1",
        "question": "Q: 1+1",
        "answer": "2",
        "solution": "",
        "seam": 0.11,
    }
    dropped = [json.loads(line) for line in (tmp_path / "dropped.jsonl").read_text().splitlines()]
    assert [r["id"] for r in dropped] == ["toy/train/0", "toy/train/2", "toy/train/5"]
    assert dropped[0]["reason"] == "SEAM 0.910: not in the lowest 50% SEAM (above the cut at 0.420)"
    assert dropped[1]["reason"].startswith("SEAM 0.5 (undefined): not in the lowest 50%")
    assert (summary["prompts"], summary["kept"], summary["dropped"]) == (6, 3, 3)
    assert summary["kept_fraction"] == 0.5 and summary["undefined"] == 1
    assert summary["seam_mean_kept"] == pytest.approx((0.11 + 0.42 + 0.12) / 3)
    assert summary["seam_mean_dropped"] == pytest.approx((0.91 + 0.72) / 2)
    # 20 bins of width 0.05: 0.11 and 0.12 in bin 2, 0.42 in 8, 0.72 in 14, 0.91 in 18.
    hist = summary["histogram"]
    assert {i: c for i, c in enumerate(hist["all"]) if c} == {2: 2, 8: 1, 14: 1, 18: 1}
    assert {i: c for i, c in enumerate(hist["kept"]) if c} == {2: 2, 8: 1}
    assert summary["plot"] == "seam_hist.png"
    assert (tmp_path / "seam_hist.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    table = (tmp_path / "summary.md").read_text()
    assert table == markdown(summary) and "| kept | 3 (50.0%), the lowest 50% SEAM |" in table
    # The kept prompts are a data file: read through data.path's loader with their ids.
    examples = data.load_files(tmp_path / "kept.jsonl", data_dir=tmp_path / "tfds", id_field="id")
    assert [(ex.id, ex.answer) for ex in examples] == [
        ("toy/train/1", "2"),
        ("toy/train/3", "4"),
        ("toy/train/4", "5"),
    ]
