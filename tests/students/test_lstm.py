"""LSTM student (arXiv 2309.09920): the TransformerStudent contract, padding invariance, parameter count."""

import torch

from pipeline.students.checkpoint import count_params
from pipeline.students.frontend import conv_frames
from pipeline.students.lstm import LSTMArch, LSTMStudent
from pipeline.students.transformer import TransformerArch, TransformerStudent

SMALL = LSTMArch(conv_channels=16, dim=8, layers=2, dropout=0.0)


def test_shapes_mask_and_contract():
    torch.manual_seed(0)
    model = LSTMStudent(SMALL).eval()
    lengths = torch.tensor([6400, 4000])
    states, mask = model(torch.randn(2, 6400), lengths)
    frames = conv_frames(6400)
    assert model.dim == 16 and model.num_layers == 3 and len(states) == 3
    assert all(s.shape == (2, frames, 16) for s in states)
    assert mask.shape == (2, frames) and mask.sum(1).tolist() == [frames, conv_frames(4000)]
    assert LSTMArch(**model.arch.to_dict()) == model.arch
    states[-1].sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_padding_does_not_change_valid_outputs_of_the_shorter_clip():
    torch.manual_seed(1)
    model = LSTMStudent(SMALL).eval()
    short, long = torch.randn(4000), torch.randn(6400)
    alone, _ = model(short[None], torch.tensor([4000]))
    batch = torch.stack([torch.cat([short, torch.randn(2400)]), long])
    padded, mask = model(batch, torch.tensor([4000, 6400]))
    n = conv_frames(4000)
    assert mask[0].sum() == n
    for a, p in zip(alone, padded, strict=True):
        torch.testing.assert_close(p[0, :n], a[0], atol=1e-5, rtol=1e-5)
    assert padded[-1][0, n:].abs().max() == 0  # packed outputs are zero past the end


def lstm_formula(conv: int, units: int, layers: int) -> int:
    frontend = conv * 10 + 2 * conv + 4 * conv * conv * 3 + 2 * conv * conv * 2
    width = 2 * units
    proj = 2 * conv + conv * width + width
    per_direction = 4 * units * (width + units) + 2 * 4 * units
    return frontend + proj + layers * 2 * per_direction


def transformer_formula(conv: int, dim: int, layers: int, ffn: int, kernel: int = 128,
                        groups: int = 16) -> int:
    frontend = conv * 10 + 2 * conv + 4 * conv * conv * 3 + 2 * conv * conv * 2
    proj = 2 * conv + conv * dim + dim
    pos = dim * (dim // groups) * kernel + kernel + dim  # weight-norm v, g (one per tap), bias
    layer = (3 * dim * dim + 3 * dim) + (dim * dim + dim) + (dim * ffn + ffn) + (ffn * dim + dim) + 4 * dim
    return frontend + proj + pos + 2 * dim + layers * layer


def test_lstm_is_smaller_than_the_default_ffn_transformer_of_the_same_size():
    lstm = LSTMStudent(LSTMArch(conv_channels=128, dim=256, layers=2))
    transformer = TransformerStudent(TransformerArch(conv_channels=128, dim=256, layers=2, heads=4))
    narrow = TransformerStudent(TransformerArch(conv_channels=128, dim=256, layers=2, heads=4, ffn=1024))
    assert count_params(lstm) == lstm_formula(128, 256, 2)
    assert count_params(transformer) == transformer_formula(128, 256, 2, 3072)
    assert count_params(narrow) == transformer_formula(128, 256, 2, 1024)
    assert count_params(lstm) < count_params(transformer)
    assert count_params(lstm) > count_params(narrow)  # with a 4x FFN the comparison flips
