"""Batches for distillation, read from the cache only: student input audio from one view, targets from another.

A batch carries what any method may need (see `Batch`); which parts are filled is decided by the method's
declared needs (methods.Needs), through the optional sources here: teacher feature caches (one or several,
keys shared), domain labels from the view plans, k-means cluster ids, transcript embeddings.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Protocol

import numpy as np
import torch

from pipeline.cache.index import FeatureCache
from pipeline.readahead import ReadAhead
from pipeline.students.frontend import RECEPTIVE_FIELD, conv_frames

HOP = 320  # samples per 50 Hz frame


def utt_of(key: str) -> str:
    """Utterance id of a cache key '{utt_id}@{copy}'."""
    return key.rsplit("@", 1)[0]


@dataclass
class TextBatch:
    """Transcript targets: L2-normalised sentence embeddings (B, Dt) and, per granularity, units (B, U, Dt),
    their validity mask (B, U) and their expected shares of the utterance (B, U), zero on padding."""

    sentence: torch.Tensor
    units: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> TextBatch:
        return TextBatch(self.sentence.to(device),
                         {g: tuple(t.to(device) for t in u) for g, u in self.units.items()})


@dataclass
class Batch:
    """One training batch. wav (B, S) zero-padded with lengths (B,); targets[teacher][layer] (B, F, D)
    zero-padded; domains (B,) class ids; clusters (B, F) ids, -1 on padding; text transcript targets;
    progress = step / steps (for schedules such as the DANN lambda ramp); offsets (B,) the 50 Hz frame where
    each crop starts in its utterance (students with absolute positions place the crop there)."""

    wav: torch.Tensor
    lengths: torch.Tensor
    targets: list[list[torch.Tensor]] = field(default_factory=list)
    domains: torch.Tensor | None = None
    clusters: torch.Tensor | None = None
    text: TextBatch | None = None
    progress: float = 0.0
    offsets: torch.Tensor | None = None

    @property
    def frames(self) -> int | None:
        """Frames of the frame-level targets (None when the batch has none)."""
        if self.targets:
            return self.targets[0][0].shape[1]
        return None if self.clusters is None else self.clusters.shape[1]

    def trim(self, frames: int) -> Batch:
        """The batch with frame-level targets cut to `frames` (student and teacher counts may differ by 1-2)."""
        return replace(self, targets=[[t[:, :frames] for t in per] for per in self.targets],
                       clusters=None if self.clusters is None else self.clusters[:, :frames])

    def to(self, device: torch.device | str) -> Batch:
        moved: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, (torch.Tensor, TextBatch)):
                v = v.to(device)
            elif f.name == "targets":
                v = [[t.to(device) for t in per] for per in v]
            moved[f.name] = v
        return Batch(**moved)


@dataclass(frozen=True)
class Pick:
    """What one batch item is: utterance, input view and key, target key, frame crop [start, start + frames)."""

    utt: str
    view_in: str
    key_in: str
    key_tgt: str | None
    start: int
    frames: int


class Extra(Protocol):
    """An optional per-item source: which utterances it covers, one item, and how items collate."""

    field: str

    def covers(self, utt: str) -> bool: ...

    def item(self, pick: Pick) -> Any: ...

    def collate(self, items: list[Any], frames: int) -> Any: ...


DOMAIN_SCHEMES = ("clean_vs_distorted", "noise_type")


class DomainLabels:
    """Domain class of each input copy from its view-plan recipe (arXiv 2210.07978's domain classifier).

    clean_vs_distorted: 0 for an identity recipe (the clean view, or a copy that drew "none" twice), 1 otherwise.
    noise_type: the recipe's noise type ('clean' for identity recipes, 'no_noise' for a copy distorted without
    additive noise); classes are sorted and listed in `classes`.
    """

    field = "domains"

    def __init__(self, plans: Mapping[str, Any], scheme: str) -> None:
        if scheme not in DOMAIN_SCHEMES:
            raise ValueError(f"unknown domain labels '{scheme}' (known: {list(DOMAIN_SCHEMES)})")
        self.scheme = scheme
        self.names: dict[tuple[str, str], str] = {}
        for view, df in plans.items():
            for key, recipe in zip(df["key"], df["recipe"], strict=True):
                self.names[(view, key)] = self._name(json.loads(recipe))
        found = sorted(set(self.names.values()))
        self.classes = ["clean", "distorted"] if scheme == "clean_vs_distorted" else found
        if len(found) < 2:
            raise ValueError(f"domain labels '{scheme}' give one class only ({found}) for the input views "
                             f"{sorted(plans)}; mix clean inputs (options.clean_prob > 0) or use noise_type")
        self.index = {c: i for i, c in enumerate(self.classes)}

    def _name(self, recipe: dict) -> str:
        from pipeline.audio.distortions import is_identity

        if is_identity(recipe):
            return "clean"
        if self.scheme == "clean_vs_distorted":
            return "distorted"
        return recipe["noise"]["type"] if recipe.get("noise") else "no_noise"

    def covers(self, utt: str) -> bool:
        return True

    def item(self, pick: Pick) -> int:
        name = self.names.get((pick.view_in, pick.key_in))
        if name is None:
            raise KeyError(f"{pick.key_in} of view '{pick.view_in}' is not in its view plan; "
                           "the plan and the view audio disagree, regenerate them")
        return self.index[name]

    def collate(self, items: list[int], frames: int) -> torch.Tensor:
        return torch.tensor(items, dtype=torch.long)


class ClusterIds:
    """Per-frame k-means cluster ids of the target copy (codebook.Codebook), cropped like the targets."""

    field = "clusters"

    def __init__(self, codebook: Any) -> None:
        self.codebook = codebook

    def covers(self, utt: str) -> bool:
        return True

    def item(self, pick: Pick) -> np.ndarray:
        ids = self.codebook.ids(pick.key_tgt)
        return np.asarray(ids[pick.start:pick.start + pick.frames], np.int64)

    def collate(self, items: list[np.ndarray], frames: int) -> torch.Tensor:
        out = torch.full((len(items), frames), -1, dtype=torch.long)
        for b, ids in enumerate(items):
            out[b, :len(ids)] = torch.from_numpy(ids[:frames])
        return out


class TextTargets:
    """Transcript embeddings (teachers.text.TextStore) and their units at each granularity (pad.text_units)."""

    field = "text"

    def __init__(self, store: Any, granularities: Sequence[str], phrase_words: int) -> None:
        from pipeline.distill.pad import text_units

        self.store, self.granularities, self.phrase_words = store, tuple(granularities), phrase_words
        self._units = text_units
        self._cache: dict[str, tuple] = {}

    def covers(self, utt: str) -> bool:
        return utt in self.store

    def item(self, pick: Pick) -> tuple:
        if pick.utt not in self._cache:
            emb = self.store.get(pick.utt)
            units = {g: self._units(emb, g, self.phrase_words) for g in self.granularities}
            self._cache[pick.utt] = (emb.sentence, units)
        return self._cache[pick.utt]

    def collate(self, items: list[tuple], frames: int) -> TextBatch:
        sentence = torch.from_numpy(np.stack([s for s, _ in items]).astype(np.float32))
        units = {}
        for g in self.granularities:
            per = [u[g] for _, u in items]
            n = max(len(e) for e, _ in per)
            emb = torch.zeros(len(per), n, per[0][0].shape[1])
            mask = torch.zeros(len(per), n, dtype=torch.bool)
            shares = torch.zeros(len(per), n)
            for b, (e, s) in enumerate(per):
                emb[b, :len(e)] = torch.from_numpy(e)
                mask[b, :len(e)] = True
                shares[b, :len(e)] = torch.from_numpy(s)
            units[g] = (emb, mask, shares)
        return TextBatch(sentence, units)


class DistillBatches:
    """Random frame-aligned crops: audio crop [320 k, 320 (k + F) + 80) pairs with target frames [k, k + F).

    Each utterance draws its input copy and its target copy independently (distinct copies when both come
    from the same view), so a distorted view with K cached copies gives both cross-distortion mapping setups
    of arXiv 2210.07978 without re-running the teacher. Several target caches (ensembles) share the target
    key. `input_mix` draws the input view per item (e.g. {"indomain": 0.5, "clean": 0.5} for domain-adversarial
    training); `crop_frames=None` keeps whole utterances (text-aligned students).
    """

    def __init__(self, audio: FeatureCache | Mapping[str, FeatureCache],
                 targets: FeatureCache | Sequence[FeatureCache], layers: Sequence[int] | Sequence[Sequence[int]],
                 utt_ids: list[str], crop_frames: int | None, seed: int, distinct_copies: bool = False,
                 extras: Sequence[Extra] = (), input_mix: Mapping[str, float] | None = None,
                 target_view: str | None = None) -> None:
        self.audio = {"input": audio} if isinstance(audio, FeatureCache) else dict(audio)
        self.targets = [targets] if isinstance(targets, FeatureCache) else list(targets)
        layer_lists = [list(x) for x in layers] if layers and not isinstance(layers[0], int) else [list(layers)]
        self.layers = layer_lists if self.targets else []
        if len(self.layers) != len(self.targets):
            raise ValueError(f"{len(self.layers)} layer lists for {len(self.targets)} target caches")
        self.crop_frames = crop_frames
        self.last_picks: list[Pick] = []
        self.distinct_copies = distinct_copies  # same view in and out: never pair a copy with itself
        self.target_view = target_view
        self.extras = list(extras)
        self.rng = np.random.default_rng(seed)
        mix = dict(input_mix or {next(iter(self.audio)): 1.0})
        unknown = sorted(set(mix) - set(self.audio))
        if unknown:
            raise ValueError(f"input_mix names views {unknown} without audio (have {sorted(self.audio)})")
        self.mix_views = sorted(v for v, p in mix.items() if p > 0)
        total = sum(mix[v] for v in self.mix_views)
        self.mix_p = np.array([mix[v] / total for v in self.mix_views])
        copies_in = {v: defaultdict(list) for v in self.mix_views}
        for view in self.mix_views:
            for key in self.audio[view].keys:
                copies_in[view][utt_of(key)].append(key)
        copies_tgt = defaultdict(list)
        if self.targets:
            shared = set(self.targets[0].keys).intersection(*(t.keys for t in self.targets[1:]))
            for key in sorted(shared):
                copies_tgt[utt_of(key)].append(key)
        wanted = set(utt_ids)
        self.utts = sorted(u for u in wanted
                           if all(copies_in[v][u] for v in self.mix_views)
                           and (copies_tgt[u] or not self.targets)
                           and all(e.covers(u) for e in self.extras))
        if not self.utts:
            raise ValueError("no training utterance has input audio, cached targets and every extra the method "
                             "needs (transcripts, ...); check that the views and caches cover the train split")
        self.copies_in = {v: {u: copies_in[v][u] for u in self.utts} for v in self.mix_views}
        self.copies_tgt = {u: copies_tgt[u] for u in self.utts}
        first = self.audio[self.mix_views[0]]
        self.by_length = sorted(range(len(self.utts)), key=lambda i: (first.num_rows(self.copies_in[
            self.mix_views[0]][self.utts[i]][0]), i))

    def _pick(self, utt: str) -> tuple[Pick, np.ndarray]:
        view = self.mix_views[0] if len(self.mix_views) == 1 else self.mix_views[
            int(self.rng.choice(len(self.mix_views), p=self.mix_p))]
        key_in = str(self.rng.choice(self.copies_in[view][utt]))
        wav = self.audio[view].get(key_in)
        frames = conv_frames(len(wav))
        key_tgt = None
        if self.targets:
            choices = self.copies_tgt[utt]
            same_view = self.target_view is None or view == self.target_view
            if self.distinct_copies and same_view and len(choices) > 1:
                choices = [k for k in choices if k != key_in]
            key_tgt = str(self.rng.choice(choices))
            frames = min([frames] + [t.num_rows(key_tgt) for t in self.targets])
        if self.crop_frames is None:
            start, n = 0, frames
        else:
            start = int(self.rng.integers(0, max(frames - self.crop_frames, 0) + 1))
            n = min(self.crop_frames, frames - start)
        return Pick(utt, view, key_in, key_tgt, start, n), wav

    def _item(self, utt: str) -> tuple[np.ndarray, list[list[np.ndarray]], Pick]:
        pick, wav = self._pick(utt)
        s, n = pick.start, pick.frames
        audio = np.array(wav[s * HOP: (s + n) * HOP + RECEPTIVE_FIELD - HOP], np.float32)
        tgts = []
        for cache, layers in zip(self.targets, self.layers, strict=True):
            feats = cache.get(pick.key_tgt)
            tgts.append([np.array(feats[s:s + n, layer], np.float32) for layer in layers])
        return audio, tgts, pick

    def _draw(self, batch_size: int) -> np.ndarray:
        """Utterance indices of one batch. Crops: uniform. Whole utterances: uniform among the 2 * batch_size
        utterances nearest in length to a uniformly drawn one, so padding wastes little compute."""
        n = len(self.utts)
        if self.crop_frames is not None or n <= 2 * batch_size:
            return self.rng.choice(n, size=batch_size, replace=n < batch_size)
        centre = int(self.rng.integers(n))
        lo = min(max(centre - batch_size, 0), n - 2 * batch_size)
        window = self.by_length[lo:lo + 2 * batch_size]
        return np.asarray(window)[self.rng.choice(len(window), size=batch_size, replace=False)]

    def next(self, batch_size: int) -> Batch:
        """A Batch of `batch_size` items (utterances drawn with replacement only when there are too few)."""
        return self._collate(self._draw(batch_size))

    def sweep(self, batch_size: int, limit: int = 0) -> list[Batch]:
        """Every utterance once (or `limit` of them, evenly spaced in length), shortest first, in batches of
        `batch_size` (the last may be smaller): a dev set of whole utterances, the same at every evaluation."""
        order = self.by_length
        if 0 < limit < len(order):
            order = [order[round(i * (len(order) - 1) / max(limit - 1, 1))] for i in range(limit)]
        return [self._collate(order[s:s + batch_size]) for s in range(0, len(order), batch_size)]

    def _collate(self, utts: Sequence[int]) -> Batch:
        """The Batch of the utterances at indices `utts`: each item picked (view, copy, crop), padded."""
        batch_size = len(utts)
        items = [self._item(self.utts[i]) for i in utts]
        self.last_picks = [pick for _, _, pick in items]  # what each row of the batch is (for checks, benchmarks)
        extras = [[e.item(pick) for _, _, pick in items] for e in self.extras]
        lengths = torch.tensor([len(a) for a, _, _ in items])
        wav = torch.zeros(batch_size, int(lengths.max()))
        frames = max(p.frames for _, _, p in items)
        targets = [[torch.zeros(batch_size, frames, t.shape[-1]) for t in per] for per in items[0][1]]
        for b, (audio, tgts, _) in enumerate(items):
            wav[b, :len(audio)] = torch.from_numpy(audio)
            for k, per in enumerate(tgts):
                for layer, t in enumerate(per):
                    targets[k][layer][b, :t.shape[0]] = torch.from_numpy(t)
        batch = Batch(wav, lengths, targets, offsets=torch.tensor([p.start for _, _, p in items]))
        for extra, values in zip(self.extras, extras, strict=True):
            setattr(batch, extra.field, extra.collate(values, frames))
        return batch

    def sample_targets(self, max_frames: int, seed: int) -> list[list[torch.Tensor]]:
        """Up to `max_frames` random target frames of the training utterances, per teacher and layer (N, D),
        the same frames (same keys and positions) for every teacher; for fitting fixed projections."""
        rng = np.random.default_rng(seed)
        keys = [k for u in self.utts for k in self.copies_tgt[u]]
        rng.shuffle(keys)
        out: list[list[list[np.ndarray]]] = [[[] for _ in layers] for layers in self.layers]
        total = 0
        for key in keys:
            n = min(t.num_rows(key) for t in self.targets)
            for k, (cache, layers) in enumerate(zip(self.targets, self.layers, strict=True)):
                feats = cache.get(key)
                for j, layer in enumerate(layers):
                    out[k][j].append(np.array(feats[:n, layer], np.float32))
            total += n
            if total >= max_frames:
                break
        return [[torch.from_numpy(np.concatenate(x)[:max_frames]) for x in per] for per in out]


class BatchSource(Protocol):
    """What Prefetcher draws from: DistillBatches, or anything with its `next` and sampler `rng`."""

    rng: np.random.Generator

    def next(self, batch_size: int) -> Batch: ...


def _draws(source: BatchSource, batch_size: int) -> Iterator[tuple[Batch, dict[str, Any]]]:
    """Endless batches of `source`, each with the sampler state after it."""
    while True:
        yield source.next(batch_size), source.rng.bit_generator.state


class Prefetcher(ReadAhead[tuple[Batch, dict[str, Any]]]):
    """Draws `source`'s next batch in a background thread while the caller trains on the current one.

    The batches and their order are exactly the synchronous ones (one thread draws them, in order, from the
    same RNG); `rng_state` is the sampler state after the batches handed out so far, which is what a resumed
    run must restore. Hides cache reads (a cold page cache costs 20-30% of a small student's step)."""

    def __init__(self, source: BatchSource, batch_size: int, depth: int = 1) -> None:
        self.source, self.batch_size = source, batch_size
        self.rng_state: dict[str, Any] = source.rng.bit_generator.state
        super().__init__(_draws(source, batch_size), depth, "batch-prefetch")

    def next(self) -> Batch:
        """The next batch (waits only if the thread has not finished drawing it)."""
        batch, self.rng_state = self.__next__()
        return batch
