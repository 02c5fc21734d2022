"""Micro-batching: several camera pairs fused in one engine call, with a bounded wait.

    batcher = MicroBatcher(lambda pairs: fuser.fuse_batch(*zip(*pairs)), BatchConfig(4, 5.0),
                           key=lambda pair: pair[0].shape)
    for pair, fused in batcher.add((vis, ir)):     # batches completed by this add (maybe none)
        ...
    ... batcher.add_many(queued)                   # what is already queued joins one batch, no wait
    ... batcher.time_to_deadline() -> the receive timeout; on timeout: batcher.poll()
    ... at end of stream: batcher.flush()

The fusion worker (pipeline.worker) batches a stage that declares `batched = True` this way.
Why: a GPU runs one batch of 4 pairs in much less than 4 times one pair's time, but a pair must
not wait long for company: ``max_wait_ms`` bounds the latency batching adds. Pure logic (no
threads, an injectable clock), so the fusion stage and its runner own the loop and the tests
need no timing.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Sequence

from common.schema import ConfigError


class BatchError(RuntimeError):
    """The batch function broke its contract (one result per item)."""


@dataclass(frozen=True)
class BatchConfig:
    max_batch: int = 4         # pairs per engine call (1 = no batching)
    max_wait_ms: float = 5.0   # longest the oldest pending pair waits for company, ms

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ConfigError(f"max_batch: expected >= 1, got {self.max_batch}")
        if self.max_wait_ms < 0:
            raise ConfigError(f"max_wait_ms: expected >= 0 ms, got {self.max_wait_ms}")


class MicroBatcher:
    """Collects items until ``max_batch`` or until the oldest waited ``max_wait_ms``; then one
    ``fn(items) -> results`` call (len(results) == len(items)).

    Items with different ``key(item)`` (e.g. frame sizes, which one engine batch cannot mix)
    never share a batch: an item with a new key first runs the pending batch. Every method
    returns the (item, result) pairs of the batches it ran, in arrival order.
    """

    def __init__(self, fn: Callable[[list], Sequence], config: BatchConfig = BatchConfig(),
                 key: Callable[[Any], Hashable] = lambda item: None,
                 clock: Callable[[], float] = time.monotonic):
        self.fn, self.config, self.key, self.clock = fn, config, key, clock
        self._items: list = []
        self._key: Hashable = None
        self._t_first = 0.0  # clock() when the oldest pending item arrived, s
        self.batches = 0     # engine calls made (for stats)

    @property
    def pending(self) -> int:
        return len(self._items)

    def _run(self) -> list[tuple[Any, Any]]:
        items, self._items = self._items, []
        if not items:
            return []
        results = list(self.fn(items))
        self.batches += 1
        if len(results) != len(items):
            raise BatchError(f"batch function returned {len(results)} results for {len(items)} items")
        return list(zip(items, results))

    def add(self, item: Any) -> list[tuple[Any, Any]]:
        """Queue one item; runs the batch when full, due, or when this item's key differs."""
        return self.add_many([item])

    def add_many(self, items: Sequence) -> list[tuple[Any, Any]]:
        """Queue items that are already here, then run what is full or due.

        Unlike calling ``add`` per item, the items join one batch even when ``max_wait_ms`` is 0:
        a runner that drains its input queue batches what has queued up without ever waiting.
        """
        out = []
        for item in items:
            k = self.key(item)
            if self._items and k != self._key:
                out += self._run()
            if not self._items:
                self._key, self._t_first = k, self.clock()
            self._items.append(item)
            if len(self._items) >= self.config.max_batch:
                out += self._run()
        return out + self.poll()

    def time_to_deadline(self) -> float | None:
        """Seconds until the pending batch is due (0 if overdue); None when nothing is pending."""
        if not self._items:
            return None
        return max(0.0, self._t_first + self.config.max_wait_ms / 1000.0 - self.clock())

    def poll(self) -> list[tuple[Any, Any]]:
        """Run the pending batch if its oldest item has waited ``max_wait_ms``."""
        if self._items and self.time_to_deadline() == 0.0:
            return self._run()
        return []

    def flush(self) -> list[tuple[Any, Any]]:
        """Run whatever is pending now (end of stream, stop)."""
        return self._run()


__all__ = ["BatchConfig", "MicroBatcher"]
