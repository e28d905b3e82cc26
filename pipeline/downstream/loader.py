"""Padded batches of a split in a given order; batches read from the cache are made ahead in a background thread."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

Item = tuple[list[int], tuple[torch.Tensor, torch.Tensor]]
_END = object()


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


class Loader:
    """(indices, (batch, mask)) for each index list of `indices`, in order.

    A streaming split's batches are read, normalised and padded by one background thread, `depth` batches ahead
    of the caller (cache reads overlap the step; the order and contents are exactly the synchronous ones).
    In-memory splits are padded in the caller's thread. `close()` (or leaving the `with` block) stops the thread.
    """

    def __init__(self, split: Split, indices: Iterable[list[int]], depth: int = 1) -> None:
        self._items: Iterator[Item] = ((idx, split.batch(idx)) for idx in indices)
        self._thread: threading.Thread | None = None
        if split.streams:
            self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._work, name="head-batches", daemon=True)
            self._thread.start()

    def _work(self) -> None:
        try:
            for item in self._items:
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as err:  # handed to the caller, raised there
            self._put(err)

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:  # the caller has not taken the previous batch yet
                continue
        return False

    def __iter__(self) -> Loader:
        return self

    def __next__(self) -> Item:
        if self._thread is None:
            return next(self._items)
        item = self._queue.get()
        if item is _END or isinstance(item, BaseException):
            self._queue.put(_END)  # the thread has ended: later calls stop too
            if isinstance(item, BaseException):
                raise item
            raise StopIteration
        return item

    def close(self) -> None:
        """Stop the background thread (it finishes the batch it is making)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()

    def __enter__(self) -> Loader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
