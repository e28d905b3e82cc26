"""Fluent Speech Commands as SUPERB intent classification: intent = "action|object|location".

Layout: fluent_speech_commands_dataset/data/{train,valid,test}_data.csv (columns path, speakerId,
transcription, action, object, location, after an unnamed index column) and
wavs/speakers/<speakerId>/<uuid>.wav, `path` relative to the dataset folder. The intent string keeps the
CSV's values as they are ("change language|Chinese|none"), the format of the synthetic corpus's
`pipeline.corpus.text.INTENTS`; text is the normalised transcription.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.corpus.text import normalise_text

from .common import CorpusError, probe_audio, require_dir, require_file, write_rows

SPLITS = {"train": "train_data.csv", "dev": "valid_data.csv", "test": "test_data.csv"}
COLUMNS = ["path", "speakerId", "transcription", "action", "object", "location"]


def _root(corpus_dir: str | Path) -> Path:
    root = require_dir(corpus_dir, "fluent_speech_commands_dataset with data/ and wavs/")
    if not (root / "data").is_dir() and (root / "fluent_speech_commands_dataset" / "data").is_dir():
        root = root / "fluent_speech_commands_dataset"
    return root


def prepare_fluent_speech_commands(corpus_dir: str, manifest_out: str, on_bad_audio: str = "error") -> pd.DataFrame:
    """Write the FSC manifest (intent, text, speaker; train/valid/test CSVs -> train/dev/test); returns it."""
    root = _root(corpus_dir)
    rows: list[dict[str, Any]] = []
    for split, name in SPLITS.items():
        csv = require_file(root / "data" / name, f"Fluent Speech Commands' {split} list")
        df = pd.read_csv(csv, dtype=str, keep_default_na=False)
        missing = [c for c in COLUMNS if c not in df.columns]
        if missing:
            raise CorpusError(f"{csv}: missing column(s) {missing}; expected {COLUMNS}")
        for i, r in enumerate(df[COLUMNS].itertuples(index=False), 2):
            path = root / r.path
            if not path.is_file():
                raise CorpusError(f"{path}: audio not found (listed on line {i} of {csv})")
            empty = [c for c in ("action", "object", "location") if not getattr(r, c).strip()]
            if empty:
                raise CorpusError(f"{csv}:{i}: empty slot(s) {empty}; FSC uses 'none' for an absent slot")
            rows.append({"utt_id": f"fsc-{r.speakerId}-{Path(r.path).stem}", "path": str(path), "split": split,
                         "speaker": r.speakerId, "text": normalise_text(r.transcription),
                         "intent": f"{r.action.strip()}|{r.object.strip()}|{r.location.strip()}"})
    seen: dict[str, str] = {}
    for row in rows:
        if row["utt_id"] in seen:
            raise CorpusError(f"{row['path']} is listed twice (in the {seen[row['utt_id']]} and {row['split']} "
                              "lists); remove the duplicate line")
        seen[row["utt_id"]] = row["split"]
    rows = probe_audio(rows, "fluent_speech_commands", manifest_out, on_bad_audio)
    return write_rows(rows, manifest_out, "fluent_speech_commands")
