"""Build an Upstream from a config entry (config.yaml `teachers:`/`students:`); devices and layers."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .base import Upstream


def pick_device(prefer: str = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu; an explicit device must be usable."""
    if prefer == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(prefer)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device '{prefer}' requested but CUDA is not available; use 'cpu' or 'auto'")
    return device


def relative_depth_layers(num_layers: int, fractions: Sequence[float] = (1 / 3, 2 / 3, 1.0),
                          input_state: bool = True) -> list[int]:
    """Hidden-state indices nearest the relative depths `fractions` (ties to the deeper state).

    With an input state (index 0 = the input, depth 0) state i has depth i / (num_layers - 1): round(f * (n - 1));
    without one (index 0 = the first layer's output) depth (i + 1) / num_layers: round(f * n) - 1, at least 0.
    So 1/3, 2/3, 1 of 13 states are 4, 8, 12, and of Resemblyzer's 3 LSTM outputs 0, 1, 2.
    """
    if num_layers < 1:
        raise ValueError("num_layers must be positive")
    for f in fractions:
        if not 0.0 <= f <= 1.0:
            raise ValueError(f"relative depth {f} is outside [0, 1]")
    if input_state:
        return [math.floor(f * (num_layers - 1) + 0.5) for f in fractions]
    return [max(math.floor(f * num_layers + 0.5), 1) - 1 for f in fractions]


def resolve_layers(layers: Any, num_layers: int, input_state: bool = True) -> list[int] | None:
    """Indices for a `layers` spec: 'all' (None), [ints] (negatives from the end), {'relative': [f]}."""
    if layers is None or layers == "all":
        return None
    if isinstance(layers, dict) and set(layers) == {"relative"}:
        return relative_depth_layers(num_layers, layers["relative"], input_state)
    if isinstance(layers, (list, tuple)) and layers and all(isinstance(i, int) for i in layers):
        out = [i + num_layers if i < 0 else i for i in layers]
        bad = [i for i, o in zip(layers, out, strict=True) if not 0 <= o < num_layers]
        if bad:
            raise ValueError(f"layers {bad} out of range for an upstream with {num_layers} hidden states")
        return out
    raise ValueError(f"layers must be 'all', a list of ints or {{'relative': [fractions]}}, got {layers!r}")


class LayerSelect(Upstream):
    """An Upstream restricted to a subset of another's hidden states."""

    def __init__(self, inner: Upstream, layers: Sequence[int]):
        super().__init__()
        self.inner = inner
        self.layers = list(layers)
        self.name, self.kind, self.source = inner.name, inner.kind, inner.source
        self.frame_rate, self.min_samples = inner.frame_rate, inner.min_samples
        self.num_layers, self.dim = len(self.layers), inner.dim
        self.input_state = inner.input_state and self.layers[0] == 0

    def hidden_states(self, wav: torch.Tensor) -> list[torch.Tensor]:
        """The selected hidden states of one clip."""
        states = self.inner.hidden_states(wav)
        return [states[i] for i in self.layers]

    def hidden_states_batch(self, wavs: Sequence[torch.Tensor]) -> list[list[torch.Tensor]]:
        """The selected hidden states of several clips."""
        return [[s[i] for i in self.layers] for s in self.inner.hidden_states_batch(wavs)]

    def num_frames(self, num_samples: int) -> int:
        """Same frame count as the wrapped upstream."""
        return self.inner.num_frames(num_samples)

    def states_for(self, wavs: Sequence[torch.Tensor], keys: Sequence[str],
                   view: dict[str, Any]) -> list[list[torch.Tensor]]:
        """The selected states of what the wrapped upstream stores for these clips."""
        return [[s[i] for i in self.layers] for s in self.inner.states_for(wavs, keys, view)]

    def fingerprint(self) -> dict[str, Any]:
        """The wrapped fingerprint (its input_state: what `layers` index into) with the selected indices."""
        fp = self.inner.fingerprint()
        fp.update(num_layers=self.num_layers, layers=self.layers)
        return fp


def _whisper_ct2(name: str, spec: dict[str, Any]) -> Upstream:
    from .whisper import load_whisper_ct2

    return load_whisper_ct2(package=spec.get("package"), path=spec.get("path"), name=name)


def _hf(name: str, spec: dict[str, Any]) -> Upstream:
    from .hf import load_hf

    if "model" not in spec:
        raise ValueError(f"teacher '{name}': kind 'hf' needs 'model' (a hub id or local directory)")
    return load_hf(spec["model"], name=name)


def _student(name: str, spec: dict[str, Any]) -> Upstream:
    from pipeline.students.checkpoint import load_student

    if "checkpoint" not in spec:
        raise ValueError(f"upstream '{name}': kind 'student' needs 'checkpoint' (a checkpoint directory)")
    return load_student(spec["checkpoint"])


def _resemblyzer(name: str, spec: dict[str, Any]) -> Upstream:
    from .resemblyzer import load_resemblyzer

    return load_resemblyzer(path=spec.get("path"), name=name)


def _fbank(name: str, spec: dict[str, Any]) -> Upstream:
    from .fbank import FbankUpstream

    return FbankUpstream(name=name)


def _precomputed(name: str, spec: dict[str, Any]) -> Upstream:
    from .precomputed import PrecomputedUpstream

    return PrecomputedUpstream(spec["path"], name=name, frame_rate=spec.get("frame_rate", 50),
                               input_state=spec_input_state(spec))


def _text(name: str, spec: dict[str, Any]) -> Upstream:
    raise ValueError(f"teacher '{name}' is a text teacher (kind 'text'): it embeds transcripts "
                     "(python -m pipeline embed-text), not audio, so it has no hidden states to extract")


LOADERS: dict[str, Callable[[str, dict[str, Any]], Upstream]] = {
    "whisper_ct2": _whisper_ct2,
    "hf": _hf,
    "student": _student,
    "resemblyzer": _resemblyzer,
    "fbank": _fbank,
    "precomputed": _precomputed,
    "text": _text,
}
# keys a teacher entry of each kind may hold besides kind and layers; what it must hold; why a key is refused
OPTIONS: dict[str, frozenset[str]] = {
    "whisper_ct2": frozenset({"package", "path"}), "hf": frozenset({"model"}), "resemblyzer": frozenset({"path"}),
    "fbank": frozenset(), "text": frozenset({"package", "path"}),
    "precomputed": frozenset({"path", "frame_rate", "input_state"})}
REQUIRED = {"hf": ("model", "a hub id or local directory"),
            "precomputed": ("path", "an HDF5 feature file or a folder of them")}
REFUSED = {"fbank": "computes log-mel features and has no weights"}
COMMON = frozenset({"kind", "layers", "hub_id"})  # keys of every kind (hub_id: only exported model cards read it)
NO_INPUT_STATE = frozenset({"resemblyzer"})  # kinds whose class sets input_state = False (tests check they agree)


def check_teachers(teachers: dict[str, dict[str, Any]]) -> None:
    """Each entry holds only its kind's keys, and those its kind needs; ValueError naming the entry."""
    for name, spec in teachers.items():
        kind = spec["kind"]
        extra = sorted(set(spec) - COMMON - OPTIONS[kind])
        if extra:
            why = REFUSED.get(kind, f"takes {sorted(OPTIONS[kind])} besides {sorted(COMMON)}")
            raise ValueError(f"teachers.{name}: kind {kind} {why}; remove {extra}")
        if kind in REQUIRED and REQUIRED[kind][0] not in spec:
            key, what = REQUIRED[kind]
            raise ValueError(f"teachers.{name}: kind {kind} needs '{key}' ({what})")


def spec_input_state(spec: dict[str, Any]) -> bool:
    """Whether an entry's state 0 is an input, from the config alone: declared (precomputed) or by kind."""
    return bool(spec.get("input_state", spec.get("kind") not in NO_INPUT_STATE))


def load_upstream(name: str, spec: dict[str, Any], device: str = "cpu") -> Upstream:
    """Load the upstream a config entry describes, in eval mode on device, restricted to spec['layers']."""
    kind = spec.get("kind")
    if kind not in LOADERS:
        raise ValueError(f"upstream '{name}': unknown kind {kind!r}; known kinds: {sorted(LOADERS)}")
    upstream = LOADERS[kind](name, spec)
    upstream.name = name
    upstream = upstream.to(pick_device(device)).eval()
    layers = resolve_layers(spec.get("layers", "all"), upstream.num_layers, upstream.input_state)
    return upstream if layers is None else LayerSelect(upstream, layers).eval()
