"""Cached features for a downstream task: open the cache, select labelled rows, pad batches, predict."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from pipeline.downstream.tasks import Codec, Task


def open_features(index: str, upstream: str) -> Any:
    """The FeatureCache over `index`, refusing one made for a different upstream."""
    from pipeline.cache.index import FeatureCache

    return FeatureCache.open(index, expect={"upstream": upstream})


def labelled_rows(manifest: pd.DataFrame, task: Task, split: str) -> pd.DataFrame:
    """Rows of `split` with a non-empty label for the task (others do not take part in it)."""
    if task.column not in manifest.columns:
        raise KeyError(f"manifest has no '{task.column}' column, needed by task '{task.name}'")
    rows = manifest[manifest["split"] == split]
    return rows[rows[task.column].astype(str).str.strip() != ""]


def copies_by_utt(keys: Sequence[str]) -> dict[str, list[str]]:
    """Group cache keys "{utt_id}@{copy}" by utterance (all distorted copies of each)."""
    groups: dict[str, list[str]] = {}
    for key in keys:
        utt, sep, _ = key.rpartition("@")
        if not sep:
            raise ValueError(f"feature key {key!r} is not of the form '{{utt_id}}@{{copy}}'")
        groups.setdefault(utt, []).append(key)
    return groups


def load_states(features: Any, keys: Sequence[str], desc: str) -> list[torch.Tensor]:
    """Read each key's (T, L, D) features into memory once, as float16 tensors."""
    out = [torch.from_numpy(np.array(features.get(k), dtype=np.float16)) for k in tqdm(keys, desc=desc)]
    shapes = {tuple(s.shape[1:]) for s in out}
    if len(shapes) > 1:
        raise ValueError(f"features have mixed (layers, dim) shapes {sorted(shapes)}; "
                         "the index mixes upstreams")
    return out


def pad(states: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad (T_i, L, D) tensors to (B, T_max, L, D) float32 plus a (B, T_max) valid-frame mask."""
    lengths = torch.tensor([s.shape[0] for s in states])
    t_max = max(int(lengths.max()), 1)
    batch = torch.zeros(len(states), t_max, *states[0].shape[1:])
    for i, s in enumerate(states):
        batch[i, : s.shape[0]] = s.float()
    return batch, torch.arange(t_max) < lengths.unsqueeze(1)


def batch_indices(n: int, batch_size: int, generator: torch.Generator) -> Iterator[list[int]]:
    """Endless shuffled index batches (a fresh permutation per epoch), reproducible from the generator."""
    batch_size = min(batch_size, n)
    while True:
        perm = torch.randperm(n, generator=generator).tolist()
        for start in range(0, n - batch_size + 1, batch_size):
            yield perm[start : start + batch_size]


@torch.no_grad()
def predict(model: torch.nn.Module, codec: Codec, states: Sequence[torch.Tensor],
            batch_size: int) -> list[str]:
    """Decoded label strings for every utterance, batched by length to keep padding small."""
    model.eval()
    order = sorted(range(len(states)), key=lambda i: states[i].shape[0])
    preds: list[str] = [""] * len(states)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch, mask = pad([states[i] for i in idx])
        for i, p in zip(idx, codec.decode(model(batch, mask), mask), strict=True):
            preds[i] = p
    return preds
