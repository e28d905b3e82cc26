"""Ensemble distillation helpers (arXiv 2302.12757): layer map, PCA width projection, aggregation."""

import pytest
import torch

from pipeline.distill.ensemble import aggregate, fit_projection, map_layers, project


def test_relative_depth_map_for_12_6_and_4_layer_teachers():
    # hidden-state counts (input + layers): depths 1/3, 2/3, 1 of 12, 6 and 4 layers, rounded half up
    assert map_layers([13, 7, 5]) == [[4, 8, 12], [2, 4, 6], [1, 3, 4]]
    assert map_layers([7, 5], fractions=(0.5, 1.0)) == [[3, 6], [2, 4]]
    # Resemblyzer: 3 LSTM outputs, no input state -> every one used once (not 1, 1, 2)
    assert map_layers([7, 5, 3], input_states=[True, True, False]) == [[2, 4, 6], [1, 3, 4], [0, 1, 2]]


def test_average_of_identical_teachers_is_that_teacher():
    t = torch.randn(2, 5, 6)
    torch.testing.assert_close(aggregate([t, t.clone()], "average"), t)
    a, b = torch.zeros(1, 2, 3), torch.full((1, 2, 3), 4.0)
    torch.testing.assert_close(aggregate([a, b], "average"), torch.full((1, 2, 3), 2.0))


def test_concat_adds_widths_in_teacher_order():
    a, b = torch.randn(2, 5, 6), torch.randn(2, 5, 4)
    out = aggregate([a, b], "concat")
    assert out.shape == (2, 5, 10)
    torch.testing.assert_close(out[..., 6:], b)


def test_mismatches_raise():
    with pytest.raises(ValueError, match="project them first"):
        aggregate([torch.randn(1, 2, 3), torch.randn(1, 2, 4)], "average")
    with pytest.raises(ValueError, match="frames"):
        aggregate([torch.randn(1, 2, 3), torch.randn(1, 3, 3)], "concat")
    with pytest.raises(ValueError, match="known"):
        aggregate([torch.randn(1, 2, 3)], "sum")


def test_pca_of_subspace_data_preserves_pairwise_distances():
    g = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(16, 4, generator=g, dtype=torch.float64))
    coords = 3 * torch.randn(200, 4, generator=g, dtype=torch.float64)
    x = (coords @ basis.T + torch.randn(16, generator=g, dtype=torch.float64)).float()
    mean, comps = fit_projection(x, 4)
    assert comps.shape == (16, 4)
    torch.testing.assert_close(comps.T @ comps, torch.eye(4), atol=1e-5, rtol=0)
    y = project(x, mean, comps)
    def distances(z):
        return (z[:, None] - z[None]).norm(dim=-1)

    torch.testing.assert_close(distances(y), distances(x), atol=1e-4, rtol=1e-4)


def test_pca_keeps_the_largest_variance_directions():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(500, 3, generator=g) * torch.tensor([5.0, 0.1, 2.0])
    _, comps = fit_projection(x, 2)
    # axis 0 (std 5) first, axis 2 (std 2) second, signs made positive
    torch.testing.assert_close(comps, torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]), atol=0.05, rtol=0)


def test_projection_is_identity_for_equal_widths_and_rejects_widening():
    x = torch.randn(10, 5)
    mean, comps = fit_projection(x, 5)
    torch.testing.assert_close(project(x, mean, comps), x)
    with pytest.raises(ValueError, match="cannot map"):
        fit_projection(x, 6)
