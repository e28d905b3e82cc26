"""`evaluate`: every task of one upstream in one process, on a results tree laid out by `Layout`; plus the
exactness of pooled training and the length-bucketed batch sampler."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from fake_cache import FAKE_TEACHER, row, save_manifest, write_features

from pipeline.config import validate_config
from pipeline.downstream.data import batch_indices, labelled_rows
from pipeline.downstream.featurizer import WeightedSum
from pipeline.downstream.heads import DownstreamModel, PooledClassifier
from pipeline.downstream.run import evaluate
from pipeline.downstream.tasks import get_task
from pipeline.workflow import Layout

KEYWORDS = ["zero", "one", "two"]
DIM, LAYERS = 8, 2


def test_pooled_states_give_the_same_logits_as_frames():
    torch.manual_seed(0)
    model = DownstreamModel(WeightedSum(LAYERS), PooledClassifier(DIM, 5))
    with torch.no_grad():
        model.featurizer.weights.copy_(torch.tensor([0.3, -1.0]))
    states = [torch.randn(t, LAYERS, DIM) * 3 + 1 for t in (7, 3)]
    padded = torch.zeros(2, 7, LAYERS, DIM)
    for i, s in enumerate(states):
        padded[i, : len(s)] = s
    mask = torch.tensor([[True] * 7, [True] * 3 + [False] * 4])
    pooled = torch.stack([model.featurizer.normalise(s).mean(dim=0, keepdim=True) for s in states])
    torch.testing.assert_close(model(padded, mask), model(pooled, torch.ones(2, 1, dtype=torch.bool), normalised=True))


def test_bucketed_batches_cover_each_epoch_and_group_lengths():
    lengths = list(np.random.default_rng(0).integers(5, 200, size=64))
    gen = batch_indices(64, 8, torch.Generator().manual_seed(3), lengths)
    epoch = [next(gen) for _ in range(8)]
    assert sorted(i for b in epoch for i in b) == list(range(64))
    spread = np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in epoch])
    plain = batch_indices(64, 8, torch.Generator().manual_seed(3))
    spread_plain = np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in
                            (next(plain) for _ in range(8))])
    assert spread < spread_plain / 2
    again = batch_indices(64, 8, torch.Generator().manual_seed(3), lengths)
    assert [next(again) for _ in range(8)] == epoch


def test_eval_families_limit_dev_and_test_rows_only():
    import pandas as pd

    df = pd.DataFrame([row(f"u{i}", split, text="a b", family=fam) for i, (split, fam) in enumerate(
        [("train", "keyword"), ("train", "sentence"), ("test", "keyword"), ("test", "sentence"), ("dev", "command")])])
    spec = get_task("asr")
    assert len(labelled_rows(df, spec, "train")) == 2
    assert labelled_rows(df, spec, "test")["utt_id"].tolist() == ["u3"]
    assert len(labelled_rows(df, spec, "dev")) == 1
    assert len(labelled_rows(df.drop(columns="family"), spec, "test")) == 2  # no family column: all rows
    other = df.assign(family="librispeech")
    assert len(labelled_rows(other, spec, "test")) == 2  # families of another corpus: all rows


def _tree(root: Path) -> dict:
    """Synthetic (clean/indomain/ood) and real manifests and features for upstream 'fake', at Layout's paths."""
    cfg = {"seed": 1, "results": str(root), "corpus": {"synthetic": {"voices": 1, "keyword": 1, "command": 0,
                                                                      "sentence": 1}},
           "views": {}, "teachers": {"fake": FAKE_TEACHER}, "cache": {}, "students": {},
           "downstream": {"upstreams": ["fake"],
                          "tasks": {"ks": {"steps": 40, "lr": 5e-3, "batch_size": 8, "seeds": [0, 1]},
                                    "pr": {"steps": 20, "lr": 1e-2, "batch_size": 4, "upstreams": ["fake"]}}}}
    validate_config(cfg)
    layout = Layout(cfg)
    rng = np.random.default_rng(0)
    rows, arrays = [], {}
    for split, count in (("train", 8), ("dev", 2), ("test", 3)):
        for k, word in enumerate(KEYWORDS):
            for n in range(count):
                utt = f"{word}-{split}-{n}"
                rows.append(row(utt, split, keyword=word, text=word, phones=" ".join(word), family="sentence"))
                arrays[utt] = rng.normal(size=(6 + k, LAYERS, DIM)) + k
    save_manifest(rows, Path(layout.manifest("synthetic")))
    for view, copies in (("clean", 1), ("indomain", 2), ("ood", 1)):
        feats = {f"{u}@{c}": a + rng.normal(size=a.shape) * 0.1 for u, a in arrays.items() for c in range(copies)}
        write_features(Path(layout.feature_index("fake", "synthetic", view)).parent, feats)
    real = [row(f"ast-{w}", "test", keyword=w, text=w, phones=" ".join(w), family="sentence") for w in KEYWORDS]
    save_manifest(real, Path(layout.manifest("asterisk")))
    write_features(Path(layout.feature_index("fake", "asterisk", "clean")).parent,
                   {f"ast-{w}@0": rng.normal(size=(7, LAYERS, DIM)) + k for k, w in enumerate(KEYWORDS)})
    return cfg


def test_evaluate_writes_every_head_and_score_of_the_layout(tmp_path):
    cfg = _tree(tmp_path / "results")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    layout = Layout(cfg)
    assert layout.evaluations() == {"fake": ["ks", "pr"]}
    evaluate(str(tmp_path / "config.yaml"), "fake", ["ks", "pr"])
    for task in ("ks", "pr"):
        assert Path(layout.head("fake", task)).exists()
        assert Path(layout.head("fake", task)).with_suffix(".curve.png").exists()
    scores = layout.scores("fake")
    assert len(scores) == 8  # ks and pr: clean, indomain, ood, real (both have real-corpus labels)
    for path in scores:
        data = json.loads(Path(path).read_text())
        assert data["upstream"] == "fake" and data["n"] > 0 and data["num_params"] == 1234567
    ks = json.loads(Path(layout.score("fake", "ks", "indomain")).read_text())
    assert ks["seeds"] == [0, 1] and len(ks["per_seed"]) == 2 and ks["n"] == 2 * 9
    assert ks["value"] == np.mean([r["value"] for r in ks["per_seed"]])
    assert json.loads(Path(layout.score("fake", "pr", "real")).read_text())["metric"] == "per"


def test_evaluate_writes_predictions_that_give_each_seeds_score(tmp_path):
    """Beside every score JSON its predictions: every test item and head seed, whose ratio of sums is that seed's
    value (PER: edits over reference phones)."""
    import pandas as pd

    from pipeline.downstream.predictions import read_predictions

    cfg = _tree(tmp_path / "results")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    layout = Layout(cfg)
    evaluate(str(tmp_path / "config.yaml"), "fake", ["ks", "pr"])
    for task in ("ks", "pr"):
        for condition in layout.conditions(task):
            data = json.loads(Path(layout.score("fake", task, condition)).read_text())
            pred = read_predictions(layout.predictions("fake", task, condition))
            assert set(pred["metric"]) == {data["metric"]}
            assert len(pred) == data["n"] * len(data["seeds"])
            assert pred["utt_id"].nunique() == data["n_utterances"]
            for run in data["per_seed"]:
                rows = pred[pred["seed"] == run["seed"]]
                assert rows["num"].sum() / rows["den"].sum() == pytest.approx(run["value"])
            if task == "pr":
                manifest = pd.read_csv(layout.manifest(layout.task_source(task, condition)[0]), sep="\t")
                lengths = {u: len(p.split()) for u, p in zip(manifest["utt_id"], manifest["phones"], strict=True)}
                assert (pred["den"] == pred["utt_id"].map(lengths)).all()
    indomain = read_predictions(layout.predictions("fake", "ks", "indomain"))
    assert sorted(set(indomain["copy"])) == [0, 1]


def test_fbank_is_extracted_and_evaluated_like_any_upstream(tmp_path):
    """The fbank reference through the real verbs, without Snakemake: `extract-upstream` writes every store its
    evaluation reads (Layout's paths) from view audio, `evaluate` trains heads on its one hidden state and scores
        every condition with 0 parameters. A keyword is two tones one after the other, a different pair for each: a
    steady tone alone would vanish under the utterance CMVN."""
    from pipeline.cache.store import StoreWriter
    from pipeline.upstream_features import extract_upstream

    cfg = {"seed": 1, "results": str(tmp_path / "results"),
           "corpus": {"synthetic": {"voices": 1, "keyword": 1, "command": 0, "sentence": 0},
                      "real": {"asterisk": False}},
           "views": {}, "teachers": {"fbank": {"kind": "fbank"}}, "cache": {}, "students": {},
           "downstream": {"upstreams": "all", "tasks": {"ks": {"steps": 30, "lr": 5e-2, "batch_size": 8}}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    layout = Layout(validate_config(cfg))
    rng = np.random.default_rng(0)
    rows = [row(f"{w}-{split}-{n}", split, keyword=w) for split, count in (("train", 6), ("dev", 2), ("test", 2))
            for w in KEYWORDS for n in range(count)]
    save_manifest(rows, Path(layout.manifest("synthetic")))
    t = np.arange(4000) / 16000
    pairs = {w: (300 * 2 ** k, 700 * 2 ** k) for k, w in enumerate(KEYWORDS)}
    for corpus, view, shard in layout.feature_shards("fbank"):
        copies = cfg["views"][view]["copies"] if view != "clean" else 1
        with StoreWriter(layout.view_store(corpus, view, shard), {"kind": "view_audio", "view": view},
                         dtype="float32") as w:
            for r in rows[shard::layout.num_shards(corpus)]:
                tones = np.concatenate([0.3 * np.sin(2 * np.pi * f * t) for f in pairs[r["keyword"]]])
                for c in range(copies):
                    noise = 0.02 * (1 + (view != "clean")) * rng.standard_normal(tones.size)
                    w.add(f"{r['utt_id']}@{c}", (tones + noise).astype(np.float32))
    extract_upstream(str(tmp_path / "config.yaml"), "fbank")
    evaluate(str(tmp_path / "config.yaml"), "fbank", ["ks"])
    assert layout.conditions("ks") == ["clean", "indomain", "ood"]
    for condition in layout.conditions("ks"):
        data = json.loads(Path(layout.score("fbank", "ks", condition)).read_text())
        assert data["num_params"] == 0 and data["layer_weights"] == [1.0]
        assert data["n"] == 6 * (2 if condition == "indomain" else 1)  # 2 test utterances x 3 keywords x copies
        assert data["value"] == 1.0, (condition, data["value"])
