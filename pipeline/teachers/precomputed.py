"""A teacher run elsewhere: its features read from HDF5 (`pipeline.cache.hdf5` layout), copied into the cache.

Extraction asks it for the stored states of each clip by key (`states_for`) instead of running a model; every
dataset is checked there (shape, dtype, frame count against the clip's length, finite values). Its frame rate and
whether state 0 is an input come from the config entry and must agree with what the files declare; layers and
width come from the files. With no weights, the fingerprint's `sha256` identifies the files (names, sizes,
modification times) and `origin` keeps the fingerprint of the upstream that computed them, when they carry one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.cache.hdf5 import FeatureFiles

from .base import Upstream


class PrecomputedUpstream(Upstream):
    """Hidden states looked up by utterance key in HDF5 feature files; it cannot compute features of new audio."""

    kind = "precomputed"

    def __init__(self, path: str | Path, name: str = "precomputed", frame_rate: int = 50,
                 input_state: bool = True) -> None:
        super().__init__()
        self.files = FeatureFiles(path)
        self.name, self.source = name, str(path)
        self.frame_rate, self.input_state = frame_rate, input_state
        self.num_layers, self.dim = self.files.shape
        for attr, value in (("frame_rate", frame_rate), ("input_state", input_state)):
            for file, have in self.files.declared(attr).items():
                if have != value:
                    raise ValueError(f"teacher '{name}': {file} declares {attr} {have!r}, the config entry "
                                     f"{value!r}; set teachers.{name}.{attr}: {str(have).lower()} (or fix the file)")

    def num_frames(self, num_samples: int) -> int:
        """The frame count the frame rate gives; stored counts may differ by up to two (FRAME_SLACK)."""
        return round(num_samples * self.frame_rate / self.sample_rate)

    def hidden_states(self, wav: torch.Tensor) -> list[torch.Tensor]:
        """Refused: features exist only for the utterances of the files."""
        raise ValueError(f"{self.name} is a precomputed teacher: its features come from {self.source} by "
                         "utterance key; it cannot compute features of new audio")

    def states_for(self, wavs: Sequence[torch.Tensor], keys: Sequence[str],
                   view: dict[str, Any]) -> list[list[torch.Tensor]]:
        """The stored, checked features of clips `keys` (waveforms `wavs`) of view-audio store `view`."""
        out = []
        for key, wav in zip(keys, wavs, strict=True):
            states = np.asarray(self.files.read(key, wav.numel(), view, self.frame_rate), np.float32)
            out.append(list(torch.from_numpy(states).unbind(1)))
        return out

    def fingerprint(self) -> dict[str, Any]:
        """Base fingerprint with the files' identity as `sha256` and the fingerprints they carry as `origin`."""
        return {**super().fingerprint(), "sha256": self.files.identity(), "origin": self.files.origins()}
