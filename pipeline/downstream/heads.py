"""Small downstream heads over featurized frames; each maps (B, T, D) + a (B, T) valid mask to logits."""

from __future__ import annotations

import torch
from torch import nn

from pipeline.downstream.featurizer import WeightedSum


class PooledClassifier(nn.Module):
    """Utterance classifier (SUPERB KS/IC/SID/ER): Linear(D, hidden) -> mean over valid frames -> Linear.

    Affine before the mean, so mean-then-head equals head-then-mean: `pools_linearly` lets training feed
    one time-averaged frame per utterance (exactly the same model, T times less work per step).
    """

    pools_linearly = True

    def __init__(self, dim: int, n_out: int, hidden: int = 256) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, hidden)
        self.out = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.proj(x) * mask.unsqueeze(-1)
        pooled = h.sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1)
        return self.out(pooled)


class FrameLinear(nn.Module):
    """Frame-level linear CTC head (SUPERB PR): (B, T, D) -> (B, T, n_out) logits."""

    def __init__(self, dim: int, n_out: int) -> None:
        super().__init__()
        self.out = nn.Linear(dim, n_out)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.out(x)


class BiLSTMCTC(nn.Module):
    """SUPERB ASR head: Linear(D, proj) -> 2-layer BiLSTM (dropout after each layer) -> Linear to CTC logits.

    Defaults fit this project's small corpora and CPU budget: hidden=proj=64 and, measured, a skip around the
    BiLSTM (the output layer also sees the projected frame). Without it, a few hundred CTC steps on ~600
    utterances leave the BiLSTM in the all-blank phase (WER 100%, CER 100% after 400 steps on Whisper tiny
    features); with it, the head starts out like the PR head's linear CTC and the BiLSTM adds context (WER 85% /
    CER 30% at 400 steps on half the data). SUPERB's own head (s3prl downstream/asr/config.yaml) is hidden=proj=1024,
    dropout=0.2, skip=False: `downstream.tasks.asr.head` in config/paper.yaml.

    Each direction is its own unidirectional LSTM; the backward one reads every sequence reversed within its
    own length, so padded frames never reach valid ones (exactly what a packed BiLSTM computes) at a third of
    the CPU cost of packed sequences, whose backward pass is quadratic in length on CPU.
    """

    def __init__(self, dim: int, n_out: int, hidden: int = 64, proj: int = 64, layers: int = 2,
                 dropout: float = 0.1, skip: bool = True) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, proj)
        sizes = [proj] + [2 * hidden] * (layers - 1)
        self.forward_lstms = nn.ModuleList(nn.LSTM(n, hidden, batch_first=True) for n in sizes)
        self.backward_lstms = nn.ModuleList(nn.LSTM(n, hidden, batch_first=True) for n in sizes)
        self.drop = nn.Dropout(dropout)
        self.skip = skip
        self.out = nn.Linear(2 * hidden + (proj if skip else 0), n_out)

    def bilstm(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, proj) -> (B, T, 2 * hidden) BiLSTM states; frames past each length do not leak in."""
        steps = torch.arange(x.shape[1], device=x.device)
        lengths = mask.sum(dim=1, keepdim=True)
        reverse = torch.where(steps < lengths, lengths - 1 - steps, steps)  # (B, T), its own inverse

        def flip(h: torch.Tensor) -> torch.Tensor:
            return h.gather(1, reverse.unsqueeze(-1).expand(-1, -1, h.shape[-1]))

        h = x
        for i, (fwd, bwd) in enumerate(zip(self.forward_lstms, self.backward_lstms, strict=True)):
            if i:
                h = self.drop(h)
            h = torch.cat([fwd(h)[0], flip(bwd(flip(h))[0])], dim=-1)
        return h

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        p = self.proj(x)
        h = self.bilstm(p, mask)
        return self.out(self.drop(torch.cat([h, p], dim=-1) if self.skip else h))


class DownstreamModel(nn.Module):
    """Featurizer + head: (B, T, L, D) frozen-upstream states and a (B, T) mask -> head logits.

    `normalised=True` takes states already passed through `featurizer.normalise` (the training loop does
    that once per utterance instead of once per step).
    """

    def __init__(self, featurizer: WeightedSum, head: nn.Module) -> None:
        super().__init__()
        self.featurizer = featurizer
        self.head = head

    def forward(self, states: torch.Tensor, mask: torch.Tensor, normalised: bool = False) -> torch.Tensor:
        return self.head(self.featurizer(states, normalised), mask)
