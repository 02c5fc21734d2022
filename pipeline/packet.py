"""The one message type that travels between stages.

A Packet is a small JSON-able header plus named raw numpy buffers. The wire codec
(`pipeline.codec`) turns it into a multipart ZeroMQ message: one JSON frame, then one
frame per buffer, sent zero-copy. Nothing here is ever pickled.

Kinds:
- "frame": one camera frame; buffers {"vis": HxWx3 uint8 BGR} or {"ir": HxW uint8}.
- "pair":  a time-matched, registered pair; buffers {"vis": ..., "ir": ...} in IR geometry.
- "fused": a pair plus {"fused": HxW or HxWx3 uint8}.
- "eos":   end of stream; no buffers. Every stage forwards it so sinks can flush.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

KINDS = ("frame", "pair", "fused", "eos")


@dataclass
class Packet:
    stream: str                      # logical stream name, e.g. "site0"
    kind: str                        # one of KINDS
    seq: int                         # per-stream sequence number, monotonic from 0
    t_mono: float                    # capture time, time.monotonic() seconds
    t_wall: float                    # capture time, time.time() seconds (UTC epoch)
    pts: float | None = None         # source presentation timestamp, seconds (None if unknown)
    buffers: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)  # JSON-able extras (modality, skew_ms...)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Packet.kind must be one of {KINDS}, got {self.kind!r}")

    @property
    def is_eos(self) -> bool:
        return self.kind == "eos"

    @classmethod
    def eos(cls, stream: str, seq: int = -1, **meta: Any) -> "Packet":
        now_m, now_w = time.monotonic(), time.time()
        return cls(stream=stream, kind="eos", seq=seq, t_mono=now_m, t_wall=now_w, meta=dict(meta))
