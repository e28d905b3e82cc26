"""Where every artefact lives: the one mapping from config to file paths that the Snakefiles wire up."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from pipeline.downstream.predictions import prediction_path
from pipeline.export import HF_FILES, ONNX_FILE

# condition -> (corpus, view) that the test set is read from
CONDITIONS = {"clean": ("synthetic", "clean"), "indomain": ("synthetic", "indomain"),
              "ood": ("synthetic", "ood"), "real": ("asterisk", "clean")}
REAL_LABELS = {"keyword", "text", "phones"}  # label columns the real (Asterisk) corpus provides
# report tables (each as .md, .csv, .tex and .html) and figures; see pipeline/report/
REPORT_TABLES = ("claims", "superb", "robustness", "ensembles", "lstm", "text", "cost_teachers", "cost_students",
                 "convergence", "summary")
REPORT_FIGURES = ("claims.png", "robustness.png", "head_curves.png", "student_curves.png", "layer_weights.png")
REPORT_FILES = (*(f"{t}.{x}" for t in REPORT_TABLES for x in ("md", "csv", "tex", "html")),
                "tables.md", "scores.csv", *REPORT_FIGURES)


def canonical(entry: Any) -> str:
    """A config entry as sorted JSON: a rule param that changes when the entry's content does, not its key order
    (Snakemake reruns a job whose params differ, and compares them as written)."""
    return json.dumps(entry, sort_keys=True)


class Layout:
    """Paths of a run under config['results']; pure functions of the validated config."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.cfg = config
        self.root = config.get("results", "results")
        corpus = config["corpus"]
        real = corpus.get("real", {}).get("asterisk", True)
        self.datasets: dict[str, dict[str, Any]] = corpus.get("datasets", {})
        self.corpora = (["synthetic"] if "synthetic" in corpus else []) + (["asterisk"] if real else []) \
            + list(self.datasets)
        self.distill_corpus: str = corpus.get("distill", "synthetic")
        self.shards = config["views"]["shards"]
        self.exports: bool = config.get("export", True)

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
        """Views a corpus can be rendered in: all three for the training and task corpora, else clean."""
        distorted = {"synthetic", self.distill_corpus, *self.cfg["corpus"].get("tasks", {}).values()}
        return ["clean", "indomain", "ood"] if corpus in distorted else ["clean"]

    def num_shards(self, corpus: str) -> int:
        """View-audio and cache shards of a corpus: corpus.datasets.<name>.shards, else views.shards."""
        return self.datasets.get(corpus, {}).get("shards", self.shards)

    def student_corpus(self, student: str) -> str:
        """The corpus a student is distilled on: corpus.distill (default synthetic)."""
        return self.cfg["students"][student].get("corpus", self.distill_corpus)

    def task_corpus(self, task: str) -> str:
        """The corpus a downstream task's heads train and are scored on: corpus.tasks.<task> (default synthetic)."""
        return self.cfg["corpus"].get("tasks", {}).get(task, "synthetic")

    def task_source(self, task: str, condition: str) -> tuple[str, str]:
        """(corpus, view) a task's `condition` is read from: its task corpus in that view; 'real' = Asterisk."""
        if condition == "real":
            return CONDITIONS["real"]
        if condition not in CONDITIONS:
            raise KeyError(f"unknown condition '{condition}' (known: {sorted(CONDITIONS)})")
        return self.task_corpus(task), condition

    def noise_inputs(self) -> dict[str, str]:
        """Manifests the noise bank reads: babble talkers (the distillation corpus) and, if set, MUSAN."""
        out = {"babble": self.manifest(self.distill_corpus)}
        if self.cfg["corpus"].get("noise"):
            out["musan"] = self.manifest(self.cfg["corpus"]["noise"])
        return out

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

    def student_kind(self, name: str) -> str:
        """The architecture a student's method trains: transformer or lstm (pipeline/distill/methods.py)."""
        from pipeline.distill.methods import get_method

        return get_method(self.cfg["students"][name]["method"]).student

    def students_of_kind(self, kind: str) -> list[str]:
        """The config's students whose architecture is `kind`."""
        return [s for s in self.cfg["students"] if self.student_kind(s) == kind]

    def export(self, name: str, file: str = "") -> str:
        """A student's export folder (`python -m pipeline export`) or a file in it."""
        return f"{self.root}/export/{name}/{file}"

    def export_files(self, name: str) -> list[str]:
        """The weights an export writes: hf/ for transformer students (transformers' layouts), model.onnx for all."""
        hf = [self.export(name, f"hf/{f}") for f in HF_FILES] if self.student_kind(name) == "transformer" else []
        return [*hf, self.export(name, ONNX_FILE)]

    def export_card(self, name: str) -> str:
        """The model card: the hub README.md of hf/ (transformer students), else README.md beside model.onnx."""
        return self.export(name, "hf/README.md" if self.student_kind(name) == "transformer" else "README.md")

    def export_runtime(self, name: str) -> str:
        """ONNX size and one-thread real-time factors measured at export (outside the export: it varies)."""
        return f"{self.root}/runtime/{name}.json"

    def extraction_spec(self, teacher: str) -> dict[str, Any]:
        """A teacher's config entry less what only model cards read (`hub_id`): what its extraction depends on."""
        return {k: v for k, v in self.cfg["teachers"][teacher].items() if k != "hub_id"}

    def teacher_files(self, teacher: str | None) -> list[str]:
        """Files of this run a teacher's weights are: a `kind: hf` teacher whose `model` is a student's export
        folder (a student as teacher) needs that export; every other teacher, nothing the workflow makes."""
        spec = self.cfg["teachers"].get(teacher or "", {})
        if spec.get("kind") != "hf" or not spec.get("model"):
            return []
        model = os.path.normpath(spec["model"])
        return next((self.export_files(s) for s in self.cfg["students"]
                     if self.student_kind(s) == "transformer" and os.path.normpath(self.export(s, "hf")) == model), [])

    def codebook(self, teacher: str, view: str, k: int | str) -> str:
        """k-means codebook + cluster ids of a teacher's cached view (KD / DKD students)."""
        return f"{self.root}/codebooks/{teacher}/{view}/k{k}.npz"

    def text_embeddings(self, teacher: str, corpus: str) -> str:
        """Token and sentence embeddings of a corpus's transcripts by a text teacher (PAD students)."""
        return f"{self.root}/text/{teacher}/{corpus}.npz"

    def head(self, upstream: str, task: str) -> str:
        return f"{self.root}/downstream/{upstream}/{task}/head.pt"

    def score(self, upstream: str, task: str, condition: str) -> str:
        return f"{self.root}/scores/{upstream}/{task}/{condition}.json"

    def predictions(self, upstream: str, task: str, condition: str) -> str:
        """Per-item results beside the score JSON (pipeline/downstream/predictions.py): what the claims read."""
        return prediction_path(self.score(upstream, task, condition))

    def report(self, file: str) -> str:
        return f"{self.root}/report/{file}"

    def conditions(self, task: str, upstream: str | None = None) -> list[str]:
        """Conditions a task is scored on (for `upstream`, those of downstream.upstream_conditions.<upstream>
        where set): 'real' only where the real corpus has the task's labels in the same label set (tasks on the
        synthetic corpus; ASR text on any corpus)."""
        from pipeline.downstream.tasks import get_task

        ds = self.cfg["downstream"]
        wanted = ds.get("conditions", list(CONDITIONS))
        if upstream in ds.get("upstream_conditions", {}):
            wanted = [c for c in wanted if c in ds["upstream_conditions"][upstream]]
        column = get_task(task).column
        same_labels = self.task_corpus(task) == "synthetic" or column == "text"
        real_ok = "asterisk" in self.corpora and column in REAL_LABELS and same_labels
        return [c for c in wanted if c != "real" or real_ok]

    def upstreams(self, task: str | None = None) -> list[str]:
        """Upstreams evaluated on `task`: its own `upstreams`, else downstream.upstreams ("all" = every
        audio teacher and student)."""
        ds = self.cfg["downstream"]
        names = ds.get("upstreams", [])
        if task is not None:
            names = ds.get("tasks", {}).get(task, {}).get("upstreams", names)
        if names == "all":
            names = [t for t, spec in self.cfg["teachers"].items() if spec.get("kind") != "text"]
            names += list(self.cfg["students"])
        return list(names)

    def evaluations(self) -> dict[str, list[str]]:
        """upstream -> the tasks it is evaluated on (one `evaluate` job per upstream)."""
        out: dict[str, list[str]] = {}
        for task in self.cfg["downstream"].get("tasks", {}):
            for up in self.upstreams(task):
                out.setdefault(up, []).append(task)
        return out

    def task_sources(self, task: str, upstream: str) -> set[tuple[str, str]]:
        """(corpus, view) pairs `upstream`'s `task` reads: its clean view (head training) and every scored one."""
        return {self.task_source(task, c) for c in ["clean", *self.conditions(task, upstream)]}

    def feature_sources(self, upstream: str) -> list[tuple[str, str]]:
        """(corpus, view) pairs whose features `upstream`'s evaluation reads, over all its tasks."""
        return sorted(set().union(*(self.task_sources(t, upstream) for t in self.evaluations().get(upstream, []))))

    def head_sources(self, upstream: str) -> set[tuple[str, str]]:
        """(corpus, view) pairs `upstream`'s heads train on (train and dev splits): each task corpus's clean view."""
        return {self.task_source(t, "clean") for t in self.evaluations().get(upstream, [])}

    def distilled_from(self, upstream: str, corpus: str, view: str) -> bool:
        """Whether a student distils from `upstream`'s (corpus, view) features (its target view): read in full."""
        from pipeline.distill.inputs import teacher_list

        return any(upstream in teacher_list(spec["teacher"])
                   and (self.student_corpus(name), spec.get("target_view", "clean")) == (corpus, view)
                   for name, spec in self.cfg["students"].items())

    def scored_only(self, upstream: str, corpus: str, view: str) -> bool:
        """Whether only the test split of `upstream`'s (corpus, view) features is ever read: it is scored, no
        head trains on it and no student distils from it (its target view), so extraction can skip the other
        splits. A source nothing in the config reads (asked for by hand) is extracted whole."""
        if (corpus, view) not in self.feature_sources(upstream) or (corpus, view) in self.head_sources(upstream):
            return False
        return not self.distilled_from(upstream, corpus, view)

    def extraction_subset(self, upstream: str, corpus: str, view: str) -> dict[str, list[str]] | None:
        """The part of `upstream`'s (corpus, view) features that evaluation reads, when it is not all of it:
        the utterances (`splits`: ["test"] where only scored, else every split) labelled for one of the tasks
        read from this source (`labels`: their manifest columns), e.g. commands alone for an upstream scored on
        intents alone. None (extract in full) where a student distils from it or nothing in the config reads it."""
        if (corpus, view) not in self.feature_sources(upstream) or self.distilled_from(upstream, corpus, view):
            return None
        from pipeline.downstream.tasks import get_task

        tasks = [t for t in self.evaluations()[upstream] if (corpus, view) in self.task_sources(t, upstream)]
        splits = ["test"] if self.scored_only(upstream, corpus, view) else []
        return {"splits": splits, "labels": sorted({get_task(t).column for t in tasks})}

    def feature_shards(self, upstream: str) -> list[tuple[str, str, int]]:
        """(corpus, view, shard) of every store of those sources."""
        return [(c, v, i) for c, v in self.feature_sources(upstream) for i in range(self.num_shards(c))]

    def scores(self, upstream: str | None = None) -> list[str]:
        """Every score JSON of the run (or of one upstream)."""
        return [self.score(up, task, cond) for up, tasks in self.evaluations().items()
                if upstream in (None, up) for task in tasks for cond in self.conditions(task, up)]

    def prediction_files(self, upstream: str | None = None) -> list[str]:
        """The predictions file beside every score JSON of the run (or of one upstream), in `scores` order."""
        return [prediction_path(s) for s in self.scores(upstream)]

    def report_inputs(self) -> dict[str, list[str]]:
        """What the report reads: score JSONs and the predictions beside them, and each student's config.json,
        distillation curve and (when `export` is on) export runtime (ONNX size, real-time factors)."""
        students = list(self.cfg["students"])
        return {"scores": self.scores(), "predictions": self.prediction_files(),
                "students": [self.student(s, "config.json") for s in students],
                "curves": [self.student(s, "curve.tsv") for s in students],
                "runtimes": [self.export_runtime(s) for s in students] if self.exports else []}

    def all_outputs(self) -> list[str]:
        students = [self.student(s, f) for s in self.cfg["students"] for f in ("model.safetensors", "curve.png")]
        exports = [f for s in self.cfg["students"] for f in (*self.export_files(s), self.export_card(s))
                   if self.exports]
        return (students + exports + self.scores() + self.prediction_files()
                + [self.report(f) for f in (*REPORT_FILES, "report.html")])
