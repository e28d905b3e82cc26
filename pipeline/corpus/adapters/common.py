"""What every corpus adapter shares: layout checks with clear errors, audio screening, manifest writing.

Adapters reference the corpus's own audio files in place (FLAC or WAV, any rate, any channel count):
`pipeline.audio.io` down-mixes and resamples to 16 kHz on every read, so the manifest lists
`sample_rate` 16000 and `num_samples` = the length after that resampling (polyphase:
ceil(n * 16000 / rate)); the file's own rate is kept in the extra column `source_rate`, which
`load_listed_audio` checks when views are rendered. Only audio an adapter has to cut (Speech Commands'
`_silence_` slices) is written anew. Bad audio follows `on_bad_audio` (pipeline/corpus/screen.py):
'error' stops at the first bad file, 'skip' leaves it out and lists it in <manifest stem>.rejects.tsv.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from pipeline.audio.io import SAMPLE_RATE, AudioInfo, inspect_audio
from pipeline.corpus.manifest import LABELS, REQUIRED, read_manifest, write_manifest
from pipeline.corpus.screen import AudioScreen

log = logging.getLogger(__name__)


class CorpusError(ValueError):
    """A corpus that is missing files or breaks its documented layout; the message names the path."""


def require_dir(path: str | Path, what: str) -> Path:
    """`path` as a Path if it is a directory, else CorpusError naming it and what it should hold."""
    path = Path(path)
    if not path.is_dir():
        raise CorpusError(f"{path}: directory not found ({what})")
    return path


def require_file(path: str | Path, what: str) -> Path:
    """`path` as a Path if it is a file, else CorpusError naming it and what it should be."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: file not found ({what})")
    return path


def probe_audio(rows: list[dict[str, Any]], corpus: str, manifest_out: str | Path, on_bad_audio: str = "error",
                check: Callable[[dict[str, Any], AudioInfo], None] | None = None) -> list[dict[str, Any]]:
    """Screen each row's file (`inspect_audio`) and fill num_samples, sample_rate (16000) and source_rate.

    on_bad_audio 'error' raises on the first unreadable, truncated or too-short file; 'skip' drops it
    and lists it in the manifest's rejects file (never silently). The rejects file is always written.
    `check(row, info)` sees each admitted row before it is filled, and raises to stop."""
    screen = AudioScreen(on_bad_audio, manifest_out)
    kept = []
    for row in tqdm(rows, desc=f"{corpus}: check audio", unit="file", mininterval=5):
        info = screen.admit(row["utt_id"], row["path"], lambda r=row: inspect_audio(r["path"]))
        if info is not None:
            if check is not None:
                check(row, info)
            row.update(num_samples=info.num_samples, sample_rate=SAMPLE_RATE, source_rate=info.sample_rate)
            kept.append(row)
    screen.write()
    return kept


def write_rows(rows: Iterable[dict[str, Any]], manifest_out: str | Path, corpus: str,
               extra: Iterable[str] = ()) -> pd.DataFrame:
    """Validate and atomically write the manifest (contract columns, then `extra`); log counts per split.

    Returns the manifest as read back from disk (sorted by utt_id, as every reader sees it)."""
    columns = REQUIRED + LABELS + [c for c in ("source_rate", *extra) if c not in REQUIRED + LABELS]
    df = pd.DataFrame(list(rows), columns=columns)
    if df.empty:
        raise CorpusError(f"{corpus}: no utterances found; check the corpus directory and options")
    for col in LABELS + ["speaker", *extra]:
        df[col] = df[col].astype(object).fillna("").astype(str)
    write_manifest(df, manifest_out)
    df = read_manifest(manifest_out)
    counts = Counter(df["split"])
    hours = df["num_samples"].sum() / SAMPLE_RATE / 3600
    log.info("%s: %d utterances (%s), %.2f h -> %s", corpus, len(df),
             ", ".join(f"{s} {counts[s]}" for s in ("train", "dev", "test") if counts[s]), hours, manifest_out)
    return df
