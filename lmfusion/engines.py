"""Inference engines: run the network on (B, 1, H, W) float32 luminance arrays.

An engine owns the device, precision and runtime; the Fuser owns image conventions (colour,
padding, validation). Every engine implements ``fuse(vis_y, ir_y, strategy)`` and ``clear(y)``
on numpy arrays, so the Fuser and the pipeline never see torch or ONNX Runtime directly.
"""
from __future__ import annotations

import numpy as np
import torch

from .errors import LMFusionError
from .networks import LMFusionNet, STRATEGIES


class TorchEngine:
    """torch eager: CPU fp32, or CUDA fp16/fp32 with channels_last."""

    name = "torch"

    def __init__(self, model: LMFusionNet, device: str = "cpu", precision: str = "fp32"):
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise LMFusionError(f"device {device!r}: CUDA is not available on this machine "
                                f"(torch {torch.__version__}); use device='cpu'")
        if precision not in ("fp32", "fp16"):
            raise LMFusionError(f"precision {precision!r}: expected 'fp32' or 'fp16'")
        if precision == "fp16" and not device.startswith("cuda"):
            raise LMFusionError("precision 'fp16' needs device='cuda' (CPU inference runs in fp32)")
        self.device = torch.device(device)
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self.model = model.to(self.device, self.dtype).eval()
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)

    def _in(self, a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(a).to(self.device, self.dtype, non_blocking=True)
        return t.contiguous(memory_format=torch.channels_last) if self.device.type == "cuda" else t

    @torch.inference_mode()
    def fuse(self, vis_y: np.ndarray, ir_y: np.ndarray, strategy: str) -> np.ndarray:
        out = self.model(self._in(vis_y), self._in(ir_y), strategy=strategy)
        return out.float().cpu().numpy()

    @torch.inference_mode()
    def clear(self, y: np.ndarray) -> np.ndarray:
        return self.model.clear(self._in(y)).float().cpu().numpy()


ENGINES = {"torch": TorchEngine}


def make_engine(name: str, model: LMFusionNet, device: str, precision: str, **kw):
    """Build an engine by name; ``kw`` are engine options (e.g. OrtEngine's fallback, threads).

    "torch" on a CUDA device is the pipelined CudaStreamEngine (3 CUDA streams, pinned buffers);
    on the CPU it is TorchEngine. "onnxruntime" is OrtEngine (needs onnx + onnxruntime).
    """
    if name == "onnxruntime":
        from .onnx_engine import OrtEngine
        return OrtEngine(model, device=device, precision=precision, **kw)
    if name == "torch" and device.startswith("cuda"):
        from .cuda_engine import CudaStreamEngine  # raises LMFusionError when CUDA is absent
        return CudaStreamEngine(model, device=device, precision=precision, **kw)
    if name not in ENGINES:
        raise LMFusionError(f"engine {name!r}: expected one of: {', '.join([*ENGINES, 'onnxruntime'])}")
    return ENGINES[name](model, device=device, precision=precision, **kw)


__all__ = ["TorchEngine", "make_engine", "STRATEGIES"]
