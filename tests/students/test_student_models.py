"""Student front end, transformer student, checkpoints and the StudentUpstream interface."""

import json

import pytest
import torch

from pipeline.students.checkpoint import (
    ARCHITECTURES,
    StudentUpstream,
    build_student,
    count_params,
    load_student,
    save_student,
)
from pipeline.students.frontend import (
    KERNELS,
    RECEPTIVE_FIELD,
    ConvFrontEnd,
    conv_frames,
    frame_mask,
    scale_grad,
)
from pipeline.students.transformer import TransformerArch, TransformerStudent

ARCH = dict(conv_channels=8, dim=16, layers=2, heads=2, ffn=32, pos_kernel=16, pos_groups=4)


def _student(seed=0, **kw):
    torch.manual_seed(seed)
    return TransformerStudent(TransformerArch(**{**ARCH, **kw}))


def test_conv_frames_matches_cnn_output():
    torch.manual_seed(0)
    cnn = ConvFrontEnd(2).eval()
    lengths = list(range(400, 1400, 23)) + [719, 720, 721, 1039, 1040, 16000, 16079, 16080, 31999]
    with torch.no_grad():
        for n in lengths:
            out = cnn(torch.randn(1, n))
            assert out.shape == (1, conv_frames(n), 2), n


def test_conv_frames_closed_form():
    # independent arithmetic: the stack has receptive field 400 and hop 320
    assert RECEPTIVE_FIELD == 400
    hop = 1
    for _, s in KERNELS:
        hop *= s
    assert hop == 320
    for n in range(400, 20000, 7):
        assert conv_frames(n) == (n - 400) // 320 + 1
    assert conv_frames(16000) == 49  # 1 s -> 49 frames (wav2vec 2.0 / HuBERT)
    assert conv_frames(399) == 0 and conv_frames(0) == 0


def test_frame_mask():
    m = frame_mask(torch.tensor([400, 1040, 5000]), conv_frames(5000))
    assert m.dtype == torch.bool
    assert m.sum(1).tolist() == [1, 3, conv_frames(5000)]
    assert m[1].tolist()[:4] == [True, True, True, False]


def test_scale_grad():
    x = torch.randn(5, requires_grad=True)
    y = scale_grad(x, 0.1)
    torch.testing.assert_close(y.detach(), x.detach())  # identity up to rounding (x*s + x*(1-s))
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.full((5,), 0.1))


def test_hidden_states_count_and_shapes():
    model = _student().eval()
    lengths = torch.tensor([8000, 5000, 3000])
    with torch.no_grad():
        states, mask = model(torch.randn(3, 8000), lengths)
    assert len(states) == ARCH["layers"] + 1 == model.num_layers
    for s in states:
        assert s.shape == (3, conv_frames(8000), ARCH["dim"])
        assert torch.isfinite(s).all()
    assert mask.shape == (3, conv_frames(8000))
    assert mask.sum(1).tolist() == [conv_frames(int(n)) for n in lengths]
    # the layers are not identity maps
    assert not torch.allclose(states[0], states[-1])


@pytest.mark.parametrize("pos_kernel", [16, 15])
def test_padding_does_not_change_valid_frames(pos_kernel):
    model = _student(pos_kernel=pos_kernel).eval()
    torch.manual_seed(1)
    short, long = torch.randn(5000) * 0.1, torch.randn(12000) * 0.1
    batch = torch.zeros(2, 12000)
    batch[0, :5000], batch[1] = short, long
    n = conv_frames(5000)
    with torch.no_grad():
        alone, _ = model(short[None], torch.tensor([5000]))
        alone_long, _ = model(long[None], torch.tensor([12000]))
        batched, mask = model(batch, torch.tensor([5000, 12000]))
    assert mask[0].sum() == n
    for a, b, al in zip(alone, batched, alone_long, strict=True):
        assert a.shape[1] == n
        torch.testing.assert_close(b[0, :n], a[0], atol=1e-4, rtol=0)
        torch.testing.assert_close(b[1], al[0], atol=1e-4, rtol=0)


def test_train_mode_is_stochastic_eval_is_not():
    model = _student()
    wav = torch.randn(1, 4000)
    lengths = torch.tensor([4000])
    model.train()
    a, _ = model(wav, lengths)
    b, _ = model(wav, lengths)
    assert not torch.equal(a[-1], b[-1])  # dropout 0.1 active
    model.eval()
    with torch.no_grad():
        c, _ = model(wav, lengths)
        d, _ = model(wav, lengths)
    assert torch.equal(c[-1], d[-1])


def test_cnn_gradient_scaled():
    """DistilHuBERT scales CNN gradients by 0.1: compare against a scale-1.0 copy with identical weights."""
    torch.manual_seed(0)
    wav = torch.randn(2, 3000)
    lengths = torch.tensor([3000, 3000])
    grads = {}
    for scale in (1.0, 0.1):
        model = _student(seed=3, cnn_grad_scale=scale, dropout=0.0)
        states, _ = model(wav, lengths)
        states[-1].pow(2).mean().backward()
        grads[scale] = model.frontend.layers[0][0].weight.grad.clone()
        proj = model.proj[1].weight.grad.clone()
        grads[f"proj{scale}"] = proj
    torch.testing.assert_close(grads[0.1], grads[1.0] * 0.1, rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(grads["proj0.1"], grads["proj1.0"])


def test_save_load_round_trip(tmp_path):
    model = _student(seed=5)
    save_student(model, "transformer", {"method": "distilhubert", "teacher": "t"}, tmp_path / "ck")
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert config["student"] == "transformer"
    assert config["arch"] == TransformerArch(**ARCH).to_dict()
    assert config["num_params"] == count_params(model) == sum(p.numel() for p in model.parameters())
    assert config["teacher"] == "t"

    up = load_student(tmp_path / "ck")
    assert isinstance(up, StudentUpstream)
    assert up.name == "ck" and up.num_layers == 3 and up.dim == ARCH["dim"]
    assert not up.model.training
    for k, v in model.state_dict().items():
        assert torch.equal(up.model.state_dict()[k], v), k
    ref = StudentUpstream(model, "ref", "mem")
    wav = torch.randn(7000)
    got, want = up.hidden_states(wav), ref.hidden_states(wav)
    assert len(got) == 3
    for g, w in zip(got, want, strict=True):
        assert g.shape == (conv_frames(7000), ARCH["dim"])
        assert torch.equal(g, w)
    # an upstream loaded through the registry is the same model
    from pipeline.teachers.registry import load_upstream

    via = load_upstream("st", {"kind": "student", "checkpoint": str(tmp_path / "ck")})
    assert all(torch.equal(a, b) for a, b in zip(via.hidden_states(wav), want, strict=True))


def test_load_student_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_student(tmp_path)


def test_hidden_states_batch_equals_per_clip():
    up = StudentUpstream(_student(seed=6), "s", "mem")
    torch.manual_seed(2)
    wavs = [torch.randn(n) * 0.2 for n in (16000, 4321, 9000, 400)]
    batch = up.hidden_states_batch(wavs)
    assert len(batch) == len(wavs)
    for wav, states in zip(wavs, batch, strict=True):
        single = up.hidden_states(wav)
        assert len(states) == len(single) == 3
        for b, s in zip(states, single, strict=True):
            assert b.shape == s.shape == (conv_frames(wav.numel()), ARCH["dim"])
            torch.testing.assert_close(b, s, atol=1e-4, rtol=0)


def test_student_upstream_checks_input():
    up = StudentUpstream(_student(), "s", "mem")
    assert up.min_samples == RECEPTIVE_FIELD
    assert up.num_frames(16000) == conv_frames(16000)
    with pytest.raises(ValueError, match="shorter"):
        up.hidden_states(torch.zeros(RECEPTIVE_FIELD - 1))
    assert up.hidden_states(torch.zeros(RECEPTIVE_FIELD))[0].shape == (1, ARCH["dim"])
    with pytest.raises(ValueError, match="1-D"):
        up.hidden_states(torch.zeros(2, 4000))


def test_build_student_registry():
    assert "transformer" in ARCHITECTURES
    m = build_student("transformer", ARCH)
    assert isinstance(m, TransformerStudent) and m.arch.layers == 2
    with pytest.raises(KeyError, match="transformer"):
        build_student("conformer", {})
