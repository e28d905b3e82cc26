"""Where every artefact lives: the one mapping from config to file paths that the Snakefiles wire up."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

# condition -> (corpus, view) that the test set is read from
CONDITIONS = {"clean": ("synthetic", "clean"), "indomain": ("synthetic", "indomain"),
              "ood": ("synthetic", "ood"), "real": ("asterisk", "clean")}
REAL_LABELS = {"keyword", "text", "phones"}  # label columns the real (Asterisk) corpus provides
REPORT_FILES = ("summary.md", "summary.csv", "summary.tex", "scores.csv", "robustness.png")


class Layout:
    """Paths of a run under config['results']; pure functions of the validated config."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.cfg = config
        self.root = config.get("results", "results")
        real = config["corpus"].get("real", {}).get("asterisk", True)
        self.corpora = ["synthetic"] + (["asterisk"] if real else [])
        self.shards = config["views"]["shards"]

    def write_resolved(self) -> str:
        """Write the validated config (defaults filled, --config overrides applied) for the rules to read.

        Rewritten only when its content changes, so unchanged configs leave its mtime alone."""
        path = Path(self.root) / "config.resolved.yaml"
        text = yaml.safe_dump(self.cfg, sort_keys=True)
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(text)
            os.replace(tmp, path)
        return str(path)

    @staticmethod
    def regex(names: Iterable[str]) -> str:
        """Wildcard constraint matching exactly these names."""
        names = list(names)
        return "|".join(re.escape(n) for n in names) if names else "$^"

    def views(self, corpus: str) -> list[str]:
        return ["clean", "indomain", "ood"] if corpus == "synthetic" else ["clean"]

    def manifest(self, corpus: str) -> str:
        return f"{self.root}/corpus/{corpus}/manifest.tsv"

    def synth_shard(self, shard: int) -> str:
        return f"{self.root}/corpus/synthetic/shards/{shard}.tsv"

    def bank(self, name: str) -> str:
        return f"{self.root}/banks/{name}.npz"

    def view_plan(self, corpus: str, view: str) -> str:
        return f"{self.root}/views/{corpus}/{view}/plan.tsv"

    def view_store(self, corpus: str, view: str, shard: int | str) -> str:
        return f"{self.root}/views/{corpus}/{view}/shard{shard}.zarr"

    def view_index(self, corpus: str, view: str) -> str:
        return f"{self.root}/views/{corpus}/{view}/index.tsv"

    def feature_store(self, upstream: str, corpus: str, view: str, shard: int | str) -> str:
        return f"{self.root}/cache/{upstream}/{corpus}/{view}/shard{shard}.zarr"

    def feature_index(self, upstream: str, corpus: str, view: str) -> str:
        return f"{self.root}/cache/{upstream}/{corpus}/{view}/index.tsv"

    def student(self, name: str, file: str = "model.safetensors") -> str:
        return f"{self.root}/students/{name}/{file}"

    def head(self, upstream: str, task: str) -> str:
        return f"{self.root}/downstream/{upstream}/{task}/head.pt"

    def score(self, upstream: str, task: str, condition: str) -> str:
        return f"{self.root}/scores/{upstream}/{task}/{condition}.json"

    def report(self, file: str) -> str:
        return f"{self.root}/report/{file}"

    def conditions(self, task: str) -> list[str]:
        """Conditions a task is scored on: 'real' only where the real corpus has the task's labels."""
        from pipeline.downstream.tasks import get_task

        wanted = self.cfg["downstream"].get("conditions", list(CONDITIONS))
        real_ok = "asterisk" in self.corpora and get_task(task).column in REAL_LABELS
        return [c for c in wanted if c != "real" or real_ok]

    def scores(self) -> list[str]:
        ds = self.cfg["downstream"]
        return [self.score(up, task, cond) for up in ds.get("upstreams", [])
                for task in ds.get("tasks", {}) for cond in self.conditions(task)]

    def all_outputs(self) -> list[str]:
        students = [self.student(s, f) for s in self.cfg["students"] for f in ("model.safetensors", "curve.png")]
        return students + self.scores() + [self.report(f) for f in REPORT_FILES]
