"""Cached features for a downstream task: open the cache, select labelled rows, pad batches, predict."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from pipeline.downstream.tasks import Codec, Task


def open_features(index: str, upstream: str, expect: dict[str, Any] | None = None) -> Any:
    """The FeatureCache over `index`, refusing one made for a different upstream or unlike `expect`."""
    from pipeline.cache.index import FeatureCache

    return FeatureCache.open(index, expect={**(expect or {}), "upstream": upstream})


def labelled_rows(manifest: pd.DataFrame, task: Task, split: str) -> pd.DataFrame:
    """Rows of `split` with a non-empty label for the task (others do not take part in it).

    Dev and test rows are further limited to the task's `eval_families` when the manifest's `family` column
    uses them (PR/ASR are scored on phrases; isolated keywords still help train them); a corpus without
    those families (e.g. LibriSpeech) is scored on all its labelled rows."""
    if task.column not in manifest.columns:
        raise KeyError(f"manifest has no '{task.column}' column, needed by task '{task.name}'")
    rows = manifest[manifest["split"] == split]
    rows = rows[rows[task.column].astype(str).str.strip() != ""]
    if split != "train" and task.eval_families and "family" in rows.columns:
        chosen = rows["family"].isin(task.eval_families)
        rows = rows[chosen] if chosen.any() else rows
    return rows


def copies_by_utt(keys: Sequence[str]) -> dict[str, list[str]]:
    """Group cache keys "{utt_id}@{copy}" by utterance (all distorted copies of each)."""
    groups: dict[str, list[str]] = {}
    for key in keys:
        utt, sep, _ = key.rpartition("@")
        if not sep:
            raise ValueError(f"feature key {key!r} is not of the form '{{utt_id}}@{{copy}}'")
        groups.setdefault(utt, []).append(key)
    return groups


class Features:
    """A FeatureCache whose utterances are read once, normalised once and kept in memory.

    `normalise` is the featurizer's parameter-free part (per-frame layer norm); states are kept as float16
    (T, L, D). `states(keys, pool=True)` returns (and keeps only) each utterance's time average (1, L, D)
    instead, which is all a linearly pooling head needs (see `PooledClassifier`).
    """

    def __init__(self, index: str, upstream: str, normalise: Callable[[torch.Tensor], torch.Tensor],
                 expect: dict[str, Any] | None = None) -> None:
        self.index = index
        self.cache = open_features(index, upstream, expect)
        self.keys: list[str] = list(self.cache.keys)
        self.fingerprint: dict[str, Any] = dict(self.cache.fingerprint)
        self.normalise = normalise
        self._memo: dict[tuple[str, bool], torch.Tensor] = {}

    def states(self, keys: Sequence[str], pool: bool, desc: str) -> list[torch.Tensor]:
        """(T, L, D) float16 normalised states, or (1, L, D) float32 time averages if `pool`."""
        out = []
        for key in tqdm(keys, desc=desc, mininterval=5):
            memo = (key, pool)
            if memo not in self._memo:
                if (key, False) in self._memo:
                    x = self._memo[key, False].float()
                else:
                    x = self.normalise(torch.from_numpy(np.asarray(self.cache.get(key), dtype=np.float32)))
                self._memo[memo] = x.mean(dim=0, keepdim=True) if pool else x.half()
            out.append(self._memo[memo])
        shapes = {tuple(s.shape[1:]) for s in out}
        if len(shapes) > 1:
            raise ValueError(f"{self.index}: features have mixed (layers, dim) shapes {sorted(shapes)}; "
                             "the index mixes upstreams")
        return out


def pad(states: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad (T_i, L, D) tensors to (B, T_max, L, D) float32 plus a (B, T_max) valid-frame mask."""
    lengths = torch.tensor([s.shape[0] for s in states])
    t_max = max(int(lengths.max()), 1)
    if int(lengths.min()) == t_max:  # equal lengths (e.g. pooled states): no padding to do
        return torch.stack(list(states)).float(), torch.ones(len(states), t_max, dtype=torch.bool)
    batch = torch.zeros(len(states), t_max, *states[0].shape[1:])
    for i, s in enumerate(states):
        batch[i, : s.shape[0]] = s.float()
    return batch, torch.arange(t_max) < lengths.unsqueeze(1)


def batch_indices(n: int, batch_size: int, generator: torch.Generator,
                  lengths: Sequence[int] | None = None) -> Iterator[list[int]]:
    """Endless shuffled index batches, reproducible from the generator; a fresh draw per epoch.

    With `lengths`, each epoch sorts utterances by length times a random factor in [0.8, 1.25] and shuffles the
    batches cut from that order: similar lengths share a batch (padding, the cost of sequence heads, drops ~3x
    on this corpus) while batch composition still changes from epoch to epoch."""
    batch_size = min(batch_size, n)
    while True:
        perm = torch.randperm(n, generator=generator)
        if lengths is not None:
            jitter = torch.exp((torch.rand(n, generator=generator) - 0.5) * 0.446)  # e^±0.223 = 0.8 .. 1.25
            keys = torch.tensor([float(lengths[i]) for i in perm.tolist()]) * jitter
            perm = perm[torch.argsort(keys, stable=True)]
        batches = [perm[s : s + batch_size].tolist() for s in range(0, n - batch_size + 1, batch_size)]
        order = range(len(batches)) if lengths is None else torch.randperm(len(batches), generator=generator).tolist()
        for b in order:
            yield batches[b]


@torch.no_grad()
def predict(model: torch.nn.Module, codec: Codec, states: Sequence[torch.Tensor],
            batch_size: int) -> list[str]:
    """Decoded label strings for every utterance (states from `Features.states`), batched by length."""
    model.eval()
    order = sorted(range(len(states)), key=lambda i: states[i].shape[0])
    preds: list[str] = [""] * len(states)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch, mask = pad([states[i] for i in idx])
        for i, p in zip(idx, codec.decode(model(batch, mask, normalised=True), mask), strict=True):
            preds[i] = p
    return preds
