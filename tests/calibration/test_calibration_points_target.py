"""Point-pair (RANSAC) and target fits: sub-pixel on synthetic data with a known geometry."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import calibration
from calibration import CalibrationError, corner_error
from calibration.points import read_pairs_csv
from calibration.target import detect, fit_target

from calib_synth import chessboard_fn, circles_fn, similarity, target_pair

REPO = Path(__file__).resolve().parents[2]
VIS_SIZE, IR_SIZE = (640, 480), (320, 256)
# A rig like the demo's but not identical: 0.55x, 2 deg, a small perspective term.
TRUE = similarity(0.55, 2.0, (320, 240), (160, 128), shift=(-7, 5))
TRUE[2, :2] = [2e-5, -1.5e-5]


def test_points_with_outliers_ransac_subpixel():
    rng = np.random.default_rng(1)
    vis = rng.uniform([20, 20], [620, 460], (40, 2))
    ir = calibration.geometry.apply(TRUE, vis) + rng.normal(0, 0.2, (40, 2))
    ir[:8] += rng.uniform(15, 60, (8, 2)) * rng.choice([-1, 1], (8, 2))  # 20 % gross outliers
    cal = calibration.estimate(method="points", vis_xy=vis, ir_xy=ir, vis_size=VIS_SIZE, ir_size=IR_SIZE)
    assert corner_error(cal.ir_from_vis, TRUE, VIS_SIZE) < 0.5
    assert cal.rms_px < 0.5  # outliers were excluded from the fit and its error
    assert cal.model == "homography" and cal.method == "points-ransac"


def test_points_affine_model_and_too_few_points():
    rng = np.random.default_rng(2)
    aff = TRUE.copy()
    aff[2] = [0, 0, 1]
    vis = rng.uniform(0, 400, (6, 2))
    cal = calibration.estimate(method="points", vis_xy=vis, ir_xy=calibration.geometry.apply(aff, vis),
                               vis_size=VIS_SIZE, ir_size=IR_SIZE, model="affine")
    assert cal.model == "affine" and corner_error(cal.ir_from_vis, aff, VIS_SIZE) < 1e-3
    with pytest.raises(CalibrationError, match="at least 4"):
        calibration.estimate(method="points", vis_xy=vis[:3], ir_xy=vis[:3], vis_size=VIS_SIZE,
                             ir_size=IR_SIZE)


def test_points_csv_errors_name_file_and_line(tmp_path):
    good = tmp_path / "pairs.csv"
    good.write_text("vis_x,vis_y,ir_x,ir_y\n1,2,3,4\n5,6,7,8\n")
    vis, ir = read_pairs_csv(good)
    assert vis.tolist() == [[1, 2], [5, 6]] and ir.tolist() == [[3, 4], [7, 8]]
    bad = tmp_path / "bad.csv"
    bad.write_text("vis_x,vis_y,ir_x,ir_y\n1,2,3,4\n5,six,7,8\n")
    with pytest.raises(CalibrationError, match=r"bad\.csv: line 3"):
        read_pairs_csv(bad)
    bad.write_text("x,y,u,v\n1,2,3,4\n")
    with pytest.raises(CalibrationError, match="missing column 'vis_x'"):
        read_pairs_csv(bad)


def _frames(board_fn, board_px, board_center, n, rng, tilt=2e-3):
    vis, ir = [], []
    for _ in range(n):
        b = similarity(board_px, rng.uniform(-12, 12), board_center,
                       (320 + rng.uniform(-90, 90), 240 + rng.uniform(-60, 60)))
        b[2, :2] = rng.uniform(-tilt, tilt, 2)  # the board tilted towards the cameras
        v, r = target_pair(TRUE, VIS_SIZE, IR_SIZE, b, board_fn, rng)
        vis.append(v)
        ir.append(r)
    return vis, ir


def test_chessboard_target_inverted_in_ir_subpixel():
    rng = np.random.default_rng(3)
    vis, ir = _frames(chessboard_fn(9, 6), 26.0, (5, 3.5), 3, rng)
    assert detect(ir[0], "chessboard", (9, 6)) is not None  # inverted contrast is still found
    report = []
    cal = calibration.estimate(vis, ir, method="target", pattern="chessboard", grid=(9, 6), report=report)
    assert corner_error(cal.ir_from_vis, TRUE, VIS_SIZE) < 0.5
    assert cal.rms_px < 0.5 and cal.method == "target-chessboard"
    assert len(report) == 3


def test_circle_grid_target_inverted_in_ir_subpixel():
    rng = np.random.default_rng(4)
    # Circle centres carry a perspective bias (the centroid of a projected circle is not the
    # projected centre), so the grid is held closer to facing the cameras than the chessboard.
    vis, ir = _frames(circles_fn(7, 5), 38.0, (3, 2), 3, rng, tilt=1e-3)
    cal = fit_target(vis, ir, pattern="circles", grid=(7, 5))
    assert corner_error(cal.ir_from_vis, TRUE, VIS_SIZE) < 0.5


def test_target_not_found_is_a_clear_error():
    flat_vis = [np.full((240, 320, 3), 128, np.uint8)] * 2
    flat_ir = [np.full((128, 160), 128, np.uint8)] * 2
    with pytest.raises(CalibrationError, match="found in both views of only 0 of 2"):
        fit_target(flat_vis, flat_ir, "chessboard", (9, 6))


def test_demo_calibration_matches_synthetic_truth():
    from common.synthetic_scene import IR_SIZE as S_IR, TRUE_IR_FROM_VIS, VIS_SIZE as S_VIS
    cal = calibration.load(REPO / "configs" / "calibration" / "demo.yaml", vis_size=S_VIS, ir_size=S_IR)
    assert corner_error(cal.ir_from_vis, np.asarray(TRUE_IR_FROM_VIS), S_VIS) < 0.5
    assert cal.method.startswith("target-") and cal.rms_px < 0.5
