"""Checks of the device and precision an engine is asked for (shared by every engine module)."""
from __future__ import annotations

import torch

from .errors import LMFusionError


def check_device(device: str, precision: str) -> None:
    """One-line errors for a CUDA device that is absent or fp16 asked for on the CPU."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LMFusionError(f"device {device!r}: CUDA is not available on this machine "
                            f"(torch {torch.__version__}); use device='cpu'")
    if precision not in ("fp32", "fp16"):
        raise LMFusionError(f"precision {precision!r}: expected 'fp32' or 'fp16'")
    if precision == "fp16" and not device.startswith("cuda"):
        raise LMFusionError("precision 'fp16' needs device='cuda' (CPU inference runs in fp32)")
