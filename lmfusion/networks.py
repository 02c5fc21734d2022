"""LMFusion networks: encoder, decoder, the latent feature mapping network (LMF), fusion strategies.

Shapes: images are (B, 1, H, W) float in [0, 1] (luminance Y); latents are (B, C, H, W) with
C = AutoencoderConfig.latent_channels (3). Every conv pads by reflection, as the reference does.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import AutoencoderConfig, LMFConfig, ModelConfig
from .smoke_model import SmokeNet


def conv3(cin: int, cout: int, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, padding_mode="reflect")


# --------------------------------------------------------------------------------------------
# Stage 1: the autoencoder
# --------------------------------------------------------------------------------------------
class DenseBlock(nn.Module):
    """Three 3x3 convs, each fed the concatenation of all earlier maps: w -> 4w channels."""

    def __init__(self, w: int):
        super().__init__()
        self.convs = nn.ModuleList([conv3(w * (i + 1), w) for i in range(3)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = torch.cat([x, F.relu(conv(x))], dim=1)  # (B, w*(i+2), H, W)
        return x


class ResnetBlock(nn.Module):
    """w -> w -> w with a skip, then a 1x1 to 4w, so it can be averaged with the DenseBlock."""

    def __init__(self, w: int):
        super().__init__()
        self.c1, self.c2 = conv3(w, w), conv3(w, w)
        self.expand = nn.Conv2d(w, 4 * w, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.c2(F.relu(self.c1(x))) + x)
        return F.relu(self.expand(y))


class Encoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        w = cfg.enc_width
        self.head = conv3(1, w)
        self.dense, self.res = DenseBlock(w), ResnetBlock(w)
        self.out = nn.Conv2d(4 * w, cfg.latent_channels, 1)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) in [0, 1] -> latent (B, C, H, W), non-negative."""
        h = F.relu(self.head(y))
        h = 0.5 * (self.dense(h) + self.res(h))  # (B, 4w, H, W)
        return F.relu(self.out(h))


class DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(conv3(cin, cout), nn.ReLU(inplace=True), conv3(cout, cout), nn.ReLU(inplace=True))


class Decoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        a, b = cfg.dec_widths
        self.body = nn.Sequential(DoubleConv(cfg.latent_channels, a), DoubleConv(a, b))
        self.out = nn.Conv2d(b, 1, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """latent (B, C, H, W) -> Y (B, 1, H, W), not clamped (clamp at the image boundary)."""
        return self.out(self.body(z))


# --------------------------------------------------------------------------------------------
# Stage 2: latent feature mapping (LMF)
# --------------------------------------------------------------------------------------------
class ResBlock(nn.Module):
    def __init__(self, w: int, dilation: int = 1):
        super().__init__()
        self.c1, self.c2 = conv3(w, w, dilation), conv3(w, w, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.c2(F.relu(self.c1(x)))


class ChannelAttention(nn.Module):
    def __init__(self, w: int, r: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Conv2d(w, max(w // r, 1), 1), nn.ReLU(inplace=True),
                                 nn.Conv2d(max(w // r, 1), w, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mlp(x.mean(dim=(2, 3), keepdim=True))


class PixelAttention(nn.Module):
    def __init__(self, w: int, r: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Conv2d(w, max(w // r, 1), 1), nn.ReLU(inplace=True),
                                 nn.Conv2d(max(w // r, 1), 1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mlp(x)


class SpatialAttention(nn.Module):
    """max and mean over channels -> 1x1 conv -> sigmoid, as the reference."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)  # (B,2,H,W)
        return x * torch.sigmoid(self.conv(s))


class GlobalBranch(nn.Module):
    """Image-level context: pooled trunk features -> MLP -> per-channel scale and shift (FiLM).

    A 3x3 trunk sees tens of pixels; airlight and haze thickness are properties of the whole
    frame, so the trunk gets them from here.
    """

    def __init__(self, w: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * w, w), nn.ReLU(inplace=True), nn.Linear(w, 2 * w))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, _, _ = x.shape
        stats = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)  # (B, 2C)
        gamma, beta = self.mlp(stats).view(B, 2 * C, 1, 1).chunk(2, dim=1)
        return x * (1 + gamma) + beta


class GlobalAffine(nn.Module):
    """Per-image, per-channel gain and offset from statistics of the input latent.

    Uniform haze is a global affine map of the image (I = J*t + A*(1-t)); an oracle per-image
    affine fit takes the training crops from 12.9 to 22.4 dB, while the deep trunk learned only
    +2.5 dB of it in the CPU budget. A small MLP on image statistics (mean, std, min, max, and
    the mean of 8x8 local minima and maxima: the "dark channel" of the latent) learns it fast.
    """

    def __init__(self, channels: int, hidden: int = 64):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(6 * channels, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, 2 * channels))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, C, _, _ = z.shape
        lo = -F.max_pool2d(-z, 8, ceil_mode=True)               # local minima (B, C, H/8, W/8)
        hi = F.max_pool2d(z, 8, ceil_mode=True)
        mean = z.mean(dim=(2, 3))
        std = (z - mean[..., None, None]).pow(2).mean(dim=(2, 3)).add(1e-6).sqrt()
        stats = torch.cat([mean, std, z.amin(dim=(2, 3)), z.amax(dim=(2, 3)),
                           lo.mean(dim=(2, 3)), hi.mean(dim=(2, 3))], dim=1)  # (B, 6C)
        a, b = self.mlp(stats).view(B, 2 * C, 1, 1).chunk(2, dim=1)
        return a, b


class LMF(nn.Module):
    """Maps the latent of a smoky image to the latent of its clean twin: (B,C,H,W) -> (B,C,H,W).

    paper: head 3x3 C->w, residual blocks, channel/pixel/spatial attention, 3x3 w->w, 3x3 w->C,
    global residual. With ``scale > 1`` the trunk runs at 1/scale resolution (pixel-unshuffle in,
    pixel-shuffle out, a full-resolution skip), which buys context and speed at once.
    """

    def __init__(self, cfg: LMFConfig, channels: int = 3):
        super().__init__()
        w, s = cfg.width, cfg.scale
        self.cfg = cfg
        self.head = conv3(channels, w)
        if s > 1:
            self.down = nn.Sequential(nn.PixelUnshuffle(s), nn.Conv2d(w * s * s, w, 1))
            self.up = nn.Sequential(nn.Conv2d(w, w * s * s, 1), nn.PixelShuffle(s))
        self.blocks = nn.Sequential(*[ResBlock(w, d) for d in cfg.dilations])
        self.glob = GlobalBranch(w) if cfg.global_branch else None
        self.global_affine = GlobalAffine(channels) if cfg.global_affine else None
        self.ca = ChannelAttention(w, cfg.attention_reduction)
        self.pa = PixelAttention(w, cfg.attention_reduction)
        self.sa = SpatialAttention()
        self.tail = nn.Sequential(conv3(w, w), conv3(w, channels))
        if cfg.affine_head:
            # Gain and offset predicted on the coarse trunk and upsampled: a smooth per-pixel
            # affine map is what inverting I = J*t + A*(1-t) takes, and a short gradient path
            # to it trains fast. The full-resolution tail adds a residual for edges.
            self.affine = nn.Conv2d(w, 2 * channels, 1)
            for conv in (self.affine, self.tail[-1]):  # start as the identity mapping
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        _, _, H, W = z.shape
        s = self.cfg.scale
        h0 = self.head(z)
        h = h0
        if s > 1:
            if H % s or W % s:
                raise ValueError(f"LMF with scale {s} needs H and W divisible by {s}, got {H}x{W}")
            h = self.down(h)                      # (B, w, H/s, W/s)
        h = self.blocks(h)
        if self.glob is not None:
            h = self.glob(h)
        att = self.sa(self.pa(self.ca(h)))
        h = h + att if self.cfg.attention_residual else att
        ab = self.cfg.affine_gain * self.affine(h) if self.cfg.affine_head else None  # (B, 2C, H/s, W/s)
        if s > 1:
            h = self.up(h) + h0                   # (B, w, H, W)
        r = self.tail(h)
        if ab is not None:
            if s > 1:
                ab = F.interpolate(ab, size=(H, W), mode="bilinear", align_corners=False)
            a, b = ab.chunk(2, dim=1)             # each (B, C, H, W)
            if self.global_affine is not None:
                ga, gb = self.global_affine(z)    # each (B, C, 1, 1)
                a, b = a + ga, b + gb
            return z * (1 + a) + b + r
        return z + r


# --------------------------------------------------------------------------------------------
# Fusion strategies on latents: (B,C,H,W) x 2 -> (B,C,H,W)
# --------------------------------------------------------------------------------------------
EPS = 1e-6


def fuse_average(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 0.5 * (a + b)


def _channel_pool(x: torch.Tensor, pool: str) -> torch.Tensor:
    if pool == "avg":
        return x.mean(dim=(2, 3), keepdim=True)
    if pool == "max":
        return x.amax(dim=(2, 3), keepdim=True)
    if pool == "nuclear":  # sum of singular values of each HxW channel map
        return torch.linalg.matrix_norm(x.float(), ord="nuc")[..., None, None].to(x.dtype)
    raise ValueError(f"channel pooling {pool!r}: expected avg, max or nuclear")


def fuse_channel(a: torch.Tensor, b: torch.Tensor, pool: str = "avg") -> torch.Tensor:
    """Channel attention (NestFuse-style): per-channel weights from a global pooling of each."""
    pa, pb = _channel_pool(a, pool), _channel_pool(b, pool)
    wa = (pa + EPS) / (pa + pb + 2 * EPS)
    return wa * a + (1 - wa) * b


def fuse_spatial(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spatial attention: per-pixel weights from the channel l1-norm of each latent."""
    na, nb = a.abs().sum(1, keepdim=True), b.abs().sum(1, keepdim=True)
    wa = (na + EPS) / (na + nb + 2 * EPS)
    return wa * a + (1 - wa) * b


def fuse_hybrid(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 0.5 * (fuse_channel(a, b, "avg") + fuse_spatial(a, b))


def _blur_down(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 2, ceil_mode=True)


def _up(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of the latent Laplacian pyramid: (low-pass at half size, band-pass at x's size)."""
    lo = _blur_down(x)
    return lo, x - _up(lo, x.shape[-2:])


def fuse_detail(a: torch.Tensor, b: torch.Tensor, levels: int = 4) -> torch.Tensor:
    """Latent Laplacian pyramid: average the base, keep the stronger detail of either input.

    The 3-channel latent is nearly the image, so this keeps edges as a pixel Laplacian pyramid
    does while the decoder still renders the result.
    """
    if levels == 0 or min(a.shape[-2:]) < 4:
        return fuse_average(a, b)
    (a_lo, a_hi), (b_lo, b_hi) = _split(a), _split(b)
    hi = torch.where(a_hi.abs() >= b_hi.abs(), a_hi, b_hi)
    return _up(fuse_detail(a_lo, b_lo, levels - 1), a.shape[-2:]) + hi


def local_energy(x: torch.Tensor, k: int = 3) -> torch.Tensor:
    """Channel-summed squared detail, averaged over a k x k window: (B,C,H,W) -> (B,1,H,W)."""
    return F.avg_pool2d(x.pow(2).sum(1, keepdim=True), k, 1, k // 2, count_include_pad=False)


def soft_weight(ea: torch.Tensor, eb: torch.Tensor, power: float, mix: float) -> torch.Tensor:
    """Weight of input a from the local detail energies: E_a^(p/2) / (E_a^(p/2) + E_b^(p/2)),
    pulled towards 1/2 by ``mix`` < 1."""
    ea, eb = ea.pow(power / 2), eb.pow(power / 2)
    return 0.5 + mix * ((ea + 1e-12) / (ea + eb + 2e-12) - 0.5)


def fuse_detail_soft(a: torch.Tensor, b: torch.Tensor, levels: int = 4, power: float = 2.0,
                     mix: float = 1.0) -> torch.Tensor:
    """Latent Laplacian pyramid with soft, window-based detail weights.

    Like ``detail`` (average base, detail from the stronger input), but each band-pass
    coefficient is a blend weighted by the local energy of each input's detail over a 3x3
    window, w_a = E_a^(p/2) / (E_a^(p/2) + E_b^(p/2)). Where one camera has all the detail the
    blend equals the max-abs rule; where both have some, it averages instead of switching
    pixel by pixel, which is what costs the hard rule structural similarity (SSIM) with both
    inputs. ``mix`` < 1 pulls the weights towards 1/2 (0 = average fusion): the dial between
    edge transfer (Qabf) and SSIM with both inputs. Measured by
    ``bench/studies/fusion_strategy_study.py`` on RoadScene train pairs (docs/model.md).
    """
    if levels == 0 or min(a.shape[-2:]) < 4:
        return fuse_average(a, b)
    (a_lo, a_hi), (b_lo, b_hi) = _split(a), _split(b)
    wa = soft_weight(local_energy(a_hi), local_energy(b_hi), power, mix)
    return _up(fuse_detail_soft(a_lo, b_lo, levels - 1, power, mix), a.shape[-2:]) + wa * a_hi + (1 - wa) * b_hi


def _median_abs(x: torch.Tensor) -> torch.Tensor:
    """(B, ...) -> (B,): the (lower) median of |x| per batch item. topk rather than
    torch.median because ONNX has no median operator and exports TopK."""
    v = x.abs().flatten(1)
    return torch.topk(v, v.shape[1] // 2 + 1, dim=1, largest=False).values[:, -1]


def fuse_detail_denoise(a: torch.Tensor, b: torch.Tensor, levels: int = 3, power: float = 2.0,
                        mix: float = 0.45, wiener: float = 8.0, wiener_levels: int = 2,
                        base_a: float = 0.2, max_gain: float = 2.0) -> torch.Tensor:
    """Latent Laplacian pyramid for a smoky ``a`` (VIS) and a smoke-penetrating ``b`` (LWIR).

    ``detail_soft`` with three changes, each aimed at what smoke does to the VIS latent:
    - Wiener shrinkage of ``a``'s finest ``wiener_levels`` band-pass levels,
      a_hi *= max(0, 1 - wiener * s_l^2 / E_a) (E_a: channel-summed 3x3 energy), with s_0 the
      median absolute finest coefficient of ``a`` / 0.6745 (a robust noise estimate) and
      s_l = s_0 / 2^l (white noise in a box pyramid): sensor noise and fine smoke texture are in
      neither the scene nor the LWIR image.
    - The base (low-pass) weighted ``base_a`` : 1 - ``base_a`` towards ``b``: the VIS low-pass
      carries the airlight veil A(1 - t), the LWIR low-pass hardly any.
    - Energy matching: after the soft blend (weights pulled towards 1/2 by ``mix``, which keeps
      structural similarity with both inputs), the fused detail is scaled so its local energy
      reaches the weighted source energy w E_a + (1 - w) E_b (gain clipped to [1, max_gain]):
      it puts back what averaging opposite-sign coefficients cancels, which is what costs a
      low-``mix`` blend its edge transfer (Qabf).
    Settings chosen on RoadScene *train* pairs (12 tuning + 24 disjoint, confirmed on 24 more)
    with ``bench/studies/fusion_strategy_study.py --local``; measured once on the test split
    (docs/model.md). The weights are computed in float32 whatever the
    network's precision (see LMFusionNet.forward).
    """
    his = []
    for lvl in range(levels):
        if min(a.shape[-2:]) < 4:
            break
        (a_lo, a_hi), (b_lo, b_hi) = _split(a), _split(b)
        if lvl < wiener_levels and wiener > 0:
            if lvl == 0:
                s0 = _median_abs(a_hi) / 0.6745                         # (B,) robust noise std
            sig2 = ((s0 / 2 ** lvl) ** 2)[:, None, None, None]           # (B, 1, 1, 1)
            a_hi = a_hi * (1 - wiener * sig2 / (local_energy(a_hi) + 1e-12)).clamp(min=0)
        ea, eb = local_energy(a_hi), local_energy(b_hi)
        wa = soft_weight(ea, eb, power, mix)
        hi = wa * a_hi + (1 - wa) * b_hi
        if max_gain > 1:
            hi = hi * ((wa * ea + (1 - wa) * eb) / (local_energy(hi) + 1e-12)).sqrt().clamp(1, max_gain)
        his.append(hi)
        a, b = a_lo, b_lo
    out = base_a * a + (1 - base_a) * b
    for hi in reversed(his):
        out = _up(out, hi.shape[-2:]) + hi
    return out


def _weighted_mean(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Per image and channel mean of x weighted by w: (B,C,H,W), (B,1,H,W) -> (B,C,1,1)."""
    return (x * w).sum((2, 3), keepdim=True) / (w.sum((2, 3), keepdim=True) + 1e-6)


def clear_weight(t: torch.Tensor, t_lo: float = 0.15, t_hi: float = 0.6) -> torch.Tensor:
    """How much the dehazed VIS is trusted, from the transmission: a smoothstep from 0 at
    ``t_lo`` (thick smoke: nothing left to recover) to 1 at ``t_hi``. (B,1,H,W) -> (B,1,H,W)."""
    w = ((t - t_lo) / (t_hi - t_lo)).clamp(0, 1)
    return w * w * (3 - 2 * w)


def fuse_transmission(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor, levels: int = 4,
                      power: float = 8.0, t_lo: float = 0.1, t_hi: float = 0.5,
                      hot: float = 0.5, vis_bias: float = 4.0) -> torch.Tensor:
    """Latent Laplacian pyramid of the dehazed VIS ``a`` and the LWIR ``b``, steered by the
    transmission ``t`` (B,1,H,W) of the smoke over VIS.

    - Detail: soft selection by local 3x3 energy (E^(power/2) weights, as ``detail_soft``), the
      VIS energy scaled by ``vis_bias`` * w, w = clear_weight(t): in clear air the VIS detail
      unless the IR's is ``vis_bias`` times stronger, in thick smoke the IR's. ``vis_bias`` sets
      the trade between keeping the visible scene (SSIM with VIS) and IR edges (Qabf).
    - Base: w * VIS + (1 - w) * IR shaded to the scene's tone (IR base shifted to the mean the
      VIS base has where the air is clear), plus IR hot spots (where the IR base exceeds the VIS
      base by more than 2 std of the IR base).
    - w is taken down the pyramid with the images, so seams along smoke edges are as smooth as
      the base level (no halo).
    Clear air (t = 1) gives the VIS scene with IR detail and hot spots added.
    """
    w = clear_weight(t, t_lo, t_hi)
    his = []
    for _ in range(levels):
        if min(a.shape[-2:]) < 4:
            break
        (a_lo, a_hi), (b_lo, b_hi) = _split(a), _split(b)
        wa = soft_weight(vis_bias * w * local_energy(a_hi), local_energy(b_hi), power, 1.0)
        his.append(wa * a_hi + (1 - wa) * b_hi)
        a, b, w = a_lo, b_lo, _blur_down(w)
    b_mean = b.mean((2, 3), keepdim=True)
    b_std = (b - b_mean).pow(2).mean((2, 3), keepdim=True).sqrt()
    tone = b - _weighted_mean(b, w + 1e-3) + _weighted_mean(a, w + 1e-3)
    out = w * a + (1 - w) * tone + hot * w * (b - a - 2 * b_std).clamp(min=0)
    for hi in reversed(his):
        out = _up(out, hi.shape[-2:]) + hi
    return out


STRATEGIES = {
    "average": fuse_average,
    "channel_avg": lambda a, b: fuse_channel(a, b, "avg"),
    "channel_max": lambda a, b: fuse_channel(a, b, "max"),
    "channel_nuclear": lambda a, b: fuse_channel(a, b, "nuclear"),
    "spatial": fuse_spatial,
    "hybrid": fuse_hybrid,
    "detail": fuse_detail,
    "detail_soft": fuse_detail_soft,
    "detail_denoise": fuse_detail_denoise,
    "transmission": fuse_transmission,
}
# Strategies that take the smoke model's transmission t (B,1,H,W) as a third input.
NEEDS_T = {"transmission"}


class LMFusionNet(nn.Module):
    """The whole model: encoder, mapping network, fusion, decoder.

    mapping "smoke": ``smoke(vis_rgb, ir) -> (t, A)`` estimates the smoke (lmfusion.smoke_model);
    the caller dehazes VIS with it and ``forward(clear_y, ir_y, t=t)`` fuses with the
    transmission-aware rule. mapping "latent" (the paper): ``forward(vis_y, ir_y)`` maps both
    latents with LMF before fusing; ``clear(y)`` = decoder(LMF(encoder(y))).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg.autoencoder)
        self.decoder = Decoder(cfg.autoencoder)
        if cfg.mapping == "smoke":
            self.smoke = SmokeNet(cfg.smoke)
        else:
            self.lmf = LMF(cfg.lmf, cfg.autoencoder.latent_channels)
        self.strategy = cfg.strategy

    @property
    def size_multiple(self) -> int:
        """H and W must be multiples of this (inputs are padded to it by the Fuser)."""
        return self.cfg.lmf.scale if self.cfg.mapping == "latent" else 1

    @property
    def min_size(self) -> int:
        """Smallest H and W the network runs on: every reflect-padded conv of the LMF trunk
        (1/scale resolution, dilation d) needs more than d pixels there."""
        if self.cfg.mapping == "smoke":
            return 8
        lmf = self.cfg.lmf
        return lmf.scale * (max(lmf.dilations, default=1) + 1)

    def forward(self, vis_y: torch.Tensor, ir_y: torch.Tensor, strategy: str | None = None,
                t: torch.Tensor | None = None) -> torch.Tensor:
        """vis_y, ir_y: (B, 1, H, W) in [0, 1] -> fused Y (B, 1, H, W) in [0, 1]. ``t`` (B,1,H,W):
        the transmission, for strategies in NEEDS_T (clear air when None)."""
        B = vis_y.shape[0]
        strategy = strategy or self.strategy
        z = self.encoder(torch.cat([vis_y, ir_y], dim=0))  # one batch: (2B, C, H, W)
        if self.cfg.mapping == "smoke":
            zv, zi = z[:B], z[B:]
        elif self.cfg.lmf_on_ir:
            z = self.lmf(z)
            zv, zi = z[:B], z[B:]
        else:
            zv, zi = self.lmf(z[:B]), z[B:]
        # The fusion rule runs in float32 even in an fp16 network: its energy ratios use 1e-12
        # guards, which are 0 in fp16 (a flat, e.g. saturated, region would give 0/0 = NaN).
        # The latents have 3 channels, so this costs little.
        if strategy in NEEDS_T:
            t = torch.ones_like(vis_y) if t is None else t
            fused = STRATEGIES[strategy](zv.float(), zi.float(), t.float())
        else:
            fused = STRATEGIES[strategy](zv.float(), zi.float())
        return self.decoder(fused.to(zv.dtype)).clamp(0, 1)

    def clear(self, y: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) -> decoder(LMF(encoder(y))) clamped to [0, 1] (latent mapping only;
        a smoke-mapping model clears in colour: lmfusion.api.Fuser.clear)."""
        if self.cfg.mapping == "smoke":
            raise ValueError("a smoke-mapping model clears with smoke() and dehaze(), not clear()")
        return self.decoder(self.lmf(self.encoder(y))).clamp(0, 1)

    def reconstruct(self, y: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(y)).clamp(0, 1)


def lively_random_model(cfg: ModelConfig, seed: int = 0) -> LMFusionNet:
    """Random weights whose output is not flat, for benchmarks and engine tests.

    A fresh init zeroes the identity-initialised heads and decodes a nearly constant image,
    which would let a broken engine pass a comparison; perturb those and scale the decoder so
    the output spans about [0, 1]. Speed does not depend on the values.
    """
    torch.manual_seed(seed)
    net = LMFusionNet(cfg).eval()
    with torch.no_grad():
        for p in net.parameters():
            if p.abs().max() == 0:
                p.normal_(0, 0.1)
        x = torch.rand(2, 1, 64, 64)
        mapped = net.lmf if cfg.mapping == "latent" else (lambda z: z)
        pre = net.decoder(mapped(net.encoder(x)))
        net.decoder.out.weight.mul_(0.25 / (pre.std() + 1e-6))
        net.decoder.out.bias.add_(0.5 - net.decoder(mapped(net.encoder(x))).mean())
    return net
