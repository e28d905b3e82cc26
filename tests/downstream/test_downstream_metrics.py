"""Metrics against hand-computed cases (edits counted by hand) and jiwer, which computes the error rates."""

import jiwer
import pytest

from pipeline.downstream import metrics
from pipeline.downstream.metrics import accuracy, error_rate


def test_accuracy_hand_case():
    assert accuracy(["a", "b", "c", "d"], ["a", "x", "c", "d"]) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        accuracy(["a"], ["a", "b"])


def test_wer_hand_case():
    # ref 6 words; hyp: 1 substitution (sat->sit), 1 deletion (the), 1 insertion (down)
    assert error_rate(["the cat sat on the mat"], ["the cat sit on mat down"]) == pytest.approx(3 / 6)


def test_error_rate_is_corpus_level_hand_case():
    # utterance 1: 1 substitution of 3 words; utterance 2: 2 insertions over 2 words -> (1 + 2) / (3 + 2),
    # not the mean of the per-utterance rates (1/3 + 2/2) / 2
    assert error_rate(["a b c", "d e"], ["a x c", "d e f g"]) == pytest.approx(3 / 5)


def test_empty_hypothesis_counts_every_reference_token_deleted():
    assert error_rate(["a b c"], [""]) == pytest.approx(1.0)
    assert error_rate(["a b c", "d e"], ["", "d e"]) == pytest.approx(3 / 5)
    assert error_rate(["ab c"], ["   "], unit="char") == pytest.approx(1.0)  # 4 characters, all deleted


def test_empty_reference_among_others_counts_insertions_only():
    # the empty reference adds 2 insertions and no reference tokens: (0 + 2) / 2
    assert error_rate(["", "a b"], ["x y", "a b"]) == pytest.approx(1.0)
    assert error_rate(["", "a b"], ["", "a b"]) == 0.0


def test_error_rate_refuses_empty_references():
    with pytest.raises(ValueError, match="no tokens"):
        error_rate([""], ["x"])
    with pytest.raises(ValueError, match="no tokens"):
        error_rate(["  ", ""], ["", ""], unit="char")


def test_cer_hand_case_collapses_whitespace():
    # "ab  c" is scored as "ab c" (4 characters, the space included): "abc" deletes the space -> 1 / 4
    assert error_rate(["ab  c"], ["abc"], unit="char") == pytest.approx(1 / 4)
    # "kitten" -> "sitting": 2 substitutions + 1 insertion over 6 characters
    assert error_rate(["kitten"], ["sitting"], unit="char") == pytest.approx(3 / 6)


def test_whitespace_of_any_kind_separates_words():
    # a tab or newline separates tokens as a space does (jiwer's own default splits on " " only)
    assert error_rate(["a\tb\nc"], ["a b c"]) == 0.0
    assert error_rate(["a b"], [" a\t b "]) == 0.0


def test_per_hand_case_over_space_separated_phones():
    # multi-character phones are one token each: 1 substitution (ə -> ɛ) + 1 insertion (w) over 4 phones
    assert error_rate(["h ə l oʊ"], ["h ɛ l oʊ w"]) == pytest.approx(2 / 4)


REFS = ["turn on the kitchen lights", "hello world", "a b c d e f", "play some music please"]
HYPS = ["turn the kitchen light on", "hello", "a x c e f g h", "pay sum music"]


def test_wer_and_cer_match_jiwer_defaults_on_plain_text():
    assert error_rate(REFS, HYPS, unit="word") == pytest.approx(jiwer.wer(REFS, HYPS))
    assert error_rate(REFS, HYPS, unit="char") == pytest.approx(jiwer.cer(REFS, HYPS))


def test_edits_are_counted_by_jiwer(monkeypatch):
    """No hand-written edit distance: the alignments come from jiwer.process_words / process_characters."""
    assert not hasattr(metrics, "edit_distance")
    calls = []
    for name in ("process_words", "process_characters"):
        real = getattr(jiwer, name)
        monkeypatch.setattr(jiwer, name, lambda *a, _real=real, _name=name, **k: calls.append(_name) or _real(*a, **k))
    error_rate(REFS, HYPS, unit="word")
    error_rate(REFS, HYPS, unit="char")
    assert calls == ["process_words", "process_characters"]


def test_unknown_unit_raises():
    with pytest.raises(ValueError, match="known"):
        error_rate(["a"], ["a"], unit="phoneme")
