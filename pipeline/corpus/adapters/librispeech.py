"""LibriSpeech (openslr 12): ASR text, phonemes from a lexicon or espeak-ng, speakers; subsets map to splits.

Layout: <root>/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac and one
<speaker>-<chapter>.trans.txt per chapter ("<utt_id> UPPER CASE WORDS" lines). `root` is the
`LibriSpeech` directory the tarballs unpack to, or its parent. Every transcript line needs its FLAC
and every FLAC its transcript line. Text is lower-cased (the ASR character set of
`pipeline.corpus.text.normalise_text`); phones follow `phones` ('auto': the lexicon if given, else espeak-ng).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from pipeline.corpus.text import normalise_text

from .common import CorpusError, probe_audio, require_dir, write_rows
from .g2p import espeak_phones, lexicon_phones, read_lexicon

log = logging.getLogger(__name__)
DEFAULT_SUBSETS = {"train": ["train-clean-100"], "dev": ["dev-clean"], "test": ["test-clean"]}
PHONES = ("auto", "lexicon", "espeak", "none")
OOV = ("error", "empty")


def _root(corpus_dir: str | Path, subsets: dict[str, list[str]]) -> Path:
    root = require_dir(corpus_dir, "the LibriSpeech directory with the subset folders")
    first = next(s for names in subsets.values() for s in names)
    if not (root / first).is_dir() and (root / "LibriSpeech" / first).is_dir():
        root = root / "LibriSpeech"
    return root


def read_chapter(chapter_dir: Path) -> list[tuple[str, str, Path]]:
    """(utt_id, transcript, flac path) of one chapter folder; CorpusError on a missing or extra file."""
    speaker, chapter = chapter_dir.parent.name, chapter_dir.name
    trans = chapter_dir / f"{speaker}-{chapter}.trans.txt"
    if not trans.is_file():
        raise CorpusError(f"{trans}: transcript file not found (every LibriSpeech chapter folder has one)")
    rows = []
    for n, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        utt, _, text = line.partition(" ")
        if not utt.startswith(f"{speaker}-{chapter}-"):
            raise CorpusError(f"{trans}:{n}: utterance id {utt!r} does not belong to {speaker}-{chapter}")
        flac = chapter_dir / f"{utt}.flac"
        if not flac.is_file():
            raise CorpusError(f"{flac}: audio not found for the transcript line {trans}:{n}")
        rows.append((utt, text.strip(), flac))
    listed = {utt for utt, _, _ in rows}
    extra = sorted(p.name for p in chapter_dir.glob("*.flac") if p.stem not in listed)
    if extra:
        raise CorpusError(f"{chapter_dir}: {len(extra)} FLAC file(s) without a line in {trans.name}: {extra[:5]}")
    return rows


def prepare_librispeech(corpus_dir: str, manifest_out: str, subsets: dict[str, list[str]] | None = None,
                        lexicon: str | None = None, phones: str = "auto", keep_stress: bool = False,
                        oov: str = "error", jobs: int = 1, on_bad_audio: str = "error") -> pd.DataFrame:
    """Write the LibriSpeech manifest: split -> subsets (`subsets`), text, phones, speaker; returns it.

    oov: 'error' names words missing from the lexicon; 'empty' leaves those utterances' phones empty (logged).
    jobs: parallel espeak-ng processes for G2P without a lexicon."""
    subsets = subsets or DEFAULT_SUBSETS
    if phones not in PHONES:
        raise ValueError(f"phones must be one of {PHONES}, got {phones!r}")
    if oov not in OOV:
        raise ValueError(f"oov must be one of {OOV}, got {oov!r}")
    unknown = sorted(set(subsets) - {"train", "dev", "test"})
    if unknown:
        raise ValueError(f"subsets: unknown split(s) {unknown}; keys are train, dev, test")
    named = [s for names in subsets.values() for s in names]
    if not named:
        raise ValueError("subsets: no LibriSpeech subset named")
    twice = sorted({s for s in named if named.count(s) > 1})
    if twice:
        raise ValueError(f"subsets: {twice} listed under more than one split")
    root = _root(corpus_dir, subsets)
    rows: list[dict[str, Any]] = []
    for split, names in subsets.items():
        for subset in names:
            sub = require_dir(root / subset, f"LibriSpeech subset '{subset}' (unpack {subset}.tar.gz here)")
            chapters = sorted(c for s in sub.iterdir() if s.is_dir() for c in s.iterdir() if c.is_dir())
            if not chapters:
                raise CorpusError(f"{sub}: no <speaker>/<chapter> folders")
            for chapter in tqdm(chapters, desc=f"librispeech {subset}", unit="chapter", mininterval=5):
                for utt, text, flac in read_chapter(chapter):
                    rows.append({"utt_id": utt, "path": str(flac), "split": split, "speaker": chapter.parent.name,
                                 "text": normalise_text(text), "subset": subset, "chapter": chapter.name})
    rows = probe_audio(rows, "librispeech", manifest_out, on_bad_audio)
    mode = ("lexicon" if lexicon else "espeak") if phones == "auto" else phones
    if mode == "lexicon":
        if not lexicon:
            raise ValueError("phones='lexicon' needs lexicon=<path to a CMUdict-format file>")
        _add_lexicon_phones(rows, read_lexicon(lexicon, keep_stress), oov, lexicon)
    elif mode == "espeak":
        for row, ph in zip(rows, espeak_phones([r["text"] for r in rows], jobs), strict=True):
            row["phones"] = ph
    return write_rows(rows, manifest_out, "librispeech", extra=("subset", "chapter"))


def _add_lexicon_phones(rows: list[dict[str, Any]], lex: dict[str, list[str]], oov: str, where: str) -> None:
    missing: dict[str, int] = {}
    empty = 0
    for row in rows:
        row["phones"], words = lexicon_phones(row["text"], lex)
        for w in words:
            missing[w] = missing.get(w, 0) + 1
        empty += bool(words)
    if not missing:
        return
    top = sorted(missing, key=lambda w: (-missing[w], w))[:20]
    msg = f"{where}: {len(missing)} word(s) not in the lexicon, in {empty} utterance(s); most frequent: {top}"
    if oov == "error":
        raise CorpusError(msg + "; use a lexicon that covers the corpus (librispeech-lexicon.txt), "
                          "or oov='empty' to leave those utterances without phones")
    log.warning("%s; their phones are left empty (oov='empty')", msg)
