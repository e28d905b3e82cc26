"""Audio views: a plan of per-copy distortion recipes, and rendering a shard of it into a store.

A plan row is (utt_id, copy, key = "{utt_id}@{copy}", seed, recipe JSON). The seed is a SHA-256
of (config seed, view, utt_id, copy); the recipe is drawn from it and records every choice, so
rendering is a pure function of (recipe, banks, clean audio).

In-domain, the "double" recipe of arXiv 2210.07978: one additive distortion drawn uniformly from the
family's noise types (white = Gaussian, pink, brown, babble) and "none", and one non-additive one drawn
uniformly from reverberation (a RIR of the small rooms), pitch shift (PITCH_SEMITONES, uniform), band-reject
(a band of BANDREJECT_MEL_WIDTH mel placed uniformly on the mel scale within BANDREJECT_RANGE_HZ) and "none";
a noise has a source, a cyclic offset and an SNR uniform in the configured range (default 10-19 dB).
Out-of-domain: a noise always (sound effects or music), reverberation with probability P_REVERB (halls), the
telephone codec with probability P_CHANNEL and clipping at 20-50 % of the peak with probability P_CLIP.
Families share no noise type, room, or non-additive kind.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline.audio import noise, rir
from pipeline.audio.distortions import STEPS, Banks, apply_recipe, stable_seed
from pipeline.audio.io import SAMPLE_RATE, AudioError, load_listed_audio
from pipeline.cache.store import StoreWriter
from pipeline.config import load_config
from pipeline.corpus.manifest import read_manifest, shard_range
from pipeline.corpus.screen import source_rate

log = logging.getLogger(__name__)

VIEWS = ("clean", "indomain", "ood")
COLUMNS = ["utt_id", "copy", "key", "seed", "recipe"]
NONE = "none"
NON_ADDITIVE = ("reverb", "pitch", "bandreject", NONE)  # in-domain; out-of-domain uses halls, codec, clipping
P_REVERB = 0.5
P_CHANNEL = 0.3
P_CLIP = 0.2
PITCH_SEMITONES = (-5.0, 5.0)  # the reference code's 500 cents either way
BANDREJECT_MEL_WIDTH = (30.0, 150.0)
BANDREJECT_RANGE_HZ = (60.0, 7900.0)
CLIP_LEVEL = (0.2, 0.5)


def sample_recipe(family: str, rng: np.random.Generator, snr_db: tuple[float, float]) -> dict:
    """Draw one copy's recipe of `family` ("indomain" or "ood"); see the module docstring."""
    steps: dict = dict.fromkeys(STEPS)
    kinds = list(noise.NOISE_SOURCES[family]) + ([NONE] if family == "indomain" else [])
    kind = kinds[int(rng.integers(len(kinds)))]
    if kind != NONE:
        steps["noise"] = {"type": kind, "source": f"{kind}_{int(rng.integers(noise.NOISE_SOURCES[family][kind])):02d}",
                          "offset": int(rng.integers(2**31)), "snr_db": round(float(rng.uniform(*snr_db)), 2)}
    if family == "indomain":
        effect = NON_ADDITIVE[int(rng.integers(len(NON_ADDITIVE)))]
        if effect == "reverb":
            steps["reverb"] = {"rir": int(rng.integers(rir.RIRS_PER_FAMILY))}
        elif effect == "pitch":
            steps["pitch"] = round(float(rng.uniform(*PITCH_SEMITONES)), 2)
        elif effect == "bandreject":
            steps["bandreject"] = stop_band(rng)
    else:
        steps["reverb"] = {"rir": int(rng.integers(rir.RIRS_PER_FAMILY))} if rng.random() < P_REVERB else None
        steps["codec"] = "telephone" if rng.random() < P_CHANNEL else None
        level = round(float(rng.uniform(*CLIP_LEVEL)), 3)
        steps["clip"] = level if rng.random() < P_CLIP else None
    return {"family": family, **steps}


def _mel(hz: float) -> float:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _hz(mel: float) -> float:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def stop_band(rng: np.random.Generator) -> list[int]:
    """[low, high] Hz of a band-reject filter: BANDREJECT_MEL_WIDTH mel wide, placed uniformly on the mel scale."""
    lo, hi = _mel(BANDREJECT_RANGE_HZ[0]), _mel(BANDREJECT_RANGE_HZ[1])
    width = float(rng.uniform(*BANDREJECT_MEL_WIDTH))
    start = float(rng.uniform(lo, hi - width))
    return [round(_hz(start)), round(_hz(start + width))]


def make_view_plan(config: str, manifest: str, view: str, out: str) -> None:
    """Write the view plan TSV: one deterministic recipe per (utterance, copy) of `view`."""
    if view not in VIEWS:
        raise ValueError(f"view '{view}' is unknown (known: {', '.join(VIEWS)})")
    cfg = load_config(config)
    copies = 1 if view == "clean" else cfg["views"][view]["copies"]
    rows = []
    for utt in read_manifest(manifest)["utt_id"]:
        for copy in range(copies):
            seed = stable_seed(cfg["seed"], view, utt, copy)
            recipe = {} if view == "clean" else sample_recipe(
                view, np.random.default_rng(seed), tuple(cfg["views"][view]["snr_db"]))
            rows.append([utt, copy, f"{utt}@{copy}", seed, json.dumps(recipe, sort_keys=True)])
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp-{os.getpid()}")
    tmp.write_text("".join(_line(r) for r in [COLUMNS, *rows]))
    os.replace(tmp, out_path)
    log.info("%s: %d rows (%s, %d copies)", out, len(rows), view, copies)


def _line(fields: list) -> str:
    return "\t".join(str(f) for f in fields) + "\n"


def read_view_plan(path: str | Path) -> pd.DataFrame:
    """Read a plan TSV; `recipe` stays a JSON string (parse with json.loads)."""
    df = pd.read_csv(path, sep="\t", dtype={"utt_id": str, "key": str, "recipe": str},
                     keep_default_na=False, quoting=csv.QUOTE_NONE)
    if list(df.columns) != COLUMNS:
        raise ValueError(f"{path}: columns {list(df.columns)}, expected {COLUMNS}; regenerate with view-plan")
    return df


def plan_view(df: pd.DataFrame, where: str) -> str:
    """The view a plan renders ("clean" for identity recipes, else the recipes' family)."""
    views = {json.loads(r).get("family", "clean") for r in df["recipe"]}
    if len(views) != 1:
        raise ValueError(f"{where}: plan mixes views {sorted(views)}; regenerate it with view-plan")
    return views.pop()


def render_view_shard(config: str, manifest: str, plan: str, shard: int, shards: int, out: str,
                      rir_bank: str = "", noise_bank: str = "") -> None:
    """Render this shard's utterances (all copies) into a view-audio store of 1-D float32 waveforms.

    The clean view needs no banks: they are not read and `banks_sha256` is None. Each file must be what
    its manifest row says (pipeline/corpus/screen.py, point 2); otherwise nothing is written.
    """
    load_config(config)
    everything = read_manifest(manifest)
    start, end = shard_range(len(everything), shards, shard)
    utts = everything.iloc[start:end]
    df = read_view_plan(plan)
    unknown = sorted(set(df["utt_id"]) - set(everything["utt_id"]))
    if unknown:
        raise ValueError(f"{plan}: utt_id(s) {unknown[:5]} are not in {manifest}; regenerate the plan")
    df = df[df["utt_id"].isin(set(utts["utt_id"]))].sort_values(["utt_id", "copy"])
    missing = sorted(set(utts["utt_id"]) - set(df["utt_id"]))
    if missing:
        raise ValueError(f"{plan}: no rows for utt_id(s) {missing[:5]} of {manifest}; regenerate the plan")
    view = plan_view(df, plan)
    banks = None if view == "clean" else Banks.load(rir_bank, noise_bank)
    plan_sha = hashlib.sha256("".join(_line(r) for r in df[COLUMNS].values.tolist()).encode()).hexdigest()
    fingerprint = {"kind": "view_audio", "view": view, "plan_sha256": plan_sha,
                   "banks_sha256": banks.sha256 if banks else None, "sample_rate": SAMPLE_RATE}
    recipes = {utt: list(g[["key", "recipe"]].itertuples(index=False)) for utt, g in df.groupby("utt_id")}
    with StoreWriter(out, fingerprint=fingerprint, dtype="float32") as writer:
        for row in tqdm(list(utts.itertuples(index=False)), desc=f"render {view} {shard}/{shards}", unit="utt"):
            utt = row.utt_id
            try:
                clean = load_listed_audio(row.path, int(row.num_samples), source_rate(row))
            except AudioError as err:
                raise AudioError(f"{manifest}: utterance {utt}: {err}. Rendering trusts the manifest, so this stops "
                                 "here: prepare the manifest again (`python -m pipeline screen-manifest` for one "
                                 "written by hand), where corpus.on_bad_audio decides about bad files",
                                 err.reason) from err
            for key, recipe in recipes[utt]:
                writer.add(key, apply_recipe(clean, json.loads(recipe), banks))
    log.info("%s: %d utterances, %d copies", out, len(utts), len(df))
