"""PAD-style alignment (stand-in for arXiv 2303.03600): InfoNCE, monotonic prior, local attention, mixture."""

import math

import numpy as np
import pytest
import torch

from pipeline.distill.pad import GranularityMixture, global_alignment, local_alignment, monotonic_prior


def numpy_infonce(s: np.ndarray, t: np.ndarray, temp: float) -> float:
    s = s / np.linalg.norm(s, axis=1, keepdims=True)
    t = t / np.linalg.norm(t, axis=1, keepdims=True)
    b = len(s)
    total = 0.0
    for i in range(b):
        row = [s[i] @ t[j] / temp for j in range(b)]
        col = [s[j] @ t[i] / temp for j in range(b)]
        total += -row[i] + math.log(sum(math.exp(v) for v in row))
        total += -col[i] + math.log(sum(math.exp(v) for v in col))
    return total / (2 * b)


def test_infonce_matches_independent_computation_and_prefers_matched_pairs():
    g = torch.Generator().manual_seed(0)
    text = torch.randn(6, 5, generator=g)
    speech = text + 0.3 * torch.randn(6, 5, generator=g)
    loss = global_alignment(speech, text, 0.2)
    assert loss.item() == pytest.approx(numpy_infonce(speech.double().numpy(), text.double().numpy(), 0.2),
                                        rel=1e-5)
    shuffled = global_alignment(speech, text[torch.tensor([1, 2, 3, 4, 5, 0])], 0.2)
    assert loss.item() < shuffled.item()


def gaussian_prior(shares: list[float], frames: int, width: float) -> np.ndarray:
    """Prior written out: span of unit u = [start, start + share) of the utterance, sigma = width * span."""
    out, start = np.zeros((len(shares), frames)), 0.0
    for u, share in enumerate(shares):
        centre, sigma = (start + share / 2) * frames, width * max(share * frames, 1.0)
        out[u] = [math.exp(-0.5 * ((t + 0.5 - centre) / sigma) ** 2) for t in range(frames)]
        out[u] /= out[u].sum()
        start += share
    return out


def test_prior_rows_normalised_centred_and_monotone():
    shares = [0.25, 0.5, 0.25]
    prior = monotonic_prior(3, 40, torch.tensor(shares), width=0.3)
    assert prior.shape == (3, 40)
    torch.testing.assert_close(prior.sum(-1), torch.ones(3))
    np.testing.assert_allclose(prior.numpy(), gaussian_prior(shares, 40, 0.3), rtol=1e-4, atol=1e-7)
    peaks = prior.argmax(-1).tolist()
    for peak, centre in zip(peaks, [5.0, 20.0, 35.0], strict=True):  # span centres 0.125, 0.5, 0.875 of 40
        assert abs(peak + 0.5 - centre) <= 0.5
    many = monotonic_prior(8, 100, torch.full((8,), 1 / 8), width=0.5)
    expected = (many * torch.arange(100)).sum(-1)
    assert all(b > a for a, b in zip(expected.tolist(), expected.tolist()[1:], strict=False))


def test_batched_prior_respects_each_utterance_length():
    shares = torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    prior = monotonic_prior(3, torch.tensor([10, 30]), shares, width=0.5)
    assert prior.shape == (2, 3, 30)
    assert prior[0, :, 10:].abs().max() == 0
    np.testing.assert_allclose(prior[0, :2, :10].numpy(), gaussian_prior([0.5, 0.5], 10, 0.5), rtol=1e-4)
    with pytest.raises(ValueError, match="sum to 1"):
        monotonic_prior(2, 10, torch.tensor([0.5, 0.4]))


def aligned_example():
    """Speech whose frames in unit u's expected span equal unit u's (orthogonal) embedding, plus padding."""
    shares = torch.tensor([[0.2, 0.5, 0.3]])
    units = 3.0 * torch.eye(8)[:3][None]
    spans = [(0, 6), (6, 21), (21, 30)]
    speech = torch.zeros(1, 34, 8)
    for u, (a, b) in enumerate(spans):
        speech[0, a:b] = units[0, u] * (1 + torch.rand(b - a, 1))
    speech[0, 30:] = torch.randn(4, 8)  # padded frames carry garbage
    frame_mask = torch.arange(34)[None] < 30
    return speech, frame_mask, units, torch.ones(1, 3, dtype=torch.bool), shares


def test_local_loss_zero_when_frames_equal_units_at_prior_positions():
    speech, frame_mask, units, unit_mask, shares = aligned_example()
    loss = local_alignment(speech, frame_mask, units, unit_mask, shares, width=0.5, temperature=0.01)
    assert loss.item() < 1e-6
    # a prior-dominated attention (flat similarity) with the units' order reversed is far from zero
    reversed_units = units.flip(1)
    far = local_alignment(speech, frame_mask, reversed_units, unit_mask, shares, width=0.1, temperature=10.0)
    assert far.item() > 0.5


def test_local_attention_equals_softmax_times_prior_renormalised():
    g = torch.Generator().manual_seed(1)
    speech, units = torch.randn(2, 12, 4, generator=g), torch.randn(2, 3, 4, generator=g)
    frame_mask = torch.arange(12)[None] < torch.tensor([12, 9])[:, None]
    unit_mask = torch.tensor([[True, True, True], [True, True, False]])
    shares = torch.tensor([[0.3, 0.3, 0.4], [0.6, 0.4, 0.0]])
    loss = local_alignment(speech, frame_mask, units, unit_mask, shares, width=0.7, temperature=0.5)
    total, count = 0.0, 0
    for b, (n, n_units) in enumerate([(12, 3), (9, 2)]):
        prior = gaussian_prior(shares[b, :n_units].tolist(), n, 0.7)
        s, u = speech[b, :n].double().numpy(), units[b].double().numpy()
        for k in range(n_units):
            cos = s @ u[k] / np.linalg.norm(s, axis=1) / np.linalg.norm(u[k])
            soft = np.exp(cos / 0.5) / np.exp(cos / 0.5).sum()
            attn = soft * prior[k] / (soft * prior[k]).sum()
            att = attn @ s
            total += 1 - att @ u[k] / np.linalg.norm(att) / np.linalg.norm(u[k])
            count += 1
    assert loss.item() == pytest.approx(total / count, rel=1e-5)


def test_granularity_mixture_weights_and_regularised_optimum():
    mix = GranularityMixture(entropy_weight=0.2)
    torch.testing.assert_close(mix.weights(), torch.full((3,), 1 / 3))
    losses = [torch.tensor(0.9), torch.tensor(0.5), torch.tensor(0.7)]
    out = mix(losses)
    assert out.item() == pytest.approx((0.9 + 0.5 + 0.7) / 3 - 0.2 * math.log(3), rel=1e-6)
    opt = torch.optim.SGD(mix.parameters(), lr=1.0)
    for _ in range(300):
        opt.zero_grad()
        mix(losses).backward()
        opt.step()
    expected = np.exp(-np.array([0.9, 0.5, 0.7]) / 0.2)
    np.testing.assert_allclose(mix.weights().detach().numpy(), expected / expected.sum(), atol=1e-3)
    with pytest.raises(ValueError, match="granularities"):
        mix(losses[:2])
