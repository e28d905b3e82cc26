"""Student recipe: held-out target cosine reached per CPU-second, the chosen recipe against the previous one.

Both recipes train the default config's `distilhubert` student (Whisper base targets, clean view) from the
default run's cache, interleaved step by step in one process on one torch thread, so the machine's load falls
on both alike. Each side's clock is this process's CPU time spent in its own training steps (batch assembly,
forward, backward, update); dev evaluations are not counted. Every `--eval-every` steps both are scored on the
same held-out dev crops (`pipeline.distill.train.evaluate_dev`). Run after the default run:

    .venv/bin/python -m bench.student_recipe            # writes bench/student_recipe.{json,md}
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.config import load_config
from pipeline.corpus.manifest import read_manifest
from pipeline.distill.methods import get_method
from pipeline.distill.train import (
    DEFAULT_TRAIN,
    build_training,
    dev_batches,
    evaluate_dev,
    lr_at,
    open_sources,
    set_lr,
    train_step,
)

# today's recipe before issue 12: DistilHuBERT's waveform CNN layout from random weights
PREVIOUS = {"arch": {"conv_channels": 64, "dim": 256, "layers": 2, "heads": 4, "ffn": 1024},
            "train": {"steps": 100, "batch_size": 8, "crop_seconds": 1.0, "lr": 1.0e-3, "warmup": 0.1}}


class Side:
    """One recipe's student, method, optimizer and batch source, stepped on demand."""

    def __init__(self, name: str, cfg: dict, spec: dict, results: Path, steps: int, seed: int) -> None:
        self.name, self.spec = name, spec
        method_cls = get_method(spec["method"])
        self.options = method_cls.resolve_options(spec.get("options"))
        needs = method_cls.needs(self.options)
        self.train = {**DEFAULT_TRAIN, **spec["train"], "steps": steps}
        rows = read_manifest(results / "corpus/synthetic/manifest.tsv")
        audio = [str(results / "views/synthetic/clean/index.tsv")]
        targets = [str(results / f"cache/{spec['teacher']}/synthetic/clean/index.tsv")]
        crop = int(self.train["crop_seconds"] * 50)
        ids = {s: rows.query(f"split == '{s}'")["utt_id"].tolist() for s in ("train", "dev")}
        self.batches, ctx = open_sources(spec, needs, audio, targets, [], "", "", ids["train"], crop, seed)
        self.dev = dev_batches(spec, needs, audio, targets, [], "", "", ids["dev"], crop, seed,
                               self.train["batch_size"])
        torch.manual_seed(seed)
        self.model, self.method, self.opt, _ = build_training(cfg, spec, ctx, self.options, self.train,
                                                              torch.device("cpu"))
        self.step, self.cpu = 0, 0.0
        self.points: list[dict] = []

    def advance(self) -> None:
        t0 = time.process_time()
        set_lr(self.opt, lr_at(self.step, self.train["steps"], self.train["lr"], self.train["warmup"]))
        batch = self.batches.next(self.train["batch_size"])
        batch.progress = self.step / self.train["steps"]
        train_step(self.model, self.method, self.opt, batch)
        self.cpu += time.process_time() - t0
        self.step += 1

    def score(self) -> None:
        dev = evaluate_dev(self.model, self.method, self.dev, torch.device("cpu"))
        self.points.append({"step": self.step, "cpu_seconds": round(self.cpu, 2),
                            "dev_cos": round(dev["dev_cos"], 4)})


def cpu_to_reach(points: list[dict], level: float) -> float | None:
    """CPU seconds at which the dev cosine first reached `level` (linear between evaluations), None if never."""
    prev = None
    for p in points:
        if p["dev_cos"] >= level:
            if prev is None:
                return p["cpu_seconds"]
            share = (level - prev["dev_cos"]) / max(p["dev_cos"] - prev["dev_cos"], 1e-9)
            return prev["cpu_seconds"] + share * (p["cpu_seconds"] - prev["cpu_seconds"])
        prev = p
    return None


def run(results: Path, config: str, steps: int, eval_every: int, seed: int) -> dict:
    torch.set_num_threads(1)
    cfg = load_config(config)
    chosen = cfg["students"]["distilhubert"]
    previous = {k: v for k, v in chosen.items() if k not in ("init", "arch", "train", "options")} | PREVIOUS
    sides = [Side("previous", cfg, previous, results, steps, seed), Side("chosen", cfg, chosen, results, steps, seed)]
    rng = np.random.default_rng(seed)
    for side in sides:
        side.score()
    for step in range(1, steps + 1):
        for i in rng.permutation(len(sides)):  # a fresh order every step: neither side always runs first
            sides[i].advance()
        if step % eval_every == 0 or step == steps:
            for side in sides:
                side.score()
    prev, best = sides[0].points, sides[1].points
    level = prev[-1]["dev_cos"]  # what the previous recipe reaches in the whole run
    t_prev, t_best = cpu_to_reach(prev, level), cpu_to_reach(best, level)
    t_prev, t_best = (None if t is None else round(t, 2) for t in (t_prev, t_best))
    return {"steps": steps, "eval_every": eval_every, "seed": seed, "load_average": list(np.round(
        np.loadtxt("/proc/loadavg", usecols=(0, 1, 2)), 2)), "previous": {"spec": previous, "points": prev},
        "chosen": {"spec": chosen, "points": best}, "level": level,
        "cpu_to_level": {"previous": t_prev, "chosen": t_best},
        "speedup": None if not t_best else round(t_prev / t_best, 2),
        "cos_per_cpu_second": {s.name: round(s.points[-1]["dev_cos"] / s.points[-1]["cpu_seconds"], 5)
                               for s in sides}}


def markdown(res: dict) -> str:
    lines = ["| step | previous: CPU s | previous: dev cos | chosen: CPU s | chosen: dev cos |",
             "|---:|---:|---:|---:|---:|"]
    for p, c in zip(res["previous"]["points"], res["chosen"]["points"], strict=True):
        lines.append(f"| {p['step']} | {p['cpu_seconds']} | {p['dev_cos']:.3f} | {c['cpu_seconds']} | "
                     f"{c['dev_cos']:.3f} |")
    t = res["cpu_to_level"]
    lines.append("")
    lines.append(f"The previous recipe ends at dev cosine {res['level']:.3f} after {t['previous']} CPU s; the chosen "
                 f"one reaches it after {t['chosen']} CPU s: **{res['speedup']}x** less CPU for the same target "
                 f"cosine (load average at the start {res['load_average'][0]}).")
    return "\n".join(lines) + "\n"


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default="results")
    ap.add_argument("--config", default="config.yaml")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--eval-every", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--out", default="bench/student_recipe")
    args = ap.parse_args()
    res = run(Path(args.results), args.config, args.steps, args.eval_every, args.seed)
    Path(f"{args.out}.json").write_text(json.dumps(res, indent=2))
    Path(f"{args.out}.md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    cli()
