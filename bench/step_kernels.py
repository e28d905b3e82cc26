"""Step kernels: the featurizer's layer mix and the students' AdamW update, each against what a user would write.

Two pieces of every training step, timed side by side in one process on one torch thread (`harness.interleave`:
a fresh random order per repeat after a warm-up round; the figure is the median per-repeat ratio):

1. *Layer mix* (`pipeline.downstream.featurizer.WeightedSum`, forward and the weights' backward) on a batch shaped
   like a sequence head's (16 utterances x 150 frames x L states x 512), against s3prl's featurizer expression
   (`(softmax(w)[:, None] * stacked).sum(0)`, here over the state axis) and the `einsum` this project used before.
   Outputs and weight gradients must agree (else the benchmark stops).
2. *AdamW update* of the study's transformer student (2 layers x 512, with its three prediction heads) and of
   its BiLSTM student: PyTorch's default for-loop implementation on CPU against `fused=True`, the trainer's.
   The updated parameters must agree.

    .venv/bin/python -m bench.step_kernels            # writes bench/step_kernels.{json,md}
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.harness import Clock, Sample, interleave, time_ratio
from pipeline.downstream.featurizer import WeightedSum
from pipeline.students.checkpoint import build_student


@dataclass(frozen=True)
class Scale:
    batch: tuple[int, int]  # utterances, frames
    states: tuple[int, ...]  # hidden states mixed (Whisper tiny's 3 chosen / a student's, Whisper base's 7)
    calls: int  # forward+backward calls (layer mix) or updates (AdamW) per side and repeat
    repeats: int


FULL = Scale(batch=(16, 150), states=(3, 7), calls=40, repeats=7)
QUICK = Scale(batch=(2, 20), states=(3,), calls=2, repeats=2)
DIM = 512


def _timed(work: Any, calls: int) -> Sample:
    with Clock() as clock:
        for _ in range(calls):
            work()
    return {"wall": clock.wall, "cpu": clock.cpu, "units": calls}


def layer_mix(scale: Scale, layers: int, seed: int) -> dict[str, Any]:
    """WeightedSum vs s3prl's mul-and-sum vs einsum, forward + weight gradient, on the same states."""
    gen = torch.Generator().manual_seed(seed)
    states = torch.randn(*scale.batch, layers, DIM, generator=gen)
    grad_out = torch.randn(*scale.batch, DIM, generator=gen)
    mix = WeightedSum(layers, layer_norm=False)
    with torch.no_grad():
        mix.weights.copy_(torch.randn(layers, generator=gen))
    raw = mix.weights.detach().clone().requires_grad_(True)
    stacked = states.movedim(-2, 0).contiguous().view(layers, -1)  # s3prl stacks the states first: (L, B*T*D)
    ways = {
        "pipeline": lambda: mix(states, normalised=True),
        "s3prl": lambda: (torch.softmax(raw, 0)[:, None] * stacked).sum(0).view(*scale.batch, DIM),
        "einsum": lambda: torch.einsum("...ld,l->...d", states, torch.softmax(raw, 0)),
    }
    grads = {}
    for name, way in ways.items():
        mix.weights.grad, raw.grad = None, None
        out = way()
        out.backward(grad_out)
        grads[name] = (out.detach(), (mix.weights if name == "pipeline" else raw).grad.clone())
    for name, (out, grad) in grads.items():
        if not (torch.allclose(out, grads["einsum"][0], atol=1e-4) and
                torch.allclose(grad, grads["einsum"][1], rtol=1e-3, atol=1e-2)):
            raise RuntimeError(f"layer mix '{name}' disagrees with einsum: the benchmark compares different work")

    def side(way: Any) -> Any:
        return lambda: _timed(lambda: way().backward(grad_out), scale.calls)

    runs = interleave({name: side(way) for name, way in ways.items()}, scale.repeats, seed)
    return {"states": layers, "shape": [*scale.batch, layers, DIM], "runs": runs,
            "pipeline_vs_s3prl": time_ratio(runs["pipeline"], runs["s3prl"]),
            "pipeline_vs_einsum": time_ratio(runs["pipeline"], runs["einsum"])}


def _student(kind: str) -> nn.Module:
    if kind == "transformer":
        model = build_student("transformer", {"frontend": "logmel", "dim": DIM, "layers": 2, "heads": 8,
                                              "ffn": 2048})
        heads = nn.ModuleList(nn.Sequential(nn.Linear(DIM, DIM), nn.GELU(), nn.Linear(DIM, DIM)) for _ in range(3))
        return nn.ModuleList([model, heads])
    return build_student("lstm", {"frontend": "logmel", "conv_channels": DIM, "dim": 128, "layers": 3})


def adamw(scale: Scale, kind: str, seed: int) -> dict[str, Any]:
    """torch.optim.AdamW's default CPU implementation vs fused=True on one student's parameters."""
    torch.manual_seed(seed)
    models = {"default": _student(kind)}
    models["fused"] = _student(kind)
    models["fused"].load_state_dict(models["default"].state_dict())
    opts = {name: torch.optim.AdamW(m.parameters(), lr=1e-3, fused=name == "fused") for name, m in models.items()}
    gen = torch.Generator().manual_seed(seed)
    for a, b in zip(models["default"].parameters(), models["fused"].parameters(), strict=True):
        a.grad = torch.randn(a.shape, generator=gen)
        b.grad = a.grad.clone()
    for opt in opts.values():
        opt.step()
    for a, b in zip(models["default"].parameters(), models["fused"].parameters(), strict=True):
        if not torch.allclose(a, b, atol=1e-6):
            raise RuntimeError("fused and default AdamW updates disagree: the benchmark compares different work")
    runs = interleave({name: (lambda o=opt: _timed(o.step, scale.calls)) for name, opt in opts.items()},
                      scale.repeats, seed)
    params = sum(p.numel() for p in models["default"].parameters())
    return {"student": kind, "parameters": params, "runs": runs, "fused_vs_default": time_ratio(runs["fused"],
                                                                                                 runs["default"])}


def main(quick: bool, seed: int, out: str) -> dict[str, Any]:
    torch.set_num_threads(1)
    scale = QUICK if quick else FULL
    res = {"scale": scale.__dict__, "seed": seed, "torch": torch.__version__,
           "load_average": [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]],
           "layer_mix": [layer_mix(scale, n, seed) for n in scale.states],
           "adamw": [adamw(scale, kind, seed) for kind in ("transformer", "lstm")]}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps(res, indent=2))
    Path(f"{out}.md").write_text(markdown(res))
    return res


def markdown(res: dict[str, Any]) -> str:
    """Time per call of the pipeline's kernel over the alternative's (below 1: the pipeline's is faster)."""
    lines = ["| kernel | shape / parameters | pipeline / alternative (wall) | (CPU) |", "|---|---|---:|---:|"]
    for r in res["layer_mix"]:
        for other in ("s3prl", "einsum"):
            ratio = r[f"pipeline_vs_{other}"]
            lines.append(f"| layer mix vs {other} | {' x '.join(map(str, r['shape']))} | {ratio['median']:.2f} | "
                         f"{ratio['cpu_median']:.2f} |")
    for r in res["adamw"]:
        ratio = r["fused_vs_default"]
        lines.append(f"| AdamW fused vs default, {r['student']} | {r['parameters']:,} | {ratio['median']:.2f} | "
                     f"{ratio['cpu_median']:.2f} |")
    lines += ["", f"Median over {res['scale']['repeats']} interleaved repeats, one torch thread; load average at the "
              f"start {res['load_average'][0]}."]
    return "\n".join(lines) + "\n"


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run at a tiny scale, to bench/out/")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    out = args.out or ("bench/out/step_kernels" if args.quick else "bench/step_kernels")
    print(markdown(main(args.quick, args.seed, out)))


if __name__ == "__main__":
    cli()
