"""Head training: early stopping on dev (`patience`), the linear learning-rate decay, and the convergence table."""

from __future__ import annotations

import pytest
import torch

from pipeline.downstream.data import Split, in_memory
from pipeline.downstream.featurizer import WeightedSum
from pipeline.downstream.heads import DownstreamModel
from pipeline.downstream.run import EVALS_PER_RUN, _fit
from pipeline.downstream.tasks import get_task
from pipeline.report.convergence import convergence_table

LAYERS, DIM = 2, 8


def _split(n: int, seed: int, signal: bool) -> Split:
    """Pooled states (1, L, D) per utterance; with `signal` the label shifts layer 1's mean."""
    g = torch.Generator().manual_seed(seed)
    labels = [str(i % 4) for i in range(n)]
    states = []
    for label in labels:
        x = torch.randn(1, LAYERS, DIM, generator=g)
        if signal:
            x[0, 1, int(label)] += 3.0
        states.append(x)
    return in_memory([f"u{i}" for i in range(n)], labels, states)


def _fit_ks(settings: dict, signal_dev: bool = True):
    spec = get_task("ks")
    train, dev = _split(64, 0, True), _split(24, 1, signal_dev)
    codec = spec.fit_codec(train.labels)
    torch.manual_seed(0)
    model = DownstreamModel(WeightedSum(LAYERS, True), spec.make_head(DIM, codec.n_outputs))
    return _fit(model, spec, codec, train, dev, {"batch_size": 16, **settings}, 0, "test")


def test_patience_stops_once_dev_has_not_improved():
    steps, patience = 400, 3
    best, curve = _fit_ks({"steps": steps, "lr": 5e-2, "patience": patience})
    ran = curve[-1]["step"]
    assert ran < steps
    after = [row["dev_acc"] for row in curve if row["step"] > best["step"]]
    assert len(after) == patience and all(v <= best["value"] for v in after)
    full_best, full = _fit_ks({"steps": steps, "lr": 5e-2})
    assert full[-1]["step"] == steps and len(full) == EVALS_PER_RUN
    # the same run up to where it stopped: early stopping changes when it ends, not what it learned
    assert [r["dev_acc"] for r in full[:len(curve)]] == [r["dev_acc"] for r in curve]


def test_linear_schedule_decays_to_zero_at_the_last_step():
    steps, peak = 200, 1e-2
    _, curve = _fit_ks({"steps": steps, "lr": peak, "schedule": "linear"})
    for row in curve:
        assert abs(row["lr"] - peak * (steps - row["step"] + 1) / steps) < 1e-12
    _, flat = _fit_ks({"steps": steps, "lr": peak})
    assert {row["lr"] for row in flat} == {peak}


def test_convergence_table_reports_best_step_share():
    def record(task, up, best, ran, steps):
        metric = "per" if task == "pr" else "acc"
        curve = [{"step": ran // 2, f"dev_{metric}": 0.5}, {"step": ran, f"dev_{metric}": 0.4}]
        return {"task": task, "upstream": up, "condition": "clean", "steps": steps, "metric": metric,
                "per_seed": [{"best_step": best, "steps_run": ran, "curve": curve}]}

    records = [record("pr", "a", 600, 800, 1000), record("pr", "b", 1000, 1000, 1000),
               record("ks", "a", 45, 120, 300), {**record("ks", "a", 1, 1, 1), "condition": "ood"}]
    table = convergence_table(records)
    rows = {row[0].value: [c.value for c in row[1:]] for row in table.rows}
    assert list(rows) == ["KS", "PR"]
    # heads, max, median ran, early, median/max share, best at last, last-quarter gain median/max
    assert rows["PR"][:7] == [2, 1000, 900, 1, 0.875, 1.0, 1]
    assert rows["KS"][:7] == [1, 300, 120, 1, 45 / 120, 45 / 120, 0]
    assert rows["PR"][7:] == pytest.approx([0.1, 0.1])  # error rate 0.5 -> 0.4 in the last quarter: gained 0.1
    assert rows["KS"][7:] == [0.0, 0.0]  # accuracy fell: the best (0.5) came before the last quarter
