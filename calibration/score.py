"""Measures on image pairs: cross-modal structure maps, alignment score, and a structure gate.

VIS and LWIR intensities are unrelated and often inverted (a warm body is bright in LWIR and
may be dark in VIS), but both show the same object outlines. So alignment is measured on
gradient magnitudes, which are blind to contrast polarity.
"""
from __future__ import annotations

import cv2
import numpy as np

from .target import to_gray


def gradient_magnitude(gray: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """HxW uint8/float gray -> HxW float32 gradient magnitude of the Gaussian-smoothed image.

    sigma in px smooths noise and widens edges (so alignment has a basin a few px wide).
    """
    g = gray.astype(np.float32)
    if sigma > 0:
        g = cv2.GaussianBlur(g, (0, 0), sigma)
    dx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    dy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    # np.sqrt, not cv2.magnitude, whose result depends on buffer alignment in the last bit (auto.edge_map)
    return np.sqrt(dx * dx + dy * dy) * 0.125  # the 3x3 Sobel has gain 8: now gray levels per px


def ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Normalised cross-correlation of two same-size float images over mask (bool) pixels."""
    if mask is not None:
        a, b = a[mask], b[mask]
    a = a.astype(np.float64).ravel()
    b = b.astype(np.float64).ravel()
    if a.size < 16:
        return 0.0
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else 0.0


def alignment_score(ir_from_vis: np.ndarray, vis: np.ndarray, ir: np.ndarray,
                    sigma: float = 1.0) -> float:
    """Gradient correlation of the VIS frame warped into IR geometry with the IR frame.

    vis: HxWx3 BGR or HxW uint8 (VIS geometry); ir: HxW uint8. Returns NCC in [-1, 1] of the
    gradient magnitudes over the IR pixels the warped VIS covers (a 4 px border of the
    coverage is dropped, where the warp's edge would add a false gradient). Higher is better;
    a 1-2 px misregistration visibly lowers it on structured scenes.
    """
    vg, ig = to_gray(vis).astype(np.float32), to_gray(ir).astype(np.float32)
    h, w = ig.shape
    warped = cv2.warpPerspective(vg, ir_from_vis, (w, h), flags=cv2.INTER_LINEAR)
    cover = cv2.warpPerspective(np.ones_like(vg, dtype=np.uint8), ir_from_vis, (w, h),
                                flags=cv2.INTER_NEAREST)
    cover = cv2.erode(cover, np.ones((9, 9), np.uint8)) > 0
    return ncc(gradient_magnitude(warped, sigma), gradient_magnitude(ig, sigma), cover)


def structure(gray: np.ndarray) -> tuple[float, float]:
    """(gradient energy, contrast) of an image: how much structure it has to register on.

    gradient energy: mean gradient magnitude (sigma 1 px) in gray levels per px.
    contrast: standard deviation of the gray levels after a 2 px blur (noise removed).
    Smoke washes a VIS frame towards a flat gray: both fall together.
    """
    g = to_gray(gray)
    energy = float(gradient_magnitude(g, 1.0).mean())
    contrast = float(cv2.GaussianBlur(g.astype(np.float32), (0, 0), 2.0).std())
    return energy, contrast
