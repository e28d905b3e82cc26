"""The manifest contract: one TSV row per utterance, validated on every read and write."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

REQUIRED = ["utt_id", "path", "num_samples", "sample_rate", "split", "speaker"]
LABELS = ["text", "phones", "keyword", "intent", "style"]
SPLITS = ("train", "dev", "test")


class ManifestError(ValueError):
    """A manifest that breaks the contract; the message names the file and the problem."""


def validate(df: pd.DataFrame, where: str = "manifest") -> pd.DataFrame:
    """Check columns, types and uniqueness; add empty label columns; return a normalised copy."""
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ManifestError(f"{where}: missing required column(s) {missing}")
    df = df.copy()
    for col in LABELS:
        if col not in df.columns:
            df[col] = ""
    df[LABELS] = df[LABELS].fillna("").astype(str)
    dup = df["utt_id"][df["utt_id"].duplicated()].tolist()
    if dup:
        raise ManifestError(f"{where}: duplicate utt_id(s) {dup[:5]}")
    bad_split = sorted(set(df["split"]) - set(SPLITS))
    if bad_split:
        raise ManifestError(f"{where}: unknown split(s) {bad_split}; use one of {SPLITS}")
    if (df["sample_rate"].astype(int) != 16000).any():
        raise ManifestError(f"{where}: audio must be listed at 16000 Hz (adapters resample)")
    if (df["num_samples"].astype(int) <= 0).any():
        raise ManifestError(f"{where}: num_samples must be positive")
    df["num_samples"] = df["num_samples"].astype(int)
    df["sample_rate"] = df["sample_rate"].astype(int)
    cols = REQUIRED + LABELS + [c for c in df.columns if c not in REQUIRED + LABELS]
    return df[cols].sort_values("utt_id").reset_index(drop=True)


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read and validate a manifest TSV."""
    df = pd.read_csv(path, sep="\t", dtype={"utt_id": str, "speaker": str}, keep_default_na=False)
    return validate(df, str(path))


def write_manifest(df: pd.DataFrame, path: str | Path) -> None:
    """Validate and write atomically."""
    df = validate(df, str(path))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        df.to_csv(tmp, sep="\t", index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # a failed write (disk full) leaves no partial file


def shard_range(total: int, nshard: int, rank: int) -> tuple[int, int]:
    """[start, end) of shard `rank` of `nshard` over `total` items (fairseq-style, balanced)."""
    if not 0 <= rank < nshard:
        raise ValueError(f"shard rank {rank} outside 0..{nshard - 1}")
    start = round(total / nshard * rank)
    end = round(total / nshard * (rank + 1))
    return start, end
