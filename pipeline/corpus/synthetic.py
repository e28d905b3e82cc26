"""The synthetic multi-speaker corpus: a deterministic utterance plan and sharded TTS rendering.

Families: `keyword` (SUPERB Speech Commands' 12 classes), `command` (Fluent Speech Commands' 31
intents) and `sentence` (template sentences with espeak-ng IPA phones). Every spoken utterance has a
prosody `style` (emotion proxy). `_silence_` clips are coloured noise with no speaker or style.
Splits are stratified by class; voices are then dealt round-robin within each split, so every
voice occurs in every split that has at least as many spoken clips as there are voices.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline.audio.io import SAMPLE_RATE, write_wav
from pipeline.config import load_config
from pipeline.corpus import text as vocab
from pipeline.corpus.manifest import LABELS, REQUIRED, SPLITS, read_manifest, shard_range, write_manifest
from pipeline.corpus.text import SILENCE, STYLES, ipa_phones
from pipeline.corpus.voices import Voice, select_voices, synthesize

log = logging.getLogger(__name__)
FAMILIES = ("keyword", "command", "sentence")
COLUMNS = REQUIRED + LABELS + ["family"]


@dataclass(frozen=True)
class Utterance:
    """One planned clip: labels, voice, split and the prosody parameters that realise its style."""

    utt_id: str
    family: str
    speaker: str
    split: str
    text: str = ""
    keyword: str = ""
    intent: str = ""
    style: str = ""
    rate: float = 1.0
    pitch: float = 1.0
    gain: float = 1.0


def build_plan(config: dict[str, Any]) -> list[Utterance]:
    """All utterances of the corpus, a pure function of the validated config."""
    syn = config["corpus"]["synthetic"]
    rng = np.random.default_rng([config["seed"], 0x5E7])
    voices = [v.speaker for v in select_voices(syn["voices"])]
    items: list[dict[str, Any]] = []
    for family in FAMILIES:
        rows = _family_rows(family, syn[family], rng)
        _assign_splits(rows, syn.get("split", [0.7, 0.15, 0.15]), rng)
        items += rows
    for split in SPLITS:
        _assign_voices_and_styles([r for r in items if r["split"] == split and r["keyword"] != SILENCE],
                                  voices, rng)
    order = rng.permutation(len(items))
    return [Utterance(utt_id=f"syn-{i:06d}", **items[j]) for i, j in enumerate(order)]


def _family_rows(family: str, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    rows = []
    pool = vocab.sentence_pool()
    pool_order = rng.permutation(len(pool)) if family == "sentence" else np.arange(len(pool))
    for i in range(n):
        row: dict[str, Any] = {"family": family, "speaker": "", "split": "", "keyword": "", "intent": ""}
        if family == "keyword":
            label = row["keyword"] = vocab.KS_CLASSES[i % len(vocab.KS_CLASSES)]
            word = label if label in vocab.DIGITS else str(rng.choice(vocab.UNKNOWN_WORDS))
            row["text"] = "" if label == SILENCE else word
        elif family == "command":
            row["intent"] = vocab.INTENTS[i % len(vocab.INTENTS)]
            row["text"] = vocab.command_text(row["intent"], rng)
        else:
            row["text"] = pool[pool_order[i % len(pool)]]
        if row["keyword"] == SILENCE:
            row["gain"] = float(rng.uniform(0.005, 0.05))
        rows.append(row)
    return rows


def _assign_splits(rows: list[dict[str, Any]], fractions: list[float], rng: np.random.Generator) -> None:
    """Stratify by label: each keyword / intent class is split at the configured fractions."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        groups[row["keyword"] + row["intent"]].append(i)
    for label in sorted(groups):
        idx = rng.permutation(groups[label]).tolist()
        counts = split_counts(len(idx), fractions, rng)
        names = [name for name, c in zip(SPLITS, counts, strict=True) for _ in range(c)]
        for i, name in zip(idx, names, strict=True):
            rows[i]["split"] = name


def split_counts(n: int, fractions: list[float], rng: np.random.Generator) -> list[int]:
    """Largest-remainder counts for `n` items (random tie-break); positive fractions get >= 1 if n allows."""
    f = np.asarray(fractions, dtype=float) / float(sum(fractions))
    counts = np.floor(f * n).astype(int)
    remainder = f * n - counts
    order = sorted(range(len(f)), key=lambda k: (-remainder[k], rng.random()))
    for k in order[: n - int(counts.sum())]:
        counts[k] += 1
    if n >= int((f > 0).sum()):
        for k in np.flatnonzero((f > 0) & (counts == 0)):
            counts[int(np.argmax(counts))] -= 1
            counts[k] += 1
    return counts.tolist()


def _assign_voices_and_styles(
    rows: list[dict[str, Any]], voices: list[str], rng: np.random.Generator
) -> None:
    """Within one split: voices round-robin (family by family, shuffled), styles in a Latin square."""
    names = list(STYLES)
    order = [i for fam in FAMILIES
             for i in rng.permutation([j for j, r in enumerate(rows) if r["family"] == fam]).tolist()]
    for k, i in enumerate(order):
        v = k % len(voices)
        style = names[(k // len(voices) + v) % len(names)]
        rate, pitch, gain = STYLES[style]
        rows[i].update(speaker=voices[v], style=style, rate=rate * float(rng.uniform(0.96, 1.04)),
                       pitch=pitch * float(rng.uniform(0.97, 1.03)),
                       gain=gain * float(rng.uniform(0.6, 1.0)))


def label_columns(synthetic: dict[str, Any]) -> set[str]:
    """Label columns the synthetic corpus of config `corpus.synthetic` fills for at least one utterance.

    Keyword clips start with the spoken class "zero" (text, keyword); commands carry text and intent;
    sentences text; every spoken clip has phones and a style."""
    spoken = synthetic["keyword"] > 0 or synthetic["command"] > 0 or synthetic["sentence"] > 0
    return ({"text", "phones", "style"} if spoken else set()) | ({"keyword"} if synthetic["keyword"] > 0 else set()) \
        | ({"intent"} if synthetic["command"] > 0 else set())


def render(utt: Utterance, voices: dict[str, Voice], seed: int) -> np.ndarray:
    """The 16 kHz waveform of one planned utterance (TTS, or coloured noise for `_silence_`)."""
    if utt.keyword == SILENCE:
        return coloured_noise(np.random.default_rng([seed, int(utt.utt_id.split("-")[1])]), utt.gain)
    wav = synthesize(voices[utt.speaker], utt.text, utt.rate, utt.pitch)
    return (wav * utt.gain).astype(np.float32)


def coloured_noise(rng: np.random.Generator, peak: float, seconds: float = 1.0) -> np.ndarray:
    """Noise with a 1/f^a power spectrum (a in [0, 2]: white to brown), scaled to `peak`."""
    n = int(seconds * SAMPLE_RATE)
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spec[1:] /= freqs[1:] ** (rng.uniform(0.0, 2.0) / 2)
    spec[0] = 0
    wav = np.fft.irfft(spec, n)
    return (wav * (peak / np.abs(wav).max())).astype(np.float32)


def synthesize_shard(config: str, shard: int, shards: int, out_dir: str, manifest_out: str) -> None:
    """Synthesise shard `shard` of `shards` of the plan into out_dir/<utt_id>.wav plus a partial manifest."""
    cfg = load_config(config)
    plan = build_plan(cfg)
    voices = {v.speaker: v for v in select_voices(cfg["corpus"]["synthetic"]["voices"])}
    start, end = shard_range(len(plan), shards, shard)
    rows = []
    for utt in tqdm(plan[start:end], desc=f"synthesize shard {shard}/{shards}", unit="utt"):
        wav = render(utt, voices, cfg["seed"])
        path = Path(out_dir) / f"{utt.utt_id}.wav"
        write_wav(path, wav)
        row = {k: v for k, v in asdict(utt).items() if k in COLUMNS}
        row.update(path=str(path), num_samples=len(wav), sample_rate=SAMPLE_RATE,
                   phones=ipa_phones(utt.text) if utt.text else "")
        rows.append(row)
    write_manifest(pd.DataFrame(rows, columns=COLUMNS), manifest_out)
    log.info("shard %d/%d: %d utterances -> %s", shard, shards, len(rows), manifest_out)


def merge_shards(inputs: list[str], output: str) -> None:
    """Concatenate partial manifests, validate the whole (unique ids, splits, rates) and write it."""
    if not inputs:
        raise ValueError("merge_shards: no input manifests given")
    frames = [read_manifest(p) for p in inputs]
    write_manifest(pd.concat(frames, ignore_index=True), output)
    log.info("merged %d manifests, %d rows -> %s", len(inputs), sum(len(f) for f in frames), output)
