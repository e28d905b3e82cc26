"""Verbs `train-head`, `score` and `evaluate`: SUPERB-style heads on a frozen upstream's cached features.

Seeds: a head checkpoint holds one dev-selected run per seed (the config's `seeds`); a score JSON holds
every seed's value under `per_seed` and their mean as `value` (sample std as `std` when there are
several), so the report averages seeds without reading checkpoints. Beside each score JSON, a predictions
file holds every test item's result per seed (pipeline/downstream/predictions.py) for the claims bootstrap.
"""

from __future__ import annotations

import copy
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from pipeline.atomic import write_text_atomic
from pipeline.cache.extract import expected_fingerprint
from pipeline.config import load_config
from pipeline.corpus.manifest import read_manifest
from pipeline.downstream.data import Features, Split, batch_indices, copies_by_utt, labelled_rows, make_split, predict
from pipeline.downstream.featurizer import WeightedSum
from pipeline.downstream.heads import DownstreamModel
from pipeline.downstream.loader import Loader
from pipeline.downstream.metrics import ratio
from pipeline.downstream.predictions import prediction_path, prediction_rows, write_predictions
from pipeline.downstream.tasks import Codec, Task, codec_from_state, get_task
from pipeline.saved import load_saved, save_atomic

log = logging.getLogger(__name__)
LAYER_NORM = True  # per-frame layer norm of each hidden state before the weighted sum (DESIGN.md)
EVALS_PER_RUN = 20  # dev evaluations over a training run
CLIP_NORM = 5.0  # gradient-norm clipping of head training (CTC heads at high learning rates spike without it)
DEFAULTS = {"batch_size": 32, "seeds": [0]}


def task_settings(config: str | dict[str, Any], task: str) -> dict[str, Any]:
    """steps / lr / batch_size / seeds of `downstream.tasks.<task>` (a config file or a loaded config)."""
    cfg = load_config(config) if isinstance(config, str | Path) else config
    tasks = cfg["downstream"].get("tasks", {})
    if task not in tasks:
        raise KeyError(f"{config if isinstance(config, str) else 'config'}: downstream.tasks has no '{task}' "
                       f"entry; add one with steps, lr, batch_size and seeds (configured: {sorted(tasks)})")
    settings = {**DEFAULTS, **tasks[task]}
    missing = [k for k in ("steps", "lr") if k not in settings]
    if missing:
        raise KeyError(f"downstream.tasks.{task} lacks {missing}")
    return settings


NORMALISE = WeightedSum(1, LAYER_NORM).normalise  # the featurizer's parameter-free part, applied at load


def _split(features: Features, df: pd.DataFrame, spec: Task, split: str, pool: bool) -> Split:
    rows = labelled_rows(df, spec, split)
    wanted = [f"{u}@0" for u in rows["utt_id"]]
    missing = [k for k in wanted if k not in features.cache]
    if missing:
        raise KeyError(f"{features.index}: {len(missing)} {split} utterance(s) lack clean features "
                       f"(e.g. {missing[:3]}); pass the index of the CLEAN view of the same corpus, "
                       "or re-run extraction")
    if not wanted:
        raise ValueError(f"no labelled {split} utterances for task '{spec.name}'; "
                         "check the manifest's split and label columns")
    return make_split(features, wanted, rows[spec.column].str.strip().tolist(), pool, f"{spec.name} {split} features",
                      hold=True)


def _pools(spec: Task) -> bool:
    return bool(getattr(spec.make_head, "pools_linearly", False))


def _fit(model: DownstreamModel, spec: Task, codec: Codec, train: Split, dev: Split, settings: dict[str, Any],
         seed: int, desc: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The training loop: Adam on shuffled padded batches, dev metric every few steps; best state + curve.

    `schedule: linear` decays the learning rate linearly to zero at `steps`; `patience` > 0 stops once the dev
    metric has not improved for that many evaluations (the curve then ends before `steps`)."""
    steps, bs = int(settings["steps"]), int(settings["batch_size"])
    peak, patience = float(settings["lr"]), int(settings.get("patience", 0))
    decay = settings.get("schedule", "constant") == "linear"
    optimizer = torch.optim.Adam(model.parameters(), lr=peak)
    lengths = train.lengths  # all 1 for pooled heads: plain shuffling
    batches = Loader(train, batch_indices(len(lengths), bs, torch.Generator().manual_seed(seed),
                                          lengths if max(lengths) > 1 else None))
    targets = [codec.encode(x) for x in train.labels]
    eval_every = max(1, steps // EVALS_PER_RUN)
    best: dict[str, Any] = {}
    curve: list[dict[str, Any]] = []
    losses: list[float] = []
    progress = tqdm(range(1, steps + 1), desc=desc, mininterval=5)
    stale = 0
    with batches:
        for step in progress:
            model.train()
            if decay:
                optimizer.param_groups[0]["lr"] = peak * (steps - step + 1) / steps
            idx, (batch, mask) = next(batches)
            loss = codec.loss(model(batch, mask, normalised=True), mask, codec.collate([targets[i] for i in idx]))
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
            optimizer.step()
            losses.append(loss.item())
            if step % eval_every == 0 or step == steps:
                value = spec.score(dev.labels, predict([model], codec, dev, bs)[0])
                curve.append({"step": step, "train_loss": sum(losses) / len(losses),
                              "lr": optimizer.param_groups[0]["lr"], f"dev_{spec.metric}": value})
                losses = []
                progress.set_postfix(loss=f"{curve[-1]['train_loss']:.3f}", dev=f"{value:.3f}")
                if not best or (value > best["value"] if spec.higher_is_better else value < best["value"]):
                    best = {"step": step, "value": value, "model": copy.deepcopy(model.state_dict())}
                    stale = 0
                else:
                    stale += 1
                if patience and stale >= patience:
                    break
    progress.close()
    return best, curve


def _train(spec: Task, settings: dict[str, Any], upstream: str, features: Features, df: pd.DataFrame,
           seeds: list[int]) -> dict[str, Any]:
    """One dev-selected head per seed on the clean train split; the checkpoint dict (not yet saved)."""
    pool = _pools(spec)
    train, dev = _split(features, df, spec, "train", pool), _split(features, df, spec, "dev", pool)
    codec = spec.fit_codec(train.labels)
    num_layers, dim = features.shape
    options = dict(settings.get("head", {}))
    runs = []
    for seed in seeds:
        torch.manual_seed(seed)
        model = DownstreamModel(WeightedSum(num_layers, LAYER_NORM), spec.head(dim, codec.n_outputs, options))
        t0 = time.perf_counter()
        best, curve = _fit(model, spec, codec, train, dev, settings, seed, f"{spec.name} head on {upstream} s{seed}")
        model.load_state_dict(best["model"])
        runs.append({"seed": seed, "model": best["model"], "layer_weights": model.featurizer.layer_weights(),
                     "best_step": best["step"], "dev_value": best["value"], "curve": curve,
                     "train_seconds": round(time.perf_counter() - t0, 2)})
        log.info("%s/%s seed %d: best dev %s %.4f at step %d (%.1f s)", upstream, spec.name, seed, spec.metric,
                 best["value"], best["step"], runs[-1]["train_seconds"])
    return {
        "task": spec.name, "upstream": upstream, "seeds": list(seeds), "lr": float(settings["lr"]),
        "steps": int(settings["steps"]), "batch_size": int(settings["batch_size"]), "num_layers": num_layers,
        "dim": dim, "head_options": options, "layer_norm": LAYER_NORM, "codec": codec.state(), "runs": runs,
        "dev_metric": spec.metric, "n_train": len(train.keys), "n_dev": len(dev.keys), "features": features.index,
        "fingerprint": features.fingerprint, "num_params": features.fingerprint.get("num_params"),
    }


def _features(cfg: dict[str, Any], index: str, upstream: str) -> Features:
    """`upstream`'s cached features at `index`, refused if another config entry (model, layers, dtype) made them."""
    return Features(index, upstream, NORMALISE, expect=expected_fingerprint(cfg, upstream))


def train_head(config: str, task: str, upstream: str, features: str, manifest: str, out: str,
               seeds: list[int] | None = None, threads: int = 0) -> None:
    """Train weighted-sum + head on clean train features, one dev-selected run per seed; save it to `out`."""
    _threads(threads)
    cfg = load_config(config)
    spec, settings = get_task(task), task_settings(cfg, task)
    ckpt = _train(spec, settings, upstream, _features(cfg, features, upstream),
                  read_manifest(manifest), list(seeds) if seeds else list(settings["seeds"]))
    ckpt["manifest"] = manifest
    _save_head(ckpt, Path(out))


def load_head(head: str, task: str, upstream: str) -> tuple[list[tuple[int, DownstreamModel]], Codec, dict]:
    """Rebuild every seed's model and the codec from a head checkpoint, checking it fits task and upstream."""
    if not Path(head).exists():
        raise FileNotFoundError(f"{head}: no head checkpoint; run `python -m pipeline train-head` first")
    ckpt = load_saved(head, "head checkpoint", "Delete it and rerun `python -m pipeline train-head` (or the "
                      "workflow) to train the head again.")
    for key, want in (("task", task), ("upstream", upstream)):
        if ckpt.get(key) != want:
            raise ValueError(f"{head} was trained for {key} '{ckpt.get(key)}', not '{want}'; "
                             "pass the matching head")
    if "runs" not in ckpt:
        raise ValueError(f"{head} predates per-seed head checkpoints; re-run `python -m pipeline train-head`")
    return _models(ckpt, get_task(task)), codec_from_state(ckpt["codec"]), ckpt


def _models(ckpt: dict[str, Any], spec: Task) -> list[tuple[int, DownstreamModel]]:
    codec = codec_from_state(ckpt["codec"])
    models = []
    for run in ckpt["runs"]:
        model = DownstreamModel(WeightedSum(ckpt["num_layers"], ckpt["layer_norm"]),
                                spec.head(ckpt["dim"], codec.n_outputs, ckpt.get("head_options")))
        model.load_state_dict(run["model"])
        models.append((run["seed"], model))
    return models


MISSING_EXAMPLES = 5  # utterance ids a score file lists when some test utterances lack features


def missing_utterances(rows: pd.DataFrame, present: pd.DataFrame, index: str, condition: str) -> dict[str, Any]:
    """Count (and a few ids) of labelled test utterances without features; warns, since they are left out."""
    ids = sorted(set(rows["utt_id"]) - set(present["utt_id"]))
    if ids and len(present):
        log.warning("%s: %d of %d labelled test utterances have no features and are left out of the %s score "
                    "(e.g. %s); re-run extraction of this view to score all of them", index, len(ids), len(rows),
                    condition, ids[:MISSING_EXAMPLES])
    return {"count": len(ids), "of": len(rows), "examples": ids[:MISSING_EXAMPLES]}


def _score(spec: Task, settings: dict[str, Any], ckpt: dict[str, Any], head: str, condition: str,
           features: Features, df: pd.DataFrame) -> tuple[dict[str, Any], pd.DataFrame]:
    """The score JSON of every seed's head on the test utterances (all copies) present in `features`, and the
    per-item predictions table (every item, seed and metric as numerator and denominator)."""
    rows = labelled_rows(df, spec, "test")
    groups = copies_by_utt(features.keys)
    present = rows[rows["utt_id"].isin(groups)]
    missing = missing_utterances(rows, present, features.index, condition)
    if present.empty:
        raise ValueError(f"{features.index}: none of the {len(rows)} labelled test utterances have features "
                         f"(e.g. {missing['examples']}); pass the index of this corpus and view")
    keys, refs = [], []
    for utt, label in zip(present["utt_id"], present[spec.column].str.strip(), strict=True):
        keys += groups[utt]
        refs += [label] * len(groups[utt])
    if features.shape != (ckpt["num_layers"], ckpt["dim"]):
        raise ValueError(f"{features.index} holds (layers, dim) {features.shape}, but {head} was "
                         f"trained on {(ckpt['num_layers'], ckpt['dim'])}; pass features of '{ckpt['upstream']}'")
    codec = codec_from_state(ckpt["codec"])
    models = _models(ckpt, spec)
    test = make_split(features, keys, refs, _pools(spec), f"{condition} test features")
    every = predict([model for _, model in models], codec, test, int(settings["batch_size"]))
    per_seed, items = [], []
    for (seed, _), run, preds in zip(models, ckpt["runs"], every, strict=True):
        counts = spec.item_counts(refs, preds)  # the metrics are their ratios of sums: one pass of jiwer
        metrics = {name: ratio(c) for name, c in counts.items()}
        items.append(prediction_rows(keys, seed, counts))
        per_seed.append({"seed": seed, "value": metrics[spec.metric], "metrics": metrics,
                         "dev_value": run["dev_value"], "best_step": run["best_step"],
                         "train_seconds": run.get("train_seconds"), "layer_weights": run["layer_weights"],
                         "curve": run["curve"]})
    values = [r["value"] for r in per_seed]
    weights = torch.tensor([r["layer_weights"] for r in per_seed]).mean(dim=0).tolist()
    unseen = [r for r in refs if codec.encode(r) is None]
    result = {
        "upstream": ckpt["upstream"], "task": spec.name, "condition": condition, "metric": spec.metric,
        "value": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
        "seeds": [r["seed"] for r in per_seed],
        "metrics": {m: statistics.fmean(r["metrics"][m] for r in per_seed) for m in per_seed[0]["metrics"]},
        "higher_is_better": spec.higher_is_better, "n": len(keys), "n_utterances": len(present),
        "missing_utterances": missing, "lr": ckpt["lr"], "steps": ckpt["steps"],
        "batch_size": ckpt["batch_size"],
        "num_params": features.fingerprint.get("num_params", ckpt.get("num_params")),
        "layer_weights": weights, "per_seed": per_seed,
        "unseen_labels": {"count": len(unseen), "labels": sorted(set(unseen))[:50],
                          "policy": "labels (or tokens) absent from the training vocabulary are counted wrong"},
        "head": head, "features": features.index,
    }
    return result, pd.concat(items, ignore_index=True)


def _write_score(result: dict[str, Any], predictions: pd.DataFrame, out: str | Path) -> None:
    """The score JSON at `out` and its predictions file beside it (`prediction_path`)."""
    write_predictions(predictions, prediction_path(out))
    write_text_atomic(out, json.dumps(result, indent=1) + "\n")


def score(config: str, task: str, upstream: str, condition: str, head: str, features: str, manifest: str,
          out: str, threads: int = 0) -> None:
    """Score every seed of a trained head on the test utterances (every copy) in `features`; write one JSON and
    its per-item predictions beside it (`.pred.tsv`)."""
    prediction_path(out)  # refuses a name that is not .json before any work
    _threads(threads)
    cfg = load_config(config)
    spec, settings = get_task(task), task_settings(cfg, task)
    _, _, ckpt = load_head(head, task, upstream)
    result, predictions = _score(spec, settings, ckpt, head, condition, _features(cfg, features, upstream),
                                 read_manifest(manifest))
    _write_score(result, predictions, out)
    log.info("%s: %s %s on %s = %.4f (n=%d)", out, task, spec.metric, condition, result["value"], result["n"])


def evaluate(config: str, upstream: str, tasks: list[str], threads: int = 1) -> None:
    """Every configured task of one upstream in one process: train heads (all seeds) on the clean features of
    the task's corpus, score them on every condition; paths from `pipeline.workflow.Layout` (as the rules
    wire them).

    Each (corpus, view)'s stores are opened once and shared by all tasks, with its pooled time averages; frames are
    held per task while it trains (splits within `HOLD_BYTES`) or streamed (`pipeline.downstream.data`)."""
    from pipeline.workflow import Layout

    _threads(threads)
    cfg = load_config(config)
    layout = Layout(cfg)
    features: dict[tuple[str, str], Features] = {}
    manifests: dict[str, pd.DataFrame] = {}

    def feats(corpus: str, view: str) -> Features:
        if (corpus, view) not in features:
            features[corpus, view] = _features(cfg, layout.feature_index(upstream, corpus, view), upstream)
        return features[corpus, view]

    def manifest(corpus: str) -> pd.DataFrame:
        if corpus not in manifests:
            manifests[corpus] = read_manifest(layout.manifest(corpus))
        return manifests[corpus]

    for task in tasks:
        spec, settings = get_task(task), task_settings(cfg, task)
        head = layout.head(upstream, task)
        ckpt = _train(spec, settings, upstream, feats(*layout.task_source(task, "clean")),
                      manifest(layout.task_corpus(task)),
                      list(settings["seeds"]))
        ckpt["manifest"] = layout.manifest(layout.task_corpus(task))
        _save_head(ckpt, Path(head))
        for condition in layout.conditions(task, upstream):
            corpus, view = layout.task_source(task, condition)
            result, predictions = _score(spec, settings, ckpt, head, condition, feats(corpus, view), manifest(corpus))
            _write_score(result, predictions, layout.score(upstream, task, condition))
            log.info("%s %s %s on %s = %.4f", upstream, task, spec.metric, condition, result["value"])


def _threads(threads: int) -> None:
    if threads > 0:
        torch.set_num_threads(threads)


def _save_head(ckpt: dict[str, Any], out: Path) -> None:
    save_atomic(ckpt, out)
    _write_curves(ckpt, out)


def _write_curves(ckpt: dict[str, Any], out: Path) -> None:
    from pipeline.report.figures import plot_curve

    frame = pd.concat([pd.DataFrame(r["curve"]).assign(seed=r["seed"]) for r in ckpt["runs"]], ignore_index=True)
    frame.to_csv(out.with_suffix(".curve.tsv"), sep="\t", index=False)
    best = ", ".join(f"s{r['seed']}@{r['best_step']}" for r in ckpt["runs"])
    plot_curve(frame, out.with_suffix(".curve.png"), f"{ckpt['task']} on {ckpt['upstream']} (best: {best})")

