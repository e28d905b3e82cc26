"""Any other data: a TSV of audio paths and labels imported as a manifest.

Columns: `path` (required; relative paths resolve against `corpus_dir`), `split` (train/dev/test;
or give `split` for all rows), optional `utt_id` (default: the relative path without its extension,
'/' -> '-'), `speaker`, and any of the label columns text, phones, keyword, intent, style. Other
columns are an error unless `keep_extra` (then they are carried into the manifest). Durations and
rates come from each file's header; audio of any rate or channel count is read as 16 kHz mono.
The pipeline's own columns `num_samples`, `sample_rate` and `source_rate` (a manifest written by this or
another tool) are checked against each file's header, and a line where they disagree stops the import:
`source_rate` is the file's rate; `sample_rate` is 16000 (as the pipeline lists it) or the file's rate;
`num_samples` counts samples at `sample_rate` (16000 when the column is absent). Empty cells are not checked.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from pipeline.audio.io import SAMPLE_RATE, AudioInfo
from pipeline.corpus.manifest import LABELS, SPLITS

from .common import CorpusError, probe_audio, require_dir, require_file, write_rows

log = logging.getLogger(__name__)
LISTED = ["num_samples", "sample_rate", "source_rate"]  # checked against the header, then written from it
KNOWN = ["utt_id", "path", "split", "speaker", *LABELS, *LISTED]


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
    listed = _listed(df, table)

    def check(row: dict, info: AudioInfo) -> None:
        line, values = listed[row["utt_id"]]
        problem = disagreement(values, info)
        if problem:
            raise CorpusError(f"{table}: line {line}: {row['path']}: {problem}; correct the value or leave the "
                              "column out (the header's values are used)")

    rows = probe_audio(df.to_dict("records"), f"tsv {table.name}", manifest_out, on_bad_audio, check)
    return write_rows(rows, manifest_out, f"tsv {table.name}", extra=extra)


def _listed(df: pd.DataFrame, table: Path) -> dict[str, tuple[int, dict[str, int]]]:
    """utt_id -> (TSV line, the non-empty LISTED values of that line as ints); CorpusError naming a bad cell."""
    out = {}
    for i, row in enumerate(df.to_dict("records")):
        values = {c: row[c].strip() for c in LISTED if c in row and row[c].strip()}
        bad = [c for c, v in values.items() if not v.isdigit() or int(v) == 0]
        if bad:
            raise CorpusError(f"{table}: line {i + 2}: {bad[0]} {values[bad[0]]!r} is not a positive whole number")
        out[row["utt_id"]] = (i + 2, {c: int(v) for c, v in values.items()})
    return out


def disagreement(listed: dict[str, int], info: AudioInfo) -> str | None:
    """How listed num_samples / sample_rate / source_rate disagree with a file's header, or None if they agree."""
    if listed.get("source_rate", info.sample_rate) != info.sample_rate:
        return f"source_rate {listed['source_rate']}, but the file is at {info.sample_rate} Hz"
    rate = listed.get("sample_rate", SAMPLE_RATE)
    if rate not in (SAMPLE_RATE, info.sample_rate):
        return (f"sample_rate {rate}, but the file is at {info.sample_rate} Hz (list its own rate, or 16000 with "
                "num_samples counted after resampling to 16 kHz)")
    want = info.frames if rate == info.sample_rate else info.num_samples
    if listed.get("num_samples", want) != want:
        return f"num_samples {listed['num_samples']}, but the file holds {want} samples at {rate} Hz"
    return None
