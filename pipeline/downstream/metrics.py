"""Downstream metrics on decoded label strings: accuracy, all-slots accuracy, error rates (jiwer).

Each corpus-level metric has a per-utterance form, `Counts`: a numerator and a denominator per utterance
(correct and 1 for accuracies, edits and reference tokens for error rates) whose ratio of sums is the metric;
the claims table's paired bootstrap resamples them (pipeline/report/bootstrap.py)."""

from __future__ import annotations

from collections.abc import Sequence

import jiwer

Counts = tuple[list[int], list[int]]  # per utterance: (numerator, denominator); metric = sum(num) / sum(den)


def ratio(counts: Counts) -> float:
    """The corpus-level metric of per-utterance counts: sum(num) / sum(den)."""
    num, den = counts
    if not sum(den):
        raise ValueError("error rate undefined: the references hold no tokens")
    return sum(num) / sum(den)


def correct_counts(refs: Sequence[str], preds: Sequence[str]) -> Counts:
    """Per utterance 1 if the prediction matches exactly, else 0, over 1 (a reference the model cannot output is
    simply never matched)."""
    _check_lengths(refs, preds)
    return [int(r == p) for r, p in zip(refs, preds, strict=True)], [1] * len(refs)


def slot_correct_counts(refs: Sequence[str], preds: Sequence[str], sep: str = "|") -> Counts:
    """Per utterance 1 if every slot is right (SUPERB IC; partial matches count wrong), else 0, over 1."""
    _check_lengths(refs, preds)

    def slots(label: str) -> list[str]:
        return [s.strip() for s in label.split(sep)]

    return [int(slots(r) == slots(p)) for r, p in zip(refs, preds, strict=True)], [1] * len(refs)


def accuracy(refs: Sequence[str], preds: Sequence[str]) -> float:
    """Fraction of exact matches."""
    return ratio(correct_counts(refs, preds))


def slot_accuracy(refs: Sequence[str], preds: Sequence[str], sep: str = "|") -> float:
    """Fraction of utterances whose every slot is right."""
    return ratio(slot_correct_counts(refs, preds, sep))


def tokenize(text: str, unit: str) -> list[str]:
    """Split a transcript into words/phones ("word": whitespace-separated) or characters ("char")."""
    if unit == "word":
        return text.split()
    if unit == "char":
        return list(" ".join(text.split()))
    raise ValueError(f"unknown error-rate unit '{unit}' (known: word, char)")


def error_rate(refs: Sequence[str], hyps: Sequence[str], unit: str = "word") -> float:
    """Corpus-level edits / reference tokens by jiwer: WER, PER (space-separated phones) unit="word"; CER "char".

    Any run of whitespace separates tokens (and is one space for CER), as `tokenize` splits labels. An empty
    reference among others adds its hypothesis' insertions and no tokens; references with no token at all
    raise ValueError (jiwer would return the insertion count, not a rate).
    """
    _check_lengths(refs, hyps)
    if not any(tokenize(r, unit) for r in refs):
        raise ValueError("error rate undefined: the references hold no tokens")
    ref_text, hyp_text = [" ".join(r.split()) for r in refs], [" ".join(h.split()) for h in hyps]
    if unit == "word":
        return jiwer.process_words(ref_text, hyp_text).wer
    return jiwer.process_characters(ref_text, hyp_text).cer


def edit_counts(refs: Sequence[str], hyps: Sequence[str], unit: str = "word") -> Counts:
    """Per utterance (edits, reference tokens) by jiwer's alignment, tokenised as `error_rate` does: their ratio
    of sums is `error_rate` (an empty reference counts its hypothesis' insertions over 0 tokens)."""
    _check_lengths(refs, hyps)
    lengths = [len(tokenize(r, unit)) for r in refs]
    ref_text, hyp_text = [" ".join(r.split()) for r in refs], [" ".join(h.split()) for h in hyps]
    out = jiwer.process_words(ref_text, hyp_text) if unit == "word" else jiwer.process_characters(ref_text, hyp_text)
    edits = [sum(c.hyp_end_idx - c.hyp_start_idx if c.type == "insert" else c.ref_end_idx - c.ref_start_idx
                 for c in chunks if c.type != "equal") for chunks in out.alignments]
    return edits, lengths


def _check_lengths(refs: Sequence, preds: Sequence) -> None:
    if len(refs) != len(preds):
        raise ValueError(f"{len(refs)} references but {len(preds)} predictions")
    if not refs:
        raise ValueError("no utterances to score")
