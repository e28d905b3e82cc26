"""KD and decoupled KD (arXiv 2309.09920, 2203.08679) against hand-computed numpy values."""

import numpy as np
import pytest
import torch

from pipeline.distill.codebook import codebook_features, nearest
from pipeline.distill.kd import dkd_loss, dkd_terms, kd_loss, posterior_logits, teacher_posteriors


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def kl(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.sum(p * np.log(p / q)))


def hand_terms(student: list[float], teacher: list[float], t: int, tau: float) -> dict[str, float]:
    """KD, TCKD and NCKD of one frame written out from the definitions."""
    ps, pt = softmax(np.array(student) / tau), softmax(np.array(teacher) / tau)
    rest = [k for k in range(len(student)) if k != t]
    bs, bt = np.array([ps[t], 1 - ps[t]]), np.array([pt[t], 1 - pt[t]])
    hat_s, hat_t = ps[rest] / ps[rest].sum(), pt[rest] / pt[rest].sum()
    return {"kd": kl(pt, ps), "tckd": kl(bt, bs), "nckd": kl(hat_t, hat_s), "pt_target": float(pt[t])}


CASES = [([1.0, 2.0, 0.0], [2.0, 0.0, 1.0], 0, 1.0), ([0.5, -1.0, 3.0, 0.0], [1.0, 0.2, 2.5, -2.0], 2, 2.0)]


@pytest.mark.parametrize(("student", "teacher", "t", "tau"), CASES)
def test_terms_match_hand_computation_and_decomposition(student, teacher, t, tau):
    ref = hand_terms(student, teacher, t, tau)
    # the DKD identity, checked on the numpy numbers themselves
    assert ref["kd"] == pytest.approx(ref["tckd"] + (1 - ref["pt_target"]) * ref["nckd"], rel=1e-10)
    zs, zt = torch.tensor([[student]]), torch.tensor([[teacher]])
    target, mask = torch.tensor([[t]]), torch.ones(1, 1, dtype=torch.bool)
    tckd, nckd = dkd_terms(zs, zt, target, tau, from_logits=True)
    assert tckd.item() == pytest.approx(ref["tckd"], rel=1e-5)
    assert nckd.item() == pytest.approx(ref["nckd"], rel=1e-5)
    assert kd_loss(zs, zt.softmax(-1), tau, mask).item() == pytest.approx(tau ** 2 * ref["kd"], rel=1e-5)
    plain = dkd_loss(zs, zt, target, 1.0, 1.0, tau, mask, from_logits=True).item()
    assert plain == pytest.approx(tau ** 2 * (ref["tckd"] + ref["nckd"]), rel=1e-5)
    assert plain > kd_loss(zs, zt, tau, mask, from_logits=True).item()  # alpha = beta = 1 is not KD


def test_dkd_with_one_minus_pt_weight_reproduces_kd_over_a_batch():
    g = torch.Generator().manual_seed(0)
    zs, zt = 2 * torch.randn(3, 5, 7, generator=g), 2 * torch.randn(3, 5, 7, generator=g)
    mask = torch.arange(5)[None] < torch.tensor([5, 3, 1])[:, None]
    target, tau = zt.argmax(-1), 1.5
    beta = 1 - (zt / tau).softmax(-1).gather(-1, target[..., None])[..., 0]
    dkd = dkd_loss(zs, zt.softmax(-1), target, 1.0, beta, tau, mask)
    kd = kd_loss(zs, zt.softmax(-1), tau, mask)
    torch.testing.assert_close(dkd, kd, rtol=1e-5, atol=1e-6)


def test_zero_when_distributions_equal_and_padding_ignored():
    z = torch.randn(2, 4, 6)
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    assert kd_loss(z, z.softmax(-1), 2.0, mask).abs().item() < 1e-6
    assert dkd_loss(z, z, z.argmax(-1), 1.0, 8.0, 2.0, mask, from_logits=True).abs().item() < 1e-6
    other = z.clone()
    other[1, 2:] = torch.randn(2, 6) * 10  # garbage on padded frames only
    assert kd_loss(other, z.softmax(-1), 2.0, mask).abs().item() < 1e-6


def test_posteriors_sum_to_one_and_match_definitions():
    g = torch.Generator().manual_seed(1)
    h, mu = torch.randn(2, 5, 3, generator=g), torch.randn(4, 3, generator=g)
    for form in ("distance", "cosine"):
        p = teacher_posteriors(h, mu, 0.5, form)
        assert p.shape == (2, 5, 4)
        torch.testing.assert_close(p.sum(-1), torch.ones(2, 5))
    hn, mun = h.double().numpy(), mu.double().numpy()
    dist = teacher_posteriors(h, mu, 0.5, "distance")
    cos = teacher_posteriors(h, mu, 0.5, "cosine")
    for b in range(2):
        for t in range(5):
            d2 = np.array([np.sum((hn[b, t] - m) ** 2) for m in mun])
            c = np.array([hn[b, t] @ m / np.linalg.norm(hn[b, t]) / np.linalg.norm(m) for m in mun])
            np.testing.assert_allclose(dist[b, t].numpy(), softmax(-d2 / 0.5), rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(cos[b, t].numpy(), softmax(c / 0.5), rtol=1e-4, atol=1e-6)
            assert dist[b, t].argmax().item() == int(np.argmin(d2))


def test_hard_teacher_with_exact_zeros_gives_finite_loss_and_gradient():
    teacher = torch.nn.functional.one_hot(torch.tensor([[0, 2, 1]]), 4).float()
    zs = torch.randn(1, 3, 4, requires_grad=True)
    mask = torch.ones(1, 3, dtype=torch.bool)
    loss = kd_loss(zs, teacher, 1.0, mask) + dkd_loss(zs, teacher, teacher.argmax(-1), 1.0, 4.0, 1.0, mask)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(zs.grad).all()
    # with a one-hot teacher KD is the cross-entropy of the target
    ce = torch.nn.functional.cross_entropy(zs.detach()[0], torch.tensor([0, 2, 1]))
    assert kd_loss(zs.detach(), teacher, 1.0, mask).item() == pytest.approx(ce.item(), rel=1e-5)


@pytest.mark.parametrize("temperature", [0.05, 0.1, 1.0])
def test_distance_posterior_argmax_is_the_nearest_centroid(temperature):
    """DKD's target is the posterior's argmax; with the distance form that is the stored k-means id."""
    g = torch.Generator().manual_seed(2)
    feats = codebook_features(torch.randn(2000, 16, generator=g))
    mu = codebook_features(torch.randn(50, 16, generator=g)) * torch.rand(50, 1, generator=g)  # unequal norms
    top = posterior_logits(feats, mu, temperature, "distance").argmax(-1)
    assert torch.equal(top, nearest(feats, mu))
    d2 = ((feats.double()[:, None] - mu.double()) ** 2).sum(-1)
    assert torch.equal(top, d2.argmin(-1))


def test_unknown_form_raises():
    with pytest.raises(ValueError, match="known"):
        teacher_posteriors(torch.randn(2, 3), torch.randn(4, 3), 1.0, "dot")
