"""SSIM and MS-SSIM in torch (Wang et al. 2004; Wang, Simoncelli, Bovik 2003), for training.

Inputs (B, C, H, W) float; ``data_range`` is the value span (1 for images in [0, 1]).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _gauss(size: int, sigma: float, device, dtype) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def _filter(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    C = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(C, 1, 1, -1), groups=C)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(C, 1, -1, 1), groups=C)


def _ssim_cs(x, y, data_range, size=11, sigma=1.5):
    size = min(size, x.shape[-1] - (1 - x.shape[-1] % 2), x.shape[-2] - (1 - x.shape[-2] % 2))
    g = _gauss(size, sigma, x.device, x.dtype)  # window shrinks (odd) on maps under 11 px
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = _filter(x, g), _filter(y, g)
    sxx = _filter(x * x, g) - mx * mx
    syy = _filter(y * y, g) - my * my
    sxy = _filter(x * y, g) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    lum = (2 * mx * my + c1) / (mx * mx + my * my + c1)
    return (lum * cs).mean(dim=(1, 2, 3)), cs.mean(dim=(1, 2, 3))


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM over the batch (scalar tensor)."""
    return _ssim_cs(x, y, data_range)[0].mean()


def ms_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, scales: int = 3) -> torch.Tensor:
    """MS-SSIM with the first ``scales`` of the standard weights (renormalised).

    Three scales suit 96-128 px training crops (five need >= 176 px with an 11-px window).
    Negative contrast terms are clamped to 0 so the product stays defined, as common practice.
    """
    w = torch.tensor(MS_WEIGHTS[:scales], device=x.device, dtype=x.dtype)
    w = w / w.sum()
    vals = []
    for i in range(scales):
        s, cs = _ssim_cs(x, y, data_range)
        vals.append((s if i == scales - 1 else cs).clamp(min=1e-6))
        if i < scales - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    v = torch.stack(vals, dim=1)  # (B, scales)
    return torch.prod(v ** w, dim=1).mean()
