"""A cached bank of simulated room impulse responses in two disjoint room families.

In-domain rooms are small (3-8 m, RT60 0.2-0.6 s); out-of-domain rooms are halls (10-25 m,
RT60 0.7-1.5 s). Each RIR comes from a pyroomacoustics ShoeBox (image sources up to order 3 plus
ray tracing for the tail, Sabine absorption for the target RT60), seeded per RIR from the config
seed, so the bank is bit-identical on every build. Layout of the .npz, per family F:
`F_rir` (n, max_len) float32 zero-padded, `F_len` (n,) valid lengths, `F_room` (n, 3) metres,
`F_src` / `F_mic` (n, 3) positions, `F_rt60_target` and `F_rt60` (measured) seconds, plus `meta`
(JSON). RIRs start 2.5 ms before the direct path, end where the energy decay curve reaches
-60 dB, and have unit energy.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.audio.distortions import stable_seed
from pipeline.audio.io import SAMPLE_RATE
from pipeline.config import load_config

log = logging.getLogger(__name__)

RIRS_PER_FAMILY = 32
PRE_DELAY = 40  # samples kept before the direct-path peak (the fractional-delay filter's half length)
DECAY_DB = 60.0


@dataclass(frozen=True)
class RoomFamily:
    """Ranges from which one family's rooms are drawn uniformly."""

    length_m: tuple[float, float]
    height_m: tuple[float, float]
    rt60_s: tuple[float, float]
    margin_m: float


ROOM_FAMILIES: dict[str, RoomFamily] = {
    "indomain": RoomFamily(length_m=(3.0, 8.0), height_m=(2.4, 3.5), rt60_s=(0.2, 0.6), margin_m=0.5),
    "ood": RoomFamily(length_m=(10.0, 25.0), height_m=(4.0, 10.0), rt60_s=(0.7, 1.5), margin_m=1.0),
}


def sample_room(family: RoomFamily, rng: np.random.Generator) -> dict[str, list[float] | float]:
    """Draw room size, target RT60 and source / microphone positions inside the walls' margin."""
    dims = [*rng.uniform(*family.length_m, size=2), rng.uniform(*family.height_m)]
    lo, hi = family.margin_m, np.asarray(dims) - family.margin_m
    src = [rng.uniform(lo, hi[0]), rng.uniform(lo, hi[1]), rng.uniform(1.2, 1.9)]
    mic = [rng.uniform(lo, hi[0]), rng.uniform(lo, hi[1]), rng.uniform(0.8, 1.6)]
    return {"room": [float(d) for d in dims], "rt60_target": float(rng.uniform(*family.rt60_s)),
            "src": [float(v) for v in src], "mic": [float(v) for v in mic]}


def simulate_rir(room: dict, seed: int, fs: int = SAMPLE_RATE) -> tuple[np.ndarray, float]:
    """Simulate, trim and unit-energy-normalise one RIR; returns (rir, measured RT60 in s)."""
    import pyroomacoustics as pra

    pra.random.seed(numpy=seed, libroom=seed)
    absorption, _ = pra.inverse_sabine(room["rt60_target"], room["room"])
    shoebox = pra.ShoeBox(room["room"], fs=fs, materials=pra.Material(absorption), max_order=3,
                          ray_tracing=True, air_absorption=True)
    shoebox.set_ray_tracing(receiver_radius=0.5, n_rays=3000, energy_thres=1e-5)
    shoebox.add_source(room["src"])
    shoebox.add_microphone(room["mic"])
    shoebox.compute_rir()
    h = np.asarray(shoebox.rir[0][0], dtype=np.float64)
    rt60 = float(pra.experimental.measure_rt60(h, fs=fs))
    start = max(int(np.argmax(np.abs(h))) - PRE_DELAY, 0)
    h = h[start:]
    edc = np.cumsum(np.square(h)[::-1])[::-1]
    end = int(np.searchsorted(-edc, -edc[0] * 10 ** (-DECAY_DB / 10)))
    h = h[: max(end, PRE_DELAY + 1)]
    return (h / np.sqrt(np.sum(np.square(h)))).astype(np.float32), rt60


def build_rir_bank(config: str, out: str) -> None:
    """Simulate the in-domain and out-of-domain RIR families once and save them as one .npz."""
    seed = load_config(config)["seed"]
    arrays: dict[str, np.ndarray] = {}
    jobs = [(f, i) for f in ROOM_FAMILIES for i in range(RIRS_PER_FAMILY)]
    results: dict[str, list] = {f: [] for f in ROOM_FAMILIES}
    for family, i in tqdm(jobs, desc="rir-bank", unit="rir"):
        rir_seed = stable_seed(seed, "rir", family, i)
        room = sample_room(ROOM_FAMILIES[family], np.random.default_rng(rir_seed))
        h, rt60 = simulate_rir(room, rir_seed)
        results[family].append((room, h, rt60))
    for family, rows in results.items():
        lens = np.array([len(h) for _, h, _ in rows], dtype=np.int64)
        padded = np.zeros((len(rows), lens.max()), dtype=np.float32)
        for k, (_, h, _) in enumerate(rows):
            padded[k, : len(h)] = h
        arrays |= {f"{family}_rir": padded, f"{family}_len": lens,
                   f"{family}_rt60": np.array([r for *_, r in rows], dtype=np.float32)}
        for field in ("room", "src", "mic", "rt60_target"):
            arrays[f"{family}_{field}"] = np.array([room[field] for room, _, _ in rows], dtype=np.float32)
    meta = {"seed": seed, "sample_rate": SAMPLE_RATE, "per_family": RIRS_PER_FAMILY,
            "families": {f: asdict(v) for f, v in ROOM_FAMILIES.items()}}
    save_npz(out, arrays, meta)
    log.info("wrote %s (%d bytes)", out, Path(out).stat().st_size)


def save_npz(out: str | Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Write arrays + a JSON `meta` entry atomically (temp file, then rename)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
