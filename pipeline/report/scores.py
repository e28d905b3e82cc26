"""Score JSONs -> a long table (one row per upstream, task, condition, metric and seed) and its seed summary."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

REQUIRED = ("upstream", "task", "condition", "metric", "value")
LOWER_IS_BETTER = {"wer", "cer", "per", "eer"}


def load_scores(paths: Sequence[str]) -> list[dict[str, Any]]:
    """Parse every score JSON, refusing files that miss the contract keys (the message names the file)."""
    records = []
    for path in paths:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: cannot read score JSON ({err}); re-run `python -m pipeline evaluate`") from err
        missing = [k for k in REQUIRED if k not in data]
        if missing:
            raise ValueError(f"{path}: missing key(s) {missing}; score files come from `python -m pipeline evaluate`")
        records.append(data | {"file": str(path)})
    if not records:
        raise ValueError("no score files given; the report needs at least one score JSON")
    return records


def long_form(records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per (upstream, task, condition, metric, seed); `primary` marks each task's main metric."""
    rows = []
    for data in records:
        base = {k: data[k] for k in ("upstream", "task", "condition")} | {
            "n": data.get("n"), "lr": data.get("lr"), "steps": data.get("steps"),
            "num_params": data.get("num_params"), "missing_utterances": missing_count(data), "file": data["file"]}
        runs = data.get("per_seed") or [{"seed": " ".join(map(str, data.get("seeds") or [])),
                                         "metrics": {data["metric"]: data["value"]}}]
        for run in runs:
            metrics = run.get("metrics") or {data["metric"]: run["value"]}
            for metric, value in metrics.items():
                rows.append(base | {"metric": metric, "primary": metric == data["metric"], "seed": str(run["seed"]),
                                    "value": float(value)})
    long = pd.DataFrame(rows)
    dup = long[long.duplicated(["upstream", "task", "condition", "metric", "seed"], keep=False)]
    if not dup.empty:
        raise ValueError("several score files for the same upstream/task/condition/seed: "
                         f"{sorted(set(dup['file']))}; pass each score once")
    mixed = long[long["primary"]].groupby("task")["metric"].nunique()
    if (mixed > 1).any():
        raise ValueError(f"task(s) {mixed[mixed > 1].index.tolist()} reported with different metrics")
    return long


def missing_count(data: dict[str, Any]) -> int:
    """Labelled test utterances a score left out for lack of features (0 for files that do not say)."""
    return int((data.get("missing_utterances") or {}).get("count", data.get("n_without_features") or 0))


def summarise(long: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample std over seeds per (upstream, task, condition, metric), with parameter counts and the
    test utterances left out for lack of features."""
    keys = ["upstream", "task", "condition", "metric", "primary"]
    out = long.groupby(keys, sort=False).agg(value=("value", "mean"), std=("value", "std"), n_seeds=("value", "size"),
                                             missing_utterances=("missing_utterances", "max")).reset_index()
    params = long.dropna(subset=["num_params"]).groupby("upstream")["num_params"].first()
    out["num_params"] = out["upstream"].map(params)
    return out


def lower_is_better(metric: str) -> bool:
    """Error rates are better low, accuracies high."""
    return metric in LOWER_IS_BETTER
