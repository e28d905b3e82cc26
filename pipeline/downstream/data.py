"""Cached features for a downstream task: open the cache, select labelled rows, make splits, pad batches, predict."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from pipeline.downstream.loader import Loader, Split
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


# A training or dev split whose frames (float16) fit in this is read once and held in memory, as a small corpus's
# are; a larger one streams (every batch read and normalised from the cache). Test splits, read once, stream.
HOLD_BYTES = 512 << 20


class Features:
    """One upstream's cached features of one (corpus, view), read through the cache's memory maps.

    `normalise` is the featurizer's parameter-free part (per-frame layer norm). Frame-level tasks read batches
    (`batch`) or utterances (`read`) as they need them; pooled ones keep one time average per utterance (`pooled`,
    read in storage order), what a linearly pooling head needs (see `PooledClassifier`).
    """

    def __init__(self, index: str, upstream: str, normalise: Callable[[torch.Tensor], torch.Tensor],
                 expect: dict[str, Any] | None = None) -> None:
        self.index = index
        self.cache = open_features(index, upstream, expect)
        self.keys: list[str] = list(self.cache.keys)
        self.fingerprint: dict[str, Any] = dict(self.cache.fingerprint)
        self.normalise = normalise
        shapes = sorted({tuple(store.shape[1:]) for store in self.cache.stores})
        if len(shapes) > 1:
            raise ValueError(f"{index}: features have mixed (layers, dim) shapes {shapes}; the index mixes upstreams")
        self.shape: tuple[int, ...] = shapes[0]  # (layers, dim)
        self._pooled: dict[str, torch.Tensor] = {}

    def read(self, key: str) -> torch.Tensor:
        """(T, L, D) float16 normalised states of one utterance."""
        return self._normalised(key).half()

    def batch(self, keys: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """`pad([self.read(k) for k in keys])` in half the memory: the states stay float16, which the featurizer
        takes to float32 (the same numbers); and the (B, T_max) valid-frame mask."""
        lengths = [self.cache.num_rows(k) for k in keys]
        states = torch.zeros(len(keys), max(max(lengths), 1), *self.shape, dtype=torch.float16)
        for b, (key, n) in enumerate(zip(keys, lengths, strict=True)):
            states[b, :n] = self.read(key)
        return states, torch.arange(states.shape[1]) < torch.tensor(lengths).unsqueeze(1)

    def pooled(self, keys: Sequence[str], desc: str) -> list[torch.Tensor]:
        """(1, L, D) float32 time averages of the normalised states; kept, so each utterance is read once."""
        todo = sorted({k for k in keys if k not in self._pooled}, key=self.cache.position)
        for key in tqdm(todo, desc=desc, mininterval=5):
            self._pooled[key] = self._normalised(key).mean(dim=0, keepdim=True)
        return [self._pooled[k] for k in keys]

    def _normalised(self, key: str) -> torch.Tensor:
        """float32 normalised states; copied as stored, widened by torch (3.5x faster than numpy's float16 cast)."""
        return self.normalise(torch.from_numpy(np.array(self.cache.get(key))))


def make_split(features: Features, keys: list[str], labels: list[str], pool: bool, desc: str,
               hold: bool = False) -> Split:
    """The Split of `keys`: pooled time averages if `pool`; else, with `hold` and if they fit in HOLD_BYTES, the
    normalised frames read now (in storage order) and held; else frames read batch by batch as training asks."""
    if pool:
        return in_memory(keys, labels, features.pooled(keys, desc))
    lengths = [features.cache.num_rows(k) for k in keys]
    if hold and sum(lengths) * int(np.prod(features.shape)) * 2 <= HOLD_BYTES:
        held = {k: features.read(k) for k in tqdm(sorted(keys, key=features.cache.position), desc=desc,
                                                  mininterval=5)}
        return in_memory(keys, labels, [held[k] for k in keys])
    return Split(keys, labels, lengths, lambda idx: features.batch([keys[i] for i in idx]), streams=True)


def in_memory(keys: list[str], labels: list[str], states: Sequence[torch.Tensor]) -> Split:
    """A Split over normalised (T, L, D) states held in memory (pooled time averages: T = 1)."""
    return Split(keys, labels, [s.shape[0] for s in states], lambda idx: pad([states[i] for i in idx]), streams=False)


def pad(states: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad (T_i, L, D) tensors to (B, T_max, L, D) float32 plus a (B, T_max) valid-frame mask."""
    lengths = torch.tensor([s.shape[0] for s in states])
    t_max = max(int(lengths.max()), 1)
    if int(lengths.min()) == t_max:  # equal lengths (e.g. pooled states): no padding to do
        return torch.stack(list(states)).float(), torch.ones(len(states), t_max, dtype=torch.bool)
    batch = torch.zeros(len(states), t_max, *states[0].shape[1:])
    for i, s in enumerate(states):
        batch[i, : s.shape[0]] = s  # the copy casts float16 to float32 in place
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
def predict(models: Sequence[torch.nn.Module], codec: Codec, split: Split, batch_size: int) -> list[list[str]]:
    """Decoded label strings of every item of `split`, one list per model; batches of similar length, each
    read once for all models."""
    for model in models:
        model.eval()
    order = sorted(range(len(split.keys)), key=split.lengths.__getitem__)
    preds = [[""] * len(order) for _ in models]
    chunks = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    with Loader(split, chunks) as loader:
        for idx, (batch, mask) in loader:
            for out, model in zip(preds, models, strict=True):
                for i, p in zip(idx, codec.decode(model(batch, mask, normalised=True), mask), strict=True):
                    out[i] = p
    return preds
