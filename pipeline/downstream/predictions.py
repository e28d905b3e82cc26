"""Per-utterance results beside each score, what the claims table's paired bootstrap resamples.

`scores/{upstream}/{task}/{condition}.pred.tsv` sits beside `{condition}.json`: one row per test item (utterance x
copy), head seed and metric, holding that item's numerator and denominator (`num`, `den`): correct (0/1) over 1
for accuracies, edits over reference tokens for PER / WER / CER. Any subset's metric is sum(num) / sum(den), so an
error rate resamples errors and reference lengths together. Tab-separated text: small (a few kB per score), diffable,
read by pandas.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from pipeline.atomic import atomic_path
from pipeline.downstream.metrics import Counts

COLUMNS = ["utt_id", "copy", "seed", "metric", "num", "den"]
SUFFIX = ".pred.tsv"


def prediction_path(score: str | Path) -> str:
    """The predictions file of a score JSON: the same name with `.pred.tsv` for `.json`."""
    path = Path(score)
    if path.suffix != ".json":
        raise ValueError(f"{score}: not a score JSON path (expected a .json name)")
    return str(path.with_suffix(SUFFIX))


def prediction_rows(keys: Sequence[str], seed: int, counts: dict[str, Counts]) -> pd.DataFrame:
    """Rows of one head seed: every cache key "{utt_id}@{copy}" x every metric's (num, den)."""
    utts, copies = zip(*(k.rpartition("@")[::2] for k in keys), strict=True) if keys else ((), ())
    frames = []
    for metric, (num, den) in counts.items():
        if not len(num) == len(den) == len(keys):
            raise ValueError(f"{metric}: {len(num)} numerators and {len(den)} denominators for {len(keys)} items")
        frames.append(pd.DataFrame({"utt_id": utts, "copy": [int(c) for c in copies], "seed": seed,
                                    "metric": metric, "num": num, "den": den}))
    return pd.concat(frames, ignore_index=True)[COLUMNS]


def write_predictions(frame: pd.DataFrame, path: str | Path) -> None:
    """Write atomically (temporary name, then rename): a killed job leaves no half file under the real name."""
    with atomic_path(path) as tmp:
        frame[COLUMNS].to_csv(tmp, sep="\t", index=False)


def read_predictions(path: str | Path) -> pd.DataFrame:
    """A predictions file, refused (naming the file) if it lacks a column or holds a non-integer count."""
    try:
        frame = pd.read_csv(path, sep="\t", dtype={"utt_id": str, "metric": str}, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ValueError(f"{path}: cannot read per-utterance predictions ({err}); re-run `python -m pipeline "
                         "evaluate` for this upstream") from err
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; predictions files come from `python -m pipeline "
                         "evaluate`")
    for column in ("copy", "seed", "num", "den"):
        if not pd.api.types.is_integer_dtype(frame[column]):
            raise ValueError(f"{path}: column '{column}' holds non-integer values; re-run `python -m pipeline "
                             "evaluate`")
    return frame
