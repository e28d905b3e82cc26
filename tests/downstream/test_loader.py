"""Streaming splits: batches read from the cache equal the held ones bit for bit, in the sampler's order, from a
background thread that hands on errors and stops when asked."""

import itertools

import numpy as np
import pytest
import torch
from fake_cache import write_features

from pipeline.downstream.data import Features, in_memory, make_split, pad
from pipeline.downstream.loader import Loader
from pipeline.downstream.run import NORMALISE


@pytest.fixture(scope="module")
def features(tmp_path_factory) -> Features:
    rng = np.random.default_rng(0)
    arrays = {f"u{i:02d}@0": rng.normal(size=(int(rng.integers(1, 30)), 3, 8)) * 4 + 1 for i in range(20)}
    return Features(write_features(tmp_path_factory.mktemp("feats"), arrays), "fake", NORMALISE)


def test_streamed_batches_equal_held_ones(features):
    keys = features.keys
    held = make_split(features, keys, keys, pool=False, desc="", hold=True)
    streamed = make_split(features, keys, keys, pool=False, desc="", hold=False)
    assert not held.streams and streamed.streams and held.lengths == streamed.lengths
    for idx in ([0, 5, 3], [7], [2, 2, 9, 11], list(range(20))):
        (a, ma), (b, mb) = held.batch(idx), streamed.batch(idx)
        assert b.dtype == torch.float16 and torch.equal(a, b.float()) and torch.equal(ma, mb)
    states = [features.read(k) for k in keys]
    assert torch.equal(in_memory(keys, keys, states).batch([4, 1])[0], pad([states[4], states[1]])[0])


def test_loader_keeps_order_and_stops(features):
    split = make_split(features, features.keys, features.keys, pool=False, desc="", hold=False)
    order = [[i, (i * 7) % 20] for i in range(20)]
    with Loader(split, order) as loader:
        got = list(loader)
    assert [idx for idx, _ in got] == order
    assert all(torch.equal(b, split.batch(idx)[0]) for idx, (b, _) in got)
    endless = Loader(split, itertools.cycle(order))
    assert next(endless)[0] == order[0]
    endless.close()
    assert not endless._thread.is_alive()


def test_loader_raises_the_readers_error(features):
    split = make_split(features, features.keys, features.keys, pool=False, desc="", hold=False)
    with Loader(split, [[0], [99]]) as loader:
        next(loader)
        with pytest.raises(IndexError):
            next(loader)
        with pytest.raises(StopIteration):
            next(loader)
