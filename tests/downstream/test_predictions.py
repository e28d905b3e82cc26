"""Per-utterance counts (their ratio of sums is the corpus metric, checked against jiwer directly) and the
predictions file beside each score: path, round trip, refusals."""

import jiwer
import numpy as np
import pandas as pd
import pytest

from pipeline.downstream.metrics import correct_counts, edit_counts, slot_correct_counts
from pipeline.downstream.predictions import (
    COLUMNS,
    prediction_path,
    prediction_rows,
    read_predictions,
    write_predictions,
)
from pipeline.downstream.tasks import TASKS

WORDS = ["a", "b", "c", "dd", "e"]


def _sentences(rng, n, min_len=0):
    return [" ".join(rng.choice(WORDS, size=rng.integers(min_len, 7))) for _ in range(n)]


def test_edit_counts_sum_to_jiwer_corpus_rates():
    rng = np.random.default_rng(0)
    refs, hyps = _sentences(rng, 40, min_len=1), _sentences(rng, 40)
    edits, tokens = edit_counts(refs, hyps, "word")
    assert sum(edits) / sum(tokens) == pytest.approx(jiwer.wer(refs, hyps))
    assert tokens == [len(r.split()) for r in refs]
    for r, h, e in zip(refs[:10], hyps[:10], edits[:10], strict=True):
        assert e == pytest.approx(jiwer.wer(r, h) * len(r.split()))  # each utterance alone
    edits, chars = edit_counts(refs, hyps, "char")
    assert sum(edits) / sum(chars) == pytest.approx(jiwer.cer(refs, hyps))
    assert chars == [len(r) for r in refs]


def test_edit_counts_by_hand():
    edits, tokens = edit_counts(["a b c", "x  y", "p"], ["a c", "x y z", ""], "word")
    assert edits == [1, 1, 1] and tokens == [3, 2, 1]  # a deletion, an insertion, a deletion
    edits, tokens = edit_counts(["ab", "cd"], ["ax", "cd"], "char")
    assert (edits, tokens) == ([1, 0], [2, 2])


def test_accuracy_counts():
    assert correct_counts(["a", "b", "c"], ["a", "x", "c"]) == ([1, 0, 1], [1, 1, 1])
    refs = ["on|lights|kitchen", "off|music|none"]
    assert slot_correct_counts(refs, ["on | lights|kitchen", "off|music|bedroom"]) == ([1, 0], [1, 1])


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_task_counts_its_metrics(task):
    """Each task's per-utterance counts give its corpus-level metrics (the score JSON's values)."""
    spec = TASKS[task]
    rng = np.random.default_rng(1)
    if task == "ic":
        refs = [f"{a}|{b}|c" for a, b in zip(rng.choice(["x", "y"], 20), rng.choice(["p", "q"], 20), strict=True)]
        preds = [f"{a}|{b}|c" for a, b in zip(rng.choice(["x", "y"], 20), rng.choice(["p", "q"], 20), strict=True)]
    elif spec.higher_is_better:
        refs, preds = list(rng.choice(WORDS, 20)), list(rng.choice(WORDS, 20))
    else:
        refs, preds = _sentences(rng, 20, min_len=1), _sentences(rng, 20)
    metrics, counts = spec.metrics(refs, preds), spec.item_counts(refs, preds)
    assert set(metrics) == set(counts)
    for name, (num, den) in counts.items():
        assert sum(num) / sum(den) == pytest.approx(metrics[name]), name


def test_prediction_file_round_trip(tmp_path):
    assert prediction_path("r/scores/up/asr/ood.json") == "r/scores/up/asr/ood.pred.tsv"
    with pytest.raises(ValueError, match="not a score JSON"):
        prediction_path("r/scores/up/asr/ood.tsv")
    keys = ["utt-1@0", "utt-1@1", "a@b@0"]
    rows = prediction_rows(keys, 2, {"wer": ([1, 0, 3], [4, 4, 2]), "cer": ([2, 0, 5], [15, 15, 9])})
    assert rows.columns.tolist() == COLUMNS and len(rows) == 6
    assert rows["utt_id"].tolist()[:3] == ["utt-1", "utt-1", "a@b"] and rows["copy"].tolist()[:3] == [0, 1, 0]
    path = tmp_path / "scores/x/asr/clean.pred.tsv"
    write_predictions(rows, path)
    back = read_predictions(path)
    pd.testing.assert_frame_equal(back, rows)
    assert not list(path.parent.glob(".*tmp*"))
    with pytest.raises(ValueError, match="items"):
        prediction_rows(keys, 0, {"acc": ([1, 0], [1, 1])})


def test_unreadable_predictions_are_refused(tmp_path):
    path = tmp_path / "p.pred.tsv"
    path.write_text("utt_id\tcopy\tseed\tnum\tden\nu\t0\t0\t1\t1\n")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['metric'\].*evaluate"):
        read_predictions(path)
    path.write_text("utt_id\tcopy\tseed\tmetric\tnum\tden\nu\t0\t0\tacc\t0.5\t1\n")
    with pytest.raises(ValueError, match="'num' holds non-integer"):
        read_predictions(path)
    with pytest.raises(ValueError, match="cannot read"):
        read_predictions(tmp_path / "absent.pred.tsv")
