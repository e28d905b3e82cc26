"""Real-corpus adapters: one module per corpus with `prepare_<corpus>(corpus_dir, manifest_out, **options)`.

Each turns a corpus in its standard, as-distributed layout into a manifest (DESIGN.md "Contracts"),
referencing the audio in place. The registry maps adapter names (config `corpus.datasets.<name>.adapter`)
to those functions; `prepare_corpus` is the `python -m pipeline prepare-corpus` verb the workflow calls.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Callable
from typing import Any

ADAPTERS: dict[str, str] = {
    "librispeech": "pipeline.corpus.adapters.librispeech:prepare_librispeech",
    "speech_commands": "pipeline.corpus.adapters.speech_commands:prepare_speech_commands",
    "fluent_speech_commands": "pipeline.corpus.adapters.fluent_speech_commands:prepare_fluent_speech_commands",
    "voxceleb1": "pipeline.corpus.adapters.voxceleb1:prepare_voxceleb1",
    "iemocap": "pipeline.corpus.adapters.iemocap:prepare_iemocap",
    "musan": "pipeline.corpus.adapters.musan:prepare_musan",
    "tsv": "pipeline.corpus.adapters.tsv:prepare_tsv",
}
_POSITIONAL = ("corpus_dir", "manifest_out")


def get_adapter(name: str) -> Callable[..., Any]:
    """The prepare function registered as `name`; unknown names raise with the known ones."""
    if name not in ADAPTERS:
        raise KeyError(f"unknown corpus adapter '{name}' (known: {sorted(ADAPTERS)})")
    module, func = ADAPTERS[name].split(":")
    return getattr(importlib.import_module(module), func)


def adapter_options(name: str) -> list[str]:
    """The options (keyword arguments) adapter `name` accepts."""
    return [p for p in inspect.signature(get_adapter(name)).parameters if p not in _POSITIONAL]


def check_options(name: str, options: dict[str, Any], where: str = "options") -> None:
    """Raise ValueError naming `where` if `options` holds a key adapter `name` does not take."""
    allowed = adapter_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {unknown} for adapter '{name}'; allowed: {allowed}")


def check_corpus_config(config: dict[str, Any]) -> None:
    """Cross-checks of config `corpus` (after the schema): adapter options, and that `distill`, `tasks`
    and `noise` name corpora that exist and can serve that role. ValueError naming the key."""
    corpus = config["corpus"]
    datasets = corpus.get("datasets", {})
    for name, spec in datasets.items():
        check_options(spec["adapter"], spec.get("options", {}), f"corpus.datasets.{name}.options")
    speech = {n for n, s in datasets.items() if s["adapter"] != "musan"}
    if "synthetic" in corpus:
        speech.add("synthetic")
    roles = {"corpus.distill": corpus.get("distill", "synthetic")}
    roles |= {f"corpus.tasks.{t}": corpus.get("tasks", {}).get(t, "synthetic")
              for t in config.get("downstream", {}).get("tasks", {})}
    for key, name in roles.items():
        if name not in speech:
            hint = " (add a corpus.synthetic section, or name one of corpus.datasets)" if name == "synthetic" else ""
            raise ValueError(f"{key} is '{name}', not a configured speech corpus{hint}; known: {sorted(speech)}")
    noise = corpus.get("noise")
    if noise is not None and datasets.get(noise, {}).get("adapter") != "musan":
        musan = sorted(n for n, s in datasets.items() if s["adapter"] == "musan")
        raise ValueError(f"corpus.noise is '{noise}', not a dataset with adapter musan (configured: {musan})")


def run_adapter(name: str, corpus_dir: str, manifest_out: str, options: dict[str, Any] | None = None) -> Any:
    """Check the options, then run adapter `name`; returns the manifest DataFrame it wrote."""
    options = dict(options or {})
    check_options(name, options)
    return get_adapter(name)(corpus_dir, manifest_out, **options)


def prepare_corpus(manifest_out: str, config: str = "", corpus: str = "", adapter: str = "",
                   corpus_dir: str = "", options: str = "") -> None:
    """Write a real corpus's manifest: config `corpus.datasets.<corpus>` (as the workflow calls it; bad audio
    follows corpus.on_bad_audio unless the options say), or --adapter NAME --corpus-dir DIR [--options JSON]."""
    if config:
        from pipeline.config import load_config

        if adapter or corpus_dir or options:
            raise ValueError("give either --config and --corpus, or --adapter/--corpus-dir/--options, not both")
        cfg = load_config(config)
        datasets = cfg["corpus"].get("datasets", {})
        if corpus not in datasets:
            raise KeyError(f"{config}: corpus.datasets has no '{corpus}' (configured: {sorted(datasets)})")
        spec = datasets[corpus]
        options = {"on_bad_audio": cfg["corpus"]["on_bad_audio"], **spec.get("options", {})}
        run_adapter(spec["adapter"], spec["root"], manifest_out, options)
        return
    if not adapter or not corpus_dir:
        raise ValueError("without --config, --adapter and --corpus-dir are required")
    parsed = json.loads(options) if options else {}
    if not isinstance(parsed, dict):
        raise ValueError(f"--options must be a JSON object, got {options!r}")
    run_adapter(adapter, corpus_dir, manifest_out, parsed)
