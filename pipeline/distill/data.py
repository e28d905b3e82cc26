"""Batches for distillation, read from the cache only: student input audio from one view, targets from another."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from pipeline.cache.index import FeatureCache
from pipeline.students.frontend import RECEPTIVE_FIELD, conv_frames

HOP = 320  # samples per 50 Hz frame


def utt_of(key: str) -> str:
    """Utterance id of a cache key '{utt_id}@{copy}'."""
    return key.rsplit("@", 1)[0]


class DistillBatches:
    """Random frame-aligned crops: audio crop [320 k, 320 (k + F) + 80) pairs with target frames [k, k + F).

    Each utterance draws its input copy and its target copy independently (distinct copies when both
    come from the same view), so a distorted view with K cached copies gives both cross-distortion
    mapping setups of arXiv 2210.07978 without re-running the teacher.
    """

    def __init__(self, audio: FeatureCache, targets: FeatureCache, layers: list[int], utt_ids: list[str],
                 crop_frames: int, seed: int, distinct_copies: bool = False) -> None:
        self.audio, self.targets, self.layers = audio, targets, layers
        self.crop_frames = crop_frames
        self.distinct_copies = distinct_copies  # same view in and out: never pair a copy with itself
        self.rng = np.random.default_rng(seed)
        copies_in, copies_tgt = defaultdict(list), defaultdict(list)
        for key in audio.keys:
            copies_in[utt_of(key)].append(key)
        for key in targets.keys:
            copies_tgt[utt_of(key)].append(key)
        wanted = set(utt_ids)
        self.utts = sorted(u for u in wanted if copies_in[u] and copies_tgt[u])
        if not self.utts:
            raise ValueError("no training utterance has both input audio and cached targets; "
                             "check that the views and the teacher cache cover the train split")
        self.copies_in = {u: copies_in[u] for u in self.utts}
        self.copies_tgt = {u: copies_tgt[u] for u in self.utts}

    def _crop(self, utt: str) -> tuple[np.ndarray, list[np.ndarray]]:
        key_in = self.rng.choice(self.copies_in[utt])
        targets = self.copies_tgt[utt]
        if self.distinct_copies and len(targets) > 1:
            targets = [k for k in targets if k != key_in]
        wav, feats = self.audio.get(key_in), self.targets.get(self.rng.choice(targets))
        frames = min(feats.shape[0], conv_frames(len(wav)))
        start = int(self.rng.integers(0, max(frames - self.crop_frames, 0) + 1))
        n = min(self.crop_frames, frames - start)
        audio = wav[start * HOP: (start + n) * HOP + RECEPTIVE_FIELD - HOP]
        return np.array(audio, np.float32), [np.array(feats[start:start + n, layer], np.float32)
                                               for layer in self.layers]

    def next(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """(wav (B, S), lengths (B,), targets: one (B, F, D) tensor per layer, zero-padded)."""
        utts = self.rng.choice(len(self.utts), size=batch_size, replace=len(self.utts) < batch_size)
        crops = [self._crop(self.utts[i]) for i in utts]
        lengths = torch.tensor([len(a) for a, _ in crops])
        wav = torch.zeros(batch_size, int(lengths.max()))
        frames = max(t[0].shape[0] for _, t in crops)
        targets = [torch.zeros(batch_size, frames, t.shape[-1]) for t in crops[0][1]]
        for b, (audio, tgts) in enumerate(crops):
            wav[b, :len(audio)] = torch.from_numpy(audio)
            for layer, t in enumerate(tgts):
                targets[layer][b, :t.shape[0]] = torch.from_numpy(t)
        return wav, lengths, targets
