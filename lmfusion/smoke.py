"""Physically based smoke and haze synthesis for training and evaluation.

Scattering model (Koschmieder): I = J * t + A * (1 - t), with transmission t = exp(-tau) where
tau is the optical depth along the ray. Smoke is a turbulent, spatially varying density field;
haze is uniform or graded with (pseudo-)depth. LWIR scatters far less in smoke (particles are
much smaller than 8-14 um), so the IR twin gets tau_ir = k * tau with k ~ 0.02-0.08 and a slight
blur where the smoke is dense.

Everything is numpy, float32 in [0, 1], and deterministic given a ``numpy.random.Generator``.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .baselines import guided_filter

KINDS = ("turbulent", "plume", "uniform", "depth")
SCENE_KIND = "scene"   # haze over a pseudo-depth that follows the image's regions (needs the image)


@dataclass(frozen=True)
class SmokeConfig:
    kinds: tuple[str, ...] = KINDS          # field kinds drawn uniformly per sample
    p_clean: float = 0.2                    # probability of no smoke at all (identity pairs)
    tau_max: tuple[float, float] = (0.2, 3.0)  # peak optical depth range (t down to ~0.05)
    airlight: tuple[float, float] = (0.55, 1.0)  # grey level of the scattered light
    p_dark_smoke: float = 0.1               # fraction of dark (sooty) smoke, airlight 0.2-0.5
    airlight_variation: float = 0.08        # spatial variation of the airlight, +/- this much
    noise_std: tuple[float, float] = (0.0, 0.015)  # additive sensor noise (std, [0,1] units)
    ir_tau_ratio: tuple[float, float] = (0.02, 0.08)  # LWIR optical depth / visible optical depth


def fractal_noise(h: int, w: int, rng: np.random.Generator, octaves: int = 5,
                  base: int = 4, persistence: float = 0.55) -> np.ndarray:
    """Turbulence-like field in [0, 1], (h, w) float32: upsampled random grids, 1/f weights."""
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        gh, gw = base * 2 ** o, max(2, int(round(base * 2 ** o * w / max(h, 1))))
        grid = rng.random((gh + 1, gw + 1), dtype=np.float32)
        out += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= persistence
    out /= total
    lo, hi = out.min(), out.max()
    return (out - lo) / max(hi - lo, 1e-6)


def _plumes(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Rising plumes: columns that widen with height, their edges torn by turbulence."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    warp = (fractal_noise(h, w, rng, octaves=4) - 0.5) * 0.35 * w
    field = np.zeros((h, w), np.float32)
    for _ in range(rng.integers(1, 4)):
        x0 = rng.uniform(0.1, 0.9) * w
        y0 = rng.uniform(0.6, 1.2) * h                       # source near or below the bottom
        height = np.clip((y0 - yy) / h, 0, None)              # 0 at the source, grows upward
        sigma = (0.04 + 0.35 * height * rng.uniform(0.6, 1.4)) * w
        dx = xx + warp - x0 - rng.uniform(-0.3, 0.3) * w * height  # drift with the wind
        field += np.exp(-0.5 * (dx / sigma) ** 2) * (yy < y0)
    field *= 0.5 + fractal_noise(h, w, rng, octaves=5)
    return np.clip(field / max(field.max(), 1e-6), 0, 1)


def _ramp(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A linear ramp from 0 to 1 across the frame in a random direction, (h, w) float32."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(ang) * xx / w + np.sin(ang) * yy / h
    return (ramp - ramp.min()) / max(ramp.max() - ramp.min(), 1e-6)


def scene_depth(img: np.ndarray, rng: np.random.Generator, regions: int = 8) -> np.ndarray:
    """Pseudo-depth in [0.2, 1] that follows the image: (H,W[,3]) float32 -> (H,W) float32.

    Rooms are planes and objects, each at its own distance, with depth edges on image edges.
    The image is cut into ``regions`` colour-and-position clusters (k-means at 1/8 size); each
    gets a random depth offset on top of a ramp in a random direction, and a guided filter with
    the image as guide smooths the field inside regions while keeping their borders. Which colour
    is far is random per image, so no colour-to-depth rule can be learned from it.
    """
    h, w = img.shape[:2]
    gray = img.mean(2) if img.ndim == 3 else img
    sh, sw = max(8, h // 8), max(8, w // 8)
    small = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA).reshape(sh, sw, -1)
    yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
    feats = np.concatenate([small.reshape(sh * sw, -1) * 2.0, (yy / sh).reshape(-1, 1),
                            (xx / sw).reshape(-1, 1)], 1).astype(np.float32)
    cv2.setRNGSeed(int(rng.integers(1 << 30)))
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 10, 1e-3)
    _, labels, _ = cv2.kmeans(feats, regions, None, crit, 1, cv2.KMEANS_PP_CENTERS)
    offsets = rng.random(regions).astype(np.float32)
    seg = cv2.resize(offsets[labels.reshape(sh, sw)], (w, h), interpolation=cv2.INTER_NEAREST)
    ramp = _ramp(h, w, rng)
    mix = rng.uniform(0.3, 0.7)
    d = mix * seg + (1 - mix) * ramp
    d = guided_filter(gray.astype(np.float32), d, max(2, min(h, w) // 40), 1e-3)
    return np.clip(0.2 + 0.8 * d, 0, 1).astype(np.float32)   # the nearest surface is not at 0


def density_field(kind: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Normalised optical-depth shape in [0, 1], (h, w) float32."""
    return _density_field(kind, h, w, rng).astype(np.float32)


def _density_field(kind: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "turbulent":
        n = fractal_noise(h, w, rng)
        lo = rng.uniform(0.0, 0.5)                       # patchiness: how much clear air shows
        return np.clip((n - lo) / (1 - lo), 0, 1) ** rng.uniform(0.7, 1.5)
    if kind == "plume":
        return _plumes(h, w, rng)
    if kind == "uniform":
        return np.full((h, w), 1.0, np.float32) * (0.9 + 0.1 * fractal_noise(h, w, rng, octaves=3))
    if kind == "depth":
        # Pseudo-depth: a ramp in a random direction (farther = more haze) plus low-frequency
        # structure, as in depth-graded haze datasets.
        d = 0.7 * _ramp(h, w, rng) + 0.3 * fractal_noise(h, w, rng, octaves=3)
        return np.clip(0.2 + 0.8 * d, 0, 1)
    raise ValueError(f"smoke kind {kind!r}: expected one of {KINDS}")


@dataclass
class SmokeSample:
    smoky: np.ndarray      # (H, W) or (H, W, 3) float32 [0, 1]: the visible image in smoke
    ir: np.ndarray | None  # the IR twin in the same smoke (None if no IR was given)
    transmission: np.ndarray  # (H, W) visible transmission t
    airlight: float


def add_smoke(img: np.ndarray, rng: np.random.Generator, cfg: SmokeConfig = SmokeConfig(),
              ir: np.ndarray | None = None, force_smoke: bool = False) -> SmokeSample:
    """Put smoke over ``img`` ((H,W) or (H,W,3) float32 in [0,1]); the same smoke over ``ir``."""
    h, w = img.shape[:2]
    if not force_smoke and rng.random() < cfg.p_clean:
        t = np.ones((h, w), np.float32)
        return SmokeSample(img.copy(), None if ir is None else ir.copy(), t, 1.0)
    kind = cfg.kinds[rng.integers(len(cfg.kinds))]
    shape = scene_depth(img, rng) if kind == SCENE_KIND else density_field(kind, h, w, rng)
    tau = shape * rng.uniform(*cfg.tau_max)
    t = np.exp(-tau).astype(np.float32)
    if rng.random() < cfg.p_dark_smoke:
        a = rng.uniform(0.2, 0.5)
    else:
        a = rng.uniform(*cfg.airlight)
    a_map = a + cfg.airlight_variation * (fractal_noise(h, w, rng, octaves=3) - 0.5) * 2
    tt = t[..., None] if img.ndim == 3 else t
    aa = a_map[..., None] if img.ndim == 3 else a_map
    smoky = img * tt + aa * (1 - tt)
    smoky = smoky + rng.normal(0, rng.uniform(*cfg.noise_std), smoky.shape).astype(np.float32)
    ir_out = None
    if ir is not None:
        t_ir = np.exp(-tau * rng.uniform(*cfg.ir_tau_ratio)).astype(np.float32)
        blurred = cv2.GaussianBlur(ir, (0, 0), 1.0)
        dense = np.clip(tau / 3.0, 0, 1)           # blur only where the smoke is thick
        ir_b = ir * (1 - dense) + blurred * dense
        ir_out = np.clip(ir_b * t_ir + float(np.mean(ir)) * (1 - t_ir), 0, 1).astype(np.float32)
    return SmokeSample(np.clip(smoky, 0, 1).astype(np.float32), ir_out, t, float(a))
