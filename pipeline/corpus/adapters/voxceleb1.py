"""VoxCeleb1 as SUPERB speaker identification (1,251 speakers, the official identification split).

Layout: <root>/wav/<speaker id>/<YouTube video id>/<nnnnn>.wav (16 kHz; the dev and test archives
unpacked into one wav/ folder) and iden_split.txt, lines "<1|2|3> id10001/1zcIwhmdeo4/00001.wav"
(1 train, 2 dev, 3 test). The split file is looked for in <root> unless `split_file` names it.
Every listed file must exist; WAV files on disk that the split file does not list are counted and logged.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from .common import CorpusError, probe_audio, require_dir, require_file, write_rows

log = logging.getLogger(__name__)
SPLIT_CODES = {"1": "train", "2": "dev", "3": "test"}


def prepare_voxceleb1(corpus_dir: str, manifest_out: str, split_file: str | None = None,
                      on_bad_audio: str = "error") -> pd.DataFrame:
    """Write the VoxCeleb1 SID manifest (speaker = VoxCeleb id) from iden_split.txt; returns it."""
    root = require_dir(corpus_dir, "VoxCeleb1 with wav/ and iden_split.txt")
    wav_dir = require_dir(root / "wav", "VoxCeleb1 audio: wav/<speaker>/<video>/<n>.wav")
    listing = require_file(split_file or root / "iden_split.txt", "VoxCeleb1 identification split (iden_split.txt)")
    rows: list[dict[str, Any]] = []
    listed = set()
    for n, line in enumerate(listing.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or parts[0] not in SPLIT_CODES or parts[1].count("/") != 2:
            raise CorpusError(f"{listing}:{n}: expected '<1|2|3> idXXXXX/<video>/<n>.wav', got {line!r}")
        rel = parts[1]
        if rel in listed:
            raise CorpusError(f"{listing}:{n}: {rel} is listed twice")
        listed.add(rel)
        path = wav_dir / rel
        if not path.is_file():
            raise CorpusError(f"{path}: audio not found (listed on line {n} of {listing})")
        speaker = rel.split("/")[0]
        rows.append({"utt_id": "vox1-" + rel.removesuffix(".wav").replace("/", "-"), "path": str(path),
                     "split": SPLIT_CODES[parts[0]], "speaker": speaker})
    on_disk = (p.relative_to(wav_dir).as_posix() for p in wav_dir.rglob("*.wav"))
    unlisted = sorted(rel for rel in on_disk if rel not in listed)
    if unlisted:
        log.warning("voxceleb1: %d WAV file(s) under %s are not in %s and are left out, e.g. %s",
                    len(unlisted), wav_dir, listing, unlisted[:3])
    return write_rows(probe_audio(rows, "voxceleb1", manifest_out, on_bad_audio), manifest_out, "voxceleb1")

