"""Synthetic VIS/IR test images with exactly known geometry (test helper, no data files).

Targets are rendered analytically with 4x4 supersampling per pixel, so their corner positions
are exact to well under 0.05 px; the IR view is the same board through a known ir_from_vis,
with inverted contrast, blur and noise, as a heated board looks in LWIR.
"""
from __future__ import annotations

import math

import cv2
import numpy as np


def similarity(scale: float, angle_deg: float, src_center, dst_center, shift=(0.0, 0.0)) -> np.ndarray:
    """3x3 dst_from_src: rotate and scale about src_center, move it to dst_center + shift."""
    a = math.radians(angle_deg)
    r = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    m = np.eye(3)
    m[:2, :2] = r
    m[:2, 2] = np.asarray(dst_center, float) + np.asarray(shift, float) - r @ np.asarray(src_center, float)
    return m


def render(size, img_from_board: np.ndarray, board_fn, background: float, ss: int = 4) -> np.ndarray:
    """Render a planar pattern into a (w, h) image.

    board_fn(u, v) -> intensity in [0, 255] (float arrays) where it is defined, NaN outside
    the board; outside pixels get `background`. Returns HxW float32.
    """
    w, h = size
    # Supersample positions: pixel centre x covers [x - 0.5, x + 0.5].
    offs = (np.arange(ss) + 0.5) / ss - 0.5
    xs = (np.arange(w)[:, None] + offs[None, :]).ravel()
    ys = (np.arange(h)[:, None] + offs[None, :]).ravel()
    gx, gy = np.meshgrid(xs, ys)
    board_from_img = np.linalg.inv(img_from_board)
    p = board_from_img @ np.stack([gx.ravel(), gy.ravel(), np.ones(gx.size)])
    u, v = p[0] / p[2], p[1] / p[2]
    val = board_fn(u, v)
    val = np.where(np.isnan(val), background, val).reshape(h * ss, w * ss)
    return val.reshape(h, ss, w, ss).mean(axis=(1, 3)).astype(np.float32)


def chessboard_fn(cols: int, rows: int, square: float = 1.0, margin: float = 0.6):
    """Board function of a chessboard with cols x rows INNER corners (board units: squares).

    Inner corner (i, j) sits at board coords ((i + 1) * square, (j + 1) * square). A white
    margin surrounds the squares (the detectors need it).
    """
    nx, ny = cols + 1, rows + 1

    def fn(u, v):
        iu, iv = np.floor(u / square), np.floor(v / square)
        inside = (iu >= 0) & (iu < nx) & (iv >= 0) & (iv < ny)
        on_board = (u >= -margin) & (u < nx * square + margin) & (v >= -margin) & (v < ny * square + margin)
        val = np.where(inside & ((iu + iv) % 2 == 0), 30.0, 220.0)
        return np.where(on_board, val, np.nan)

    return fn


def circles_fn(cols: int, rows: int, spacing: float = 1.0, radius: float = 0.3, margin: float = 1.0):
    """Board function of a symmetric grid of dark circles; circle (i, j) at (i, j) * spacing."""

    def fn(u, v):
        iu, iv = np.round(u / spacing), np.round(v / spacing)
        d = np.hypot(u - iu * spacing, v - iv * spacing)
        inside = (iu >= 0) & (iu < cols) & (iv >= 0) & (iv < rows) & (d < radius)
        on_board = (u >= -margin) & (u < (cols - 1) * spacing + margin) & \
                   (v >= -margin) & (v < (rows - 1) * spacing + margin)
        return np.where(on_board, np.where(inside, 30.0, 220.0), np.nan)

    return fn


def target_pair(ir_from_vis, vis_size, ir_size, vis_from_board, board_fn, rng,
                noise: float = 3.0, ir_noise: float = 4.0):
    """One VIS/IR frame pair of the same board. VIS is BGR uint8; IR is gray uint8, inverted."""
    vis = render(vis_size, vis_from_board, board_fn, background=120.0)
    ir = render(ir_size, ir_from_vis @ vis_from_board, board_fn, background=120.0)
    vis = vis + rng.normal(0, noise, vis.shape)
    ir = 255.0 - ir  # heated board: the dark squares/circles show bright in LWIR
    ir = cv2.GaussianBlur(ir.astype(np.float32), (0, 0), 0.7) + rng.normal(0, ir_noise, ir.shape)
    vis_u8 = np.clip(vis, 0, 255).astype(np.uint8)
    vis_bgr = np.dstack([vis_u8, vis_u8, vis_u8])
    return vis_bgr, np.clip(ir, 0, 255).astype(np.uint8)


def textured_scene(size, rng, n_shapes: int = 60) -> np.ndarray:
    """A VIS-like gray scene (HxW uint8): smooth background, random rectangles and ellipses."""
    w, h = size
    img = cv2.resize(rng.uniform(60, 190, (6, 8)).astype(np.float32), (w, h),
                     interpolation=cv2.INTER_CUBIC)
    for _ in range(n_shapes):
        c = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        val = float(rng.uniform(0, 255))
        if rng.uniform() < 0.5:
            ax = (int(rng.uniform(4, w / 8)), int(rng.uniform(4, h / 8)))
            cv2.ellipse(img, c, ax, float(rng.uniform(0, 180)), 0, 360, val, -1, cv2.LINE_AA)
        else:
            d = (int(rng.uniform(4, w / 6)), int(rng.uniform(4, h / 6)))
            cv2.rectangle(img, c, (c[0] + d[0], c[1] + d[1]), val, -1, cv2.LINE_AA)
    return np.clip(img, 0, 255).astype(np.uint8)
