"""Known distortions for measuring a registration method (bench/bench_registration.py).

    g = random_homography((w, h), rng)          # 3x3 warped_from_original
    vis_w = cv2.warpPerspective(vis, g, (w, h))  # the distorted VIS the method must undo
    cut = same_content(vis, g)                   # the undistorted VIS showing only what vis_w shows
"""
from __future__ import annotations

import math

import cv2
import numpy as np


def random_homography(size, rng) -> np.ndarray:
    """3x3 warped_from_original: rotation +-5 deg, scale 0.9-1.1, shift +-8 %, perspective
    terms up to 1e-4 per px, all about the image centre."""
    w, h = size
    a = math.radians(rng.uniform(-5, 5))
    s = rng.uniform(0.9, 1.1)
    t = rng.uniform(-0.08, 0.08, 2) * np.array([w, h])
    p = rng.uniform(-1e-4, 1e-4, 2)
    core = np.array([[s * math.cos(a), -s * math.sin(a), t[0]],
                     [s * math.sin(a), s * math.cos(a), t[1]],
                     [p[0], p[1], 1.0]])
    c = np.array([[1, 0, (w - 1) / 2], [0, 1, (h - 1) / 2], [0, 0, 1.0]])
    m = c @ core @ np.linalg.inv(c)
    return m / m[2, 2]


def same_content(vis: np.ndarray, g: np.ndarray) -> np.ndarray:
    """The undistorted VIS with the part that the distortion g (warped_from_original) pushes out
    of the frame set to 0, the no-data fill the method masks: the scene content the distorted
    VIS still shows, in the undistorted geometry."""
    h, w = vis.shape[:2]
    inside = cv2.warpPerspective(np.full((h, w), 255, np.uint8), np.linalg.inv(g), (w, h),
                                 flags=cv2.INTER_NEAREST)
    out = vis.copy()
    out[inside == 0] = 0
    return out
