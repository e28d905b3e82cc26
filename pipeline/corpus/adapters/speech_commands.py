"""Speech Commands v0.01 as SUPERB's 12-class keyword spotting: 10 words, `_unknown_`, `_silence_`.

Layout (speech_commands_v0.01.tar.gz): <root>/<word>/<speaker hash>_nohash_<n>.wav (1 s, 16 kHz),
validation_list.txt and testing_list.txt (paths relative to <root>), and _background_noise_/*.wav.
Splits: the two lists give dev and test, everything else is train. SUPERB scores KS on the separate
speech_commands_test_set_v0.01 (<test_dir>/<class>/<file>.wav with `_unknown_` and `_silence_` folders);
with `test_dir` the test split comes from there and testing_list.txt's clips are left out (logged).
`_silence_`: every background-noise file is cut into 1 s slices (written to `output_dir`), the slices of
each file split by position (the first `silence_split[0]` train, then dev, then test), so no second of
noise is in two splits. Labels: `keyword` (the 12 classes) and `text` (the word spoken).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.audio.io import SAMPLE_RATE, load_audio, write_wav
from pipeline.corpus.text import SILENCE, UNKNOWN

from .common import CorpusError, probe_audio, require_dir, require_file, write_rows

log = logging.getLogger(__name__)
WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
CLASSES = [*WORDS, UNKNOWN, SILENCE]
BACKGROUND = "_background_noise_"
_NAME = re.compile(r"^([0-9a-f]+)_nohash_(\d+)\.wav$")


def _read_list(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _speech_row(rel: str, path: Path, split: str, prefix: str) -> dict[str, Any]:
    """A row for <word>/<hash>_nohash_<n>.wav (or the test set's _unknown_/<word>_<hash>_nohash_<n>.wav)."""
    folder, name = rel.split("/")
    word = folder
    if folder == UNKNOWN:  # test set: the spoken word prefixes the file name
        word, _, name = name.partition("_")
    m = _NAME.match(name)
    if not m:
        raise CorpusError(f"{path}: file name does not follow <hash>_nohash_<n>.wav")
    label = word if word in WORDS else UNKNOWN
    return {"utt_id": f"{prefix}-{word}-{m.group(1)}-{m.group(2)}", "path": str(path), "split": split,
            "speaker": m.group(1), "keyword": label, "text": word}


def silence_slices(background: Path, output_dir: Path, fractions: list[float],
                   splits: tuple[str, ...]) -> list[dict[str, Any]]:
    """Cut each background-noise file into 1 s slices under output_dir; rows split by position in the file."""
    files = sorted(background.glob("*.wav"))
    if not files:
        raise CorpusError(f"{background}: no background-noise WAV files (needed for the _silence_ class)")
    total = sum(fractions[: len(splits)])
    rows = []
    for f in files:
        wav = load_audio(f)
        n = len(wav) // SAMPLE_RATE
        if n == 0:
            raise CorpusError(f"{f}: shorter than 1 s, cannot give a _silence_ slice")
        bounds = [round(n * sum(fractions[:k + 1]) / total) for k in range(len(splits))]
        for i in range(n):
            split = splits[next(k for k, b in enumerate(bounds) if i < b)]
            path = output_dir / SILENCE / f"{f.stem}_{i:03d}.wav"
            write_wav(path, wav[i * SAMPLE_RATE:(i + 1) * SAMPLE_RATE])
            rows.append({"utt_id": f"sc-silence-{f.stem}-{i:03d}", "path": str(path), "split": split,
                         "speaker": "", "keyword": SILENCE, "text": ""})
    return rows


def prepare_speech_commands(corpus_dir: str, manifest_out: str, output_dir: str | None = None,
                            test_dir: str | None = None, silence_split: list[float] | None = None,
                            on_bad_audio: str = "error") -> pd.DataFrame:
    """Write the 12-class KS manifest of Speech Commands v0.01 (see the module doc); returns it.

    output_dir: where the 1 s `_silence_` slices go (default: beside the manifest, in wav/)."""
    root = require_dir(corpus_dir, "speech_commands_v0.01 with one folder per word")
    fractions = list(silence_split or [0.8, 0.1, 0.1])
    if len(fractions) != 3 or min(fractions) < 0 or sum(fractions) <= 0:
        raise ValueError(f"silence_split must be three non-negative fractions (train, dev, test), got {fractions}")
    dev = set(_read_list(require_file(root / "validation_list.txt", "Speech Commands' dev list")))
    test = set(_read_list(require_file(root / "testing_list.txt", "Speech Commands' test list")))
    words = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("_"))
    missing = [w for w in WORDS if w not in words]
    if missing:
        raise CorpusError(f"{root}: word folder(s) {missing} not found; is this Speech Commands v0.01?")
    on_disk = {f"{w}/{p.name}" for w in words for p in (root / w).glob("*.wav")}
    for name, listed in (("validation_list.txt", dev), ("testing_list.txt", test)):
        absent = sorted(listed - on_disk)
        if absent:
            raise CorpusError(f"{root / name}: {len(absent)} listed file(s) not found, e.g. {root / absent[0]}")
    rows, dropped = [], 0
    for rel in sorted(on_disk):
        split = "dev" if rel in dev else "test" if rel in test else "train"
        if split == "test" and test_dir:
            dropped += 1
            continue
        rows.append(_speech_row(rel, root / rel, split, "sc"))
    if dropped:
        log.info("speech_commands: %d testing_list.txt clips left out: the test split comes from %s (SUPERB)",
                 dropped, test_dir)
    out = Path(output_dir) if output_dir else Path(manifest_out).parent / "wav"
    background = require_dir(root / BACKGROUND, "background-noise recordings for _silence_")
    rows += silence_slices(background, out, fractions,
                           ("train", "dev") if test_dir else ("train", "dev", "test"))
    if test_dir:
        rows += _test_set(require_dir(test_dir, "speech_commands_test_set_v0.01 with one folder per class"))
    rows = probe_audio(rows, "speech_commands", manifest_out, on_bad_audio)
    return write_rows(rows, manifest_out, "speech_commands")


def _test_set(test_root: Path) -> list[dict[str, Any]]:
    """Rows of the separate SUPERB test set: <class>/<file>.wav, class in the 12 KS classes."""
    folders = sorted(d.name for d in test_root.iterdir() if d.is_dir())
    foreign = [f for f in folders if f not in CLASSES]
    if foreign or not folders:
        raise CorpusError(f"{test_root}: folders {foreign or folders} are not the 12 KS classes {CLASSES}")
    rows = []
    for folder in folders:
        for path in sorted((test_root / folder).glob("*.wav")):
            if folder == SILENCE:
                rows.append({"utt_id": f"sct-silence-{path.stem}", "path": str(path), "split": "test",
                             "speaker": "", "keyword": SILENCE, "text": ""})
            else:
                rows.append(_speech_row(f"{folder}/{path.name}", path, "test", "sct"))
    return rows
