"""Plausible results of a config's layout for report tests: score JSONs with the predictions beside them (planted
effects per upstream, the same test items for every upstream), students' config.json and export runtimes."""

import copy
import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from pipeline.config import validate_config
from pipeline.downstream.predictions import prediction_path, prediction_rows, write_predictions
from pipeline.workflow import Layout

ROOT = Path(__file__).resolve().parents[2]
UTTERANCES = 60
# planted accuracy (1 - error rate for PR / ASR) per upstream, else 0.6; equal skills give identical predictions
SKILL = {"whisper_base": 0.97, "cdm_clean": 0.95, "cdm_noisy": 0.9, "dann": 0.3, "corr_fixed": 0.9,
         "corr_auto": 0.9, "ens_heads": 0.95}


def default_config(tmp_path: Path, **edit) -> dict:
    cfg = copy.deepcopy(yaml.safe_load((ROOT / "config.yaml").read_text()))
    cfg["results"] = str(tmp_path / "results")
    for key, value in edit.items():
        cfg[key] = value
    return validate_config(cfg)


def _test_items(task: str, condition: str, copies: int) -> tuple[list[str], list[int]]:
    """Cache keys and reference lengths of a fake test set (the same for every upstream)."""
    rng = np.random.default_rng(zlib.crc32(f"{task} {condition}".encode()))
    lengths = rng.integers(3, 12, size=UTTERANCES)
    keys = [f"u{u}@{c}" for u in range(UTTERANCES) for c in range(copies)]
    return keys, [int(lengths[int(k[1:].split("@")[0])]) for k in keys]


def fake_run(base: Path, cfg: dict) -> list[str]:
    """Score JSONs and predictions for every score of the layout, students' config.json and their exports'
    runtime JSONs (paths under `base` when the config's results are relative); returns the score paths."""
    layout = Layout(cfg)
    for score in layout.scores():
        path = base / score
        up, task, cond = path.parts[-3], path.parts[-2], path.stem
        metric = {"pr": "per", "asr": "wer"}.get(task, "acc")
        keys, lengths = _test_items(task, cond, 2 if cond == "indomain" else 1)
        skill = SKILL.get(up, 0.6)
        frames, values = [], []
        for seed in cfg["downstream"]["tasks"][task]["seeds"]:
            rng = np.random.default_rng([int(skill * 100), zlib.crc32(f"{task} {cond}".encode()), seed])
            if metric == "acc":
                num, den = [int(x) for x in rng.random(len(keys)) < skill], [1] * len(keys)
            else:
                num, den = [int(rng.binomial(n, 1 - skill)) for n in lengths], lengths
            frames.append(prediction_rows(keys, seed, {metric: (num, den)}))
            values.append(sum(num) / sum(den))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({
            "upstream": up, "task": task, "condition": cond, "metric": metric, "value": float(np.mean(values)),
            "higher_is_better": metric == "acc", "seeds": cfg["downstream"]["tasks"][task]["seeds"], "n": len(keys),
            "num_params": 2_000_000 if up in cfg["students"] else 20_000_000}))
        write_predictions(pd.concat(frames, ignore_index=True), prediction_path(path))
    for name, spec in cfg["students"].items():
        path = base / layout.student(name, "config.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"num_params": 1_000_000 if spec["method"] in ("kd", "dkd") else 7_000_000,
                                    "student": "lstm" if spec["method"] in ("kd", "dkd") else "transformer",
                                    **{k: spec[k] for k in ("method", "teacher", "input_view", "target_view")},
                                    "options": spec.get("options", {})}))
        runtime = base / layout.export_runtime(name)
        runtime.parent.mkdir(parents=True, exist_ok=True)
        runtime.write_text(json.dumps({"student": name, "onnx_bytes": 29_000_000, "torch_rtf": 0.02,
                                       "onnx_rtf": 0.01}))
    return layout.scores()
