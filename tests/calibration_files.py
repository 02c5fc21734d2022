"""Calibration files of the synthetic geometry, for runtime tests (no calibration tools needed)."""
from pathlib import Path

import yaml


def write_calibration(path: Path, vis_size=(640, 480), ir_size=(320, 256), ir_from_vis=None) -> Path:
    """The synthetic source's true geometry (or `ir_from_vis`, 3x3) in the shared calibration YAML format."""
    from common.synthetic_scene import TRUE_IR_FROM_VIS
    m = TRUE_IR_FROM_VIS if ir_from_vis is None else ir_from_vis
    path.write_text(yaml.safe_dump({
        "version": 1, "direction": "ir_from_vis", "model": "homography",
        "vis_size": list(vis_size), "ir_size": list(ir_size),
        "ir_from_vis": [[float(v) for v in row] for row in m], "rms_px": 0.0, "method": "synthetic-truth",
        "date": "2026-11-25"}))
    return path
