"""Verbs `train-head` and `score`: fit a SUPERB-style head on a frozen upstream's cached features."""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from pipeline.config import load_config
from pipeline.corpus.manifest import read_manifest
from pipeline.downstream.data import (
    batch_indices,
    copies_by_utt,
    labelled_rows,
    load_states,
    open_features,
    pad,
    predict,
)
from pipeline.downstream.featurizer import WeightedSum
from pipeline.downstream.heads import DownstreamModel
from pipeline.downstream.tasks import Codec, Task, codec_from_state, get_task

log = logging.getLogger(__name__)
LAYER_NORM = True  # per-frame layer norm of each hidden state before the weighted sum (DESIGN.md)
EVALS_PER_RUN = 20  # dev evaluations over a training run


def task_settings(config: str, task: str) -> dict[str, Any]:
    """steps / lr / batch_size / seeds of `downstream.tasks.<task>` in the config file."""
    tasks = load_config(config)["downstream"].get("tasks", {})
    if task not in tasks:
        raise KeyError(f"{config}: downstream.tasks has no '{task}' entry; add one with steps, lr, "
                       f"batch_size and seeds to train this task (configured: {sorted(tasks)})")
    settings = tasks[task]
    missing = [k for k in ("steps", "lr", "batch_size") if k not in settings]
    if missing:
        raise KeyError(f"{config}: downstream.tasks.{task} lacks {missing}")
    return settings


def _training_keys(rows: pd.DataFrame, keys: set[str], split: str, features: str) -> list[str]:
    wanted = [f"{u}@0" for u in rows["utt_id"]]
    missing = [k for k in wanted if k not in keys]
    if missing:
        raise KeyError(f"{features}: {len(missing)} {split} utterance(s) lack clean features "
                       f"(e.g. {missing[:3]}); pass the index of the CLEAN view of the same corpus, "
                       "or re-run extraction")
    if not wanted:
        raise ValueError(f"no labelled {split} utterances for this task; "
                         "check the manifest's split and label columns")
    return wanted


def _fit(model: DownstreamModel, spec: Task, codec: Codec, train: list[torch.Tensor], targets: list[Any],
         dev: list[torch.Tensor], dev_refs: list[str], settings: dict[str, Any], seed: int,
         desc: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The training loop: Adam on shuffled padded batches, dev metric every few steps; best state + curve."""
    steps, bs = int(settings["steps"]), int(settings["batch_size"])
    optimizer = torch.optim.Adam(model.parameters(), lr=float(settings["lr"]))
    batches = batch_indices(len(train), bs, torch.Generator().manual_seed(seed))
    eval_every = max(1, steps // EVALS_PER_RUN)
    best: dict[str, Any] = {}
    curve: list[dict[str, Any]] = []
    losses: list[float] = []
    progress = tqdm(range(1, steps + 1), desc=desc)
    for step in progress:
        model.train()
        idx = next(batches)
        batch, mask = pad([train[i] for i in idx])
        loss = codec.loss(model(batch, mask), mask, codec.collate([targets[i] for i in idx]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % eval_every == 0 or step == steps:
            value = spec.score(dev_refs, predict(model, codec, dev, bs))
            curve.append({"step": step, "train_loss": sum(losses) / len(losses), f"dev_{spec.metric}": value})
            losses = []
            progress.set_postfix(loss=f"{curve[-1]['train_loss']:.3f}", dev=f"{value:.3f}")
            if not best or (value > best["value"] if spec.higher_is_better else value < best["value"]):
                best = {"step": step, "value": value, "model": copy.deepcopy(model.state_dict())}
    return best, curve


def train_head(config: str, task: str, upstream: str, features: str, manifest: str, out: str,
               seed: int = 0) -> None:
    """Train a weighted-sum + head on clean train features, keep the best dev checkpoint, save it to `out`."""
    spec, settings = get_task(task), task_settings(config, task)
    df = read_manifest(manifest)
    cache = open_features(features, upstream)
    keys = set(cache.keys)
    train_rows, dev_rows = labelled_rows(df, spec, "train"), labelled_rows(df, spec, "dev")
    train = load_states(cache, _training_keys(train_rows, keys, "train", features), "train features")
    dev = load_states(cache, _training_keys(dev_rows, keys, "dev", features), "dev features")
    train_labels = train_rows[spec.column].str.strip().tolist()
    codec = spec.fit_codec(train_labels)
    num_layers, dim = train[0].shape[1:]

    torch.manual_seed(seed)
    model = DownstreamModel(WeightedSum(num_layers, LAYER_NORM), spec.make_head(dim, codec.n_outputs))
    targets = [codec.encode(x) for x in train_labels]
    dev_refs = dev_rows[spec.column].str.strip().tolist()
    best, curve = _fit(model, spec, codec, train, targets, dev, dev_refs, settings, seed,
                       f"{task} head on {upstream}")
    model.load_state_dict(best["model"])
    checkpoint = {
        "task": task, "upstream": upstream, "seed": seed, "lr": float(settings["lr"]),
        "steps": int(settings["steps"]), "batch_size": int(settings["batch_size"]),
        "num_layers": num_layers, "dim": dim, "layer_norm": LAYER_NORM, "codec": codec.state(),
        "model": best["model"], "layer_weights": model.featurizer.layer_weights(), "best_step": best["step"],
        "dev_metric": spec.metric, "dev_value": best["value"], "curve": curve, "n_train": len(train),
        "n_dev": len(dev), "features": features, "manifest": manifest, "fingerprint": dict(cache.fingerprint),
        "num_params": cache.fingerprint.get("num_params"),
    }
    _save_atomic(checkpoint, Path(out))
    _write_curve(curve, Path(out), f"{task} on {upstream} (seed {seed}, best step {best['step']})")
    log.info("%s: best dev %s %.4f at step %d", out, spec.metric, best["value"], best["step"])


def load_head(head: str, task: str, upstream: str) -> tuple[DownstreamModel, Any, dict[str, Any]]:
    """Rebuild model and codec from a `train_head` checkpoint, checking it fits this task and upstream."""
    if not Path(head).exists():
        raise FileNotFoundError(f"{head}: no head checkpoint; run `python -m pipeline train-head` first")
    ckpt = torch.load(head, map_location="cpu", weights_only=False)
    for key, want in (("task", task), ("upstream", upstream)):
        if ckpt[key] != want:
            raise ValueError(f"{head} was trained for {key} '{ckpt[key]}', not '{want}'; "
                             "pass the matching head")
    codec = codec_from_state(ckpt["codec"])
    spec = get_task(task)
    model = DownstreamModel(WeightedSum(ckpt["num_layers"], ckpt["layer_norm"]),
                            spec.make_head(ckpt["dim"], codec.n_outputs))
    model.load_state_dict(ckpt["model"])
    return model, codec, ckpt


def score(config: str, task: str, upstream: str, condition: str, head: str, features: str, manifest: str,
          out: str) -> None:
    """Score a trained head on the test utterances (every copy) present in `features`; write one JSON."""
    spec, settings = get_task(task), task_settings(config, task)
    model, codec, ckpt = load_head(head, task, upstream)
    cache = open_features(features, upstream)
    rows = labelled_rows(read_manifest(manifest), spec, "test")
    groups = copies_by_utt(cache.keys)
    present = rows[rows["utt_id"].isin(groups)]
    if present.empty:
        raise ValueError(f"{features}: none of the {len(rows)} labelled test utterances of {manifest} have "
                         "features; pass the index of this corpus and view")
    keys, refs = [], []
    for utt, label in zip(present["utt_id"], present[spec.column].str.strip(), strict=True):
        keys += groups[utt]
        refs += [label] * len(groups[utt])
    states = load_states(cache, keys, f"{condition} test features")
    if tuple(states[0].shape[1:]) != (ckpt["num_layers"], ckpt["dim"]):
        raise ValueError(f"{features} holds (layers, dim) {tuple(states[0].shape[1:])}, but {head} was "
                         f"trained on {(ckpt['num_layers'], ckpt['dim'])}; pass features of '{upstream}'")
    value = spec.score(refs, predict(model, codec, states, int(settings["batch_size"])))
    unseen = [r for r in refs if codec.encode(r) is None]
    result = {
        "upstream": upstream, "task": task, "condition": condition, "metric": spec.metric, "value": value,
        "n": len(keys), "seeds": [ckpt["seed"]], "lr": ckpt["lr"], "steps": ckpt["steps"],
        "num_params": cache.fingerprint.get("num_params", ckpt.get("num_params")),
        "layer_weights": ckpt["layer_weights"],
        "n_utterances": len(present), "n_without_features": len(rows) - len(present),
        "unseen_labels": {"count": len(unseen), "labels": sorted(set(unseen)),
                          "policy": "labels absent from the training vocabulary are counted wrong"},
        "best_step": ckpt["best_step"], "dev_value": ckpt["dev_value"], "head": head, "features": features,
    }
    _write_json_atomic(result, Path(out))
    log.info("%s: %s %s on %s = %.4f (n=%d)", out, task, spec.metric, condition, value, len(keys))


def _save_atomic(obj: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _write_json_atomic(obj: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def _write_curve(curve: list[dict[str, Any]], out: Path, title: str) -> None:
    from pipeline.report.figures import plot_curve

    frame = pd.DataFrame(curve)
    frame.to_csv(out.with_suffix(".curve.tsv"), sep="\t", index=False)
    plot_curve(frame, out.with_suffix(".curve.png"), title)
