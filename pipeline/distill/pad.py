"""PAD-style speech-to-text embedding alignment: a stand-in for arXiv 2303.03600 (details unpublished).

Global term: symmetric InfoNCE between pooled speech and sentence embeddings. Local term: each text unit
attends over speech frames under a monotonic Gaussian prior at its expected position and is pulled
towards the attended vector. Granularities (token / word / phrase) are mixed with learned weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.distill.losses import masked_mean


def global_alignment(speech_pooled: torch.Tensor, text_sentence: torch.Tensor,
                     temperature: float = 0.07) -> torch.Tensor:
    """Symmetric InfoNCE over (B, D) pairs, cosine similarity / temperature (PAD-style, arXiv 2303.03600)."""
    logits = F.normalize(speech_pooled.float(), dim=-1) @ F.normalize(text_sentence.float(), dim=-1).T
    logits = logits / temperature
    labels = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def _log_prior(unit_shares: torch.Tensor, num_frames: torch.Tensor, max_frames: int,
               width: float) -> torch.Tensor:
    """Unnormalised Gaussian log prior (..., U, max_frames); -inf beyond each item's num_frames."""
    shares = unit_shares.float()
    n = num_frames.to(shares)[..., None]
    centre = (torch.cumsum(shares, -1) - shares / 2) * n
    sigma = width * torch.clamp(shares * n, min=1.0)
    t = torch.arange(max_frames, device=shares.device, dtype=shares.dtype) + 0.5
    log_p = -0.5 * ((t - centre[..., None]) / sigma[..., None]) ** 2
    return log_p.masked_fill(t >= n[..., None], float("-inf"))


def monotonic_prior(num_units: int, num_frames: int | torch.Tensor, unit_shares: torch.Tensor,
                    width: float = 0.5) -> torch.Tensor:
    """(U, T) (or batched (B, U, T)) prior; row u is a Gaussian over frame centres t + 0.5, normalised.

    Unit u's expected span is its share of the utterance after the shares of units before it; the mean is
    that span's centre and the standard deviation is `width` times the span length (at least one frame).
    Shares of padding units should be 0. With a (B,) tensor of frame counts, T is their maximum.
    """
    if unit_shares.shape[-1] != num_units:
        raise ValueError(f"{unit_shares.shape[-1]} unit shares for {num_units} units")
    if not torch.allclose(unit_shares.sum(-1).float(), torch.ones(()), atol=1e-4):
        raise ValueError("unit shares must sum to 1 per utterance")
    frames = torch.as_tensor(num_frames, device=unit_shares.device)
    return _log_prior(unit_shares, frames, int(frames.max()), width).softmax(-1)


def local_alignment(speech: torch.Tensor, frame_mask: torch.Tensor, units: torch.Tensor,
                    unit_mask: torch.Tensor, unit_shares: torch.Tensor, width: float = 0.5,
                    temperature: float = 0.1) -> torch.Tensor:
    """Mean over valid units of 1 - cos(unit, attended speech) (PAD-style local term, 2303.03600).

    Attention of unit u over frames = softmax(cos(u, frame) / temperature) * prior, renormalised, which
    equals softmax(cos / temperature + log prior); speech (B, T, D), units (B, U, D), shares (B, U).
    """
    log_prior = _log_prior(unit_shares, frame_mask.sum(1), speech.shape[1], width)
    unit_dir, frame_dir = F.normalize(units.float(), dim=-1), F.normalize(speech.float(), dim=-1)
    sim = torch.einsum("bud,btd->but", unit_dir, frame_dir)
    attn = (sim / temperature + log_prior).masked_fill(~frame_mask[:, None, :], float("-inf")).softmax(-1)
    attended = torch.einsum("but,btd->bud", attn, speech.float())
    return masked_mean(1.0 - F.cosine_similarity(units.float(), attended, dim=-1), unit_mask)


class GranularityMixture(nn.Module):
    """Learned softmax weights over per-granularity losses (PAD-style, 2303.03600), entropy-regularised.

    Returns sum_g w_g L_g - entropy_weight * H(w). Without the entropy term the weights collapse onto the
    smallest loss; with it the optimum over the weights is w = softmax(-L / entropy_weight).
    """

    def __init__(self, names: Sequence[str] = ("token", "word", "phrase"),
                 entropy_weight: float = 0.1) -> None:
        super().__init__()
        self.names = tuple(names)
        self.entropy_weight = entropy_weight
        self.logits = nn.Parameter(torch.zeros(len(self.names)))

    def weights(self) -> torch.Tensor:
        return self.logits.softmax(-1)

    def forward(self, losses: Sequence[torch.Tensor]) -> torch.Tensor:
        """Weighted sum of one scalar loss per granularity, in the order of `names`."""
        if len(losses) != len(self.names):
            raise ValueError(f"{len(losses)} losses for granularities {self.names}")
        w, log_w = self.weights(), self.logits.log_softmax(-1)
        entropy = -(w * log_w).sum()
        return (w * torch.stack(list(losses))).sum() - self.entropy_weight * entropy


GRANULARITIES = ("token", "word", "phrase")


def text_units(emb: Any, granularity: str, phrase_words: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(U, D) unit embeddings and (U,) expected shares of the utterance (sum 1) at one granularity.

    token: the word pieces; word: mean of each word's pieces; phrase: mean over runs of `phrase_words`
    consecutive words. A unit's share is its character count (at least 1) over the transcript's, the prior
    for where it sits in the speech. `emb` is a teachers.text.TextEmbedding (tokens, spans, words).
    """
    tokens, spans, words = np.asarray(emb.tokens, np.float32), np.asarray(emb.spans), np.asarray(emb.words)
    if not len(tokens):
        raise ValueError("a transcript with no tokens has no units")
    chars = np.maximum(spans[:, 1] - spans[:, 0], 1).astype(np.float64)
    if granularity == "token":
        group = np.arange(len(tokens))
    elif granularity == "word":
        group = np.unique(words, return_inverse=True)[1]
    elif granularity == "phrase":
        if phrase_words < 1:
            raise ValueError(f"phrase_words must be at least 1, got {phrase_words}")
        group = np.unique(words, return_inverse=True)[1] // phrase_words
    else:
        raise ValueError(f"unknown granularity '{granularity}' (known: {list(GRANULARITIES)})")
    n = int(group.max()) + 1
    counts = np.bincount(group, minlength=n).astype(np.float32)
    units = np.zeros((n, tokens.shape[1]), np.float32)
    np.add.at(units, group, tokens)
    shares = np.bincount(group, weights=chars, minlength=n)
    return units / counts[:, None], (shares / shares.sum()).astype(np.float32)
