"""MUSAN (openslr 17) as a manifest of noise sources with a `type` column (noise, music, speech).

Layout: musan/{noise,music,speech}/<source>/<type>-<source>-<nnnn>.wav (16 kHz mono), plus an
ANNOTATIONS file per music source ("<file stem> <genres> <vocals Y/N> <musician...>"). Every row is
split "train" (the manifest contract wants a split; MUSAN is not an evaluation corpus), `type` is the
part, `source` the sub-folder; music rows carry `genres` and `vocals` where ANNOTATIONS list them.
Used as a distortion source: name this corpus in config `corpus.noise` and the noise bank draws its
out-of-domain `sfx` sources from MUSAN noise and its `music` sources from MUSAN music
(`pipeline.audio.noise.build_noise_bank`), instead of the Debian sound effects and hold music.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from .common import CorpusError, probe_audio, require_dir, write_rows

log = logging.getLogger(__name__)
PARTS = ("noise", "music", "speech")


def read_annotations(path: Path) -> dict[str, tuple[str, str]]:
    """File stem -> (genres, vocals) of a music ANNOTATIONS file."""
    out = {}
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 3:
            raise CorpusError(f"{path}:{n}: expected '<file> <genres> <Y|N> <musician>', got {line!r}")
        out[parts[0]] = (parts[1], parts[2])
    return out


def prepare_musan(corpus_dir: str, manifest_out: str, parts: list[str] | None = None,
                  on_bad_audio: str = "error") -> pd.DataFrame:
    """Write the MUSAN manifest (type, source, genres, vocals) of `parts` (default all three); returns it."""
    parts = list(parts or PARTS)
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"parts: unknown MUSAN part(s) {unknown}; known: {list(PARTS)}")
    root = require_dir(corpus_dir, "musan with noise/, music/ and speech/")
    if not (root / parts[0]).is_dir() and (root / "musan" / parts[0]).is_dir():
        root = root / "musan"
    rows: list[dict[str, Any]] = []
    for part in parts:
        sources = sorted(d for d in require_dir(root / part, f"MUSAN {part} recordings").iterdir() if d.is_dir())
        for source in sources:
            notes = read_annotations(source / "ANNOTATIONS") if (source / "ANNOTATIONS").is_file() else {}
            if part == "music" and not notes:
                log.warning("musan: %s has no ANNOTATIONS; its genres and vocals are left empty", source)
            for wav in sorted(source.glob("*.wav")):
                genres, vocals = notes.get(wav.stem, ("", ""))
                rows.append({"utt_id": f"musan-{wav.stem}", "path": str(wav), "split": "train", "speaker": "",
                             "type": part, "source": source.name, "genres": genres, "vocals": vocals})
        if not any(r["type"] == part for r in rows):
            raise CorpusError(f"{root / part}: no <source>/*.wav recordings")
    rows = probe_audio(rows, "musan", manifest_out, on_bad_audio)
    return write_rows(rows, manifest_out, "musan", extra=("type", "source", "genres", "vocals"))
