"""Fusion stage: pair packets in, fused packets out.

Input: pair packets, buffers {"vis": HxWx3 uint8 BGR or HxW uint8, "ir": HxW uint8} (same H, W).
Output: the same packet as kind "fused" with buffers {"vis", "ir", "fused"}; "fused" is HxWx3 BGR
when VIS is colour, else HxW. With a smoke model (the shipped lmfusion weights) also buffer "smoke"
(HxW uint8, the transmission t * 255: 0 = opaque smoke, 255 = clear air) and meta["smoke"] =
{"coverage": fraction of pixels with t < 0.5, "mean_t": mean t}, both in [0, 1]. meta["fuser"] names the fuser that made it ("lmfusion",
"laplacian" or "average"), so a recording or a detector never has to guess.

For lmfusion, `device`, `model`, `engine`, `precision` and `resolution_scale` default to "auto":
start() decides them for the machine it runs on (resolve_auto: the full model in fp16 with CUDA,
the CPU real-time option without; on a CPU the network's resolution follows the frame size,
cpu_scale) and logs the choice and its reason in one line; stats()["choice"] repeats it for the
exit summary. Explicit values always win.

Which fuser runs is chosen in the config and never changes silently:
- fuser: lmfusion with weights present -> the learned model (`lmfusion.load(...)`).
- fuser: lmfusion without usable weights -> FusionError at start(), unless `fallback: laplacian`
  (or average) is set, in which case one warning line says the fallback is in use.
- fuser: laplacian | average -> the classical fusers of `lmfusion.baselines` (no weights).

One fusion stage can serve several camera pairs (the config's `pairs:`): packets of every pair
arrive on one input and each keeps its `stream` (the pair's name), which the runner uses to send
it to that pair's recorder. The runner gathers up to `max_batch` pairs, waiting at most
`max_wait_ms` for the oldest (pipeline.batching.MicroBatcher), and calls `process_batch` once;
`stats()` reports the batches and their mean size.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np

from pipeline.packet import Packet

log = logging.getLogger(__name__)

FUSERS = ("lmfusion", "laplacian", "average")


class FusionError(RuntimeError):
    """The configured fuser cannot run (missing weights, bad input); one line, names the key."""


AUTO = "auto"


@dataclass
class FusionConfig:
    fuser: Literal["lmfusion", "laplacian", "average"] = "laplacian"  # which fuser runs
    fallback: Literal["none", "laplacian", "average"] = "none"  # used (with a warning) if lmfusion cannot load
    # lmfusion only: "auto" (the default of the next five keys) picks for the machine the stage runs
    # on (resolve_auto): CUDA if torch sees a GPU, else the CPU. An explicit value always wins.
    device: Literal["auto", "cpu", "cuda"] = AUTO
    weights_dir: str = "weights"                    # lmfusion only: directory of shipped weights
    precision: Literal["auto", "fp32", "fp16"] = AUTO   # auto: fp16 on CUDA, fp32 on the CPU
    engine: Literal["auto", "torch", "onnxruntime"] = AUTO  # auto: torch (CUDA streams) on CUDA, onnxruntime on the CPU
    model: Literal["auto", "default", "paper"] = AUTO  # auto: default (with its smoke model) everywhere
    resolution_scale: int | Literal["auto"] = AUTO  # 2 = network at half resolution, detail added back
                                                    # (the CPU real-time option); 1 = full; auto: 1 on CUDA; on
                                                    # the CPU per frame size, 2 or 4 (cpu_scale: network <= 160x128 px)
    threads: int = 0                                # lmfusion only: inference threads (onnxruntime intra-op,
                                                    # torch set_num_threads); 0 = the engine's default
                                                    # (engine auto on a CPU: 1, the other core captures/encodes)
    strategy: str = ""                              # lmfusion latent fusion strategy; "" = the weights' own
    laplacian_levels: int = 4                       # laplacian only: pyramid levels (count)
    max_batch: int = 1                              # pairs (of any camera pair) fused in one call (count)
    max_wait_ms: float = 0.0                        # longest the oldest queued pair waits for company, ms;
                                                    # 0 = never wait, batch only what is already queued

    def __post_init__(self) -> None:
        if not 1 <= self.laplacian_levels <= 8:
            raise ValueError(f"laplacian_levels: must be in 1..8, got {self.laplacian_levels}")
        if not 1 <= self.max_batch <= 64:
            raise ValueError(f"max_batch: must be in 1..64, got {self.max_batch}")
        if not 0 <= self.max_wait_ms <= 10_000:
            raise ValueError(f"max_wait_ms: must be in 0..10000 ms, got {self.max_wait_ms}")
        if self.resolution_scale not in (1, 2, 4, AUTO):
            raise ValueError(f"resolution_scale: must be 1, 2, 4 or auto, got {self.resolution_scale!r}")
        if not 0 <= self.threads <= 256:
            raise ValueError(f"threads: must be in 0..256 (0 = the engine's default), got {self.threads}")
        if self.precision == "fp16" and self.device == "cpu":
            raise ValueError("precision: fp16 needs device: cuda")

    def engine_options(self) -> dict:
        """What ``lmfusion.load(engine_options=...)`` gets from this (resolved) section."""
        opts: dict = {}
        if self.resolution_scale not in (1, AUTO):
            opts["resolution_scale"] = self.resolution_scale
        if self.threads and self.engine == "onnxruntime":
            opts["threads"] = self.threads
        return opts


# What "auto" means per device: the full model in fp16 on a GPU; on a CPU the real-time option,
# the default model on ONNX Runtime, one intra-op thread, the network at 1/2 or 1/4 of
# the frame size (resolution_scale stays "auto": cpu_scale() decides per frame size)
# (docs/inference.md, "The CPU real-time option").
AUTO_CHOICES = {
    "cuda": {"model": "default", "engine": "torch", "precision": "fp16", "resolution_scale": 1},
    "cpu": {"model": "default", "engine": "onnxruntime", "precision": "fp32", "resolution_scale": AUTO},
}
AUTO_CPU_THREADS = 1
# The network's input on a CPU, px: 160x128 (a 320x256 IR frame at 1/2) costs ~47 CPU-ms per
# pair with the default model on onnxruntime, half of the 100 ms a 10 fps camera leaves
# (bench/bench_pipeline.py). Larger frames get a larger factor.
CPU_NET_PIXELS = 160 * 128
WARM_UP_SIZE = (320, 256)   # (w, h) of the blank pair fused at start(): the most common LWIR size
CPU_SCALES = (2, 4)


def cpu_scale(w: int, h: int) -> int:
    """resolution_scale for a w x h frame on the CPU: the smallest of CPU_SCALES that brings the
    network's input to at most CPU_NET_PIXELS (4 when none does)."""
    for s in CPU_SCALES:
        if (w // s) * (h // s) <= CPU_NET_PIXELS:
            return s
    return CPU_SCALES[-1]


def cuda_available() -> bool:
    """True when torch is importable and sees a CUDA device."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve_auto(cfg: FusionConfig, has_cuda: bool) -> tuple[FusionConfig, str]:
    """(the section with every "auto" replaced, one line saying what was chosen and why).

    Explicit values are kept as they are; ``has_cuda`` is what the machine offers (cuda_available()).
    Raises FusionError when an explicit value cannot run with the chosen device (fp16 on a CPU)."""
    keys = ("device", "model", "engine", "precision", "resolution_scale")
    auto = [k for k in keys if getattr(cfg, k) == AUTO]
    if cfg.device == AUTO:
        device = "cuda" if has_cuda else "cpu"
        why = "torch sees a CUDA device" if has_cuda else "torch sees no CUDA device"
    else:
        device, why = cfg.device, "fusion.device set"
    pick = {k: AUTO_CHOICES[device][k] for k in auto if k != "device"}
    threads = cfg.threads
    if device == "cpu" and cfg.engine == AUTO and not threads:
        threads = AUTO_CPU_THREADS
    if cfg.precision == "fp16" and device != "cuda":
        raise FusionError(f"fusion.precision: fp16 needs CUDA, but device is {device} ({why}); "
                          f"set fusion.precision: fp32 or auto")
    res = dataclasses.replace(cfg, device=device, threads=threads, **pick)
    scale = f" at 1/{res.resolution_scale} resolution" if res.resolution_scale not in (1, AUTO) else ""
    if res.resolution_scale == AUTO:
        scale = " at 1/2 or 1/4 resolution (network <= 160x128 px)"
    thr = f", {res.threads} thread{'s' if res.threads > 1 else ''}" if res.threads else ""
    what = f"{device}: model {res.model}{scale} on {res.engine} {res.precision}{thr}"
    if not auto:
        return res, f"{what} (all set in fusion)"
    kind = "the full model on the GPU" if device == "cuda" else "the CPU real-time option"
    explicit = [k for k in keys if k not in auto]
    tail = f"; set: {', '.join(explicit)}" if explicit else ""
    return res, f"{what} ({why}; auto: {', '.join(auto)} -> {kind}{tail})"


class FusionStage:
    """Wraps the configured fuser. See the module docstring."""
    Config = FusionConfig
    inputs = ("pairs",)
    outputs = ("fused",)
    batched = True                   # the worker calls process_batch with up to max_batch pairs

    def __init__(self, config: FusionConfig, has_cuda: Callable[[], bool] = cuda_available):
        self.config = config
        self._has_cuda = has_cuda          # injectable: tests choose the machine
        self.choice = ""                   # lmfusion: what resolve_auto chose and why (one line)
        self.fuser_name = ""
        self._resolved = config            # lmfusion: the section with "auto" decided (resolve_auto)
        self._fusers: dict[int, object] = {}   # lmfusion: resolution_scale -> lmfusion Fuser
        self._fuse_batch: Callable[[list, list], list] | None = None
        self.counts = {"fused": 0, "batches": 0, "fuse_calls": 0, "max_batch_seen": 0}
        self.per_stream: dict[str, int] = {}   # fused pairs per camera pair (packet.stream)

    def start(self) -> None:
        cfg = self.config
        if cfg.fuser == "lmfusion":
            cfg, self.choice = resolve_auto(cfg, self._has_cuda())
            log.info("fusion: %s", self.choice)
            self._resolved = cfg
            # auto on a CPU: the 1/2 model now (the demo's 320x256; load errors surface here), 1/4 on first use
            scale = 2 if cfg.resolution_scale == AUTO else cfg.resolution_scale
            try:
                if cfg.threads:  # torch runs the smoke model and the 1/2 wrapper whatever the engine:
                    import torch  # two torch threads beside the other stages cost 2x the wall time
                    torch.set_num_threads(cfg.threads)
                fuser = self._load(scale)
            except Exception as e:  # WeightsError, missing package, CUDA absent: all mean "cannot run"
                reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                if cfg.fallback == "none":
                    raise FusionError(f"fusion.fuser: lmfusion cannot load from {cfg.weights_dir!r} ({reason}); "
                                      f"train/ship weights or set fusion.fuser: laplacian, or fusion.fallback: laplacian") from None
                log.warning("fusion: lmfusion unavailable (%s); using fallback fuser %r as configured by fusion.fallback",
                            reason, cfg.fallback)
                self._use_classical(cfg.fallback)
                return
            self._fusers = {scale: fuser}
            self._warm_up(fuser)
            self.fuser_name = "lmfusion"
            self._fuse_batch = lambda vs, irs: self.fuser_for(vs[0].shape[1], vs[0].shape[0]).fuse_batch(vs, irs)
            log.info("fusion: %s (max_batch %d, max_wait_ms %g)", fuser.name, cfg.max_batch, cfg.max_wait_ms)
            return
        self._use_classical(cfg.fuser)

    def _warm_up(self, fuser) -> None:
        """Two fusions of a blank WARM_UP_SIZE pair before the cameras start: the engine's first
        calls allocate and pick kernels (several times a normal call), which made the first
        ~10 live pairs queue up behind them (capture->fused 250-425 ms instead of ~100 ms)."""
        import time
        w, h = WARM_UP_SIZE
        t0 = time.perf_counter()
        for _ in range(2):
            fuser.fuse_batch([np.zeros((h, w, 3), np.uint8)], [np.zeros((h, w), np.uint8)])
        log.info("fusion: warmed up on %dx%d in %.0f ms", w, h, (time.perf_counter() - t0) * 1e3)

    def _load(self, scale: int):
        """lmfusion.load(...) of the resolved section at this resolution_scale."""
        import lmfusion
        cfg = dataclasses.replace(self._resolved, resolution_scale=scale)
        return lmfusion.load(weights_dir=cfg.weights_dir, device=cfg.device, precision=cfg.precision,
                             engine=cfg.engine, strategy=cfg.strategy or None, model=cfg.model,
                             engine_options=cfg.engine_options())

    def fuser_for(self, w: int, h: int):
        """The lmfusion Fuser for w x h frames: the one loaded, or with resolution_scale auto on
        a CPU the one at cpu_scale(w, h), loaded (and logged) on the first frame of that size."""
        if self._resolved.resolution_scale != AUTO:
            return next(iter(self._fusers.values()))
        scale = cpu_scale(w, h)
        if scale not in self._fusers:
            self._fusers[scale] = self._load(scale)
            log.info("fusion: %dx%d frames: %s (resolution_scale auto: network at %dx%d)",
                     w, h, self._fusers[scale].name, w // scale, h // scale)
        return self._fusers[scale]

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
        """Counters for telemetry: fused pairs, batches (process_batch calls with pairs) and their
        mean size, fuser calls (one per frame size in a batch), fused pairs per stream."""
        c = self.counts
        mean = round(c["fused"] / c["batches"], 2) if c["batches"] and self.config.max_batch > 1 else None
        out = {**c, "mean_batch": mean, "per_stream": dict(self.per_stream), "fuser": self.fuser_name}
        if self.choice:
            out["choice"] = self.choice
        return out

    def process(self, packet: Packet) -> list[Packet]:
        """Pair packet -> [fused packet]."""
        return self.process_batch([packet])

    def finish(self) -> list[Packet]:
        """End of stream: nothing is held."""
        return []

    def process_batch(self, packets: list[Packet]) -> list[Packet]:
        """Pair packets, of one or several camera pairs, fused in as few fuser calls as their frame
        sizes allow (one per size). Returns one packet per input, in input order; each fused packet
        keeps its input's stream, seq, clocks and meta, so it goes back to its own camera pair."""
        if self._fuse_batch is None:
            raise FusionError("fusion: process() called before start()")
        pairs = packets
        groups: dict[tuple, list[int]] = {}   # (vis shape, ir shape) -> indices into pairs
        for i, p in enumerate(pairs):
            if p.kind != "pair" or "vis" not in p.buffers or "ir" not in p.buffers:
                raise FusionError(f"fusion expects pair packets with vis and ir buffers, got kind {p.kind!r} "
                                  f"buffers {list(p.buffers)}")
            groups.setdefault((p.buffers["vis"].shape, p.buffers["ir"].shape), []).append(i)
        fused: list = [None] * len(pairs)
        for idx in groups.values():
            res = self._fuse_batch([pairs[i].buffers["vis"] for i in idx], [pairs[i].buffers["ir"] for i in idx])
            for i, f in zip(idx, res):
                fused[i] = f
        if pairs:
            c = self.counts
            c["batches"] += 1
            c["fuse_calls"] += len(groups)
            c["max_batch_seen"] = max(c["max_batch_seen"], len(pairs))
        out = []
        for p, f in zip(pairs, fused):
            meta, extra = {**p.meta, "fuser": self.fuser_name}, {}
            if hasattr(f, "fused"):  # lmfusion's FusionResult
                if f.t is not None:  # the smoke model's transmission: summary + map (0 = opaque, 255 = clear)
                    meta["smoke"] = f.smoke
                    extra["smoke"] = np.clip(f.t * 255 + 0.5, 0, 255).astype(np.uint8)
                f = f.fused
            out.append(Packet(stream=p.stream, kind="fused", seq=p.seq, t_mono=p.t_mono, t_wall=p.t_wall, pts=p.pts,
                              buffers={**p.buffers, "fused": np.ascontiguousarray(f), **extra}, meta=meta))
            self.counts["fused"] += 1
            self.per_stream[p.stream] = self.per_stream.get(p.stream, 0) + 1
        return out
