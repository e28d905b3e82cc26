"""The one training loop for every student: cached targets in, checkpoint + curve out, resumable."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from tqdm import tqdm

from pipeline.cache.index import FeatureCache
from pipeline.config import load_config
from pipeline.corpus.manifest import read_manifest
from pipeline.distill.data import DistillBatches
from pipeline.distill.methods import build_method, get_method
from pipeline.report.figures import plot_curve
from pipeline.students.checkpoint import build_student, count_params, save_student
from pipeline.teachers.registry import pick_device, relative_depth_layers

log = logging.getLogger(__name__)
DEFAULT_TRAIN = {"steps": 1000, "batch_size": 8, "crop_seconds": 2.0, "lr": 2e-4, "warmup": 0.07}


def lr_at(step: int, steps: int, peak: float, warmup: float) -> float:
    """Linear warm-up to `peak` over warmup * steps, then linear decay to zero (DistilHuBERT schedule)."""
    warm = max(1, int(warmup * steps))
    return peak * (step + 1) / warm if step < warm else peak * max(0.0, (steps - step) / max(1, steps - warm))


def _atomic_save(obj: dict, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train_student(config: str, student: str, manifest: str, audio: str, targets: str, out_dir: str,
                  resume_dir: str = "results/.resume", threads: int = 0) -> None:
    """Train config.students[student] from cached teacher targets; the teacher is never loaded."""
    if threads:
        torch.set_num_threads(threads)
    cfg = load_config(config)
    spec = cfg["students"][student]
    train = {**DEFAULT_TRAIN, **spec.get("train", {})}
    seed = cfg["seed"]
    torch.manual_seed(seed)
    device = pick_device("auto")

    target_cache = FeatureCache.open(targets, expect={"name": spec["teacher"]})
    audio_cache = FeatureCache.open(audio, expect={"kind": "view_audio"})
    n_states = target_cache.fingerprint["num_layers"]
    layers = relative_depth_layers(n_states)  # over all hidden states, 0 = input: 4, 8, 12 of 13
    dim = target_cache.fingerprint["dim"]
    train_ids = read_manifest(manifest).query("split == 'train'")["utt_id"].tolist()
    crop = int(train["crop_seconds"] * 50)
    batches = DistillBatches(audio_cache, target_cache, layers, train_ids, crop, seed,
                             distinct_copies=spec["input_view"] == spec["target_view"])

    model = build_student(get_method(spec["method"]).student, spec.get("arch", {})).to(device)
    method = build_method(spec["method"], model.dim, [dim] * len(layers), spec.get("options")).to(device)
    params = list(model.parameters()) + list(method.parameters())
    opt = torch.optim.AdamW(params, lr=train["lr"])
    log.info("%s: %d student params, targets %s layers %s, %d train utterances", student,
             count_params(model), spec["teacher"], layers, len(batches.utts))

    state_path = Path(resume_dir) / f"{student}.pt"
    state_path.parent.mkdir(parents=True, exist_ok=True)
    start, curve, elapsed = 0, [], 0.0
    if state_path.exists():
        state = torch.load(state_path, map_location=device, weights_only=False)
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
    for step in tqdm(range(start, steps), desc=f"train {student}", initial=start, total=steps, mininterval=5):
        lr = lr_at(step, steps, train["lr"], train["warmup"])
        for group in opt.param_groups:
            group["lr"] = lr
        wav, lengths, tgts = batches.next(train["batch_size"])
        with autocast:
            states, mask = model(wav.to(device), lengths.to(device))
            frames = min(states[-1].shape[1], tgts[0].shape[1])
            states = [s[:, :frames] for s in states]
            loss, logs = method(states, mask[:, :frames], [t[:, :frames].to(device) for t in tgts])
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"{student}: loss became {loss.item()} at step {step}; lower train.lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()
        if step % log_every == 0 or step == steps - 1:
            curve.append({"step": step, "train_loss": loss.item(), "lr": lr, **logs})
        if (step + 1) % ckpt_every == 0 and step + 1 < steps:
            _atomic_save({"model": model.state_dict(), "method": method.state_dict(), "opt": opt.state_dict(),
                          "data_rng": batches.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                          "step": step + 1, "curve": curve,
                          "elapsed": elapsed + time.perf_counter() - t0}, state_path)
    elapsed += time.perf_counter() - t0

    out = Path(out_dir)
    meta = {"method": spec["method"], "teacher": spec["teacher"], "target_layers": layers,
            "input_view": spec["input_view"], "target_view": spec["target_view"], "train": train,
            "seed": seed, "train_seconds": round(elapsed, 1), "device": device.type}
    model.eval()
    save_student(model, method.student, meta, out)
    _write_curve(curve, out, student)
    state_path.unlink(missing_ok=True)


def _write_curve(curve: list[dict], out: Path, title: str) -> None:
    import pandas as pd

    df = pd.DataFrame(curve)
    df.to_csv(out / "curve.tsv", sep="\t", index=False)
    plot_curve(df, out / "curve.png", title=f"distillation loss: {title}")
    (out / "summary.json").write_text(json.dumps({"first_loss": float(df["train_loss"].iloc[0]),
                                                  "final_loss": float(df["train_loss"].iloc[-1])}))
