"""One job per upstream that writes every feature store its downstream evaluation reads, paths from the Layout.

Above the cache stage: it needs the workflow's Layout, which knows every stage's paths.
"""

from __future__ import annotations

import torch

from pipeline.cache.extract import extract_store, subset_utterances, upstream_spec
from pipeline.cache.index import build_index
from pipeline.config import load_config
from pipeline.teachers.registry import load_upstream
from pipeline.workflow import Layout


def extract_upstream(config: str, upstream: str, checkpoint: str = "", threads: int = 0) -> None:
    """Every feature store and index `upstream`'s downstream evaluation reads, from one model load.

    For students: a student forward over a shard takes about as long as starting Python and importing torch,
    so one job per student (not per shard) writes all its stores; paths from the workflow's Layout.
    Each source holds what evaluation reads (Layout.extraction_subset): the utterances labelled for the tasks
    scored on it, and of views that are only scored (distorted, real) their test split alone (a shard without any
    of them whole); heads train on the clean view's train and dev splits."""
    if threads:
        torch.set_num_threads(threads)
    cfg = load_config(config)
    layout = Layout(cfg)
    model = load_upstream(upstream, upstream_spec(cfg, upstream, checkpoint), device="auto")
    for corpus, view in layout.feature_sources(upstream):
        subset = layout.extraction_subset(upstream, corpus, view)
        keep = None if subset is None else subset_utterances(layout.manifest(corpus), **subset)
        stores = [layout.feature_store(upstream, corpus, view, i) for i in range(layout.num_shards(corpus))]
        for i, out in enumerate(stores):
            extract_store(cfg, upstream, model, layout.view_store(corpus, view, i), out, checkpoint, keep)
        build_index(stores, layout.feature_index(upstream, corpus, view))
