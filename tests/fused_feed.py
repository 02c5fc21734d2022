"""A detector-feed listener for tests: every fused packet's (arrival monotonic, t_mono, t_wall)."""
import threading
import time

import zmq

from pipeline.codec import decode


class FusedFeed(threading.Thread):
    """Subscribes to ``address`` until ``stop`` is set; ``rows`` grows with each fused packet."""

    def __init__(self, address: str):
        super().__init__(daemon=True)
        self.address, self.rows, self.stop = address, [], threading.Event()

    def run(self):
        ctx = zmq.Context()
        s = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.SUBSCRIBE, b"")
        s.setsockopt(zmq.LINGER, 0)
        s.connect(self.address)
        while not self.stop.is_set():
            if s.poll(20):
                p = decode(s.recv_multipart(copy=False))
                if p.kind == "fused":
                    self.rows.append((time.monotonic(), p.t_mono, p.t_wall))
        s.close(0)
        ctx.term()
