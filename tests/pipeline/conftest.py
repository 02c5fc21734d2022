"""Shared helpers for runtime tests: a calibration file of the synthetic geometry."""
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
for p in (REPO, HERE):          # HERE: slow_stage.py, imported by the runner by name
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


def write_calibration(path: Path, vis_size=(640, 480), ir_size=(320, 256)) -> Path:
    """The synthetic source's true geometry in the shared calibration YAML format."""
    from stages.capture.synthetic import TRUE_IR_FROM_VIS
    path.write_text(yaml.safe_dump({
        "version": 1, "direction": "ir_from_vis", "model": "homography",
        "vis_size": list(vis_size), "ir_size": list(ir_size),
        "ir_from_vis": TRUE_IR_FROM_VIS.tolist(), "rms_px": 0.0, "method": "synthetic-truth",
        "date": "2026-11-25"}))
    return path


@pytest.fixture
def calibration_file(tmp_path) -> Path:
    return write_calibration(tmp_path / "calibration.yaml")
