"""Fusion stage: pair packets in, fused packets out.

Input: pair packets, buffers {"vis": HxWx3 uint8 BGR or HxW uint8, "ir": HxW uint8} (same H, W).
Output: the same packet as kind "fused" with buffers {"vis", "ir", "fused"}; "fused" is HxWx3 BGR
when VIS is colour, else HxW. meta["fuser"] names the fuser that made it ("lmfusion",
"laplacian" or "average"), so a recording or a detector never has to guess.

Which fuser runs is chosen in the config and never changes silently:
- fuser: lmfusion with weights present -> the learned model (`lmfusion.load(...)`).
- fuser: lmfusion without usable weights -> FusionError at start(), unless `fallback: laplacian`
  (or average) is set, in which case one warning line says the fallback is in use.
- fuser: laplacian | average -> the classical fusers of `lmfusion.baselines` (no weights).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np

from pipeline.packet import Packet

log = logging.getLogger(__name__)

FUSERS = ("lmfusion", "laplacian", "average")


class FusionError(RuntimeError):
    """The configured fuser cannot run (missing weights, bad input); one line, names the key."""


@dataclass
class FusionConfig:
    fuser: Literal["lmfusion", "laplacian", "average"] = "laplacian"  # which fuser runs
    fallback: Literal["none", "laplacian", "average"] = "none"  # used (with a warning) if lmfusion cannot load
    device: Literal["cpu", "cuda"] = "cpu"          # lmfusion only
    weights_dir: str = "weights"                    # lmfusion only: directory of shipped weights
    precision: Literal["fp32", "fp16"] = "fp32"     # lmfusion only; fp16 needs cuda
    engine: Literal["torch", "onnxruntime"] = "torch"  # lmfusion only
    model: Literal["default", "paper"] = "default"  # lmfusion only: which shipped weights file
    strategy: str = ""                              # lmfusion latent fusion strategy; "" = the weights' own
    laplacian_levels: int = 4                       # laplacian only: pyramid levels (count)
    max_batch: int = 1                              # pairs fused in one call when several are already queued
                                                    # (GPU throughput); never waits for a batch to fill

    def __post_init__(self) -> None:
        if not 1 <= self.laplacian_levels <= 8:
            raise ValueError(f"laplacian_levels: must be in 1..8, got {self.laplacian_levels}")
        if not 1 <= self.max_batch <= 64:
            raise ValueError(f"max_batch: must be in 1..64, got {self.max_batch}")
        if self.precision == "fp16" and self.device != "cuda":
            raise ValueError("precision: fp16 needs device: cuda")


class FusionStage:
    """Wraps the configured fuser. See the module docstring."""

    def __init__(self, config: FusionConfig):
        self.config = config
        self.fuser_name = ""
        self._fuse_batch: Callable[[list, list], list] | None = None
        self.counts = {"fused": 0}

    def start(self) -> None:
        cfg = self.config
        if cfg.fuser == "lmfusion":
            try:
                import lmfusion
                fuser = lmfusion.load(weights_dir=cfg.weights_dir, device=cfg.device, precision=cfg.precision,
                                      engine=cfg.engine, strategy=cfg.strategy or None, model=cfg.model)
            except Exception as e:  # WeightsError, missing package, CUDA absent: all mean "cannot run"
                reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                if cfg.fallback == "none":
                    raise FusionError(f"fusion.fuser: lmfusion cannot load from {cfg.weights_dir!r} ({reason}); "
                                      f"train/ship weights or set fusion.fuser: laplacian, or fusion.fallback: laplacian") from None
                log.warning("fusion: lmfusion unavailable (%s); using fallback fuser %r as configured by fusion.fallback",
                            reason, cfg.fallback)
                self._use_classical(cfg.fallback)
                return
            self.fuser_name = "lmfusion"
            self._fuse_batch = fuser.fuse_batch
            return
        self._use_classical(cfg.fuser)

    def _use_classical(self, name: str) -> None:
        from lmfusion import baselines
        if name == "laplacian":
            levels = self.config.laplacian_levels
            self._fuse_batch = lambda vs, irs: [baselines.fuse_laplacian(v, i, levels=levels) for v, i in zip(vs, irs)]
        else:
            self._fuse_batch = lambda vs, irs: [baselines.fuse_average(v, i) for v, i in zip(vs, irs)]
        self.fuser_name = name

    def stop(self) -> None:
        self._fuse_batch = None

    def stats(self) -> dict:
        return {**self.counts, "fuser": self.fuser_name}

    def process(self, packet: Packet) -> Packet | None:
        """Pair packet -> fused packet; EOS is forwarded."""
        out = self.process_batch([packet])
        return out[0] if out else None

    def process_batch(self, packets: list[Packet]) -> list[Packet]:
        """Several pair packets fused in one `fuse_batch` call (the runner batches what is queued)."""
        if self._fuse_batch is None:
            raise FusionError("fusion: process() called before start()")
        pairs = [p for p in packets if not p.is_eos]
        for p in pairs:
            if p.kind != "pair" or "vis" not in p.buffers or "ir" not in p.buffers:
                raise FusionError(f"fusion expects pair packets with vis and ir buffers, got kind {p.kind!r} "
                                  f"buffers {list(p.buffers)}")
        fused = self._fuse_batch([p.buffers["vis"] for p in pairs], [p.buffers["ir"] for p in pairs]) if pairs else []
        out, it = [], iter(fused)
        for p in packets:
            if p.is_eos:
                out.append(p)
                continue
            f = np.ascontiguousarray(next(it))
            out.append(Packet(stream=p.stream, kind="fused", seq=p.seq, t_mono=p.t_mono, t_wall=p.t_wall, pts=p.pts,
                              buffers={**p.buffers, "fused": f}, meta={**p.meta, "fuser": self.fuser_name}))
            self.counts["fused"] += 1
        return out
