"""RIR simulation: deterministic, trimmed, normalised, and two disjoint room families."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.audio import rir
from pipeline.audio.distortions import Banks


def test_room_families_are_disjoint():
    a, b = rir.ROOM_FAMILIES["indomain"], rir.ROOM_FAMILIES["ood"]
    assert a.length_m[1] < b.length_m[0] and a.rt60_s[1] < b.rt60_s[0]


def test_simulate_rir_is_deterministic_trimmed_and_normalised():
    room = rir.sample_room(rir.ROOM_FAMILIES["indomain"], np.random.default_rng(0))
    h1, rt1 = rir.simulate_rir(room, seed=5)
    h2, rt2 = rir.simulate_rir(room, seed=5)
    assert h1.tobytes() == h2.tobytes() and rt1 == rt2
    assert np.sum(h1.astype(np.float64) ** 2) == pytest.approx(1.0, rel=1e-5)
    assert np.argmax(np.abs(h1)) == rir.PRE_DELAY
    assert len(h1) < 1.5 * room["rt60_target"] * 16000 + 4000


def test_build_rir_bank(config_path, tmp_path, monkeypatch):
    monkeypatch.setattr(rir, "RIRS_PER_FAMILY", 2)
    out1, out2 = tmp_path / "a.npz", tmp_path / "b.npz"
    rir.build_rir_bank(config_path, str(out1))
    rir.build_rir_bank(config_path, str(out2))
    a, b = np.load(out1), np.load(out2)
    assert sorted(a.files) == sorted(b.files)
    assert all(np.array_equal(a[k], b[k]) for k in a.files)
    for name, fam in rir.ROOM_FAMILIES.items():
        rooms = a[f"{name}_room"]
        assert rooms.shape == (2, 3) and a[f"{name}_rir"].shape[0] == 2
        assert (rooms[:, :2] >= fam.length_m[0]).all() and (rooms[:, :2] <= fam.length_m[1]).all()
    assert a["ood_rt60_target"].min() > a["indomain_rt60_target"].max()
    np.savez(tmp_path / "noise.npz", pink_00=np.ones(10, np.float32))
    banks = Banks.load(out1, tmp_path / "noise.npz")
    assert len(banks.rir("ood", 1)) == a["ood_len"][1]
    with pytest.raises(FileNotFoundError, match="noise-bank"):
        Banks.load(out1, tmp_path / "missing.npz")
