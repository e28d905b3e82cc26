"""ReadAhead: the synchronous items in order, errors raised at their item, a bounded lead, a thread that stops."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from pipeline.readahead import ReadAhead


def test_items_in_order_in_the_background():
    made_in: set[str] = set()

    def items():
        for i in range(50):
            made_in.add(threading.current_thread().name)
            yield i * i

    with ReadAhead(items(), depth=3, name="squares") as ahead:
        assert list(ahead) == [i * i for i in range(50)]
        with pytest.raises(StopIteration):
            next(ahead)
    assert made_in == {"squares"}


def test_in_memory_items_stay_in_the_callers_thread():
    made_in: list[str] = []

    def items():
        made_in.append(threading.current_thread().name)
        yield 1

    ahead = ReadAhead(items(), background=False)
    assert list(ahead) == [1] and made_in == [threading.current_thread().name]
    ahead.close()


@pytest.mark.parametrize("background", [True, False])
def test_an_error_is_raised_at_its_item_then_iteration_stops(background):
    def items():
        yield "a"
        raise KeyError("utt_7")

    ahead = ReadAhead(items(), background=background)
    assert next(ahead) == "a"
    with pytest.raises(KeyError, match="utt_7"):
        next(ahead)
    with pytest.raises(StopIteration):
        next(ahead)
    ahead.close()


def test_the_lead_is_bounded_and_close_stops_an_endless_source():
    made = itertools.count()
    ahead = ReadAhead((next(made) for _ in itertools.repeat(None)), depth=2)
    assert next(ahead) == 0
    time.sleep(0.3)  # ample time for the thread to run as far ahead as it may
    # taken 1, queued 2, one more made and waiting to be queued: nothing beyond
    assert next(made) <= 4
    ahead.close()
    assert not ahead._thread.is_alive()
