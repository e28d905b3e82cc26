"""Paired bootstrap of a metric difference between two systems on the same test utterances (claims table).

A system is per-utterance counts: `num` (S, U), one row per replicate upstream (distillation seed; each row
already averaged over head seeds and summed over the utterance's distorted copies), and `den` (U,), shared by
both systems (items per utterance for accuracies, reference tokens for error rates). A metric is a ratio of sums,
sum(num) / sum(den), so an error rate resamples errors and reference lengths together (not a mean of per-utterance
rates). Each resample draws the U utterances with replacement, the same draw for both systems (paired), and, for a
system with several replicates, its S replicates with replacement too (hierarchical: seed-to-seed spread widens
the interval). The interval is the percentile interval of the resampled differences; the generator's seed is fixed,
so the table is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000
SEED = 13  # fixed: the same inputs give the same interval on every run
LEVEL = 0.95


@dataclass(frozen=True)
class Difference:
    """Claim-direction difference (positive = A better) on the full test set, its interval, and both metrics."""

    value: float
    low: float
    high: float
    a: float
    b: float
    utterances: int


def ratio(num: np.ndarray, den: np.ndarray) -> float:
    """The metric of per-utterance counts: replicates averaged, then sum(num) / sum(den)."""
    return float(np.atleast_2d(num).mean(axis=0).sum() / np.sum(den))


def _resampled(num: np.ndarray, weights: np.ndarray, den_sums: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Metric of every resample: utterance multiplicities `weights` (R, U); replicates redrawn when S > 1."""
    replicates = num.shape[0]
    if replicates == 1:
        draws = np.ones((len(weights), 1))
    else:
        draws = rng.multinomial(replicates, np.full(replicates, 1 / replicates), size=len(weights)) / replicates
    return ((draws @ num) * weights).sum(axis=1) / den_sums


def paired_bootstrap(a: np.ndarray, b: np.ndarray, den: np.ndarray, higher_is_better: bool = True,
                     scale_b: float = 1.0, resamples: int = RESAMPLES, seed: int = SEED,
                     level: float = LEVEL) -> Difference:
    """Difference A - scale_b * B (B - A for lower-is-better metrics, so positive always means A better) with a
    `level` percentile interval over `resamples` paired resamples of utterances (and replicates)."""
    a, b = np.atleast_2d(np.asarray(a, dtype=float)), np.atleast_2d(np.asarray(b, dtype=float))
    den = np.asarray(den, dtype=float)
    if not a.shape[1] == b.shape[1] == den.size:
        raise ValueError(f"systems of {a.shape[1]} and {b.shape[1]} utterances with {den.size} denominators: "
                         "pair them on the same test utterances first")
    if den.size == 0 or (den <= 0).any():
        raise ValueError("every utterance needs a positive denominator (items or reference tokens)")
    sign = 1.0 if higher_is_better else -1.0
    rng = np.random.default_rng(seed)
    n = den.size
    weights = rng.multinomial(n, np.full(n, 1 / n), size=resamples)  # times each utterance is drawn, per resample
    den_sums = weights @ den
    diffs = sign * (_resampled(a, weights, den_sums, rng) - scale_b * _resampled(b, weights, den_sums, rng))
    tail = 50 * (1 - level)
    low, high = np.percentile(diffs, [tail, 100 - tail])
    value_a, value_b = ratio(a, den), ratio(b, den)
    return Difference(sign * (value_a - scale_b * value_b), float(low), float(high), value_a, value_b, n)
