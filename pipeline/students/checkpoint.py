"""Student checkpoints: safetensors weights + JSON config, loadable as an Upstream without training code."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from pipeline.students.lstm import LSTMArch, LSTMStudent
from pipeline.students.transformer import TransformerArch, TransformerStudent
from pipeline.teachers.base import Upstream

# student architecture name -> (hyper-parameter dataclass, module class)
ARCHITECTURES: dict[str, tuple[type, type[torch.nn.Module]]] = {
    "transformer": (TransformerArch, TransformerStudent),
    "lstm": (LSTMArch, LSTMStudent),
}


def build_student(kind: str, arch: dict[str, Any]) -> torch.nn.Module:
    """Instantiate a registered student architecture from its hyper-parameters."""
    if kind not in ARCHITECTURES:
        raise KeyError(f"unknown student architecture '{kind}' (known: {sorted(ARCHITECTURES)})")
    arch_cls, model_cls = ARCHITECTURES[kind]
    return model_cls(arch_cls(**arch))


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def save_student(model: torch.nn.Module, kind: str, meta: dict[str, Any], out_dir: str | Path) -> None:
    """Write model.safetensors and config.json atomically (temp names, then rename)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, out / "model.safetensors.tmp")
    config = {"student": kind, "arch": model.arch.to_dict(), "num_params": count_params(model), **meta}
    (out / "config.json.tmp").write_text(json.dumps(config, indent=2))
    os.replace(out / "model.safetensors.tmp", out / "model.safetensors")
    os.replace(out / "config.json.tmp", out / "config.json")


class StudentUpstream(Upstream):
    """A trained student behind the upstream interface: all hidden states at 50 Hz."""

    kind = "student"

    def __init__(self, model: torch.nn.Module, name: str, source: str) -> None:
        super().__init__()
        self.model = model.eval()
        self.name, self.source = name, source
        self.num_layers, self.dim = model.num_layers, model.dim
        self.min_samples = model.min_samples

    def num_frames(self, num_samples: int) -> int:
        return self.model.num_frames(num_samples)

    @torch.inference_mode()
    def hidden_states(self, wav: torch.Tensor) -> list[torch.Tensor]:
        wav = self.check_wav(wav)
        states, _ = self.model(wav[None], torch.tensor([wav.numel()], device=wav.device))
        return [s[0] for s in states]

    @torch.inference_mode()
    def hidden_states_batch(self, wavs: list[torch.Tensor]) -> list[list[torch.Tensor]]:
        wavs = [self.check_wav(w) for w in wavs]
        lengths = torch.tensor([w.numel() for w in wavs], device=self.device)
        batch = torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True)
        states, _ = self.model(batch, lengths)
        return [[s[i, :self.model.num_frames(int(n))] for s in states] for i, n in enumerate(lengths)]


def load_student(checkpoint: str | Path, name: str | None = None) -> StudentUpstream:
    """Load a student checkpoint directory as an Upstream."""
    ckpt = Path(checkpoint)
    if not (ckpt / "config.json").exists():
        raise FileNotFoundError(f"{ckpt}: no config.json; not a student checkpoint (train it first)")
    config = json.loads((ckpt / "config.json").read_text())
    model = build_student(config["student"], config["arch"])
    model.load_state_dict(load_file(ckpt / "model.safetensors"))
    return StudentUpstream(model, name or ckpt.name, str(ckpt))
