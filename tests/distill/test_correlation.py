"""Correlation loss (arXiv 2312.12153): zero at whitened identity, monotone, numpy loop, sample count of the
statistics, auto weight."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from pipeline.distill.correlation import AutoBalance, correlation, correlation_loss, pool_time, standardize

ROOT = Path(__file__).resolve().parents[2]


def whitened(b: int, length: int, d: int, seed: int = 0) -> torch.Tensor:
    """(B, L, D) whose B * L samples (items x positions) have zero mean and identity correlation."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b * length, d, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(x - x.mean(0))
    return (q * (b * length - 1) ** 0.5).reshape(b, length, d).float()


def numpy_loss(pred, target, lengths, pool, s_d, s_o, lambda_c, lambda_s, s_s):
    """Explicit loops: torch's adaptive-average bins over valid frames, z-scores over all B * L pooled samples,
    sums over i, j."""
    def pooled(x):
        out = np.zeros((x.shape[0], pool, x.shape[2]))
        for b, n in enumerate(lengths):
            for i in range(pool):
                lo, hi = (i * n) // pool, -((-(i + 1) * n) // pool)
                out[b, i] = x[b, lo:hi].mean(0)
        return out

    def zscore(x):
        flat = x.reshape(-1, x.shape[-1])
        return (x - flat.mean(0)) / np.sqrt(flat.var(0, ddof=1) + 1e-6)

    p, h = zscore(pooled(pred)), zscore(pooled(target))
    bsz, length, d = p.shape
    n = bsz * length
    c, a = np.zeros((d, d)), np.zeros((d, d))
    for i in range(d):
        for j in range(d):
            pairs = [(b, t) for b in range(bsz) for t in range(length)]
            c[i, j] = sum(p[b, t, i] * h[b, t, j] for b, t in pairs) / (n - 1)
            a[i, j] = sum(p[b, t, i] * p[b, t, j] for b, t in pairs) / (n - 1)
    loss = 0.0
    for i in range(d):
        for j in range(d):
            if i == j:
                loss += s_d * (c[i, i] - 1) ** 2
            else:
                loss += lambda_c * s_o * c[i, j] ** 2 + lambda_s * s_s * a[i, j] ** 2
    return loss


def test_pool_time_matches_adaptive_avg_pool_per_item():
    x = torch.randn(3, 23, 4)
    lengths = [23, 17, 5]
    mask = torch.arange(23)[None] < torch.tensor(lengths)[:, None]
    out = pool_time(x, mask, 8)
    for b, n in enumerate(lengths):
        ref = F.adaptive_avg_pool1d(x[b, :n].T[None], 8)[0].T
        torch.testing.assert_close(out[b], ref)


def test_zero_for_whitened_identical_features():
    h = whitened(40, 6, 8)
    mask = torch.ones(40, 6, dtype=torch.bool)
    loss, logs = correlation_loss(h.clone(), h, mask, pool_frames=6)
    assert logs["corr_diag"] < 1e-8 and logs["corr_off"] < 1e-8 and logs["self_off"] < 1e-8
    assert loss.item() < 1e-8
    shuffled, _ = correlation_loss(h[torch.randperm(40)], h, mask, pool_frames=6)
    assert shuffled.item() > 0.1


def test_grows_monotonically_with_injected_cross_correlation():
    h = whitened(40, 5, 6, seed=1)
    mask = torch.ones(40, 5, dtype=torch.bool)
    mix = torch.randn(6, 6, generator=torch.Generator().manual_seed(2))
    mix.fill_diagonal_(0.0)
    losses = []
    for eps in (0.0, 0.05, 0.1, 0.2, 0.4, 0.8):
        pred = h @ (torch.eye(6) + eps * mix).T
        losses.append(correlation_loss(pred, h, mask, pool_frames=5)[0].item())
    assert all(b > a for a, b in zip(losses, losses[1:], strict=False)), losses


def test_equals_explicit_numpy_loop_with_padding():
    g = torch.Generator().manual_seed(3)
    pred, target = torch.randn(4, 11, 3, generator=g), torch.randn(4, 11, 3, generator=g)
    lengths = [11, 9, 7, 4]
    mask = torch.arange(11)[None] < torch.tensor(lengths)[:, None]
    # non-default weights so every term matters
    kw = {"s_d": 0.3, "s_o": 0.2, "lambda_c": 0.5, "lambda_s": 0.7, "s_s": 0.4}
    loss, _ = correlation_loss(pred, target, mask, pool_frames=5, **kw)
    ref = numpy_loss(pred.double().numpy(), target.double().numpy(), lengths, 5, **kw)
    assert loss.item() == pytest.approx(ref, rel=1e-4)


def test_einsum_equals_naive_outer_products():
    zp, zh = standardize(torch.randn(5, 7, 4)), standardize(torch.randn(5, 7, 4))
    naive = (zp[..., :, None] * zh[..., None, :]).sum((0, 1)) / (5 * 7 - 1)
    torch.testing.assert_close(correlation(zp, zh), naive)


def test_statistics_take_items_and_positions_as_samples():
    """C is the Pearson correlation of the B * L pooled samples (numpy's corrcoef); A's diagonal is 1."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, 6, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 3.0, 0.2]) + 2.0
    y = x @ torch.randn(3, 3, generator=g, dtype=torch.float64) + torch.randn(4, 6, 3, generator=g,
                                                                                dtype=torch.float64)
    zx, zy = standardize(x, eps=0.0), standardize(y, eps=0.0)
    ref = np.corrcoef(x.reshape(24, 3).numpy(), y.reshape(24, 3).numpy(), rowvar=False)
    np.testing.assert_allclose(correlation(zx, zy).numpy(), ref[:3, 3:], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(correlation(zx, zx).numpy(), ref[:3, :3], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(correlation(zx, zx).diagonal().numpy(), np.ones(3), rtol=1e-12)


def mean_abs_null_correlation(n: int) -> float:
    """E|r| of the Pearson correlation of n independent Gaussian pairs: density (1 - r^2)^((n-4)/2) / B(1/2,
    (n-2)/2) on [-1, 1], so E|r| = 2 / ((n - 2) B(1/2, (n - 2)/2))."""
    log_beta = math.lgamma(0.5) + math.lgamma((n - 2) / 2) - math.lgamma((n - 1) / 2)
    return 2.0 / ((n - 2) * math.exp(log_beta))


def mean_abs_off_diagonal(b: int, length: int, d: int, seed: int) -> float:
    x = torch.randn(b, length, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    z = standardize(x)
    a = correlation(z, z)
    return float((a.abs().sum() - a.diagonal().abs().sum()) / (d * (d - 1)))


def test_default_config_gives_the_statistics_enough_samples():
    """Independent dims (D = 512, Whisper base's width): at the default config's batch x pooled positions the
    spurious off-diagonal correlations average below 0.1, as the B * L-sample theory says; from 8 samples
    (a batch alone) they do not."""
    students = yaml.safe_load((ROOT / "config.yaml").read_text())["students"]
    for name in ("corr_fixed", "corr_auto"):
        train, pool = students[name]["train"], students[name]["options"]["pool_frames"]
        assert pool <= train["crop_seconds"] * 50  # pooled positions are distinct frames, not repeats
        b, n = train["batch_size"], train["batch_size"] * pool
        assert (b, n) == (8, 200)
        got = mean_abs_off_diagonal(b, pool, 512, seed=6)
        assert got == pytest.approx(mean_abs_null_correlation(n), rel=0.02)  # 0.0567
        assert got < 0.1
    few = mean_abs_off_diagonal(8, 1, 512, seed=7)
    assert few == pytest.approx(mean_abs_null_correlation(8), rel=0.02)  # 0.3125
    assert few > 0.1


def test_gradient_reaches_pred_only_through_valid_frames():
    pred = torch.randn(4, 10, 3, requires_grad=True)
    mask = torch.arange(10)[None] < torch.tensor([10, 8, 6, 5])[:, None]
    correlation_loss(pred, torch.randn(4, 10, 3), mask, pool_frames=4)[0].backward()
    assert pred.grad[~mask].abs().max() == 0 and pred.grad[mask].abs().max() > 0


def run(weighting: str, steps: int = 120) -> list[dict[str, float]]:
    """Synthetic training: the student's noise shrinks, so the cross term falls ~10^4x over the run."""
    g = torch.Generator().manual_seed(4)
    state = AutoBalance(target_ratio=0.1, momentum=0.5)
    mask = torch.ones(32, 8, dtype=torch.bool)
    logs = []
    for step in range(steps):
        h = torch.randn(32, 8, 8, generator=g)
        pred = h + 2 * 0.975 ** step * torch.randn(32, 8, 8, generator=g)
        logs.append(correlation_loss(pred, h, mask, pool_frames=8, weighting=weighting, state=state)[1])
    return logs


def test_auto_weight_keeps_ratio_in_band_where_fixed_weight_drifts():
    auto, fixed = run("auto"), run("fixed")
    ratios = [lg["self_term"] / lg["cross_term"] for lg in auto[5:]]
    assert all(0.05 < r < 0.2 for r in ratios), (min(ratios), max(ratios))  # within 2x of the target 0.1
    fixed_ratios = [lg["self_term"] / lg["cross_term"] for lg in fixed]
    assert max(fixed_ratios) / min(fixed_ratios) > 1000  # with fixed weights the self term's share drifts


def test_auto_weight_is_deterministic_and_checkpointed():
    assert run("auto", 20) == run("auto", 20)
    state = AutoBalance(target_ratio=0.5, momentum=0.5)
    state(torch.tensor(2.0), torch.tensor(4.0))
    w = state(torch.tensor(4.0), torch.tensor(4.0))
    assert w.item() == pytest.approx(0.5 * 3.0 / 4.0)  # averages (2+4)/2 and (4+4)/2
    restored = AutoBalance(target_ratio=0.5, momentum=0.5)
    restored.load_state_dict(state.state_dict())
    restored.eval()
    assert restored(torch.tensor(100.0), torch.tensor(1.0)).item() == pytest.approx(w.item())
    assert int(restored.steps) == 2


def test_auto_needs_state_and_batch_of_two():
    with pytest.raises(ValueError, match="AutoBalance"):
        correlation_loss(torch.randn(3, 4, 2), torch.randn(3, 4, 2), torch.ones(3, 4, dtype=torch.bool),
                         pool_frames=4, weighting="auto")
    with pytest.raises(ValueError, match="at least 2"):
        correlation_loss(torch.randn(1, 4, 2), torch.randn(1, 4, 2), torch.ones(1, 4, dtype=torch.bool))
