"""Inference engines: run the network on (B, 1, H, W) float32 luminance arrays.

An engine owns the device, precision and runtime; the Fuser owns image conventions (colour,
padding, validation). Every engine implements ``fuse(vis_y, ir_y, strategy, t=None)`` (t: the smoke model's
transmission, for strategies in NEEDS_T) and ``clear(y)``
on numpy arrays, so the Fuser and the pipeline never see torch or ONNX Runtime directly.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .device import check_device
from .errors import LMFusionError
from .networks import LMFusionNet, STRATEGIES, clear_weight, soft_weight


class TorchEngine:
    """torch eager: CPU fp32, or CUDA fp16/fp32 with channels_last."""

    name = "torch"

    def __init__(self, model: LMFusionNet, device: str = "cpu", precision: str = "fp32"):
        check_device(device, precision)
        self.device = torch.device(device)
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self.model = model.to(self.device, self.dtype).eval()
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)

    def _in(self, a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(a).to(self.device, self.dtype, non_blocking=True)
        return t.contiguous(memory_format=torch.channels_last) if self.device.type == "cuda" else t

    @torch.inference_mode()
    def fuse(self, vis_y: np.ndarray, ir_y: np.ndarray, strategy: str, t: np.ndarray | None = None) -> np.ndarray:
        tt = None if t is None else self._in(t)
        out = self.model(self._in(vis_y), self._in(ir_y), strategy=strategy, t=tt)
        return out.float().cpu().numpy()

    @torch.inference_mode()
    def clear(self, y: np.ndarray) -> np.ndarray:
        return self.model.clear(self._in(y)).float().cpu().numpy()


def _energy3(x: torch.Tensor) -> torch.Tensor:
    """Squared detail averaged over 3x3 (edges reflected), (B,1,H,W) -> (B,1,H,W): networks'
    local_energy by OpenCV's box filter, ~15x faster than torch's avg_pool2d on a CPU."""
    sq = x.square().numpy()
    return torch.from_numpy(np.stack([cv2.boxFilter(sq[b, 0], -1, (3, 3)) for b in range(len(sq))])[:, None])


class ReducedResEngine:
    """Runs another engine at 1/``factor`` resolution and adds back the full-resolution detail.

    Why: on a CPU the full-resolution encoder and decoder dominate the cost; smoke and the
    latent mapping vary slowly, so the network can work on a 2x-smaller image (1/4 of the MACs)
    while the fine detail goes around it: out = up(engine(down(x))) + detail, where
    down = 2x2 mean, up = bilinear, detail = x - up(down(x)) and, for fusion, a soft choice of
    the VIS or IR detail by local energy (as ``fuse_transmission`` chooses its pyramid detail).
    With a trained autoencoder, reconstruction at 1/2 with detail add-back loses 1.7 dB against
    full resolution (43.8 -> 42.1 dB, RoadScene test, 320x256; docs/inference.md).

    Inputs: numpy float32 (B, 1, H, W) in [0, 1]; any H, W (reflect-padded internally to
    ``factor * multiple``, ``multiple`` being the inner model's size multiple).
    """

    # The soft choice of the full-resolution detail (docs/inference.md): VIS weight from
    # (detail_bias * w * E_vis)^(p/2) against E_ir^(p/2), p = detail_power, w = clear_weight(t, *clear_band).
    detail_bias = 4.0
    detail_power = 6.0
    clear_band = (0.2, 0.7)

    def __init__(self, inner, factor: int = 2, multiple: int = 1):
        if factor < 2:
            raise LMFusionError(f"resolution_scale {factor}: expected >= 2 (1 means full resolution)")
        self.inner, self.factor, self.multiple = inner, factor, multiple
        self.name = f"{inner.name}@1/{factor}"

    # Resampling by OpenCV (2x2 mean = INTER_AREA at an integer factor, bilinear with half-pixel
    # centres = INTER_LINEAR, as torch's align_corners=False): the same values as torch's
    # avg_pool2d/interpolate within 2e-7, ~9x faster on a CPU.
    def _padded(self, y: np.ndarray) -> np.ndarray:
        """(B,1,H,W) -> float32 (B,1,Hp,Wp), reflect-padded to a multiple of factor * multiple."""
        y = np.ascontiguousarray(y, dtype=np.float32)
        m = self.factor * self.multiple
        ph, pw = (-y.shape[2]) % m, (-y.shape[3]) % m
        return np.pad(y, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="reflect") if ph or pw else y

    def _low(self, y: np.ndarray) -> np.ndarray:
        """(B,1,H,W) -> the padded image's factor x factor mean (B,1,Hp/f,Wp/f)."""
        p = self._padded(y)
        size = (p.shape[3] // self.factor, p.shape[2] // self.factor)
        return np.stack([cv2.resize(p[b, 0], size, interpolation=cv2.INTER_AREA) for b in range(len(p))])[:, None]

    def _up(self, lo: np.ndarray) -> np.ndarray:
        size = (lo.shape[3] * self.factor, lo.shape[2] * self.factor)
        lo = np.ascontiguousarray(lo, dtype=np.float32)
        return np.stack([cv2.resize(lo[b, 0], size, interpolation=cv2.INTER_LINEAR) for b in range(len(lo))])[:, None]

    def _split(self, y: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
        """(B,1,H,W) -> (low (B,1,Hp/f,Wp/f) numpy, detail (B,1,Hp,Wp) torch)."""
        lo = self._low(y)
        return lo, torch.from_numpy(self._padded(y) - self._up(lo))

    def _finish(self, out_lo: np.ndarray, detail: torch.Tensor, h: int, w: int) -> np.ndarray:
        out = torch.from_numpy(self._up(out_lo)) + detail
        return out[:, :, :h, :w].clamp(0, 1).numpy()

    def fuse(self, vis_y: np.ndarray, ir_y: np.ndarray, strategy: str, t: np.ndarray | None = None) -> np.ndarray:
        lv, dv = self._split(vis_y)
        li, di = self._split(ir_y)
        if t is None:
            detail = torch.where(dv.abs() >= di.abs(), dv, di)
            out_lo = self.inner.fuse(lv, li, strategy)
        else:  # the VIS detail counts where the smoke left some (clear_weight)
            wv = clear_weight(torch.from_numpy(np.ascontiguousarray(t, dtype=np.float32)), *self.clear_band)
            wv = F.pad(wv, (0, dv.shape[3] - wv.shape[3], 0, dv.shape[2] - wv.shape[2]), mode="replicate")
            # soft choice by 3x3 energy: VIS unless the IR's energy is detail_bias times larger
            # in clear air, IR in thick smoke (chosen on the validation slice: docs/inference.md)
            a = soft_weight(self.detail_bias * wv * _energy3(dv), _energy3(di), self.detail_power, 1.0)
            detail = torch.lerp(di, dv, a)                       # a * dv + (1 - a) * di
            out_lo = self.inner.fuse(lv, li, strategy, t=self._low(t))
        return self._finish(out_lo, detail, *vis_y.shape[2:])

    def clear(self, y: np.ndarray) -> np.ndarray:
        lo, d = self._split(y)
        return self._finish(self.inner.clear(lo), d, *y.shape[2:])


ENGINES = {"torch": TorchEngine}


def make_engine(name: str, model: LMFusionNet, device: str, precision: str, **kw):
    """Build an engine by name; ``kw`` are engine options (e.g. OrtEngine's fallback, threads).

    "torch" on a CUDA device is the pipelined CudaStreamEngine (3 CUDA streams, pinned buffers);
    on the CPU it is TorchEngine. "onnxruntime" is OrtEngine (needs onnx + onnxruntime).
    ``resolution_scale=2`` (any engine) wraps it in ReducedResEngine: the CPU real-time option.
    """
    scale = kw.pop("resolution_scale", 1)
    if scale != 1:
        multiple = model.size_multiple
        return ReducedResEngine(make_engine(name, model, device, precision, **kw), scale, multiple)
    if name == "onnxruntime":
        from .onnx_engine import OrtEngine
        return OrtEngine(model, device=device, precision=precision, **kw)
    if name == "torch" and device.startswith("cuda"):
        from .cuda_engine import CudaStreamEngine  # raises LMFusionError when CUDA is absent
        return CudaStreamEngine(model, device=device, precision=precision, **kw)
    if name not in ENGINES:
        raise LMFusionError(f"engine {name!r}: expected one of: {', '.join([*ENGINES, 'onnxruntime'])}")
    return ENGINES[name](model, device=device, precision=precision, **kw)


__all__ = ["TorchEngine", "ReducedResEngine", "make_engine", "STRATEGIES"]
