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


def test_bilstm_head_equals_a_packed_bidirectional_lstm():
    """Each direction is its own LSTM reading reversed-within-length sequences: same numbers as torch's packed
    BiLSTM with the same weights, and padding never changes a valid frame."""
    from pipeline.downstream.heads import BiLSTMCTC

    torch.manual_seed(0)
    head = BiLSTMCTC(dim=6, n_out=5, hidden=4, proj=3, dropout=0.0).eval()
    reference = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    with torch.no_grad():
        for layer in range(2):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(head.forward_lstms[layer], f"{name}_l0").copy_(getattr(reference, f"{name}_l{layer}"))
                getattr(head.backward_lstms[layer], f"{name}_l0").copy_(getattr(reference, f"{name}_l{layer}_reverse"))
    x = torch.randn(3, 9, 6)
    lengths = torch.tensor([9, 4, 6])
    mask = torch.arange(9) < lengths.unsqueeze(1)
    packed = torch.nn.utils.rnn.pack_padded_sequence(head.proj(x), lengths, batch_first=True, enforce_sorted=False)
    states, _ = torch.nn.utils.rnn.pad_packed_sequence(reference(packed)[0], batch_first=True, total_length=9)
    got = head.bilstm(head.proj(x), mask)
    torch.testing.assert_close(got[mask], states[mask])
    full = head(x, mask)
    alone = head(x[1:2, :4], torch.ones(1, 4, dtype=torch.bool))
    torch.testing.assert_close(alone[0], full[1, :4])
    assert full.shape == (3, 9, 5)


def test_superb_asr_head_from_options():
    """s3prl's ASR head: Linear(D, 1024) -> 2 BiLSTM layers of 1024 per direction -> Linear, no skip."""
    head = TASKS["asr"].head(768, 30, {"hidden": 1024, "proj": 1024, "dropout": 0.2, "skip": False})
    assert head.proj.out_features == 1024 and head.forward_lstms[1].hidden_size == 1024
    assert head.out.in_features == 2 * 1024 and head.drop.p == 0.2
    assert TASKS["asr"].head(16, 7).out.in_features == 2 * 64 + 64  # the default keeps its skip


def test_unknown_head_options_are_refused_with_the_allowed_ones():
    import pytest

    from pipeline.checks import check_config
    from pipeline.config import ConfigError

    with pytest.raises(ValueError, match=r"\['units'\] are not options of the asr head BiLSTMCTC .*'hidden'"):
        TASKS["asr"].head(16, 7, {"units": 3})
    cfg = {"seed": 0, "corpus": {"synthetic": {"voices": 1, "keyword": 0, "command": 0, "sentence": 1}},
           "views": {}, "teachers": {"t": {"kind": "fbank"}}, "cache": {}, "students": {},
           "downstream": {"tasks": {"pr": {"steps": 1, "lr": 1.0, "head": {"hidden": 8}}}}}
    with pytest.raises(ConfigError, match=r"downstream.tasks.pr.head: \['hidden'\] are not options of the pr head"):
        check_config(cfg)
