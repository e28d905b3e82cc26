"""Phoneme transcriptions for real corpora: a pronunciation lexicon (ARPAbet) or espeak-ng IPA in batches.

Lexicon files: CMUdict (`WORD  AH0 B ...`, `;;;` comments, variants `WORD(2)`) and LibriSpeech's
`librispeech-lexicon.txt` (`WORD<TAB>AH0 B ...`) share one format: a word, then its phones. The first
pronunciation of a word is used; stress digits are dropped (39 phones) unless asked for (`keep_stress`: s3prl's
SUPERB PR, downstream/ctc/vocab/phoneme.txt, keeps them).
espeak-ng: one utterance per input line, many lines per call; its output, tokenised exactly as
`pipeline.corpus.text.ipa_phones`, equals a call per utterance (checked in the tests). Lines longer than
MAX_WORDS are phonemised in chunks of at most MAX_WORDS words, since espeak-ng splits long clauses itself.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from .common import CorpusError

log = logging.getLogger(__name__)
MAX_WORDS = 60
BATCH_LINES = 200
_VARIANT = re.compile(r"\(\d+\)$")


def read_lexicon(path: str | Path, keep_stress: bool = False) -> dict[str, list[str]]:
    """Upper-cased word -> its first pronunciation (ARPAbet phones) from a CMUdict-format lexicon file."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: lexicon file not found (CMUdict or librispeech-lexicon.txt format)")
    lexicon: dict[str, list[str]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip() or line.startswith(";;;") or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) < 2:
            raise CorpusError(f"{path}:{n}: expected 'WORD PHONE ...', got {line!r}")
        word = _VARIANT.sub("", parts[0]).upper()
        phones = parts[1:] if keep_stress else [re.sub(r"\d+$", "", p) for p in parts[1:]]
        lexicon.setdefault(word, phones)
    if not lexicon:
        raise CorpusError(f"{path}: no pronunciations in the lexicon file")
    return lexicon


def lexicon_phones(text: str, lexicon: dict[str, list[str]]) -> tuple[str, list[str]]:
    """(space-separated phones of `text`, its out-of-lexicon words); phones are '' if any word is missing."""
    words = text.upper().split()
    oov = [w for w in words if w not in lexicon]
    if oov:
        return "", oov
    return " ".join(p for w in words for p in lexicon[w]), []


def _tokens(ipa: str) -> list[str]:
    """Tokenise espeak-ng --ipa --sep=_ output as pipeline.corpus.text.ipa_phones does."""
    return [t for t in re.split(r"[\s_]+", ipa.replace("ˈ", "").replace("ˌ", "")) if t]


def _espeak(lines: Sequence[str]) -> list[str]:
    """espeak-ng IPA of each line in one call; falls back to one call per line if lines were merged or split."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise CorpusError("espeak-ng not found (needed for G2P without a lexicon): apt-get install espeak-ng, "
                          "or give a lexicon file")
    cmd = [exe, "-q", "--ipa", "--sep=_", "-v", "en-us"]
    out = subprocess.run(cmd, input="\n".join(lines) + "\n", capture_output=True, text=True, check=True)
    got = out.stdout.splitlines()
    if len(got) != len(lines):
        got = [subprocess.run(cmd + [line], capture_output=True, text=True, check=True).stdout for line in lines]
    return [" ".join(_tokens(g)) for g in got]


def espeak_phones(texts: Sequence[str], jobs: int = 1) -> list[str]:
    """Space-separated espeak-ng IPA phones of each text (en-us), batched over `jobs` parallel processes."""
    chunks: list[str] = []
    owner: list[int] = []
    for i, text in enumerate(texts):
        words = text.split()
        for start in range(0, len(words), MAX_WORDS):
            chunks.append(" ".join(words[start:start + MAX_WORDS]))
            owner.append(i)
    batches = [chunks[i:i + BATCH_LINES] for i in range(0, len(chunks), BATCH_LINES)]
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        done = list(tqdm(pool.map(_espeak, batches), total=len(batches), desc="espeak-ng G2P", unit="batch"))
    out: list[list[str]] = [[] for _ in texts]
    for i, phones in zip(owner, (p for batch in done for p in batch), strict=True):
        if phones:
            out[i].append(phones)
    return [" ".join(parts) for parts in out]
