"""Synthesising a tiny shard end to end: WAVs at 16 kHz, a valid manifest, bit-identical reruns."""

import hashlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from pipeline.corpus.manifest import read_manifest
from pipeline.corpus.synthetic import merge_shards, synthesize_shard

CONFIG = Path(__file__).resolve().parents[2] / "config.yaml"


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    config = yaml.safe_load(CONFIG.read_text())
    config["corpus"]["synthetic"].update(voices=4, keyword=12, command=4, sentence=4, shards=2)
    path = tmp_path_factory.mktemp("cfg") / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.wav"))}


def test_tiny_shard_is_valid_and_bit_identical(tiny_config, tmp_path):
    runs = []
    for run in ("a", "b"):
        synthesize_shard(tiny_config, 0, 2, str(tmp_path / run / "wav"), str(tmp_path / run / "m0.tsv"))
        runs.append(_digests(tmp_path / run / "wav"))
    assert runs[0] == runs[1] and len(runs[0]) == 10
    df = read_manifest(tmp_path / "a" / "m0.tsv")
    assert len(df) == 10 and set(df["family"]) <= {"keyword", "command", "sentence"}
    for row in df.itertuples():
        wav, sr = sf.read(row.path, dtype="float32")
        assert sr == 16000 and wav.ndim == 1 and len(wav) == row.num_samples > 400
        assert np.isfinite(wav).all() and np.abs(wav).max() > 0
        if row.keyword != "_silence_":
            assert row.speaker and row.style and row.text and row.phones


def test_merge_shards(tiny_config, tmp_path):
    synthesize_shard(tiny_config, 1, 2, str(tmp_path / "wav"), str(tmp_path / "m1.tsv"))
    synthesize_shard(tiny_config, 1, 2, str(tmp_path / "wav"), str(tmp_path / "m1b.tsv"))
    with pytest.raises(ValueError, match="duplicate utt_id"):
        merge_shards([str(tmp_path / "m1.tsv"), str(tmp_path / "m1b.tsv")], str(tmp_path / "bad.tsv"))
    merge_shards([str(tmp_path / "m1.tsv")], str(tmp_path / "all.tsv"))
    assert len(read_manifest(tmp_path / "all.tsv")) == 10
