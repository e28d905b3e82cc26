"""IEMOCAP as SUPERB emotion recognition: 4 classes, leave-one-session-out folds.

Layout (IEMOCAP_full_release): Session1..Session5/sentences/wav/<dialog>/<utterance>.wav and
Session*/dialog/EmoEvaluation/<dialog>.txt, whose turn lines read
"[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]". Classes as in SUPERB
(s3prl `IEMOCAP_preprocess.py`): neu, hap (hap and exc merged), ang, sad; the other labels (fru, sur,
fea, dis, oth, xxx) are left out and counted in the log. The fold's `test_session` is the test split; dev
is `dev_fraction` of the other sessions' utterances, drawn per class with `seed`; the rest is train.
The label goes to the `style` column (the ER task's column); speaker = session + the speaker's gender
(Ses01F, Ses01M); text comes from dialog/transcriptions/<dialog>.txt where present.
macOS resource files ("._*") that some copies carry are ignored.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.corpus.text import normalise_text

from .common import CorpusError, probe_audio, require_dir, write_rows

log = logging.getLogger(__name__)
CLASSES = {"neu": "neu", "hap": "hap", "exc": "hap", "ang": "ang", "sad": "sad"}
SESSIONS = range(1, 6)
_TURN = re.compile(r"^\[[\d.]+ - [\d.]+\]\t(\S+)\t(\S+)\t")
_TRANSCRIPT = re.compile(r"^(Ses\S+) \[[\d.]+-[\d.]+\]: ?(.*)$")


def read_evaluation(path: Path) -> list[tuple[str, str]]:
    """(utterance id, emotion label) of every turn line of one EmoEvaluation file."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.startswith("["):
            continue
        m = _TURN.match(line)
        if not m:
            raise CorpusError(f"{path}:{n}: turn line does not read '[start - end]<TAB>utt<TAB>label<TAB>[v, a, d]'")
        out.append((m.group(1), m.group(2)))
    return out


def read_transcripts(session_dir: Path) -> dict[str, str]:
    """Utterance id -> normalised transcript from dialog/transcriptions/*.txt (empty if the folder is absent)."""
    out = {}
    folder = session_dir / "dialog" / "transcriptions"
    for path in sorted(folder.glob("*.txt")) if folder.is_dir() else []:
        if path.name.startswith("._"):
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            m = _TRANSCRIPT.match(line.strip())
            if m:
                out[m.group(1)] = normalise_text(m.group(2))
    return out


def _speaker(utt: str) -> str:
    gender = utt.rsplit("_", 1)[-1][:1]
    if gender not in ("F", "M"):
        raise CorpusError(f"utterance id {utt!r} does not end in _F<nnn> or _M<nnn>")
    return utt[:5] + gender


def prepare_iemocap(corpus_dir: str, manifest_out: str, test_session: int = 1, dev_fraction: float = 0.2,
                    seed: int = 0, on_bad_audio: str = "error") -> pd.DataFrame:
    """Write the 4-class ER manifest of one leave-one-session-out fold (test = `test_session`); returns it."""
    if test_session not in SESSIONS:
        raise ValueError(f"test_session must be 1..5, got {test_session}")
    if not 0.0 <= dev_fraction < 1.0:
        raise ValueError(f"dev_fraction must be in [0, 1), got {dev_fraction}")
    root = require_dir(corpus_dir, "IEMOCAP_full_release with Session1..Session5")
    if not (root / "Session1").is_dir() and (root / "IEMOCAP_full_release" / "Session1").is_dir():
        root = root / "IEMOCAP_full_release"
    rows: list[dict[str, Any]] = []
    left_out: Counter[str] = Counter()
    sessions = {s: require_dir(root / f"Session{s}", "one of IEMOCAP's five sessions") for s in SESSIONS}
    for s, session in sessions.items():
        evaluation = require_dir(session / "dialog" / "EmoEvaluation", "the per-dialog emotion labels")
        wav_dir = require_dir(session / "sentences" / "wav", "the per-utterance audio")
        texts = read_transcripts(session)
        labelled = set()
        for path in sorted(evaluation.glob("*.txt")):
            if path.name.startswith("._"):
                continue
            for utt, label in read_evaluation(path):
                labelled.add(utt)
                if label not in CLASSES:
                    left_out[label] += 1
                    continue
                wav = wav_dir / utt.rsplit("_", 1)[0] / f"{utt}.wav"
                if not wav.is_file():
                    raise CorpusError(f"{wav}: audio not found for {utt} (labelled in {path})")
                rows.append({"utt_id": utt, "path": str(wav), "speaker": _speaker(utt), "style": CLASSES[label],
                             "text": texts.get(utt, ""), "session": s,
                             "split": "test" if s == test_session else "train"})
        unlabelled = [p for p in wav_dir.rglob("*.wav") if not p.name.startswith("._") and p.stem not in labelled]
        if unlabelled:
            log.warning("iemocap: %d WAV file(s) in %s have no EmoEvaluation line and are left out, e.g. %s",
                        len(unlabelled), wav_dir, unlabelled[0])
    if not rows:
        raise CorpusError(f"{root}: no utterance with one of the labels {sorted(CLASSES)}")
    log.info("iemocap: left out %d utterance(s) with other labels: %s", sum(left_out.values()), dict(left_out))
    _draw_dev(rows, dev_fraction, np.random.default_rng([seed, test_session]))
    rows = probe_audio(rows, "iemocap", manifest_out, on_bad_audio)
    return write_rows(rows, manifest_out, "iemocap", extra=("session",))


def _draw_dev(rows: list[dict[str, Any]], fraction: float, rng: np.random.Generator) -> None:
    """Move round(fraction * n) training utterances of each class to dev (sorted ids, seeded permutation)."""
    for label in sorted({r["style"] for r in rows}):
        train = sorted((r for r in rows if r["split"] == "train" and r["style"] == label), key=lambda r: r["utt_id"])
        for i in rng.permutation(len(train))[: round(fraction * len(train))]:
            train[i]["split"] = "dev"
