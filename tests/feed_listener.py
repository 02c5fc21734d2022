"""A detector-feed listener for tests: every packet's header fields and its arrival time."""
import threading
import time
from typing import NamedTuple

import zmq

from pipeline.codec import decode


class FeedRow(NamedTuple):
    arrival: float          # time.monotonic() when the packet arrived
    kind: str
    seq: int
    t_mono: float
    t_wall: float
    meta: dict
    shapes: dict            # buffer name -> shape
    dtypes: dict            # buffer name -> numpy dtype


class FeedListener(threading.Thread):
    """Subscribes to ``address`` until ``stop`` is set; ``rows`` grows with each packet."""

    def __init__(self, address: str):
        super().__init__(daemon=True)
        self.address, self.rows, self.stop = address, [], threading.Event()

    def fused(self) -> list[FeedRow]:
        return [r for r in self.rows if r.kind == "fused"]

    def run(self):
        ctx = zmq.Context()
        s = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.SUBSCRIBE, b"")
        s.setsockopt(zmq.LINGER, 0)
        s.connect(self.address)
        while not self.stop.is_set():
            if s.poll(20):
                p = decode(s.recv_multipart(copy=False))
                self.rows.append(FeedRow(time.monotonic(), p.kind, p.seq, p.t_mono, p.t_wall, dict(p.meta),
                                         {k: v.shape for k, v in p.buffers.items()},
                                         {k: v.dtype for k, v in p.buffers.items()}))
        s.close(0)
        ctx.term()
