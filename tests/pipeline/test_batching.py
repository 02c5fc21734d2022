"""MicroBatcher: batches by size and deadline, keeps order and key separation (fake clock)."""
from __future__ import annotations

import pytest

from pipeline.batching import BatchConfig, BatchError, MicroBatcher
from pipeline.config import ConfigError


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def make(max_batch=3, max_wait_ms=10.0, key=lambda x: None):
    calls, clock = [], Clock()

    def fn(items):
        calls.append(list(items))
        return [f"f({x})" for x in items]
    return MicroBatcher(fn, BatchConfig(max_batch, max_wait_ms), key=key, clock=clock), calls, clock


def test_full_batch_runs_at_once_in_one_call():
    b, calls, _ = make(max_batch=3)
    assert b.add(1) == [] and b.add(2) == []
    assert b.add(3) == [(1, "f(1)"), (2, "f(2)"), (3, "f(3)")]
    assert calls == [[1, 2, 3]] and b.pending == 0 and b.batches == 1


def test_deadline_bounds_the_wait_of_the_oldest_item():
    b, calls, clock = make(max_batch=4, max_wait_ms=10.0)
    b.add("a")
    clock.t = 0.004
    b.add("b")
    assert b.time_to_deadline() == pytest.approx(0.006)   # counted from "a", not "b"
    assert b.poll() == []
    clock.t = 0.010
    assert b.poll() == [("a", "f(a)"), ("b", "f(b)")]
    assert b.time_to_deadline() is None and b.poll() == []
    clock.t = 0.5
    b.add("c")                                            # a fresh batch starts its own wait
    assert b.time_to_deadline() == pytest.approx(0.010)


def test_overdue_batch_runs_on_the_next_add():
    b, calls, clock = make(max_batch=4, max_wait_ms=5.0)
    b.add(1)
    clock.t = 1.0
    assert b.add(2) == [(1, "f(1)"), (2, "f(2)")]


def test_zero_wait_means_no_waiting():
    b, calls, _ = make(max_batch=4, max_wait_ms=0.0)
    assert b.add(1) == [(1, "f(1)")]


def test_items_of_another_key_never_share_a_batch():
    b, calls, _ = make(max_batch=3, key=lambda x: x[0])
    b.add(("A", 1))
    b.add(("A", 2))
    out = b.add(("B", 1))                                 # new size: the A batch runs first
    assert [i for i, _ in out] == [("A", 1), ("A", 2)]
    assert b.flush() == [(("B", 1), "f(('B', 1))")]
    assert calls == [[("A", 1), ("A", 2)], [("B", 1)]]
    assert b.flush() == []


def test_wrong_result_count_and_bad_config_are_errors():
    b = MicroBatcher(lambda items: items[:-1], BatchConfig(2, 1.0))
    b.add(1)
    with pytest.raises(BatchError, match="1 results for 2 items"):
        b.add(2)
    with pytest.raises(ConfigError, match="max_batch"):
        BatchConfig(0, 1.0)
    with pytest.raises(ConfigError, match="max_wait_ms"):
        BatchConfig(2, -1.0)


def test_add_many_batches_what_is_already_queued_even_with_zero_wait():
    b, calls, _ = make(max_batch=3, max_wait_ms=0.0)
    out = b.add_many([1, 2, 3, 4])            # a full batch, then the rest (due at once: no wait)
    assert [i for i, _ in out] == [1, 2, 3, 4] and calls == [[1, 2, 3], [4]]
    b, calls, clock = make(max_batch=4, max_wait_ms=10.0)
    assert b.add_many([1, 2]) == [] and b.pending == 2   # a wait is configured: they wait for company
    clock.t = 0.010
    assert [i for i, _ in b.poll()] == [1, 2]
