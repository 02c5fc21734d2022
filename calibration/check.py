"""Images that let a person judge an alignment by eye.

- "checker": a checkerboard blend, tiles alternating between warped VIS and IR. At a good
  alignment, lines run straight across tile borders; a misalignment breaks them.
- "overlay": false colour, IR in magenta and VIS edges in green; aligned outlines turn white.
"""
from __future__ import annotations

import cv2
import numpy as np

from .geometry import Calibration, CalibrationError
from .score import gradient_magnitude
from .target import to_gray

MODES = ("checker", "overlay")


def check_image(calib: Calibration, vis: np.ndarray, ir: np.ndarray, mode: str = "checker",
                tile_px: int = 32) -> np.ndarray:
    """Render a check image in IR geometry.

    vis: HxWx3 BGR or HxW uint8 at calib.vis_size; ir: HxW uint8 at calib.ir_size.
    tile_px: checker tile side in IR px. Returns ir_h x ir_w x 3 uint8 BGR.
    """
    if mode not in MODES:
        raise CalibrationError(f"check: mode must be one of {MODES}, got {mode!r}")
    calib.check_sizes((vis.shape[1], vis.shape[0]), (ir.shape[1], ir.shape[0]))
    ir_g = to_gray(ir)
    vis_w = calib.warp(vis)
    vis_bgr = vis_w if vis_w.ndim == 3 else cv2.cvtColor(vis_w, cv2.COLOR_GRAY2BGR)
    ir_bgr = cv2.cvtColor(ir_g, cv2.COLOR_GRAY2BGR)
    h, w = ir_g.shape
    if mode == "checker":
        yy, xx = np.mgrid[0:h, 0:w]
        use_vis = ((yy // tile_px + xx // tile_px) % 2 == 0)[..., None]
        return np.where(use_vis, vis_bgr, ir_bgr).astype(np.uint8)
    edges = gradient_magnitude(to_gray(vis_w), 1.0)
    edges = cv2.normalize(np.sqrt(edges), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return np.dstack([ir_g, edges, ir_g])  # B, G, R: IR in magenta, VIS edges in green
