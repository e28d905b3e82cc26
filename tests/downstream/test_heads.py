"""Head output shapes and masking: padded frames must not change a pooled prediction."""

import torch

from pipeline.downstream.featurizer import WeightedSum
from pipeline.downstream.heads import DownstreamModel, PooledClassifier
from pipeline.downstream.tasks import TASKS


def test_pooled_classifier_shape():
    head = PooledClassifier(dim=16, n_out=12)
    x, mask = torch.randn(3, 7, 16), torch.ones(3, 7, dtype=torch.bool)
    assert head(x, mask).shape == (3, 12)
    assert head.proj.out_features == 256


def test_padding_does_not_change_pooled_output():
    head = PooledClassifier(dim=8, n_out=5)
    x = torch.randn(1, 4, 8)
    padded = torch.cat([x, torch.randn(1, 3, 8) * 100], dim=1)
    mask = torch.tensor([[True] * 4 + [False] * 3])
    torch.testing.assert_close(head(x, torch.ones(1, 4, dtype=torch.bool)), head(padded, mask))


def test_every_registered_task_builds_a_model():
    for task in TASKS.values():
        model = DownstreamModel(WeightedSum(3), task.make_head(16, 7))
        out = model(torch.randn(2, 5, 3, 16), torch.ones(2, 5, dtype=torch.bool))
        assert out.shape[0] == 2 and out.shape[-1] == 7
