"""Task registry: name -> manifest label column, label codec, head and metric (SUPERB recipes).

A codec turns label strings into training targets and head logits back into label strings, so
every metric compares strings and a label never seen in training is simply never predicted.
Sequence tasks (PR, ASR) have the same shape: a CTC codec (tokenize, collate, CTC loss, greedy
decode), a frame-level head, and `error_rate` as the metric (PER over space-separated phones, WER
over words with CER beside it).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.downstream.heads import BiLSTMCTC, FrameLinear, PooledClassifier
from pipeline.downstream.metrics import (
    Counts,
    accuracy,
    correct_counts,
    edit_counts,
    error_rate,
    slot_accuracy,
    slot_correct_counts,
    tokenize,
)


class Codec(Protocol):
    """Label strings <-> targets and logits; `state()` is saved in the head checkpoint."""

    n_outputs: int

    def encode(self, label: str) -> Any | None: ...
    def collate(self, targets: list[Any]) -> Any: ...
    def loss(self, logits: torch.Tensor, mask: torch.Tensor, targets: Any) -> torch.Tensor: ...
    def decode(self, logits: torch.Tensor, mask: torch.Tensor) -> list[str]: ...
    def state(self) -> dict[str, Any]: ...


class ClassCodec:
    """One class per utterance; the vocabulary is the sorted set of training labels."""

    def __init__(self, vocab: Sequence[str]) -> None:
        self.vocab = list(vocab)
        self.index = {v: i for i, v in enumerate(self.vocab)}
        self.n_outputs = len(self.vocab)

    @classmethod
    def fit(cls, labels: Sequence[str]) -> ClassCodec:
        return cls(sorted({label.strip() for label in labels}))

    def encode(self, label: str) -> int | None:
        return self.index.get(label.strip())

    def collate(self, targets: list[int]) -> torch.Tensor:
        return torch.tensor(targets, dtype=torch.long)

    def loss(self, logits: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, targets)

    def decode(self, logits: torch.Tensor, mask: torch.Tensor) -> list[str]:
        return [self.vocab[i] for i in logits.argmax(dim=-1).tolist()]

    def state(self) -> dict[str, Any]:
        return {"kind": "class", "vocab": self.vocab}


class SlotCodec:
    """Several categorical slots per label ("action|object|location"); output = concatenated slot logits."""

    def __init__(self, slots: Sequence[Sequence[str]], sep: str = "|") -> None:
        self.slots = [list(s) for s in slots]
        self.sep = sep
        self.index = [{v: i for i, v in enumerate(s)} for s in self.slots]
        self.sizes = [len(s) for s in self.slots]
        self.n_outputs = sum(self.sizes)

    @classmethod
    def fit(cls, labels: Sequence[str], sep: str = "|") -> SlotCodec:
        split = [[p.strip() for p in label.split(sep)] for label in labels]
        counts = {len(s) for s in split}
        if len(counts) != 1:
            raise ValueError(f"slot labels have differing numbers of '{sep}'-separated slots "
                             f"{sorted(counts)} (e.g. {labels[0]!r}); fix the manifest's label column")
        return cls([sorted({s[i] for s in split}) for i in range(counts.pop())], sep)

    def encode(self, label: str) -> list[int] | None:
        parts = [p.strip() for p in label.split(self.sep)]
        if len(parts) != len(self.slots) or any(p not in ix for p, ix in zip(parts, self.index, strict=True)):
            return None
        return [ix[p] for p, ix in zip(parts, self.index, strict=True)]

    def collate(self, targets: list[list[int]]) -> torch.Tensor:
        return torch.tensor(targets, dtype=torch.long)

    def loss(self, logits: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        chunks = logits.split(self.sizes, dim=-1)
        return sum(F.cross_entropy(c, targets[:, i]) for i, c in enumerate(chunks))

    def decode(self, logits: torch.Tensor, mask: torch.Tensor) -> list[str]:
        best = [c.argmax(dim=-1).tolist() for c in logits.split(self.sizes, dim=-1)]
        rows = zip(*best, strict=True)
        return [self.sep.join(self.slots[s][i] for s, i in enumerate(row)) for row in rows]

    def state(self) -> dict[str, Any]:
        return {"kind": "slots", "slots": self.slots, "sep": self.sep}


class CTCCodec:
    """Token sequences for CTC: blank = 0, then the sorted training tokens; greedy decoding.

    unit "phone": space-separated tokens (the manifest's espeak-ng IPA phones), decoded joined by spaces;
    unit "char": characters of the whitespace-normalised text, the space being a token (word boundaries
    are then recoverable for WER).
    """

    blank = 0

    def __init__(self, tokens: Sequence[str], unit: str) -> None:
        if unit not in ("phone", "char"):
            raise ValueError(f"unknown CTC unit '{unit}' (known: phone, char)")
        self.tokens, self.unit = list(tokens), unit
        self.index = {t: i + 1 for i, t in enumerate(self.tokens)}
        self.n_outputs = len(self.tokens) + 1

    def split(self, label: str) -> list[str]:
        return tokenize(label, "word" if self.unit == "phone" else "char")

    @classmethod
    def fit(cls, labels: Sequence[str], unit: str) -> CTCCodec:
        return cls(sorted({t for label in labels for t in tokenize(label, "word" if unit == "phone" else "char")}),
                   unit)

    def encode(self, label: str) -> list[int] | None:
        ids = [self.index.get(t) for t in self.split(label)]
        return None if not ids or None in ids else ids

    def collate(self, targets: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        flat = torch.tensor([i for t in targets for i in t], dtype=torch.long)
        return flat, torch.tensor([len(t) for t in targets], dtype=torch.long)

    def loss(self, logits: torch.Tensor, mask: torch.Tensor,
             targets: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        log_probs = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)  # (T, B, V)
        flat, lengths = targets
        return F.ctc_loss(log_probs, flat, mask.sum(dim=1), lengths, blank=self.blank, zero_infinity=True)

    def decode(self, logits: torch.Tensor, mask: torch.Tensor) -> list[str]:
        best = logits.argmax(dim=-1)
        out = []
        for ids, n in zip(best.tolist(), mask.sum(dim=1).tolist(), strict=True):
            toks = [self.tokens[i - 1] for j, i in enumerate(ids[:n])
                    if i != self.blank and (j == 0 or i != ids[j - 1])]  # merge repeats, then drop blanks
            out.append(" ".join(toks) if self.unit == "phone" else " ".join("".join(toks).split()))
        return out

    def state(self) -> dict[str, Any]:
        return {"kind": "ctc", "tokens": self.tokens, "unit": self.unit}


CODECS: dict[str, Callable[..., Codec]] = {"class": ClassCodec, "slots": SlotCodec, "ctc": CTCCodec}


def codec_from_state(state: dict[str, Any]) -> Codec:
    """Rebuild a codec saved with `state()` in a head checkpoint."""
    state = dict(state)
    kind = state.pop("kind")
    if kind not in CODECS:
        raise ValueError(f"unknown label codec '{kind}' in the head checkpoint (known: {sorted(CODECS)})")
    return CODECS[kind](**state)


@dataclass(frozen=True)
class Task:
    """One downstream task: where its labels live, how they are coded, its head and its metric."""

    name: str
    column: str
    fit_codec: Callable[[Sequence[str]], Codec]
    make_head: Callable[..., nn.Module]  # (dim, n_outputs, **options): the head class
    metric: str
    score: Callable[[Sequence[str], Sequence[str]], float]
    counts: Callable[[Sequence[str], Sequence[str]], Counts]  # `score` per utterance (numerator, denominator)
    higher_is_better: bool = True
    extra: dict[str, Callable[[Sequence[str], Sequence[str]], float]] = field(default_factory=dict)
    extra_counts: dict[str, Callable[[Sequence[str], Sequence[str]], Counts]] = field(default_factory=dict)
    eval_families: tuple[str, ...] = ()  # dev/test rows of these manifest `family` values only (if the column exists)

    def head(self, dim: int, n_out: int, options: dict[str, Any] | None = None) -> nn.Module:
        """The head over `dim`-wide features with `n_out` outputs; `options` (`downstream.tasks.<task>.head`) are
        keyword arguments of its class, checked first."""
        self.check_head(options or {})
        return self.make_head(dim, n_out, **(options or {}))

    def check_head(self, options: dict[str, Any]) -> None:
        """ValueError naming any option the head class does not take (its keyword arguments after dim, n_out)."""
        allowed = list(inspect.signature(self.make_head).parameters)[2:]
        extra = sorted(set(options) - set(allowed))
        if extra:
            raise ValueError(f"{extra} are not options of the {self.name} head {self.make_head.__name__} "
                             f"(allowed: {allowed})")

    def metrics(self, refs: Sequence[str], preds: Sequence[str]) -> dict[str, float]:
        """The task's metric and its secondary ones (e.g. CER beside WER), by name."""
        return {self.metric: self.score(refs, preds)} | {k: f(refs, preds) for k, f in self.extra.items()}

    def item_counts(self, refs: Sequence[str], preds: Sequence[str]) -> dict[str, Counts]:
        """Every metric per utterance as (numerator, denominator) lists, whose ratio of sums is the metric."""
        return {self.metric: self.counts(refs, preds)} | {k: f(refs, preds) for k, f in self.extra_counts.items()}


SENTENCES = ("command", "sentence")  # PR/ASR are scored on phrases, not on isolated keywords / letters
TASKS: dict[str, Task] = {
    "ks": Task("ks", "keyword", ClassCodec.fit, PooledClassifier, "acc", accuracy, correct_counts),
    "ic": Task("ic", "intent", SlotCodec.fit, PooledClassifier, "acc", slot_accuracy, slot_correct_counts),
    "sid": Task("sid", "speaker", ClassCodec.fit, PooledClassifier, "acc", accuracy, correct_counts),
    "er": Task("er", "style", ClassCodec.fit, PooledClassifier, "acc", accuracy, correct_counts),
    "pr": Task("pr", "phones", partial(CTCCodec.fit, unit="phone"), FrameLinear, "per",
               partial(error_rate, unit="word"), partial(edit_counts, unit="word"), higher_is_better=False,
               eval_families=SENTENCES),
    "asr": Task("asr", "text", partial(CTCCodec.fit, unit="char"), BiLSTMCTC, "wer",
                partial(error_rate, unit="word"), partial(edit_counts, unit="word"), higher_is_better=False,
                extra={"cer": partial(error_rate, unit="char")},
                extra_counts={"cer": partial(edit_counts, unit="char")}, eval_families=SENTENCES),
}


def get_task(name: str) -> Task:
    """Look a task up by name; unknown names raise with the list of known ones."""
    if name not in TASKS:
        raise KeyError(f"unknown downstream task '{name}' (known: {sorted(TASKS)})")
    return TASKS[name]
