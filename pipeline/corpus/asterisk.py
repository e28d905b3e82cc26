"""Real speech for testing: the Asterisk English prompts (one speaker, Allison) from Debian packages.

Audio: `asterisk-core-sounds-en-g722` (G.722, 16 kHz, decoded with ffmpeg). Transcripts: the
`core-sounds-en.txt` list shipped by `asterisk-core-sounds-en` ("name: transcript" lines).
Digits 0-9 become keywords zero..nine, letters and NATO words `_unknown_`, one second of recorded
silence `_silence_`, and the shortest multi-word phrases ASR sentences. Everything is split "test".
"""

from __future__ import annotations

import glob
import gzip
import logging
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.audio.io import MIN_SAMPLES, SAMPLE_RATE, AudioError, load_audio, write_wav
from pipeline.config import load_config
from pipeline.corpus.manifest import write_manifest
from pipeline.corpus.screen import AudioScreen
from pipeline.corpus.synthetic import COLUMNS
from pipeline.corpus.text import DIGITS, SILENCE, UNKNOWN, ipa_phones, normalise_text

log = logging.getLogger(__name__)
SOUNDS = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
DOC_GLOB = "/usr/share/doc/asterisk-core-sounds-en*/core-sounds-en.txt*"
SPEAKER = "asterisk-allison"
MAX_PHRASES = 60
_WORD_DIRS = ("digits/", "letters/", "phonetic/", "silence/")
_NUMBERS = {str(i): w for i, w in enumerate(DIGITS)} | {"*": "star", "#": "pound"}


class AsteriskError(RuntimeError):
    """Missing Asterisk sounds or transcripts; the message says which package to install."""


def transcript_file() -> Path:
    """The installed core-sounds-en.txt(.gz), or AsteriskError naming the package to install."""
    found = sorted(glob.glob(DOC_GLOB))
    if not found:
        raise AsteriskError(f"no Asterisk transcripts at {DOC_GLOB}: apt-get install asterisk-core-sounds-en")
    return Path(found[0])


def parse_transcripts(path: str | Path) -> dict[str, str]:
    """Map prompt name (e.g. "digits/7", "hello-world") to its transcript from "name: transcript" lines."""
    path = Path(path)
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    out = {}
    for line in raw.decode("utf-8", errors="replace").splitlines():
        m = re.match(r"^([\w./-]+):\s*(.*\S)\s*$", line)
        if m and not line.startswith(";"):
            out[m.group(1)] = m.group(2)
    return out


def phrase_text(transcript: str) -> str | None:
    """ASR text of a phrase prompt; None for non-speech, partial or spelled ones ("[beep]", "Press ...")."""
    if re.search(r"[\[\](){}]|\.\.\.|…", transcript):
        return None
    spoken = re.sub(r"[0-9*#]", lambda m: f" {_NUMBERS[m.group(0)]} ", transcript.replace("-", " "))
    text = normalise_text(spoken)
    if any(len(w) == 1 and w not in ("a", "i") for w in text.split()):
        return None  # spelled-out acronyms ("NBS", "H.323") have no reliable word transcript
    return text or None


def select_prompts(transcripts: dict[str, str], sounds: Path = SOUNDS) -> list[dict[str, Any]]:
    """The prompts to use, each with utt_id, source file, text, keyword and family."""
    rows = []
    for i, word in enumerate(DIGITS):
        rows.append(_row(f"digits/{i}", transcripts.get(f"digits/{i}", word), word, "keyword"))
    for name in sorted(transcripts):
        if name.startswith(("letters/", "phonetic/")):
            text = normalise_text(re.sub(r"\[.*?\]", "", transcripts[name]).replace("-", " "))
            if text:
                rows.append(_row(name, text, UNKNOWN, "keyword"))
    rows.append(_row("silence/1", "", SILENCE, "keyword"))
    phrases = [(len(t), n, t) for n, raw in transcripts.items()
               if not n.startswith(_WORD_DIRS) and (t := phrase_text(raw)) and len(t.split()) >= 3]
    rows += [_row(n, t, "", "sentence") for _, n, t in sorted(phrases)[:MAX_PHRASES]]
    for row in rows:
        row["source"] = sounds / f"{row['name']}.g722"
    return [r for r in rows if r["source"].exists()]


def _row(name: str, text: str, keyword: str, family: str) -> dict[str, Any]:
    utt = "ast-" + re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")
    return {"utt_id": utt, "name": name, "text": text, "keyword": keyword, "family": family}


def decode_g722(path: str | Path, min_samples: int = 400) -> np.ndarray:
    """Decode one G.722 file to 16 kHz mono float32 with ffmpeg; AudioError naming it if it cannot be used."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise AsteriskError("ffmpeg not found (needed to decode G.722): run scripts/bootstrap.sh")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "x.wav"
        proc = subprocess.run([exe, "-v", "error", "-nostdin", "-y", "-f", "g722", "-i", str(path),
                               "-ar", str(SAMPLE_RATE), "-ac", "1", str(out)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise AudioError(f"{path}: ffmpeg cannot decode it as G.722 ({proc.stderr.strip()[-200:]}); "
                             "reinstall asterisk-core-sounds-en-g722", "unreadable")
        try:
            return load_audio(out, min_samples=min_samples)
        except AudioError as err:  # name the source file, not ffmpeg's temporary output
            raise AudioError(str(err).replace(str(out), str(path)), err.reason) from err


def prepare_asterisk(config: str, out_dir: str, manifest_out: str) -> None:
    """Decode the selected Asterisk prompts to out_dir/<utt_id>.wav and write their manifest (split test)."""
    cfg = load_config(config)
    screen = AudioScreen(cfg["corpus"]["on_bad_audio"], manifest_out)
    rows = []
    if cfg["corpus"].get("real", {}).get("asterisk", True):
        if not SOUNDS.is_dir():
            raise AsteriskError(f"{SOUNDS} missing: apt-get install asterisk-core-sounds-en-g722")
        for p in select_prompts(parse_transcripts(transcript_file())):
            wav = screen.admit(p["utt_id"], p["source"], lambda p=p: decode_g722(p["source"], MIN_SAMPLES))
            if wav is None:
                continue
            path = Path(out_dir) / f"{p['utt_id']}.wav"
            write_wav(path, wav)
            rows.append({"utt_id": p["utt_id"], "path": str(path), "num_samples": len(wav),
                         "sample_rate": SAMPLE_RATE, "split": "test", "speaker": SPEAKER, "text": p["text"],
                         "phones": ipa_phones(p["text"]) if p["text"] else "", "keyword": p["keyword"],
                         "intent": "", "style": "", "family": p["family"]})
    else:
        log.info("corpus.real.asterisk is false: writing an empty manifest")
    screen.write()
    write_manifest(pd.DataFrame(rows, columns=COLUMNS), manifest_out)
    log.info("asterisk: %d utterances -> %s", len(rows), manifest_out)
