"""The smoke model: per-pixel transmission t and airlight A of I = J*t + A*(1 - t), from VIS (+ IR).

    est = SmokeNet(SmokeNetConfig())
    t, a = est(vis_rgb, ir)             # (B,3,H,W), (B,1,H,W) or None -> t (B,1,H,W), A (B,3,1,1)
    j = dehaze(vis_rgb, t, a)           # J = (I - A) / max(t, t0) + A

How t is made (all at a working size whose long side is ``cfg.work_side``, then upsampled):
1. A: the mean colour of the 0.1 % haziest pixels (highest dark channel), as in He et al. 2009.
2. The prior: the dark channel prior's t = 1 - omega * dark(I / A).
3. SmokeNet (the mapping network of the LMFusion shape) adds a residual to logit(t) from local
   cues: the dark channel, luminance, saturation and local contrast of VIS, and where IR is
   given, its local contrast: structure LWIR sees and VIS does not is smoke. It also corrects A
   with an image-level branch. It is zero-initialised, so untrained it is the prior.
4. Fast guided upsampling (He & Sun 2015): t follows the edges of the full-resolution VIS
   luminance, so no halo appears at object edges.
Pure torch; every function takes and returns tensors on any device and dtype (float32 inside).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

N_FEATURES = 8


@dataclass(frozen=True)
class SmokeNetConfig:
    width: int = 16                        # trunk channels at the working size
    dilations: tuple[int, ...] = (1, 2, 4, 1)  # one residual block per entry
    work_side: int = 96                    # long side of the working size, px
    patch: int = 5                         # dark-channel window at the working size, px (odd)
    omega: float = 0.95                    # the prior keeps 1 - omega of the haze (He et al.)
    guide_radius: int = 4                  # guided-filter radius at the working size, px
    guide_eps: float = 1e-3                # guided-filter regulariser (luminance^2 units)
    t0: float = 0.1                        # J = (I - A) / max(t, t0): noise gain at most 1/t0
    t_clear: float = 0.9                   # t at or above this counts as clear air (t = 1); t / t_clear below


def box(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over a (2r+1)^2 window, edge-padded: (B,C,H,W) -> (B,C,H,W). Separable (a row
    mean, then a column mean): the same result as one 2-D window at 2/(2r+1) of the work."""
    if r <= 0:
        return x
    k = 2 * r + 1
    x = F.avg_pool2d(F.pad(x, (r, r, 0, 0), mode="replicate"), (1, k), stride=1)
    return F.avg_pool2d(F.pad(x, (0, 0, r, r), mode="replicate"), (k, 1), stride=1)


def min_filter(x: torch.Tensor, k: int) -> torch.Tensor:
    """Minimum over a k x k window (k odd), edge-padded: (B,C,H,W) -> (B,C,H,W). Separable."""
    r = k // 2
    x = -F.max_pool2d(F.pad(-x, (r, r, 0, 0), mode="replicate"), (1, k), stride=1)
    return -F.max_pool2d(F.pad(-x, (0, 0, r, r), mode="replicate"), (k, 1), stride=1)


def dark_channel(img: torch.Tensor, k: int) -> torch.Tensor:
    """(B,C,H,W) -> (B,1,H,W): min over channels, then over a k x k window."""
    return min_filter(img.amin(1, keepdim=True), k)


def luminance(rgb: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) RGB -> (B,1,H,W) BT.601 luma; (B,1,H,W) passes through."""
    if rgb.shape[1] == 1:
        return rgb
    r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    return 0.299 * r + 0.587 * g + 0.114 * b


def local_std(x: torch.Tensor, r: int = 2) -> torch.Tensor:
    """Standard deviation over a (2r+1)^2 window, per channel: (B,C,H,W) -> (B,C,H,W)."""
    m, m2 = box(torch.cat([x, x * x], 1), r).chunk(2, 1)       # one pass for both means
    return (m2 - m * m).clamp(min=0).sqrt()


def airlight(img: torch.Tensor, dark: torch.Tensor, frac: float = 0.001) -> torch.Tensor:
    """Mean colour of the ``frac`` pixels with the highest dark channel: (B,C,H,W) -> (B,C,1,1)."""
    B, C = img.shape[:2]
    flat_d = dark.flatten(1)
    k = max(1, int(flat_d.shape[1] * frac))
    idx = torch.topk(flat_d, k, dim=1).indices                     # (B, k)
    flat = img.flatten(2)                                          # (B, C, HW)
    picked = torch.gather(flat, 2, idx[:, None, :].expand(B, C, k))
    return picked.mean(2)[..., None, None].clamp(0.05, 1.0)


def guided_coefficients(guide: torch.Tensor, src: torch.Tensor, r: int, eps: float):
    """Guided filter (He et al. 2010) coefficients: src ~ a * guide + b locally. Each (B,1,h,w).
    The four window means go through one box filter (one call on 4 channels, not 4 calls)."""
    mg, ms, mgs, mgg = box(torch.cat([guide, src, guide * src, guide * guide], 1), r).split(1, 1)
    a = (mgs - mg * ms) / (mgg - mg * mg + eps)
    b = ms - a * mg
    return box(torch.cat([a, b], 1), r).split(1, 1)


def work_size(h: int, w: int, side: int) -> tuple[int, int]:
    """(h, w) scaled so the long side is at most ``side`` (never upscaled)."""
    s = min(1.0, side / max(h, w))
    return max(8, round(h * s)), max(8, round(w * s))


def _down(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="area")


def _logit(t: torch.Tensor) -> torch.Tensor:
    t = t.clamp(0.02, 0.995)
    return torch.log(t / (1 - t))


class _Block(nn.Module):
    def __init__(self, w: int, d: int):
        super().__init__()
        self.c1 = nn.Conv2d(w, w, 3, padding=d, dilation=d)
        self.c2 = nn.Conv2d(w, w, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.c2(F.relu(self.c1(x)))


class SmokeNet(nn.Module):
    """(vis RGB (B,3|1,H,W) in [0,1], ir (B,1,H,W) or None) -> (t (B,1,H,W), A (B,3|1,1,1))."""

    def __init__(self, cfg: SmokeNetConfig = SmokeNetConfig()):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.head = nn.Conv2d(N_FEATURES, w, 3, padding=1)
        self.blocks = nn.Sequential(*[_Block(w, d) for d in cfg.dilations])
        self.glob = nn.Sequential(nn.Linear(w, w), nn.ReLU(), nn.Linear(w, w + 1))
        self.tail = nn.Conv2d(w, 1, 3, padding=1)
        for m in (self.tail, self.glob[-1]):  # untrained = the dark channel prior
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)
        # channels-last convolutions: 6.4 -> 3.9 CPU-ms for the trunk at 96x77 on one thread
        # (bench/bench_smoke_model.py); load_state_dict copies into these strides
        self.to(memory_format=torch.channels_last)

    def features(self, vis: torch.Tensor, ir: torch.Tensor | None):
        """Working-size cues -> (features (B,8,h,w), prior t (B,1,h,w), A (B,C,1,1), luma (B,1,h,w))."""
        cfg = self.cfg
        size = work_size(*vis.shape[-2:], cfg.work_side)
        v = _down(vis.float(), size)
        a = airlight(v, dark_channel(v, cfg.patch))
        dn = dark_channel(v / a, cfg.patch).clamp(0, 1)
        t_prior = 1 - cfg.omega * dn
        y = luminance(v)
        sat = (v.amax(1, keepdim=True) - v.amin(1, keepdim=True)) / (v.amax(1, keepdim=True) + 1e-3)
        if ir is None:
            cv = local_std(y)
            ir_n = torch.zeros_like(y)
            ci = torch.zeros_like(y)
            has = torch.zeros_like(y)
        else:
            i = _down(ir.float(), size)
            ir_n = (i - i.mean((2, 3), keepdim=True)) / (i.std((2, 3), keepdim=True) + 0.02)
            cv, si = local_std(torch.cat([y, i], 1)).split(1, 1)     # both in one pass
            ci = si / (si.mean((2, 3), keepdim=True) + 1e-3)
            has = torch.ones_like(y)
        # VIS contrast against IR contrast, each relative to its image mean: low where LWIR sees
        # structure that VIS does not (smoke); 0.5 without IR
        cvr = cv / (cv.mean((2, 3), keepdim=True) + 1e-3)
        cue = cvr / (cvr + ci + 0.1) if ir is not None else torch.full_like(y, 0.5)
        feats = torch.cat([dn, y, sat, cv * 10, ir_n, ci, cue, has], 1)  # (B, 8, h, w)
        return feats, t_prior, a, y

    def forward(self, vis: torch.Tensor, ir: torch.Tensor | None = None):
        cfg = self.cfg
        feats, t_prior, a, y_lo = self.features(vis, ir)
        h = F.relu(self.head(feats.contiguous(memory_format=torch.channels_last)))
        h = self.blocks(h)
        g = self.glob(h.mean((2, 3)))                               # (B, w + 1)
        h = F.relu(h + g[:, :-1, None, None])
        # the learned t residual needs IR: from VIS alone it did worse than the prior on validation
        # (docs/model.md); the learned airlight is used either way
        res = self.tail(h) if ir is not None else torch.zeros_like(t_prior)
        t_lo = torch.sigmoid(_logit(t_prior) + res)                 # (B, 1, h, w)
        a = (a + 0.5 * torch.tanh(g[:, -1:, None, None])).clamp(0.05, 1.0)
        # clear air is exactly clear: t >= t_clear maps to 1, so a clean frame passes unchanged.
        # min(clamp(t, 0, 1) / t_clear, 1) = clamp(t / t_clear, 0, 1): the division goes into the
        # low-resolution coefficients, and the full resolution sees one multiply-add and one clamp
        coef = torch.cat(guided_coefficients(y_lo, t_lo, cfg.guide_radius, cfg.guide_eps), 1) / cfg.t_clear
        ca, cb = F.interpolate(coef, size=vis.shape[-2:], mode="bilinear", align_corners=False).split(1, 1)
        t = torch.addcmul(cb, ca, luminance(vis.float())).clamp_(0, 1)   # (B,1,H,W)
        return t, a


def dehaze(vis: torch.Tensor, t: torch.Tensor, a: torch.Tensor, t0: float = 0.2) -> torch.Tensor:
    """J = (I - A) / max(t, t0) + A, clamped to [0, 1]. (B,C,H,W), (B,1,H,W), (B,C,1,1)."""
    inv = t.float().clamp(min=t0).reciprocal_()               # (B,1,H,W): one pass, not one per colour
    # in place: 0.4 CPU-ms at 640x512 against 4.5 for addcmul with a broadcast (B,3,H,W) term
    return (vis.float() - a).mul_(inv).add_(a).clamp_(0, 1)
