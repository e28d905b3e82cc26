"""Paired bootstrap: known answers (identical systems, one right exactly where the other is wrong, an error rate
enumerated by hand), a normal-approximation cross-check, replicate (seed) resampling and determinism."""

import numpy as np
import pytest

from pipeline.report.bootstrap import paired_bootstrap, ratio


def test_identical_systems_give_exactly_zero():
    rng = np.random.default_rng(0)
    correct = rng.integers(0, 2, size=(1, 50))
    d = paired_bootstrap(correct, correct.copy(), np.ones(50))
    assert (d.value, d.low, d.high) == (0.0, 0.0, 0.0)
    edits, tokens = rng.integers(0, 4, size=(1, 30)), rng.integers(1, 9, size=30)
    d = paired_bootstrap(edits, edits.copy(), tokens, higher_is_better=False)
    assert (d.value, d.low, d.high) == (0.0, 0.0, 0.0)


def test_right_wherever_the_other_is_wrong_gives_the_full_difference():
    a, b = np.ones((1, 40)), np.zeros((1, 40))
    d = paired_bootstrap(a, b, np.ones(40))
    assert (d.value, d.low, d.high, d.a, d.b) == (1.0, 1.0, 1.0, 1.0, 0.0)
    d = paired_bootstrap(b, a, np.ones(40))  # the other way round: the claim fails by the full 100 points
    assert (d.value, d.low, d.high) == (-1.0, -1.0, -1.0)


def test_error_rate_is_a_ratio_of_sums_enumerated_by_hand():
    """Two utterances: A makes 1 edit in 10 reference words and 3 in 2; B is perfect. A resample holds u1 twice
    (p 1/4, WER 2/20), both (p 1/2, WER 4/12) or u2 twice (p 1/4, WER 6/4); B - A is minus those."""
    a, b, tokens = np.array([[1, 3]]), np.zeros((1, 2)), np.array([10, 2])
    d = paired_bootstrap(a, b, tokens, higher_is_better=False)
    assert d.a == pytest.approx(4 / 12) and d.a != pytest.approx((1 / 10 + 3 / 2) / 2)  # not a mean of ratios
    assert d.value == pytest.approx(-4 / 12)
    assert d.low == pytest.approx(-6 / 4) and d.high == pytest.approx(-2 / 20)
    diffs = _all_resampled_differences(a[0], tokens)
    assert set(np.round(diffs, 9)) == {round(-0.1, 9), round(-4 / 12, 9), round(-1.5, 9)}


def _all_resampled_differences(edits, tokens):
    return [-(edits[i] + edits[j]) / (tokens[i] + tokens[j]) for i in range(2) for j in range(2)]


def test_interval_agrees_with_the_normal_approximation_of_a_paired_difference():
    """Independent check: for many utterances the percentile interval of an accuracy difference is close to
    mean +- 1.96 standard errors of the per-utterance paired differences."""
    rng = np.random.default_rng(1)
    n = 3000
    b = rng.random(n) < 0.7
    a = np.where(rng.random(n) < 0.15, ~b, b)  # A flips 15 % of B's outcomes
    a[rng.random(n) < 0.1] = True
    d = paired_bootstrap(a[None].astype(float), b[None].astype(float), np.ones(n), resamples=4000)
    diff = a.astype(float) - b.astype(float)
    half = 1.96 * diff.std(ddof=1) / np.sqrt(n)
    assert d.value == pytest.approx(diff.mean())
    assert d.low == pytest.approx(diff.mean() - half, abs=0.15 * half)
    assert d.high == pytest.approx(diff.mean() + half, abs=0.15 * half)


def test_copies_resample_with_their_utterance_and_counts_weigh_by_items():
    """Accuracy over items (utterance x copy) = correct / items summed per utterance, as the score JSON has it."""
    correct = np.array([[2, 0, 1]])  # utterance 1: both copies right; 2: none; 3: one of two
    items = np.array([2, 2, 2])
    assert ratio(correct, items) == pytest.approx(3 / 6)


def test_replicates_are_averaged_and_resampled():
    """Three distillation seeds of A: one right everywhere, two wrong everywhere; B scores 0.25 on every utterance
    (head seeds averaged). The point estimate averages A's seeds (1/3); resampling the seeds gives 0, 1, 2 or 3
    draws of the good one (p 8/27, 12/27, 6/27, 1/27): the 2.5th percentile is 0 - 0.25, the 97.5th 1 - 0.25."""
    a = np.array([np.ones(20), np.zeros(20), np.zeros(20)])
    b = np.full((1, 20), 0.25)
    d = paired_bootstrap(a, b, np.ones(20))
    assert d.a == pytest.approx(1 / 3) and d.b == 0.25
    assert d.value == pytest.approx(1 / 3 - 0.25)
    assert (d.low, d.high) == (pytest.approx(-0.25), pytest.approx(0.75))
    single = paired_bootstrap(a.mean(axis=0, keepdims=True), b, np.ones(20))
    assert single.high - single.low == pytest.approx(0.0)  # the same mean without its seeds: no spread


def test_scale_and_direction():
    a, b = np.full((1, 10), 0.9), np.ones((1, 10))
    d = paired_bootstrap(a, b, np.ones(10), scale_b=0.9)  # keeps 90 % of B: difference 0.9 - 0.9 * 1
    assert d.value == pytest.approx(0.0, abs=1e-12)
    d = paired_bootstrap(np.full((1, 10), 2.0), np.full((1, 10), 3.0), np.full(10, 10.0), higher_is_better=False)
    assert d.value == pytest.approx(0.1) and d.a == pytest.approx(0.2)  # fewer errors = positive


def test_deterministic_and_checked():
    rng = np.random.default_rng(2)
    a, b = rng.integers(0, 2, (2, 60)), rng.integers(0, 2, (1, 60))
    assert paired_bootstrap(a, b, np.ones(60)) == paired_bootstrap(a, b, np.ones(60))
    assert paired_bootstrap(a, b, np.ones(60), seed=5) != paired_bootstrap(a, b, np.ones(60))
    with pytest.raises(ValueError, match="same test utterances"):
        paired_bootstrap(a, b[:, :50], np.ones(60))
    with pytest.raises(ValueError, match="positive denominator"):
        paired_bootstrap(a, b, np.r_[np.ones(59), 0])
