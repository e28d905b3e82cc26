"""Padded batches of a split in a given order; batches read from the cache are made ahead in a background thread."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch

from pipeline.readahead import ReadAhead

Item = tuple[list[int], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Split:
    """One labelled split: cache keys, label strings, frames per item and padded batches of any of its items.

    Held splits keep their normalised states (pooled: time averages, `lengths` all 1); streaming ones read every
    batch from the cache as it is made (`streams`), so a loader prefetches them."""

    keys: list[str]
    labels: list[str]
    lengths: list[int]
    batch: Callable[[Sequence[int]], tuple[torch.Tensor, torch.Tensor]]
    streams: bool


class Loader(ReadAhead[Item]):
    """(indices, (batch, mask)) for each index list of `indices`, in order.

    A streaming split's batches are read, normalised and padded by a background thread, `depth` batches ahead of
    the caller; an in-memory split's are padded in the caller's thread. `close()` (or leaving the `with` block) stops
    the thread."""

    def __init__(self, split: Split, indices: Iterable[list[int]], depth: int = 1) -> None:
        super().__init__(((idx, split.batch(idx)) for idx in indices), depth, "head-batches", background=split.streams)
