"""Gradient reversal and the domain classifier (arXiv 2210.07978)."""

import math

import pytest
import torch

from pipeline.distill.adversarial import DomainClassifier, dann_lambda, domain_adversarial_loss, grad_reverse


def test_forward_is_identity():
    x = torch.randn(2, 5, 3)
    torch.testing.assert_close(grad_reverse(x, 0.3), x, rtol=0, atol=0)


@pytest.mark.parametrize("lambd", [0.0, 0.25, 1.0, 3.0])
def test_gradient_is_minus_lambda_times_plain_gradient(lambd):
    x = torch.randn(4, 3, requires_grad=True)
    w = torch.randn(3, 2)

    def f(z):
        return torch.tanh(z @ w).pow(2).sum()

    (plain,) = torch.autograd.grad(f(x), x)
    (reversed_,) = torch.autograd.grad(f(grad_reverse(x, lambd)), x)
    torch.testing.assert_close(reversed_, -lambd * plain)
    assert lambd == 0.0 or plain.abs().max() > 0


def test_classifier_ignores_padded_frames():
    clf = DomainClassifier(4, 3, hidden=8)
    x = torch.randn(2, 6, 4)
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    y = x.clone()
    y[1, 3:] = 100.0
    torch.testing.assert_close(clf(x, mask), clf(y, mask))
    manual = clf.net(x[1, :3].mean(0))
    torch.testing.assert_close(clf(x, mask)[1], manual)


def test_adversarial_loss_trains_classifier_and_reverses_student_gradient():
    torch.manual_seed(0)
    clf = DomainClassifier(4, 2, hidden=8)
    states = torch.randn(3, 5, 4, requires_grad=True)
    mask = torch.ones(3, 5, dtype=torch.bool)
    domains = torch.tensor([0, 1, 1])
    loss, logs = domain_adversarial_loss(clf, states, mask, domains, lambd=0.5)
    loss.backward()
    plain_states = states.detach().clone().requires_grad_(True)
    ce = torch.nn.functional.cross_entropy(clf(plain_states, mask), domains)
    (g_plain,) = torch.autograd.grad(ce, plain_states)
    torch.testing.assert_close(states.grad, -0.5 * g_plain)
    assert logs["domain_ce"] == pytest.approx(ce.item())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in clf.parameters())


def test_dann_schedule_endpoints_and_monotone():
    assert dann_lambda(0.0) == 0.0
    assert dann_lambda(1.0, max_lambda=0.3) == pytest.approx(0.3 * (2 / (1 + math.exp(-10)) - 1))
    values = [dann_lambda(p / 10) for p in range(11)]
    assert all(b > a for a, b in zip(values, values[1:], strict=False))
