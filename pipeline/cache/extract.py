"""Stage 1: run one upstream over one view-audio shard and store its layerwise hidden states."""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from pipeline.cache.store import Store, StoreWriter
from pipeline.config import load_config
from pipeline.teachers.base import Upstream
from pipeline.teachers.registry import load_upstream, spec_input_state

log = logging.getLogger(__name__)
CACHE_VERSION = "1"


def upstream_spec(cfg: dict[str, Any], name: str, checkpoint: str = "") -> dict[str, Any]:
    """Config entry of a teacher, or a student-checkpoint spec for a trained student."""
    if name in cfg["teachers"]:
        return cfg["teachers"][name]
    if name in cfg["students"]:
        if not checkpoint:
            raise ValueError(f"upstream '{name}' is a student: pass --checkpoint <dir>")
        return {"kind": "student", "checkpoint": checkpoint}
    raise KeyError(f"upstream '{name}' is neither a teacher nor a student in the config "
                   f"(teachers: {sorted(cfg['teachers'])}, students: {sorted(cfg['students'])})")


def expected_fingerprint(cfg: dict[str, Any], upstream: str, model: Upstream | None = None,
                         audio: dict[str, Any] | None = None, checkpoint: str = "") -> dict[str, Any]:
    """The fingerprint a store of `upstream`'s features must carry; what extraction writes.

    From the config alone: the upstream's name, its config entry (kind, model / package / path, layers),
    whether its state 0 is an input (`input_state`, by kind), dtype and code version, so a reader refuses
    features made with another model path, other layers or another dtype. With the loaded `model`: also
    its weights checksum, depth and width. With the view `audio` fingerprint: also the view recipe (plan
    and banks checksums) the features were computed from.
    """
    spec = cfg["teachers"].get(upstream, {"kind": "student"})
    fp: dict[str, Any] = {"input_state": spec_input_state(spec)} if model is None else dict(model.fingerprint())
    fp |= {"upstream": upstream, "dtype": cfg["cache"]["dtype"], "code_version": CACHE_VERSION}
    if checkpoint or upstream not in cfg["students"]:  # a student's spec names a directory only the caller knows
        fp["spec"] = upstream_spec(cfg, upstream, checkpoint)
    if audio is not None:
        fp["view_audio"] = audio
    return json.loads(json.dumps(fp))


def _batches(store: Store, max_samples: int, keep: list[int] | None = None) -> list[list[int]]:
    """Utterance indices (all, or `keep`) sorted by length, grouped so each padded group holds at most
    max_samples samples."""
    groups, cur = [], []
    for i in sorted(range(len(store)) if keep is None else keep, key=lambda i: (store.num_rows(i), i)):
        n = store.num_rows(i)
        if cur and (len(cur) + 1) * n > max_samples:
            groups.append(cur)
            cur = []
        cur.append(i)
    return groups + ([cur] if cur else [])


def extract_shard(config: str, upstream: str, audio: str, out: str, checkpoint: str = "",
                  threads: int = 0, subset_of: str = "", splits: list[str] | None = None,
                  labels: list[str] | None = None) -> None:
    """Hidden states (frames, layers, dim) of every utterance in view-audio store `audio` -> store `out`;
    with `subset_of` (a manifest), only the copies of its utterances in `splits` that carry one of the `labels`
    (the part of a view that evaluation reads: see Layout.extraction_subset)."""
    if threads:
        torch.set_num_threads(threads)
    cfg = load_config(config)
    model = load_upstream(upstream, upstream_spec(cfg, upstream, checkpoint), device="auto")
    keep = subset_utterances(subset_of, splits, labels) if subset_of else None
    extract_store(cfg, upstream, model, audio, out, checkpoint, keep)


def subset_utterances(manifest: str, splits: list[str] | None = None, labels: list[str] | None = None) -> set[str]:
    """utt_ids of a manifest's rows in `splits` (every split if None) with a non-empty value in one of the
    `labels` columns (every row if None or if the manifest lacks one: evaluation then names the missing column)."""
    from pipeline.corpus.manifest import read_manifest

    rows = read_manifest(manifest)
    if splits:
        rows = rows[rows["split"].isin(splits)]
    if labels and all(col in rows.columns for col in labels):
        rows = rows[rows[labels].astype(str).apply(lambda col: col.str.strip() != "").any(axis=1)]
    return set(rows["utt_id"])


def extract_store(cfg: dict[str, Any], upstream: str, model: Upstream, audio: str, out: str, checkpoint: str,
             keep: set[str] | None = None) -> None:
    """One view-audio store through a loaded `model` into feature store `out` (atomic: complete or absent);
    with `keep`, only the copies of those utterances (all of them if the shard holds none, as a store is never
    empty)."""
    source = Store(audio, expect={"kind": "view_audio"})
    fingerprint = {**expected_fingerprint(cfg, upstream, model, source.fingerprint, checkpoint),
                   "num_params": sum(p.numel() for p in model.parameters())}
    chosen = None if keep is None else [i for i, key in enumerate(source.ids) if key.rsplit("@", 1)[0] in keep]
    groups = _batches(source, int(cfg["cache"]["batch_seconds"] * 16000), chosen or None)  # a store is never empty
    dtype = getattr(torch, cfg["cache"]["dtype"])  # cast in torch: numpy's float32 -> float16 is ~8x slower here
    with StoreWriter(out, fingerprint, cfg["cache"]["dtype"], cfg["cache"]["compression"]) as writer:
        for group in tqdm(groups, desc=f"extract {upstream}", unit="batch", mininterval=5):
            wavs = [torch.from_numpy(np.array(source[i], np.float32)) for i in group]
            keys = [source.ids[i] for i in group]
            try:
                outputs = model.states_for(wavs, keys, source.fingerprint)
            except ValueError as err:
                raise ValueError(f"{audio}: {upstream} failed on one of {keys}: {err}") from err
            for i, states in zip(group, outputs, strict=True):
                writer.add(source.ids[i], torch.stack(states, dim=1).to(dtype).cpu().numpy())
    log.info("%s: wrote %d utterances to %s", upstream, sum(map(len, groups)), out)
