"""Pipelined CUDA engine: upload of frame N+1, compute of frame N and download of frame N-1 overlap.

    eng = CudaStreamEngine(net, device="cuda", precision="fp16")
    eng.submit(vis_y, ir_y, "average", tag=seq)     # returns at once (unless all slots are busy)
    for tag, fused_y in eng.collect():              # finished frames, in submit order
        ...
    fused_y = eng.fuse(vis_y, ir_y, "average")      # the synchronous TorchEngine interface

Why: at 640x512 a pair is 2.6 MB of fp32 in and 1.3 MB out; over PCIe that is ~0.3 ms each way,
which is a large share of a few-ms fp16 forward pass. With three CUDA streams (host->device copy,
compute, device->host copy) and page-locked (pinned) host buffers, the copies run on the GPU's
copy engines while the SMs compute the previous frame, so throughput is set by the slowest stage
instead of the sum of all three.

Structure: ``PipelineScheduler`` is the scheduling logic, pure Python, written against a small
``StageOps`` interface (upload / compute / download that enqueue work and return an event; query
and wait on events; fetch a finished slot). ``TorchStageOps`` implements it with torch CUDA
streams and events; on device="cpu" the same ops run synchronously (events are None), which is
how the CPU tests check the numerics. The CPU tests also drive the scheduler with simulated
streams to check the overlap itself.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Hashable, Protocol

import numpy as np
import torch

from .device import check_device
from .errors import InputError, LMFusionError
from .networks import LMFusionNet, STRATEGIES


class StageOps(Protocol):
    """The three pipeline stages and event handling. Every stage only *enqueues* work."""

    def upload(self, slot: int, inputs: Any) -> Any:
        """Copy ``inputs`` into the slot's device buffers; return an event done when copied."""

    def compute(self, slot: int, after: Any) -> Any:
        """Run the network on the slot once ``after`` is done; return its completion event."""

    def download(self, slot: int, after: Any) -> Any:
        """Copy the slot's output to host once ``after`` is done; return its completion event."""

    def fetch(self, slot: int) -> Any:
        """The slot's host result (a copy; called only after its download event is done)."""

    def done(self, event: Any) -> bool: ...

    def wait(self, event: Any) -> None: ...


@dataclass
class _InFlight:
    tag: Hashable
    slot: int
    event: Any  # the download event: done -> the result is on the host


class PipelineScheduler:
    """Keeps up to ``depth`` frames in flight in a ring of buffer slots.

    ``submit`` enqueues upload -> compute -> download for one frame and returns without waiting
    for the device, so frame N+1's upload is queued while frame N computes. A slot is reused only
    after its previous frame's download completed (its result is fetched into ``_ready`` first),
    so pinned buffers are never overwritten in flight and memory stays bounded. Results come out
    in submit order.
    """

    def __init__(self, ops: StageOps, depth: int = 3):
        if depth < 1:
            raise LMFusionError(f"pipeline depth {depth}: expected >= 1 (3 overlaps upload, compute, download)")
        self.ops, self.depth = ops, depth
        self._free = deque(range(depth))
        self._inflight: deque[_InFlight] = deque()
        self._ready: deque[tuple[Hashable, Any]] = deque()

    @property
    def pending(self) -> int:
        """Frames submitted and not yet returned by collect()."""
        return len(self._inflight) + len(self._ready)

    def _retire_oldest(self) -> None:
        f = self._inflight.popleft()
        self.ops.wait(f.event)
        self._ready.append((f.tag, self.ops.fetch(f.slot)))
        self._free.append(f.slot)

    def _retire_done(self) -> None:
        # In order only: a later frame may finish first on another stream, but results keep
        # submit order so a sink never sees frames swapped.
        while self._inflight and self.ops.done(self._inflight[0].event):
            self._retire_oldest()

    def submit(self, inputs: Any, tag: Hashable = None) -> None:
        """Enqueue one frame. Blocks only when all ``depth`` slots are in flight (backpressure)."""
        self._retire_done()
        if not self._free:
            self._retire_oldest()
        slot = self._free.popleft()
        up = self.ops.upload(slot, inputs)
        comp = self.ops.compute(slot, up)
        self._inflight.append(_InFlight(tag, slot, self.ops.download(slot, comp)))

    def collect(self, block: bool = False) -> list[tuple[Hashable, Any]]:
        """Finished frames as (tag, result), in submit order; ``block=True`` drains everything."""
        if block:
            while self._inflight:
                self._retire_oldest()
        else:
            self._retire_done()
        out = list(self._ready)
        self._ready.clear()
        return out


@dataclass
class _Slot:
    shape: tuple = ()
    strategy: str | None = None  # None: the clear graph
    host_in: list = field(default_factory=list)    # pinned float32 (B,1,H,W), one per input
    dev_in: list = field(default_factory=list)     # float32 device tensors (cast in compute)
    dev_out: torch.Tensor | None = None
    host_out: torch.Tensor | None = None           # pinned float32 (B,1,H,W)


class TorchStageOps:
    """StageOps on torch: three CUDA streams, pinned host buffers, channels_last, fp16.

    inputs of ``upload`` are (strategy or None for clear, [arrays]) with arrays float32
    (B, 1, H, W). On device="cpu" everything runs inline and events are None.
    """

    def __init__(self, model: LMFusionNet, device: torch.device, dtype: torch.dtype, depth: int):
        self.model, self.device, self.dtype = model, device, dtype
        self.cuda = device.type == "cuda"
        self.slots = [_Slot() for _ in range(depth)]
        if self.cuda:
            self.s_up, self.s_comp, self.s_down = (torch.cuda.Stream(device) for _ in range(3))

    def _event(self, stream) -> Any:
        if not self.cuda:
            return None
        ev = torch.cuda.Event()
        ev.record(stream)
        return ev

    def _ensure(self, s: _Slot, n: int, shape: tuple) -> None:
        if s.shape == shape and len(s.host_in) == n:
            return
        # A new frame size: (re)allocate this slot. The scheduler only hands us a slot whose
        # last download finished, so no stream still reads the old buffers.
        pin = self.cuda
        s.host_in = [torch.empty(shape, dtype=torch.float32, pin_memory=pin) for _ in range(n)]
        # fp32 on the device too: copy_ across devices *and* dtypes would stage through a
        # temporary on the current stream; the cast runs in compute(), on the compute stream.
        s.dev_in = [torch.empty(shape, dtype=torch.float32, device=self.device) for _ in range(n)]
        s.host_out = torch.empty(shape, dtype=torch.float32, pin_memory=pin)
        s.shape = shape

    def upload(self, slot: int, inputs) -> Any:
        strategy, arrays = inputs
        s = self.slots[slot]
        self._ensure(s, len(arrays), arrays[0].shape)
        s.strategy = strategy
        for h, a in zip(s.host_in, arrays):
            h.numpy()[...] = a  # host memcpy into pinned memory (the DMA source)
        if not self.cuda:
            for d, h in zip(s.dev_in, s.host_in):
                d.copy_(h)
            return None
        with torch.cuda.stream(self.s_up):
            for d, h in zip(s.dev_in, s.host_in):
                d.copy_(h, non_blocking=True)
            return self._event(self.s_up)

    @torch.inference_mode()
    def compute(self, slot: int, after) -> Any:
        s = self.slots[slot]
        if not self.cuda:
            s.dev_out = self._forward(s)
            return None
        with torch.cuda.stream(self.s_comp):
            self.s_comp.wait_event(after)
            out = self._forward(s)
            out.record_stream(self.s_down)  # allocated on s_comp, read by s_down
            s.dev_out = out
            return self._event(self.s_comp)

    def _forward(self, s: _Slot) -> torch.Tensor:
        """-> float32 (B, 1, H, W) on the device (cast back so download is a plain copy)."""
        mf = torch.channels_last if self.cuda else torch.contiguous_format
        x = [d.to(self.dtype).contiguous(memory_format=mf) for d in s.dev_in]
        if s.strategy is None:
            out = self.model.clear(x[0])
        else:
            out = self.model(x[0], x[1], strategy=s.strategy, t=x[2] if len(x) > 2 else None)
        return out.float().contiguous()

    def download(self, slot: int, after) -> Any:
        s = self.slots[slot]
        if not self.cuda:
            s.host_out.copy_(s.dev_out)
            return None
        with torch.cuda.stream(self.s_down):
            self.s_down.wait_event(after)
            s.host_out.copy_(s.dev_out, non_blocking=True)  # into pinned memory: a true async DMA
            return self._event(self.s_down)

    def fetch(self, slot: int) -> np.ndarray:
        s = self.slots[slot]
        s.dev_out = None
        return s.host_out.numpy().copy()  # the slot's pinned buffer is reused by later frames

    def done(self, event) -> bool:
        return event is None or event.query()

    def wait(self, event) -> None:
        if event is not None:
            event.synchronize()


class CudaStreamEngine:
    """torch engine with a 3-stream pipeline; ``make_engine("torch", device="cuda")`` builds it.

    ``submit``/``collect`` overlap frames; ``fuse``/``clear`` are the synchronous TorchEngine
    interface (a batch is split into ``chunk``-sized pieces that pipeline among themselves;
    chunk=0 keeps the batch whole). device="cpu" runs the same code synchronously in fp32 (tests).
    """

    name = "torch-cuda-streams"

    def __init__(self, model: LMFusionNet, device: str = "cuda", precision: str = "fp16",
                 depth: int = 3, chunk: int = 0):
        check_device(device, precision)
        if chunk < 0:
            raise LMFusionError(f"chunk {chunk}: expected 0 (whole batch) or a positive batch size")
        self.device = torch.device(device)
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self.model = model.to(self.device, self.dtype).eval()
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.chunk = chunk
        self.ops = TorchStageOps(self.model, self.device, self.dtype, depth)
        self.scheduler = PipelineScheduler(self.ops, depth)

    @staticmethod
    def _check(a: np.ndarray, name: str) -> np.ndarray:
        if not isinstance(a, np.ndarray) or a.ndim != 4 or a.shape[1] != 1:
            raise InputError(f"{name}: expected a numpy (B, 1, H, W) array, got "
                             f"{getattr(a, 'shape', type(a).__name__)}")
        return a

    def _fuse_inputs(self, vis_y, ir_y, strategy: str, t) -> list[np.ndarray]:
        if strategy not in STRATEGIES:
            raise LMFusionError(f"strategy {strategy!r}: expected one of: {', '.join(STRATEGIES)}")
        if self._check(vis_y, "vis_y").shape != self._check(ir_y, "ir_y").shape:
            raise InputError(f"vis_y {vis_y.shape} and ir_y {ir_y.shape}: expected equal shapes")
        if t is not None and self._check(t, "t").shape != vis_y.shape:
            raise InputError(f"t {t.shape} and vis_y {vis_y.shape}: expected equal shapes")
        return [vis_y, ir_y] if t is None else [vis_y, ir_y, t]

    def submit(self, vis_y: np.ndarray, ir_y: np.ndarray, strategy: str, tag: Hashable = None,
               t: np.ndarray | None = None) -> None:
        """Enqueue one fuse call (float32 (B,1,H,W) x 2, and t); its result comes from ``collect``."""
        self.scheduler.submit((strategy, self._fuse_inputs(vis_y, ir_y, strategy, t)), tag)

    def submit_clear(self, y: np.ndarray, tag: Hashable = None) -> None:
        self.scheduler.submit((None, [self._check(y, "y")]), tag)

    def collect(self, block: bool = False) -> list[tuple[Hashable, np.ndarray]]:
        """Finished (tag, (B,1,H,W) float32) in submit order; block=True waits for all."""
        return self.scheduler.collect(block)

    def _run(self, arrays: list[np.ndarray], strategy: str | None) -> np.ndarray:
        if self.scheduler.pending:
            raise LMFusionError("fuse()/clear() called while submitted frames are pending; "
                                "collect(block=True) them first")
        B = arrays[0].shape[0]
        step = self.chunk or B
        for i in range(0, B, step):
            self.scheduler.submit((strategy, [a[i:i + step] for a in arrays]), i)
        return np.concatenate([r for _, r in self.scheduler.collect(block=True)], axis=0)

    def fuse(self, vis_y: np.ndarray, ir_y: np.ndarray, strategy: str, t: np.ndarray | None = None) -> np.ndarray:
        return self._run(self._fuse_inputs(vis_y, ir_y, strategy, t), strategy)

    def clear(self, y: np.ndarray) -> np.ndarray:
        return self._run([self._check(y, "y")], None)


__all__ = ["PipelineScheduler", "StageOps", "TorchStageOps", "CudaStreamEngine"]
