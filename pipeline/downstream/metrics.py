"""Downstream metrics on decoded label strings: accuracy, all-slots accuracy, edit-distance error rates."""

from __future__ import annotations

from collections.abc import Sequence


def accuracy(refs: Sequence[str], preds: Sequence[str]) -> float:
    """Fraction of exact matches (a reference the model cannot output is simply never matched)."""
    _check_lengths(refs, preds)
    return sum(r == p for r, p in zip(refs, preds, strict=True)) / len(refs)


def slot_accuracy(refs: Sequence[str], preds: Sequence[str], sep: str = "|") -> float:
    """Fraction of utterances whose every slot is right (SUPERB IC); partial matches count wrong."""
    _check_lengths(refs, preds)

    def slots(label: str) -> list[str]:
        return [s.strip() for s in label.split(sep)]

    return sum(slots(r) == slots(p) for r, p in zip(refs, preds, strict=True)) / len(refs)


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1) between token sequences."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, start=1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def tokenize(text: str, unit: str) -> list[str]:
    """Split a transcript into words/phones ("word": whitespace-separated) or characters ("char")."""
    if unit == "word":
        return text.split()
    if unit == "char":
        return list(" ".join(text.split()))
    raise ValueError(f"unknown error-rate unit '{unit}' (known: word, char)")


def error_rate(refs: Sequence[str], hyps: Sequence[str], unit: str = "word") -> float:
    """Corpus-level edit errors / reference tokens: WER and PER with unit="word", CER with unit="char"."""
    _check_lengths(refs, hyps)
    ref_tokens = [tokenize(r, unit) for r in refs]
    total = sum(len(t) for t in ref_tokens)
    if total == 0:
        raise ValueError("error rate undefined: the references hold no tokens")
    errors = sum(edit_distance(r, tokenize(h, unit)) for r, h in zip(ref_tokens, hyps, strict=True))
    return errors / total


def _check_lengths(refs: Sequence, preds: Sequence) -> None:
    if len(refs) != len(preds):
        raise ValueError(f"{len(refs)} references but {len(preds)} predictions")
    if not refs:
        raise ValueError("no utterances to score")
