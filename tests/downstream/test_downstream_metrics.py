"""Metrics against hand-computed cases and jiwer."""

import jiwer
import pytest

from pipeline.downstream.metrics import accuracy, edit_distance, error_rate


def test_accuracy_hand_case():
    assert accuracy(["a", "b", "c", "d"], ["a", "x", "c", "d"]) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        accuracy(["a"], ["a", "b"])


def test_edit_distance_hand_case():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([], ["a", "b"]) == 2
    assert edit_distance(["a", "b"], ["a", "b"]) == 0


def test_wer_hand_case():
    # ref 6 words; hyp: 1 substitution (sat->sit), 1 deletion (the), 1 insertion (down)
    assert error_rate(["the cat sat on the mat"], ["the cat sit on mat down"]) == pytest.approx(3 / 6)


REFS = ["turn on the kitchen lights", "hello world", "a b c d e f", "play some music please"]
HYPS = ["turn the kitchen light on", "hello", "a x c e f g h", "pay sum music"]


def test_wer_matches_jiwer():
    assert error_rate(REFS, HYPS, unit="word") == pytest.approx(jiwer.wer(REFS, HYPS))


def test_cer_matches_jiwer():
    assert error_rate(REFS, HYPS, unit="char") == pytest.approx(jiwer.cer(REFS, HYPS))


def test_per_on_space_separated_phones_matches_jiwer():
    refs, hyps = ["h ə l oʊ w ɜː l d"], ["h ɛ l oʊ w ɜː d"]
    assert error_rate(refs, hyps, unit="word") == pytest.approx(jiwer.wer(refs, hyps))


def test_error_rate_refuses_empty_references():
    with pytest.raises(ValueError, match="no tokens"):
        error_rate([""], ["x"])
