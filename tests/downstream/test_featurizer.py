"""WeightedSum: zero weights average the layers, softmax weights sum to 1, per-frame norm tames outliers."""

import torch

from pipeline.downstream.featurizer import WeightedSum


def test_zero_weights_equal_mean_of_layers():
    states = torch.randn(2, 5, 4, 8)
    out = WeightedSum(4, layer_norm=False)(states)
    torch.testing.assert_close(out, states.mean(dim=2))


def test_softmax_weights_sum_to_one_and_are_learnable():
    ws = WeightedSum(3)
    with torch.no_grad():
        ws.weights.copy_(torch.tensor([2.0, -1.0, 0.5]))
    assert abs(sum(ws.layer_weights()) - 1.0) < 1e-6
    assert ws.layer_weights()[0] == max(ws.layer_weights())
    ws(torch.randn(1, 4, 3, 6)).sum().backward()
    assert ws.weights.grad is not None


def test_layer_norm_normalises_each_frame_of_each_state():
    states = torch.randn(1, 6, 2, 16)
    states[0, 3] *= 25.0  # a huge-norm frame, as in Whisper's residual stream
    out = WeightedSum(2, layer_norm=True)(states)
    norms = out[0].norm(dim=-1)
    assert norms.max() / norms.median() < 2.0


def test_float16_input_gives_float32_output():
    out = WeightedSum(2)(torch.randn(1, 3, 2, 4).half())
    assert out.dtype == torch.float32 and out.shape == (1, 3, 4)


def test_weighted_sum_and_its_weight_gradient_match_a_per_layer_loop():
    """Any leading shape; output and d(loss)/d(weights) equal sum_l softmax(w)_l * states[..., l, :]."""
    torch.manual_seed(0)
    raw = torch.tensor([0.7, -0.4, 0.1])
    for shape in [(5, 3, 8), (2, 4, 3, 8), (0, 3, 8)]:
        states = torch.randn(shape)
        ws = WeightedSum(3, layer_norm=False)
        with torch.no_grad():
            ws.weights.copy_(raw)
        w = raw.clone().requires_grad_(True)
        expected = sum(torch.softmax(w, 0)[i] * states[..., i, :] for i in range(3))
        out = ws(states)
        torch.testing.assert_close(out, expected)
        grad_out = torch.randn_like(out)
        out.backward(grad_out)
        (expected * grad_out).sum().backward()
        torch.testing.assert_close(ws.weights.grad, w.grad)
