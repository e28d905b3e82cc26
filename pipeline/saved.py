"""Files the pipeline saves with torch and reads back (resume states, downstream heads).

Written atomically; read with `torch.load(weights_only=True)`, which builds tensors, numbers, strings and
containers and nothing else, so a file planted in a shared results tree cannot run code when it is read.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from pipeline.atomic import atomic_path


class UnsafeFileError(RuntimeError):
    """A saved file holding more than tensors and plain data (planted code, or damage); it was not loaded."""


def save_atomic(obj: dict[str, Any], path: str | Path) -> None:
    """torch.save to a temporary name beside `path`, then rename: a failed save (disk full) leaves no partial file."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_saved(path: str | Path, what: str, todo: str, map_location: Any = "cpu") -> Any:
    """torch.load(weights_only=True); UnsafeFileError naming the file and `todo` if it holds more than plain data."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise UnsafeFileError(
            f"{path}: refused to load this {what}: it holds more than the tensors, numbers, strings and containers "
            "the pipeline writes (a damaged file, or one planted to run code when loaded), so it was not loaded "
            f"and nothing in it ran. {todo}") from None
