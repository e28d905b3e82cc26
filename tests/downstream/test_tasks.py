"""Task registry and label codecs: encoding, unseen labels, slot decoding and the IC all-slots rule."""

import pytest
import torch

from pipeline.downstream.metrics import slot_accuracy
from pipeline.downstream.tasks import ClassCodec, SlotCodec, codec_from_state, get_task


def test_registry_names_columns_and_refuses_unknown():
    assert get_task("ks").column == "keyword"
    assert get_task("ic").column == "intent"
    assert get_task("sid").column == "speaker" and get_task("er").column == "style"
    with pytest.raises(KeyError, match="known"):
        get_task("nope")


def test_class_codec_round_trip_and_unseen():
    codec = ClassCodec.fit(["yes", "no", "yes ", "up"])
    assert codec.vocab == ["no", "up", "yes"] and codec.n_outputs == 3
    assert codec.encode("yes") == 2 and codec.encode("banana") is None
    logits = torch.tensor([[0.0, 0.0, 5.0], [5.0, 0.0, 0.0]])
    assert codec.decode(logits, torch.ones(2, 1, dtype=torch.bool)) == ["yes", "no"]
    assert codec_from_state(codec.state()).vocab == codec.vocab


def test_slot_codec_sizes_loss_and_decode():
    labels = ["activate|lights|kitchen", "deactivate|music|none", "activate|music|bedroom"]
    codec = SlotCodec.fit(labels)
    assert codec.sizes == [2, 2, 3] and codec.n_outputs == 7
    assert codec.encode("activate|lights|garage") is None
    target = codec.collate([codec.encode(x) for x in labels])
    assert target.shape == (3, 3)
    logits = torch.zeros(3, 7, requires_grad=True)
    codec.loss(logits, None, target).backward()
    assert logits.grad is not None
    peaked = torch.full((1, 7), -9.0)
    peaked[0, [0, 3, 4]] = 9.0  # activate, music, bedroom
    assert codec.decode(peaked, None) == ["activate|music|bedroom"]
    assert codec_from_state(codec.state()).slots == codec.slots


def test_slot_codec_refuses_ragged_slots():
    with pytest.raises(ValueError, match="slots"):
        SlotCodec.fit(["a|b|c", "a|b"])


def test_ic_accuracy_counts_partial_slot_matches_wrong():
    refs = ["activate|lights|kitchen", "increase|volume|none", "bring|shoes|none", "decrease|heat|bedroom"]
    preds = ["activate|lights|kitchen", "increase|volume|kitchen", "bring|socks|none",
             "decrease | heat | bedroom"]
    assert slot_accuracy(refs, preds) == pytest.approx(2 / 4)
