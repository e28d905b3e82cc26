"""PR and ASR: the CTC codec against brute-force path enumeration and hand-decoded paths, and heads that
learn planted token sequences, scored with PER / WER / CER that agree with jiwer on the decoded output."""

import itertools
import json
import math
from pathlib import Path

import jiwer
import numpy as np
import pytest
import torch
import yaml
from fake_cache import FAKE_TEACHER, row, save_manifest, write_features

from pipeline.downstream.data import Features, labelled_rows, make_split, predict
from pipeline.downstream.run import NORMALISE, load_head, score, train_head
from pipeline.downstream.tasks import CTCCodec, codec_from_state, get_task

ROOT = Path(__file__).resolve().parents[2]


def one_hot_path(codec: CTCCodec, path: list[str]) -> torch.Tensor:
    """(1, T, V) logits peaked on the given token per frame ("_" = blank)."""
    logits = torch.full((1, len(path), codec.n_outputs), -9.0)
    for t, tok in enumerate(path):
        logits[0, t, 0 if tok == "_" else codec.index[tok]] = 9.0
    return logits


def test_phone_codec_encode_decode():
    codec = CTCCodec.fit(["h ə l oʊ", "w ɜː l d"], unit="phone")
    assert codec.tokens == sorted({"h", "ə", "l", "oʊ", "w", "ɜː", "d"}) and codec.n_outputs == 8
    assert codec.encode("l oʊ") == [codec.index["l"], codec.index["oʊ"]]
    assert codec.encode("l x") is None  # an unseen phone: the label cannot be produced
    path = ["h", "h", "_", "ə", "l", "l", "_", "l", "oʊ", "oʊ"]  # repeats collapse unless a blank separates
    assert codec.decode(one_hot_path(codec, path), torch.ones(1, len(path), dtype=torch.bool)) == ["h ə l l oʊ"]
    mask = torch.tensor([[True] * 5 + [False] * 5])  # padded frames are not decoded
    assert codec.decode(one_hot_path(codec, path), mask) == ["h ə l"]
    assert codec_from_state(codec.state()).tokens == codec.tokens


def test_char_codec_keeps_word_boundaries():
    codec = CTCCodec.fit(["hi yo", "oh"], unit="char")
    assert codec.tokens == [" ", "h", "i", "o", "y"]
    assert codec.encode("hi  yo") == codec.encode("hi yo")  # whitespace normalised
    path = [" ", "h", "i", "_", " ", " ", "y", "o", " "]
    assert codec.decode(one_hot_path(codec, path), torch.ones(1, len(path), dtype=torch.bool)) == ["hi yo"]


def _brute_force_nll(log_probs: torch.Tensor, target: list[int], blank: int = 0) -> float:
    """-log sum over every frame path that collapses to the target (repeats merged, then blanks removed)."""
    steps, vocab = log_probs.shape
    total = 0.0
    for path in itertools.product(range(vocab), repeat=steps):
        merged = [p for i, p in enumerate(path) if i == 0 or p != path[i - 1]]
        if [p for p in merged if p != blank] == target:
            total += math.exp(sum(float(log_probs[t, p]) for t, p in enumerate(path)))
    return -math.log(total)


def test_ctc_loss_matches_enumeration_and_ignores_padding():
    codec = CTCCodec(["a", "b"], unit="phone")
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 6, 3, generator=gen)
    mask = torch.tensor([[True] * 5 + [False], [True] * 4 + [False] * 2])
    targets = [codec.encode("a b"), codec.encode("b b")]
    loss = codec.loss(logits, mask, codec.collate(targets))
    log_probs = torch.log_softmax(logits, dim=-1)
    expected = [_brute_force_nll(log_probs[0, :5], targets[0]) / 2, _brute_force_nll(log_probs[1, :4], targets[1]) / 2]
    assert loss.item() == pytest.approx(sum(expected) / 2, rel=1e-5)  # mean over batch of nll / target length


# ---------------------------------------------------------------- planted sequences, end to end
PHONES = ["a", "b", "k", "d", "e"]
LAYERS, DIM, SIGNAL = 3, 12, 2


def _sequence_corpus(tmp: Path, n_train: int = 48) -> tuple[str, str]:
    """Utterances whose frames carry token-specific means (4 frames per token, silences between words)."""
    rng = np.random.default_rng(0)
    means = {p: rng.normal(size=DIM) * 2.0 for p in [*PHONES, " "]}  # " ": silence has features too
    words = ["ab", "kd", "eab", "de", "ka"]
    rows, arrays = [], {}
    for split, count in (("train", n_train), ("dev", 8), ("test", 10)):
        for n in range(count):
            text = " ".join(rng.choice(words, size=int(rng.integers(1, 4))))
            frames = [means[" "]] * 2
            for ch in text:
                frames += [means[ch]] * (2 if ch == " " else 4)
            frames += [means[" "]] * 2
            x = rng.normal(size=(len(frames), LAYERS, DIM)) * 0.5
            x[:, SIGNAL] += np.stack(frames)
            utt = f"{split}{n}"
            family = "keyword" if split != "train" and n == 0 else "sentence"  # keywords are not scored
            arrays[f"{utt}@0"] = x
            rows.append(row(utt, split, text=text, phones=" ".join(text.replace(" ", "")), family=family))
    return save_manifest(rows, tmp / "manifest.tsv"), write_features(tmp / "feats", arrays)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return _sequence_corpus(tmp_path_factory.mktemp("ctc"))


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> str:
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["teachers"]["fake"] = FAKE_TEACHER
    cfg["downstream"]["tasks"] = {"pr": {"steps": 300, "lr": 1.0e-2, "batch_size": 8, "seeds": [0, 1]},
                                  "asr": {"steps": 150, "lr": 4.0e-3, "batch_size": 8, "seeds": [0]}}
    path = tmp_path_factory.mktemp("cfg") / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.mark.parametrize("task", ["pr", "asr"])
def test_ctc_heads_learn_planted_sequences(tmp_path, corpus, config, task):
    manifest, features = corpus
    head = str(tmp_path / "head.pt")
    train_head(config, task, "fake", features, manifest, head)
    score(config, task, "fake", "clean", head, features, manifest, str(tmp_path / "s.json"))
    result = json.loads((tmp_path / "s.json").read_text())
    spec = get_task(task)
    assert result["metric"] == spec.metric and result["higher_is_better"] is False
    assert result["n"] == 9  # the keyword-family test row is left out of scoring
    assert result["value"] < 0.25, result["per_seed"]

    # the scored value is the metric of the decoded strings, and agrees with jiwer
    import pandas as pd

    rows = labelled_rows(pd.read_csv(manifest, sep="\t", keep_default_na=False), spec, "test")
    refs = rows[spec.column].tolist()
    models, codec, _ = load_head(head, task, "fake")
    test = make_split(Features(features, "fake", NORMALISE), [f"{u}@0" for u in rows["utt_id"]], refs, False, "test")
    preds = predict([models[0][1]], codec, test, 4)[0]
    assert result["per_seed"][0]["value"] == pytest.approx(jiwer.wer(refs, preds))
    if task == "asr":
        assert result["metrics"]["cer"] == pytest.approx(jiwer.cer(refs, preds))
    else:
        assert len(result["per_seed"]) == 2
        values = [r["value"] for r in result["per_seed"]]
        assert result["value"] == pytest.approx(np.mean(values))
        assert result["std"] == pytest.approx(np.std(values, ddof=1))


def test_head_options_travel_with_the_checkpoint(tmp_path, corpus):
    """`downstream.tasks.asr.head` builds the head at training and again when the checkpoint is scored."""
    manifest, features = corpus
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["teachers"]["fake"] = FAKE_TEACHER
    options = {"hidden": 8, "proj": 4, "dropout": 0.2, "skip": False}
    cfg["downstream"]["tasks"] = {"asr": {"steps": 4, "lr": 1e-3, "batch_size": 8, "head": options}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    head = str(tmp_path / "asr.pt")
    train_head(str(tmp_path / "c.yaml"), "asr", "fake", features, manifest, head)
    models, _, ckpt = load_head(head, "asr", "fake")
    assert ckpt["head_options"] == options
    assert models[0][1].head.out.in_features == 16 and models[0][1].head.proj.out_features == 4
    score(str(tmp_path / "c.yaml"), "asr", "fake", "clean", head, features, manifest, str(tmp_path / "s.json"))
    assert json.loads((tmp_path / "s.json").read_text())["n"] == 9
