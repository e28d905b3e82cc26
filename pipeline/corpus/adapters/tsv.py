"""Any other data: a TSV of audio paths and labels imported as a manifest.

Columns: `path` (required; relative paths resolve against `corpus_dir`), `split` (train/dev/test;
or give `split` for all rows), optional `utt_id` (default: the relative path without its extension,
'/' -> '-'), `speaker`, and any of the label columns text, phones, keyword, intent, style. Other
columns are an error unless `keep_extra` (then they are carried into the manifest). Durations and
rates come from each file's header; audio of any rate or channel count is read as 16 kHz mono.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from pipeline.corpus.manifest import LABELS, SPLITS

from .common import CorpusError, probe_audio, require_dir, require_file, write_rows

log = logging.getLogger(__name__)
KNOWN = ["utt_id", "path", "split", "speaker", *LABELS]


def prepare_tsv(corpus_dir: str, manifest_out: str, tsv: str = "manifest.tsv", split: str | None = None,
                keep_extra: bool = False, on_bad_audio: str = "error") -> pd.DataFrame:
    """Import `tsv` (relative to corpus_dir unless absolute) as a validated manifest; returns it."""
    root = require_dir(corpus_dir, "the folder the TSV's relative paths start from")
    table = require_file(root / tsv, "the TSV of path + labels to import")
    df = pd.read_csv(table, sep="\t", dtype=str, keep_default_na=False)
    if "path" not in df.columns:
        raise CorpusError(f"{table}: no 'path' column (columns: {list(df.columns)})")
    extra = [c for c in df.columns if c not in KNOWN]
    if extra and not keep_extra:
        raise CorpusError(f"{table}: unknown column(s) {extra}; known: {KNOWN} (keep_extra=true carries others)")
    if "split" not in df.columns:
        if split is None:
            raise CorpusError(f"{table}: no 'split' column; add one or give split=train|dev|test for all rows")
        df["split"] = split
    bad = df.index[~df["split"].isin(SPLITS)].tolist()
    if bad:
        raise CorpusError(f"{table}: line {bad[0] + 2}: split {df['split'][bad[0]]!r} is not one of {SPLITS}"
                          f" ({len(bad)} such line(s))")
    empty = df.index[df["path"].str.strip() == ""].tolist()
    if empty:
        raise CorpusError(f"{table}: line {empty[0] + 2}: empty path ({len(empty)} such line(s))")
    paths = [p if Path(p).is_absolute() else root / p for p in df["path"]]
    for line, p in enumerate(paths, 2):
        if not Path(p).is_file():
            raise CorpusError(f"{p}: audio not found (line {line} of {table})")
    if "utt_id" not in df.columns:
        df["utt_id"] = [str(Path(p).with_suffix("")).strip("/").replace("/", "-") for p in df["path"]]
    dup = df["utt_id"][df["utt_id"].duplicated()].tolist()
    if dup:
        raise CorpusError(f"{table}: duplicate utt_id(s) {dup[:5]}; give a unique utt_id column")
    df["path"] = [str(p) for p in paths]
    if "speaker" not in df.columns:
        df["speaker"] = ""
    rows = probe_audio(df.to_dict("records"), f"tsv {table.name}", manifest_out, on_bad_audio)
    return write_rows(rows, manifest_out, f"tsv {table.name}", extra=extra)
