"""The `python -m calibration` tools, run in-process through main(argv)."""
from __future__ import annotations

import cv2
import numpy as np

import calibration
from calibration import Calibration, corner_error
from calibration.__main__ import main

from calib_synth import similarity, textured_scene

TRUE = similarity(0.5, 1.0, (320, 240), (160, 128), shift=(3, -2))


def test_points_command_writes_a_loadable_file(tmp_path, capsys):
    rng = np.random.default_rng(0)
    vis = rng.uniform(0, 600, (12, 2))
    ir = calibration.geometry.apply(TRUE, vis)
    csv = tmp_path / "pairs.csv"
    csv.write_text("vis_x,vis_y,ir_x,ir_y\n" + "\n".join(",".join(f"{v:.4f}" for v in (*a, *b))
                                                          for a, b in zip(vis, ir)))
    out = tmp_path / "cal.yaml"
    rc = main(["points", "--csv", str(csv), "--vis-size", "640", "480", "--ir-size", "320", "256",
               "--out", str(out)])
    assert rc == 0 and "wrote" in capsys.readouterr().out
    cal = calibration.load(out, vis_size=(640, 480), ir_size=(320, 256))
    assert corner_error(cal.ir_from_vis, TRUE, (640, 480)) < 0.01


def test_bad_input_exits_2_with_one_line(tmp_path, capsys):
    rc = main(["check", "--calib", str(tmp_path / "missing.yaml"), "--vis", "a.png", "--ir", "b.png",
               "--out", str(tmp_path / "c.png")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error:") and err.count("\n") == 1


def test_check_command_writes_checker_and_overlay_images(tmp_path):
    rng = np.random.default_rng(1)
    scene = textured_scene((640, 480), rng)
    ir = cv2.warpPerspective(255 - scene, TRUE, (320, 256))
    cv2.imwrite(str(tmp_path / "vis.png"), scene)
    cv2.imwrite(str(tmp_path / "ir.png"), ir)
    cal = Calibration(TRUE, (640, 480), (320, 256)).save(tmp_path / "cal.yaml")
    for mode in ("checker", "overlay"):
        out = tmp_path / f"check_{mode}.png"
        rc = main(["check", "--calib", str(cal), "--vis", str(tmp_path / "vis.png"),
                   "--ir", str(tmp_path / "ir.png"), "--mode", mode, "--tile", "32", "--out", str(out)])
        img = cv2.imread(str(out))
        assert rc == 0 and img is not None and img.shape == (256, 320, 3)
    checker = cv2.imread(str(tmp_path / "check_checker.png"), cv2.IMREAD_GRAYSCALE).astype(int)
    # Tile row 0, column 1 is IR; tile (0, 0) is warped VIS (the inverted scene): they differ.
    np.testing.assert_array_equal(checker[8:24, 40:56], ir[8:24, 40:56])
    assert np.abs(checker[8:24, 8:24] - ir[8:24, 8:24]).mean() > 20


def test_auto_stability_flags_a_depth_step_but_still_writes_the_file(tmp_path, capsys):
    from test_calibration_auto_online import _two_plane_pair
    vis, ir = _two_plane_pair()
    cv2.imwrite(str(tmp_path / "vis.png"), vis)
    cv2.imwrite(str(tmp_path / "ir.png"), ir)
    out = tmp_path / "cal.yaml"
    rc = main(["auto", "--vis", str(tmp_path / "vis.png"), "--ir", str(tmp_path / "ir.png"), "--out", str(out),
               "--stability"])
    cap = capsys.readouterr()
    assert rc == 3
    assert "stability:" in cap.out and "largest" in cap.out
    assert cap.err.startswith("warning:") and "vis.png" in cap.err and cap.err.count("\n") == 1
    assert calibration.load(out).vis_size == (640, 480)  # the answer is kept for the user to check


def test_auto_stability_passes_a_planar_pair(tmp_path, capsys):
    from test_calibration_auto_online import TRUE as TRUE_AUTO, make_pair
    vis, ir = make_pair(TRUE_AUTO)
    cv2.imwrite(str(tmp_path / "vis.png"), vis)
    cv2.imwrite(str(tmp_path / "ir.png"), ir)
    rc = main(["auto", "--vis", str(tmp_path / "vis.png"), "--ir", str(tmp_path / "ir.png"),
               "--out", str(tmp_path / "cal.yaml"), "--stability"])
    cap = capsys.readouterr()
    assert rc == 0 and "stability:" in cap.out and cap.err == ""
    assert corner_error(calibration.load(tmp_path / "cal.yaml").ir_from_vis, TRUE_AUTO, (640, 480)) < 1.0
