"""End to end on random cached features: train_head learns a planted signal, stays at chance on noise,
is deterministic, and score handles distorted copies, real-speech manifests and unseen labels."""

import itertools
import json
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from fake_cache import FAKE_TEACHER, FINGERPRINT, write_features

from pipeline.cache.index import FeatureCache
from pipeline.cache.store import CacheMismatchError
from pipeline.corpus.manifest import write_manifest
from pipeline.downstream.run import score, train_head
from pipeline.saved import UnsafeFileError

ROOT = Path(__file__).resolve().parents[2]
KEYWORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven"]
SLOTS = [["activate", "deactivate", "bring"], ["lights", "music"], ["kitchen", "none"]]
INTENTS = ["|".join(c) for c in itertools.product(*SLOTS)]
LAYERS, DIM, SIGNAL_LAYER = 3, 16, 1


def make_corpus(tmp: Path, signal: bool, seed: int = 0) -> tuple[str, str, pd.DataFrame]:
    """KS and IC utterances (8 keywords, 12 intents) with class-dependent means in one layer if `signal`."""
    rng = np.random.default_rng(seed)
    means = {v: rng.normal(size=DIM) for v in KEYWORDS + [v for s in SLOTS for v in s]}
    rows, arrays = [], {}
    plan = [("keyword", k, means[k]) for k in KEYWORDS] + \
           [("intent", i, sum(means[v] for v in i.split("|"))) for i in INTENTS]
    for col, label, mean in plan:
        for split, count in (("train", 10), ("dev", 3), ("test", 4)):
            for n in range(count):
                utt = f"{col[:2]}-{label.replace('|', '-')}-{split}-{n}"
                x = rng.normal(size=(int(rng.integers(8, 20)), LAYERS, DIM))
                if signal:
                    x[:, SIGNAL_LAYER] += 1.5 * mean
                arrays[f"{utt}@0"] = x
                rows.append({"utt_id": utt, "path": f"{utt}.wav", "num_samples": 16000, "sample_rate": 16000,
                             "split": split, "speaker": "s1", col: label})
    manifest = pd.DataFrame(rows)
    write_manifest(manifest, tmp / "manifest.tsv")
    tmp.joinpath("feats").mkdir()
    return str(tmp / "manifest.tsv"), write_features(tmp / "feats", arrays), manifest


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> str:
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["teachers"]["fake"] = FAKE_TEACHER
    small = {"steps": 150, "lr": 3.0e-3, "batch_size": 16, "seeds": [0]}
    cfg["downstream"]["tasks"] = {"ks": small, "ic": small}
    path = tmp_path_factory.mktemp("cfg") / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> tuple[str, str, pd.DataFrame]:
    return make_corpus(tmp_path_factory.mktemp("planted"), signal=True)


@pytest.fixture(scope="module")
def ks_head(tmp_path_factory, config, planted) -> str:
    manifest, features, _ = planted
    out = tmp_path_factory.mktemp("head") / "ks.pt"
    train_head(config, "ks", "fake", features, manifest, str(out), seeds=[0])
    return str(out)


def test_ks_learns_planted_signal(tmp_path, config, planted, ks_head):
    manifest, features, _ = planted
    ckpt = torch.load(ks_head, weights_only=True)
    assert ckpt["runs"][0]["dev_value"] > 0.9 and ckpt["codec"]["vocab"] == sorted(KEYWORDS)
    assert int(np.argmax(ckpt["runs"][0]["layer_weights"])) == SIGNAL_LAYER
    curve = pd.read_csv(ks_head.replace(".pt", ".curve.tsv"), sep="\t")
    assert list(curve.columns) == ["step", "train_loss", "lr", "dev_acc", "seed"] and curve["step"].iloc[-1] == 150
    assert Path(ks_head.replace(".pt", ".curve.png")).stat().st_size > 0
    score(config, "ks", "fake", "clean", ks_head, features, manifest, str(tmp_path / "s.json"))
    result = json.loads((tmp_path / "s.json").read_text())
    assert result["value"] > 0.9 and result["n"] == len(KEYWORDS) * 4
    assert {k: result[k] for k in ("upstream", "task", "condition", "metric", "seeds", "lr", "steps")} == {
        "upstream": "fake", "task": "ks", "condition": "clean", "metric": "acc", "seeds": [0], "lr": 3e-3,
        "steps": 150}
    assert result["num_params"] == FINGERPRINT["num_params"] and len(result["layer_weights"]) == LAYERS


def test_ic_learns_planted_signal(tmp_path, config, planted):
    manifest, features, _ = planted
    head = str(tmp_path / "ic.pt")
    train_head(config, "ic", "fake", features, manifest, head, seeds=[1])
    score(config, "ic", "fake", "clean", head, features, manifest, str(tmp_path / "s.json"))
    result = json.loads((tmp_path / "s.json").read_text())
    assert result["value"] > 0.9 and result["n"] == len(INTENTS) * 4


def test_noise_stays_near_chance(tmp_path, config):
    manifest, features, _ = make_corpus(tmp_path, signal=False, seed=1)
    head = str(tmp_path / "ks.pt")
    train_head(config, "ks", "fake", features, manifest, head)
    score(config, "ks", "fake", "clean", head, features, manifest, str(tmp_path / "s.json"))
    assert json.loads((tmp_path / "s.json").read_text())["value"] < 0.35  # chance is 1/8


def test_same_seed_same_head(tmp_path, config, planted, ks_head):
    manifest, features, _ = planted
    train_head(config, "ks", "fake", features, manifest, str(tmp_path / "again.pt"), seeds=[0])
    a, b = torch.load(ks_head, weights_only=True), torch.load(tmp_path / "again.pt", weights_only=True)
    assert a["runs"][0]["curve"] == b["runs"][0]["curve"]
    for name, tensor in a["runs"][0]["model"].items():
        torch.testing.assert_close(tensor, b["runs"][0]["model"][name], rtol=0, atol=0)


def test_checkpoint_and_layer_weights_follow_dev_only(tmp_path, config, planted, ks_head):
    """Test labels permuted against dev, and test features planted (layer 2) to agree with the permuted labels:
    the head trained beside them (best step, dev value, layer weights, weights) is the one trained beside the
    true test set, so nothing about the test split steers the selection."""
    manifest, features, df = planted
    test = (df["split"] == "test") & df["keyword"].notna()
    shift = {k: KEYWORDS[(i + 1) % len(KEYWORDS)] for i, k in enumerate(KEYWORDS)}
    permuted = df.copy()
    permuted.loc[test, "keyword"] = permuted.loc[test, "keyword"].map(shift)
    write_manifest(permuted, tmp_path / "permuted.tsv")
    cache = FeatureCache.open(features)
    arrays = {k: np.asarray(cache.get(k), np.float32) for k in cache.keys}
    rng = np.random.default_rng(9)
    means = {k: rng.normal(size=DIM) for k in KEYWORDS}
    for utt, label in zip(permuted.loc[test, "utt_id"], permuted.loc[test, "keyword"], strict=True):
        arrays[f"{utt}@0"][:, SIGNAL_LAYER + 1] += 3.0 * means[label]
    planted_test = write_features(tmp_path / "feats", arrays)
    head = str(tmp_path / "ks.pt")
    train_head(config, "ks", "fake", planted_test, str(tmp_path / "permuted.tsv"), head, seeds=[0])
    a, b = torch.load(ks_head, weights_only=True)["runs"][0], torch.load(head, weights_only=True)["runs"][0]
    assert (b["best_step"], b["dev_value"], b["layer_weights"], b["curve"]) == (
        a["best_step"], a["dev_value"], a["layer_weights"], a["curve"])
    dev = [row["dev_acc"] for row in a["curve"]]
    assert a["best_step"] == a["curve"][dev.index(max(dev))]["step"]  # the first best dev evaluation
    assert int(np.argmax(b["layer_weights"])) == SIGNAL_LAYER  # not the layer the test labels agree with
    for name, tensor in a["model"].items():
        torch.testing.assert_close(tensor, b["model"][name], rtol=0, atol=0)
    score(config, "ks", "fake", "clean", head, planted_test, str(tmp_path / "permuted.tsv"), str(tmp_path / "s.json"))
    result = json.loads((tmp_path / "s.json").read_text())
    assert result["value"] < 0.2 and result["per_seed"][0]["best_step"] == a["best_step"]  # the labels disagree


def test_score_counts_every_distorted_copy(tmp_path, config, planted, ks_head):
    manifest, _, df = planted
    rng = np.random.default_rng(5)
    test = df[(df["split"] == "test") & df["keyword"].notna()]
    arrays = {f"{u}@{c}": rng.normal(size=(10, LAYERS, DIM)) for u in test["utt_id"] for c in (0, 1)}
    features = write_features(tmp_path, arrays)
    score(config, "ks", "fake", "indomain", ks_head, features, manifest, str(tmp_path / "s.json"))
    result = json.loads((tmp_path / "s.json").read_text())
    assert result["n"] == 2 * len(test) and result["n_utterances"] == len(test)


def test_score_records_test_utterances_without_features(tmp_path, config, planted, ks_head, caplog):
    manifest, _, df = planted
    test = sorted(df[(df["split"] == "test") & df["keyword"].notna()]["utt_id"])
    dropped = test[::5]
    rng = np.random.default_rng(6)
    features = write_features(tmp_path / "part", {f"{u}@0": rng.normal(size=(10, LAYERS, DIM))
                                                  for u in test if u not in dropped})
    with caplog.at_level(logging.WARNING, logger="pipeline.downstream.run"):
        score(config, "ks", "fake", "indomain", ks_head, features, manifest, str(tmp_path / "s.json"))
    result = json.loads((tmp_path / "s.json").read_text())
    assert result["missing_utterances"] == {"count": len(dropped), "of": len(test), "examples": dropped[:5]}
    assert result["n_utterances"] == result["n"] == len(test) - len(dropped)
    assert f"{features}: {len(dropped)} of {len(test)} labelled test utterances have no features" in caplog.text
    assert dropped[0] in caplog.text and "indomain" in caplog.text
    caplog.clear()
    score(config, "ks", "fake", "clean", ks_head, planted[1], manifest, str(tmp_path / "all.json"))
    assert json.loads((tmp_path / "all.json").read_text())["missing_utterances"] == {
        "count": 0, "of": len(test), "examples": []}
    assert "no features" not in caplog.text
    none = write_features(tmp_path / "none", {"other@0": rng.normal(size=(10, LAYERS, DIM))}, shards=1)
    with pytest.raises(ValueError, match=rf"{none}: none of the {len(test)} .*e\.g\. \['{test[0]}'"):
        score(config, "ks", "fake", "ood", ks_head, none, manifest, str(tmp_path / "x.json"))


def test_real_manifest_with_unseen_and_empty_labels(tmp_path, config, ks_head):
    labels = ["one", "two", "banana", "", "seven", "banana"]
    rng = np.random.default_rng(7)
    rows = [{"utt_id": f"real{i}", "path": f"r{i}.wav", "num_samples": 16000, "sample_rate": 16000,
             "split": "test", "speaker": "ast", "keyword": k} for i, k in enumerate(labels)]
    write_manifest(pd.DataFrame(rows), tmp_path / "real.tsv")
    features = write_features(tmp_path, {f"real{i}@0": rng.normal(size=(9, LAYERS, DIM)) for i in range(6)})
    real = str(tmp_path / "real.tsv")
    score(config, "ks", "fake", "real", ks_head, features, real, str(tmp_path / "s.json"))
    result = json.loads((tmp_path / "s.json").read_text())
    assert result["n"] == 5 and result["unseen_labels"]["count"] == 2
    assert result["unseen_labels"]["labels"] == ["banana"] and "wrong" in result["unseen_labels"]["policy"]
    assert result["value"] <= 3 / 5


def test_errors_name_the_problem(tmp_path, config, planted, ks_head):
    manifest, features, _ = planted
    cfg = yaml.safe_load(Path(config).read_text())
    del cfg["downstream"]["tasks"]["ic"]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(KeyError, match="downstream.tasks has no 'ic'"):
        train_head(str(tmp_path / "c.yaml"), "ic", "fake", features, manifest, str(tmp_path / "x.pt"))
    with pytest.raises(ValueError, match="trained for task 'ks'"):
        score(config, "ic", "fake", "clean", ks_head, features, manifest, str(tmp_path / "s.json"))
    with pytest.raises(ValueError, match="trained for upstream 'fake', not 'other'"):
        score(config, "ks", "other", "clean", ks_head, features, manifest, str(tmp_path / "s.json"))
    with pytest.raises(KeyError, match="upstream 'other' is neither a teacher nor a student"):
        train_head(config, "ks", "other", features, manifest, str(tmp_path / "x.pt"))
    cfg = yaml.safe_load(Path(config).read_text())
    cfg["teachers"]["other"] = FAKE_TEACHER
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(CacheMismatchError, match="store has 'fake', expected 'other'"):
        train_head(str(tmp_path / "other.yaml"), "ks", "other", features, manifest, str(tmp_path / "x.pt"))


class _Planted:
    """What an attacker could leave in a shared results tree: unpickling it creates `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_a_planted_head_is_refused_not_run(tmp_path, config, planted, ks_head):
    """A head file whose pickle would run code is refused with an error naming it and what to do; the code never
    runs (no marker file) and no score is written."""
    manifest, features, _ = planted
    ckpt = torch.load(ks_head, weights_only=True)
    head, marker = tmp_path / "ks.pt", tmp_path / "marker"
    torch.save({**ckpt, "codec": _Planted(marker)}, head)
    with pytest.raises(UnsafeFileError, match=rf"{re.escape(str(head))}: refused .*head checkpoint.*Delete it and "
                                              "rerun `python -m pipeline train-head`"):
        score(config, "ks", "fake", "clean", str(head), features, manifest, str(tmp_path / "s.json"))
    assert not marker.exists() and not (tmp_path / "s.json").exists()
