"""VIS->IR calibration: estimate, store and check the geometry that maps VIS pixels to IR pixels.

    import calibration
    calib = calibration.estimate(vis, ir, method="auto")            # ordinary scene pair
    calib = calibration.estimate(vis_list, ir_list, method="target",
                                 pattern="chessboard", grid=(9, 6))  # heated target, N pairs
    calib = calibration.estimate(method="points", vis_xy=..., ir_xy=...,
                                 vis_size=(640, 480), ir_size=(320, 256))
    calib.save("configs/calibration/site.yaml")
    calib = calibration.load("configs/calibration/site.yaml", vis_size=(640, 480), ir_size=(320, 256))
    vis_in_ir = calib.warp(vis)                                       # IR size, ready to fuse

Command-line tools: `python -m calibration --help` (points, target, auto, check).
"""
from __future__ import annotations

import numpy as np

from .geometry import Calibration, CalibrationError, corner_error, load

METHODS = ("auto", "points", "target")


def estimate(vis=None, ir=None, method: str = "auto", **kwargs) -> Calibration:
    """Estimate a Calibration.

    method "auto": vis HxWx3/HxW uint8 and ir HxW uint8, one ordinary scene pair; kwargs:
        init (3x3 ir_from_vis guess), config (calibration.auto.AutoConfig).
    method "target": vis and ir are equal-length lists of frames showing the target; kwargs:
        pattern ("chessboard"|"circles"|"acircles"), grid ((cols, rows)), model, ransac_px.
    method "points": kwargs vis_xy, ir_xy (Nx2), vis_size, ir_size ((w, h); taken from vis/ir
        images when those are given), model ("homography"|"affine"), ransac_px.
    Raises CalibrationError when the inputs cannot give a geometry.
    """
    if method == "auto":
        from .auto import estimate_auto
        if vis is None or ir is None:
            raise CalibrationError("estimate(method='auto') needs a VIS and an IR image")
        return estimate_auto(vis, ir, **kwargs)
    if method == "target":
        from .target import fit_target
        if vis is None or ir is None:
            raise CalibrationError("estimate(method='target') needs lists of VIS and IR frames")
        if isinstance(vis, np.ndarray):
            vis, ir = [vis], [ir]
        return fit_target(vis, ir, **kwargs)
    if method == "points":
        from .points import fit_points
        kw = dict(kwargs)
        if vis is not None:
            kw.setdefault("vis_size", (vis.shape[1], vis.shape[0]))
        if ir is not None:
            kw.setdefault("ir_size", (ir.shape[1], ir.shape[0]))
        for key in ("vis_xy", "ir_xy", "vis_size", "ir_size"):
            if key not in kw:
                raise CalibrationError(f"estimate(method='points') needs {key}")
        return fit_points(**kw)
    raise CalibrationError(f"estimate: method must be one of {METHODS}, got {method!r}")


__all__ = ["Calibration", "CalibrationError", "METHODS", "corner_error", "estimate", "load"]
