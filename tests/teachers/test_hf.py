"""Tiny random Hugging Face speech encoders saved to disk and loaded through load_upstream(kind 'hf')."""

import math
import shutil

import huggingface_hub.constants
import numpy as np
import pytest
import torch
from transformers import (
    Data2VecAudioConfig,
    Data2VecAudioModel,
    HubertConfig,
    HubertModel,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Model,
    WavLMConfig,
    WavLMModel,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperModel,
)

from pipeline.teachers import load_upstream
from pipeline.teachers.hf import HFWaveformUpstream
from pipeline.teachers.whisper import WhisperUpstream

SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
             conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
FAMILIES = {
    "wav2vec2": (Wav2Vec2Config, Wav2Vec2Model, {}),
    "hubert": (HubertConfig, HubertModel, {}),
    "wavlm": (WavLMConfig, WavLMModel, {"num_buckets": 16, "max_bucket_distance": 40}),
    "data2vec-audio": (Data2VecAudioConfig, Data2VecAudioModel, {"conv_pos_kernel_size": 5,
                                                                  "num_conv_pos_embeddings": 5}),
}


def _save(path, family, norm="group", do_normalize=None, seed=0, layers=2):
    if family == "whisper":
        return _save_whisper(path, layers)
    config_cls, model_cls, extra = FAMILIES[family]
    kwargs = {**SMALL, **extra, "num_hidden_layers": layers}
    if family != "data2vec-audio":
        kwargs.update(feat_extract_norm=norm, do_stable_layer_norm=norm == "layer")
    torch.manual_seed(seed)
    model_cls(config_cls(**kwargs)).save_pretrained(path)
    if do_normalize is not None:
        Wav2Vec2FeatureExtractor(do_normalize=do_normalize, return_attention_mask=True).save_pretrained(path)
    return path


def _save_whisper(path, layers=2):
    torch.manual_seed(0)
    config = WhisperConfig(d_model=32, encoder_layers=layers, encoder_attention_heads=2, encoder_ffn_dim=64,
                           decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=64, num_mel_bins=80)
    WhisperModel(config).save_pretrained(path)
    return path


def _wavs():
    torch.manual_seed(1)
    return [torch.randn(n) * 0.1 for n in (16000, 23456, 8000)]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_loads_and_shapes(family, tmp_path):
    up = load_upstream("t", {"kind": "hf", "model": str(_save(tmp_path, family, do_normalize=True))})
    assert isinstance(up, HFWaveformUpstream) and not up.training
    assert (up.num_layers, up.dim, up.frame_rate, up.do_normalize) == (3, 32, 50, True)
    for wav in _wavs():
        states = up.hidden_states(wav)
        expected = math.floor((wav.numel() - 400) / 320) + 1
        assert up.num_frames(wav.numel()) == expected
        assert len(states) == 3 and all(s.shape == (expected, 32) for s in states)


@pytest.mark.parametrize("family,norm", [("wav2vec2", "layer"), ("hubert", "layer"), ("wavlm", "layer"),
                                         ("data2vec-audio", "layer"), ("wav2vec2", "group")])
def test_batched_equals_unbatched(family, norm, tmp_path):
    up = load_upstream("t", {"kind": "hf", "model": str(_save(tmp_path, family, norm=norm))})
    assert up.batchable == (norm == "layer" and family != "data2vec-audio")
    wavs = _wavs()
    for wav, states in zip(wavs, up.hidden_states_batch(wavs), strict=True):
        for got, want in zip(states, up.hidden_states(wav), strict=True):
            torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_normalisation_follows_feature_extractor(tmp_path):
    plain = _save(tmp_path / "a", "hubert", do_normalize=False)
    off = load_upstream("t", {"kind": "hf", "model": str(plain)})
    group = load_upstream("t", {"kind": "hf", "model": str(_save(tmp_path / "b", "hubert", norm="group"))})
    layer = load_upstream("t", {"kind": "hf", "model": str(_save(tmp_path / "c", "hubert", norm="layer"))})
    # without a preprocessor config: the fairseq convention (normalise for layer-norm CNNs only)
    assert (off.do_normalize, group.do_normalize, layer.do_normalize) == (False, False, True)
    wav = torch.randn(16000) * 0.1 + 0.3
    torch.testing.assert_close(off._prepare(wav), wav)
    normed = layer._prepare(wav)
    assert abs(normed.mean().item()) < 1e-5 and abs(normed.std().item() - 1) < 1e-3
    torch.testing.assert_close(layer.hidden_states(wav)[-1], layer.hidden_states(wav * 3.0)[-1],
                               atol=1e-4, rtol=1e-4)


def test_hf_whisper_uses_unpadded_encoder(tmp_path):
    up = load_upstream("w", {"kind": "hf", "model": str(_save_whisper(tmp_path))})
    assert isinstance(up, WhisperUpstream) and (up.num_layers, up.dim) == (3, 32)
    wavs = _wavs()
    for wav, states in zip(wavs, up.hidden_states_batch(wavs), strict=True):
        assert all(s.shape == (math.ceil((wav.numel() // 160) / 2), 32) for s in states)
        torch.testing.assert_close(states[-1], up.hidden_states(wav)[-1], atol=1e-4, rtol=1e-4)


def test_fingerprint_tracks_weights(tmp_path):
    spec = {"kind": "hf", "model": str(_save(tmp_path / "a", "wav2vec2"))}
    first, again = load_upstream("t", spec).fingerprint(), load_upstream("t", spec).fingerprint()
    assert first == again
    assert first["kind"] == "hf" and first["model_type"] == "wav2vec2" and first["num_layers"] == 3
    model = Wav2Vec2Model.from_pretrained(tmp_path / "a")
    with torch.no_grad():
        model.encoder.layers[0].feed_forward.output_dense.bias.add_(1e-3)
    model.save_pretrained(tmp_path / "a")
    assert load_upstream("t", spec).fingerprint()["sha256"] != first["sha256"]


def test_missing_model_says_what_to_do(tmp_path):
    with pytest.raises(OSError, match="huggingface-cli download"):
        load_upstream("t", {"kind": "hf", "model": "no-such-org/no-such-model"})


ALL_CLASSES = [*FAMILIES, "whisper"]


@pytest.mark.parametrize("family", ALL_CLASSES)
def test_layer_selection_by_index_and_relative_depth(family, tmp_path):
    """4 hidden states (input + 3 layers): [0, -2, 3] and relative depths 1/3, 2/3, 1 -> 1, 2, 3 pick exactly
    those states of the full model, in one clip and in a batch."""
    model = str(_save(tmp_path, family, layers=3))
    full = load_upstream("t", {"kind": "hf", "model": model})
    assert full.num_layers == 4
    wavs = _wavs()[:2]
    want = [full.hidden_states(w) for w in wavs]
    for spec, index in (([0, -2, 3], [0, 2, 3]), ({"relative": [1 / 3, 2 / 3, 1.0]}, [1, 2, 3])):
        up = load_upstream("t", {"kind": "hf", "model": model, "layers": spec})
        assert up.num_layers == 3 and up.dim == 32 and up.fingerprint()["layers"] == index
        assert up.num_frames(16000) == full.num_frames(16000)
        for got_states, all_states in zip([up.hidden_states(w) for w in wavs], want, strict=True):
            for got, i in zip(got_states, index, strict=True):
                torch.testing.assert_close(got, all_states[i], rtol=0, atol=0)
        for got_states, all_states in zip(up.hidden_states_batch(wavs), want, strict=True):
            for got, i in zip(got_states, index, strict=True):
                torch.testing.assert_close(got, all_states[i], atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match=r"layers \[4\] out of range .* 4 hidden states"):
        load_upstream("t", {"kind": "hf", "model": model, "layers": [1, 4]})


def test_hf_whisper_equals_transformers_forward_on_a_full_window(tmp_path):
    """On exactly 30 s (3000 mel frames, no padding at all) the unpadded encoder path must reproduce
    transformers' own WhisperEncoder.forward hidden states (input embedding, each layer, final layer norm)."""
    path = _save_whisper(tmp_path, layers=2)
    up = load_upstream("w", {"kind": "hf", "model": str(path)})
    wav = torch.from_numpy(np.random.default_rng(3).standard_normal(30 * 16000).astype(np.float32) * 0.1)
    ours = up.hidden_states(wav)
    mel = WhisperFeatureExtractor(feature_size=80)(wav.numpy(), sampling_rate=16000, return_tensors="pt")
    encoder = WhisperModel.from_pretrained(path).get_encoder().eval()
    with torch.no_grad():
        ref = encoder(mel["input_features"], output_hidden_states=True).hidden_states
    assert len(ours) == len(ref) == 3 and ours[0].shape == (1500, 32)
    for got, want in zip(ours, ref, strict=True):
        torch.testing.assert_close(got, want[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", ["hubert", "whisper"])
def test_loads_by_hub_id_offline_from_the_local_cache(family, tmp_path, monkeypatch):
    """A hub id resolves through the Hugging Face cache layout (models--org--name/snapshots/<rev>) with
    HF_HUB_OFFLINE set, exactly as for users who downloaded the weights beforehand."""
    saved = _save(tmp_path / "saved", family)
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / f"models--tiny-org--tiny-{family}"
    shutil.copytree(saved, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    by_id = load_upstream("t", {"kind": "hf", "model": f"tiny-org/tiny-{family}"})
    by_path = load_upstream("t", {"kind": "hf", "model": str(saved)})
    assert by_id.source == f"tiny-org/tiny-{family}"
    assert by_id.fingerprint()["sha256"] == by_path.fingerprint()["sha256"]
    wav = _wavs()[0]
    torch.testing.assert_close(by_id.hidden_states(wav)[-1], by_path.hidden_states(wav)[-1])
