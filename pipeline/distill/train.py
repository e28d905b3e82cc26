"""The one training loop for every student: cached targets in, checkpoint + curve out, resumable."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from pipeline.cache.extract import expected_fingerprint
from pipeline.cache.index import FeatureCache
from pipeline.cache.store import stored
from pipeline.config import load_config
from pipeline.corpus.manifest import read_manifest
from pipeline.distill.data import Batch, ClusterIds, DistillBatches, DomainLabels, Extra, Prefetcher, TextTargets
from pipeline.distill.inputs import teacher_list
from pipeline.distill.methods import Method, MethodContext, Needs, build_method, get_method
from pipeline.report.figures import plot_curve
from pipeline.saved import UnsafeFileError, load_saved, save_atomic
from pipeline.students.checkpoint import build_student, count_params, save_student
from pipeline.teachers.registry import pick_device, relative_depth_layers

log = logging.getLogger(__name__)
DEFAULT_TRAIN = {"steps": 1000, "batch_size": 8, "crop_seconds": 2.0, "lr": 2e-4, "warmup": 0.07}
DEV_BATCHES = 4  # held-out dev batches scored during training (the same crops every time)
DEV_UTTERANCES = 96  # whole-utterance students: at most this many dev utterances, spread over the lengths
DEV_EVALS = 8  # dev evaluations over a run, besides the one before the first step


def lr_at(step: int, steps: int, peak: float, warmup: float) -> float:
    """Linear warm-up to `peak` over warmup * steps, then linear decay to zero (DistilHuBERT schedule)."""
    warm = max(1, int(warmup * steps))
    return peak * (step + 1) / warm if step < warm else peak * max(0.0, (steps - step) / max(1, steps - warm))


def _resume_state(path: Path, job: dict, device: torch.device) -> dict | None:
    """The saved state at `path` if this job (spec, seed, inputs) wrote it; UnsafeFileError if it holds code."""
    if not path.exists():
        return None
    try:
        state = load_saved(path, "resume state", "Delete it and rerun: the student then trains from step 0.",
                           map_location=device)
    except UnsafeFileError:
        raise
    except Exception as err:  # unreadable (another torch version, a damaged disk): not worth failing the job
        log.warning("%s: cannot read the resume state (%s); starting from step 0", path, err)
        return None
    if state.get("job") != job:
        log.warning("%s was saved by another training job (the student's config, seed or inputs changed); "
                    "starting from step 0", path)
        return None
    return state


def target_layers(fingerprint: dict) -> list[int]:
    """Cached states a student predicts, by the cache's fingerprint: every state of a cache of chosen layers
    (teachers.<t>.layers, e.g. [4, 8, 12]), layer for layer; of a cache of all states, those at DistilHuBERT's
    relative depths 1/3, 2/3, 1 (4, 8, 12 of 13; 0, 1, 2 of Resemblyzer's 3 LSTM outputs, no input state)."""
    n = int(fingerprint["num_layers"])
    if "layers" in fingerprint:
        return list(range(n))
    return relative_depth_layers(n, input_state=stored(fingerprint, "input_state"))


def open_sources(spec: dict, needs: Needs, audio: list[str], targets: list[str], plans: list[str], codebook: str,
                 text: str, train_ids: list[str], crop_frames: int, seed: int,
                 expect: dict[str, dict] | None = None) -> tuple[DistillBatches, MethodContext]:
    """The batch source and the (student-independent) method context for one student, from cache files only.

    `expect` maps a teacher to the fingerprint its target stores must carry (`expected_fingerprint`)."""
    teachers = teacher_list(spec["teacher"])
    audio_caches: dict[str, FeatureCache] = {}
    for path in audio:
        cache = FeatureCache.open(path, expect={"kind": "view_audio"})
        view = cache.fingerprint.get("view") or spec["input_view"]
        if view in audio_caches:
            raise ValueError(f"{path}: a second view-audio index for view '{view}'; pass one index per view")
        audio_caches[view] = cache
    if spec["input_view"] not in audio_caches:
        raise ValueError(f"no view-audio index of the input view '{spec['input_view']}' among {audio}")
    mix = {spec["input_view"]: 1.0}
    if needs.clean_prob > 0 and spec["input_view"] != "clean":
        if "clean" not in audio_caches:
            raise ValueError("this method mixes clean inputs (options.clean_prob): pass the clean view's audio index")
        mix = {spec["input_view"]: 1.0 - needs.clean_prob, "clean": needs.clean_prob}
    ctx = MethodContext(student_dim=0, teachers=teachers)
    extras: list[Extra] = []
    target_caches: list[FeatureCache] = []
    cb = None
    if needs.targets:
        if len(targets) != len(teachers):
            raise ValueError(f"{len(targets)} target indexes for teachers {teachers}; pass one per teacher, in order")
        target_caches = [FeatureCache.open(p, expect={**(expect or {}).get(t, {}), "name": t})
                         for t, p in zip(teachers, targets, strict=True)]
    if needs.clusters:
        from pipeline.distill.codebook import Codebook

        cb = Codebook(codebook, expect={"teacher": teachers[0], "k": needs.clusters})
        sha = target_caches[0].fingerprint.get("sha256") if target_caches else None
        if sha and cb.fingerprint.get("teacher_sha256") not in (None, sha):
            raise ValueError(f"{codebook} was fitted on other {teachers[0]} weights than {targets[0]}; refit it")
        ctx.codebook = cb.centroids
        extras.append(ClusterIds(cb))
    if needs.layers == "codebook":
        ctx.layers = [[cb.layer]]
    else:
        ctx.layers = [target_layers(c.fingerprint) for c in target_caches]
    ctx.target_dims = [[int(c.fingerprint["dim"])] * len(ls) for c, ls in zip(target_caches, ctx.layers,
                                                                              strict=True)]
    if needs.domains:
        from pipeline.corpus.views import plan_view, read_view_plan

        frames = {}
        for path in plans:
            df = read_view_plan(path)
            frames[plan_view(df, path)] = df
        missing = sorted(set(mix) - set(frames))
        if missing:
            raise ValueError(f"domain labels need the view plan of input view(s) {missing}; pass them with --plans")
        labels = DomainLabels({v: frames[v] for v in mix}, needs.domains)
        ctx.domains = labels.classes
        extras.append(labels)
    if needs.text:
        from pipeline.teachers.text import TextStore

        store = TextStore(text, expect={"name": teachers[0]})
        ctx.text_dim = store.dim
        extras.append(TextTargets(store, needs.text_units, needs.phrase_words))
    batches = DistillBatches(audio_caches, target_caches, ctx.layers, train_ids,
                             None if needs.whole_utterances else crop_frames, seed,
                             distinct_copies=spec["input_view"] == spec["target_view"], extras=extras,
                             input_mix=mix, target_view=spec["target_view"])
    if needs.target_sample:
        ctx.target_sample = batches.sample_targets(needs.target_sample, seed)
    return batches, ctx


def dev_batches(spec: dict, needs: Needs, audio: list[str], targets: list[str], plans: list[str], codebook: str,
                text: str, dev_ids: list[str], crop_frames: int, seed: int, batch_size: int,
                expect: dict[str, dict] | None = None) -> list:
    """A fixed list of batches from the dev split (its own RNG: training draws are unchanged): DEV_BATCHES batches
    of crops, or, for methods that train on whole utterances, every dev utterance once, up to DEV_UTTERANCES
    spread over the lengths (4 batches of similar length would score one length range only)."""
    if not dev_ids:
        return []
    source, _ = open_sources(spec, replace(needs, target_sample=0), audio, targets, plans, codebook, text, dev_ids,
                             crop_frames, seed + 1, expect)
    if needs.whole_utterances:
        return source.sweep(batch_size, DEV_UTTERANCES)
    return [source.next(batch_size) for _ in range(DEV_BATCHES)]


@torch.no_grad()
def evaluate_dev(model: torch.nn.Module, method: Method, batches: list, device: torch.device) -> dict[str, float]:
    """Mean of the method's per-target cosines (logs named cos*) over the dev batches: `dev_cos`, and each
    target's own as `dev_<key>`. Eval mode (no dropout, no running-statistics updates), then back to training."""
    if not batches:
        return {}
    model.eval()
    method.eval()
    sums: dict[str, float] = {}
    for batch in batches:
        batch = batch.to(device)
        batch.progress = 1.0
        states, mask = model(batch.wav, batch.lengths, batch.offsets)
        frames = states[-1].shape[1] if batch.frames is None else min(states[-1].shape[1], batch.frames)
        _, logs = method([s[:, :frames] for s in states], mask[:, :frames], batch.trim(frames))
        for key, value in logs.items():
            if key.startswith("cos"):
                sums[key] = sums.get(key, 0.0) + value / len(batches)
    model.train()
    method.train()
    if not sums:
        raise ValueError(f"method {type(method).__name__} logs no target cosine (a log named cos*)")
    return {"dev_cos": sum(sums.values()) / len(sums), **{f"dev_{k}": v for k, v in sums.items()}}


def _save_artifacts(files: dict[str, dict[str, torch.Tensor]], out: Path) -> None:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    for name, tensors in files.items():
        tmp = out / f".{name}.tmp"
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp)
        os.replace(tmp, out / name)


def build_training(cfg: dict, spec: dict, ctx: MethodContext, options: dict, train: dict,
                   device: torch.device) -> tuple[torch.nn.Module, Method, torch.optim.Optimizer, dict | None]:
    """Student (started from `spec.init`'s teacher when given), method and AdamW with two parameter groups:
    the student's, and the method's (heads) at `train.head_lr_scale` times the learning rate."""
    model = build_student(get_method(spec["method"]).student, spec.get("arch", {}))
    init = None
    if spec.get("init"):
        from pipeline.students.init import init_from_teacher
        from pipeline.teachers.registry import load_upstream

        init = init_from_teacher(model, load_upstream(spec["init"], cfg["teachers"][spec["init"]]))
    model = model.to(device)
    ctx.student_dim = model.dim
    method = build_method(spec["method"], ctx, options).to(device)
    opt = torch.optim.AdamW([{"params": list(model.parameters()), "scale": 1.0},
                             {"params": list(method.parameters()), "scale": float(train.get("head_lr_scale", 1.0))}],
                            lr=train["lr"], fused=device.type in ("cpu", "cuda"))  # one kernel: 3-4x faster updates
    return model, method, opt, init


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """The schedule's learning rate times each parameter group's scale."""
    for group in opt.param_groups:
        group["lr"] = lr * group["scale"]


def train_step(model: torch.nn.Module, method: Method, opt: torch.optim.Optimizer, batch: Batch,
               autocast: Any = None) -> tuple[float, dict[str, float]]:
    """One optimizer step on a batch: forward, the method's loss, backward, clipping at norm 10, update."""
    with autocast or nullcontext():
        states, mask = model(batch.wav, batch.lengths, batch.offsets)
        frames = states[-1].shape[1] if batch.frames is None else min(states[-1].shape[1], batch.frames)
        loss, logs = method([s[:, :frames] for s in states], mask[:, :frames], batch.trim(frames))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for group in opt.param_groups for p in group["params"]], 10.0)
    opt.step()
    return loss.item(), logs


def train_student(config: str, student: str, manifest: str, audio: list[str], targets: list[str], out_dir: str,
                  resume_dir: str = "results/.resume", threads: int = 0, plans: list[str] | None = None,
                  codebook: str = "", text: str = "") -> None:
    """Train config.students[student] from cached teacher targets; the teacher is never loaded.

    audio: view-audio index(es), one per view the student hears; targets: one feature index per teacher of
    the student (none for text-aligned students); plans, codebook, text: what the method's needs name.
    """
    if threads:
        torch.set_num_threads(threads)
    cfg = load_config(config)
    spec = cfg["students"][student]
    method_cls = get_method(spec["method"])
    options = method_cls.resolve_options(spec.get("options"))
    needs = method_cls.needs(options)
    train = {**DEFAULT_TRAIN, **spec.get("train", {})}
    seed = spec.get("seed", cfg["seed"])  # a distillation seed of its own: replicates of one recipe
    torch.manual_seed(seed)
    device = pick_device("auto")

    audio = [audio] if isinstance(audio, str) else list(audio)
    targets = [targets] if isinstance(targets, str) else list(targets or [])
    rows = read_manifest(manifest)
    train_ids = rows.query("split == 'train'")["utt_id"].tolist()
    dev_ids = rows.query("split == 'dev'")["utt_id"].tolist()
    crop = int(train["crop_seconds"] * 50)
    expect = {t: expected_fingerprint(cfg, t) for t in teacher_list(spec["teacher"]) if t in cfg["teachers"]}
    batches, ctx = open_sources(spec, needs, audio, targets, list(plans or []), codebook, text, train_ids, crop,
                                seed, expect)
    layers = ctx.layers
    dev = dev_batches(spec, needs, audio, targets, list(plans or []), codebook, text, dev_ids, crop, seed,
                      train["batch_size"], expect)

    model, method, opt, init = build_training(cfg, spec, ctx, options, train, device)
    log.info("%s: %s, %d student params (+%d method), teachers %s layers %s, %d train utterances", student,
             spec["method"], count_params(model), count_params(method), ctx.teachers, layers, len(batches.utts))

    state_path = Path(resume_dir) / f"{student}.pt"
    state_path.parent.mkdir(parents=True, exist_ok=True)
    job = {"spec": spec, "seed": seed, "inputs": [manifest, audio, targets, list(plans or []), codebook, text]}
    start, curve, elapsed = 0, [], 0.0
    state = _resume_state(state_path, job, device)
    if state is not None:
        model.load_state_dict(state["model"])
        method.load_state_dict(state["method"])
        opt.load_state_dict(state["opt"])
        batches.rng.bit_generator.state = state["data_rng"]
        torch.set_rng_state(state["torch_rng"])
        start, curve, elapsed = state["step"], state["curve"], state["elapsed"]
        log.info("%s: resuming from step %d (%s)", student, start, state_path)

    steps = train["steps"]
    log_every = max(1, steps // 100)
    ckpt_every = max(50, steps // 10)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    model.train()
    method.train()
    t0 = time.perf_counter()
    loader = Prefetcher(batches, train["batch_size"])  # after the resume: it draws from the restored RNG
    dev_every = max(1, steps // DEV_EVALS)
    if start == 0:
        curve.append({"step": 0, **evaluate_dev(model, method, dev, device)})
    for step in tqdm(range(start, steps), desc=f"train {student}", initial=start, total=steps, mininterval=5):
        lr = lr_at(step, steps, train["lr"], train["warmup"])
        set_lr(opt, lr)
        batch = loader.next().to(device)
        batch.progress = step / steps
        loss, logs = train_step(model, method, opt, batch, autocast)
        if not math.isfinite(loss):
            raise FloatingPointError(f"{student}: loss became {loss} at step {step}; lower train.lr")
        row = {"step": step + 1, "train_loss": loss, "lr": lr, **logs} if (
            step % log_every == 0 or step == steps - 1) else {}
        if (step + 1) % dev_every == 0 or step == steps - 1:
            row = {"step": step + 1, **row, **evaluate_dev(model, method, dev, device)}
        if row:
            curve.append(row)
        if (step + 1) % ckpt_every == 0 and step + 1 < steps:
            save_atomic({"model": model.state_dict(), "method": method.state_dict(), "opt": opt.state_dict(),
                          "data_rng": loader.rng_state, "torch_rng": torch.get_rng_state(),
                          "step": step + 1, "curve": curve, "job": job,
                          "elapsed": elapsed + time.perf_counter() - t0}, state_path)
    loader.close()
    elapsed += time.perf_counter() - t0

    out = Path(out_dir)
    target_layers = layers[0] if len(layers) == 1 else dict(zip(ctx.teachers, layers, strict=True)) if layers else []
    meta = {"method": spec["method"], "teacher": spec["teacher"], "target_layers": target_layers,
            "input_view": spec["input_view"], "target_view": spec["target_view"], "options": options,
            "train": train, "seed": seed, "train_seconds": round(elapsed, 1), "device": device.type,
            "steps_per_second": round(steps / max(elapsed, 1e-9), 3),
            "method_params": count_params(method), "train_utterances": len(batches.utts),
            "init": init, **_dev_summary(curve, sum(len(b.lengths) for b in dev)), **method.metadata()}
    model.eval()
    _save_artifacts(method.artifacts(), out)
    save_student(model, method.student, meta, out)
    _write_curve(curve, out, student)
    state_path.unlink(missing_ok=True)


def _dev_summary(curve: list[dict], dev_items: int) -> dict:
    """The held-out dev target cosine at the end of training, and the first step where the dev cosine was
    within 1 % of its last value (where the curve flattened); `dev_items`: the crops or utterances scored."""
    dev = [(row["step"], row["dev_cos"]) for row in curve if "dev_cos" in row]
    if not dev:
        return {"dev_target_cosine": None}
    last = dev[-1][1]
    flat = next(step for step, value in dev if abs(value - last) <= 0.01 * abs(last))
    final = {k: round(v, 4) for k, v in curve[-1].items() if k.startswith("dev_cos_")}
    return {"dev_target_cosine": round(last, 4), "dev_target_cosines": final, "dev_flat_step": flat,
            "dev_items": dev_items}


def _write_curve(curve: list[dict], out: Path, title: str) -> None:
    import pandas as pd

    df = pd.DataFrame(curve)
    loss = df["train_loss"].dropna()
    df.to_csv(out / "curve.tsv", sep="\t", index=False)
    plot_curve(df, out / "curve.png", title=f"distillation loss: {title}")
    (out / "summary.json").write_text(json.dumps({"first_loss": float(loss.iloc[0]),
                                                  "final_loss": float(loss.iloc[-1])}))
