"""`python -m pipeline VERB --arg value`: each verb is a typed function whose signature is its CLI."""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import sys
import typing
from collections.abc import Callable

# verb -> "module:function"; modules are imported lazily so `--help` stays fast.
VERBS: dict[str, str] = {
    "synthesize": "pipeline.corpus.synthetic:synthesize_shard",
    "merge-manifests": "pipeline.corpus.synthetic:merge_shards",
    "prepare-asterisk": "pipeline.corpus.asterisk:prepare_asterisk",
    "screen-manifest": "pipeline.corpus.screen:screen_manifest",
    "prepare-corpus": "pipeline.corpus.adapters:prepare_corpus",
    "rir-bank": "pipeline.audio.rir:build_rir_bank",
    "noise-bank": "pipeline.audio.noise:build_noise_bank",
    "view-plan": "pipeline.corpus.views:make_view_plan",
    "render-view": "pipeline.corpus.views:render_view_shard",
    "extract": "pipeline.cache.extract:extract_shard",
    "extract-upstream": "pipeline.upstream_features:extract_upstream",
    "index": "pipeline.cache.index:build_index",
    "export-features": "pipeline.cache.hdf5:export_features",
    "train-student": "pipeline.distill.train:train_student",
    "codebook": "pipeline.distill.codebook:fit_codebook",
    "embed-text": "pipeline.teachers.text:embed_text",
    "train-head": "pipeline.downstream.run:train_head",
    "score": "pipeline.downstream.run:score",
    "evaluate": "pipeline.downstream.run:evaluate",
    "export": "pipeline.export.run:export_student",
    "model-card": "pipeline.export.run:write_card",
    "report": "pipeline.report.build:build_report",
    "render-report": "pipeline.report.browser:render_report",
}


def _resolve(spec: str) -> Callable:
    module, func = spec.split(":")
    return getattr(importlib.import_module(module), func)


def _parser_for(verb: str, func: Callable) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m pipeline {verb}", description=inspect.getdoc(func))
    hints = typing.get_type_hints(func)
    for name, param in inspect.signature(func).parameters.items():
        flag = "--" + name.replace("_", "-")
        kind = hints.get(name, str)
        origin = typing.get_origin(kind)
        if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
            origin = typing.get_origin(kind)
        required = param.default is inspect.Parameter.empty
        default = None if required else param.default
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        elif origin is list:
            (item,) = typing.get_args(kind)
            parser.add_argument(flag, nargs="*", type=item, required=required, default=default)
        else:
            ctor = kind if kind in (int, float) else str
            parser.add_argument(flag, type=ctor, required=required, default=default)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in VERBS:
        print(f"usage: python -m pipeline VERB [...]; verbs: {', '.join(VERBS)}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    func = _resolve(VERBS[argv[0]])
    args = _parser_for(argv[0], func).parse_args(argv[1:])
    func(**vars(args))
    return 0
