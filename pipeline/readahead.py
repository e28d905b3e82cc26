"""Read-ahead: one background thread makes an iterator's items a few ahead of the caller, so cache reads overlap
the training step. The items and their order are exactly the synchronous ones."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")
_END = object()


class _Failed:
    """An exception raised while making an item, carried to the caller and raised there."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class ReadAhead(Generic[T]):
    """Iterates `items`, made by a background thread `depth` items ahead (or in the caller's thread when
    `background` is false, for items already in memory).

    An exception raised while making an item is raised in the caller at that item; later calls stop iteration.
    `close()` (or leaving the `with` block) stops the thread after the item it is making."""

    def __init__(self, items: Iterator[T], depth: int = 1, name: str = "read-ahead", background: bool = True) -> None:
        self._items = items
        self._thread: threading.Thread | None = None
        if background:
            self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._work, name=name, daemon=True)
            self._thread.start()

    def _work(self) -> None:
        try:
            for item in self._items:
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as err:  # handed to the caller, raised there
            self._put(_Failed(err))

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:  # the caller has not taken the previous item yet
                continue
        return False

    def __iter__(self) -> ReadAhead[T]:
        return self

    def __next__(self) -> T:
        if self._thread is None:
            return next(self._items)
        item = self._queue.get()
        if item is _END or isinstance(item, _Failed):
            self._queue.put(_END)  # the thread has ended: later calls stop, as a generator's do after an error
            if isinstance(item, _Failed):
                raise item.error
            raise StopIteration
        return item

    def close(self) -> None:
        """Stop the background thread (it finishes the item it is making)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()

    def __enter__(self) -> ReadAhead[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
