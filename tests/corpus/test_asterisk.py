"""Asterisk real-speech prompts: transcripts parsed, digits mapped to keywords, G.722 decoded."""

import glob

import numpy as np
import pytest

from pipeline.corpus import asterisk
from pipeline.corpus.text import DIGITS

needs_package = pytest.mark.skipif(
    not asterisk.SOUNDS.is_dir() or not glob.glob(asterisk.DOC_GLOB),
    reason="Debian asterisk-core-sounds-en-g722 / asterisk-core-sounds-en not installed (apt-get install)",
)


def test_phrase_text_rules():
    assert asterisk.phrase_text("Please press 1 now.") == "please press one now"
    assert asterisk.phrase_text("[this is a simple beep tone]") is None
    assert asterisk.phrase_text("Press ...") is None
    assert asterisk.phrase_text("M I S D N") is None and asterisk.phrase_text("H.323") is None


@needs_package
def test_transcripts_and_prompt_selection():
    transcripts = asterisk.parse_transcripts(asterisk.transcript_file())
    assert transcripts["digits/7"] == "seven" and transcripts["hello-world"] == "Hello world."
    rows = asterisk.select_prompts(transcripts)
    by_id = {r["utt_id"]: r for r in rows}
    for i, word in enumerate(DIGITS):
        assert by_id[f"ast-digits-{i}"]["keyword"] == word
    alpha = by_id["ast-phonetic-a-p"]
    assert alpha["keyword"] == "_unknown_" and alpha["text"] == "alpha"
    sentences = [r for r in rows if r["family"] == "sentence"]
    assert 0 < len(sentences) <= asterisk.MAX_PHRASES and all(len(r["text"].split()) >= 3 for r in sentences)
    assert len(by_id) == len(rows)


@needs_package
def test_decode_g722():
    wav = asterisk.decode_g722(asterisk.SOUNDS / "digits" / "0.g722")
    assert wav.dtype == np.float32 and 8000 < len(wav) < 32000 and np.abs(wav).max() > 0.05
