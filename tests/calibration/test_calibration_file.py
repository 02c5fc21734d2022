"""Calibration file: round trip, clear one-line errors for bad files, size checks, warp."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

import calibration
from calibration import Calibration, CalibrationError

TRUE = np.array([[0.55, -0.0144, 6.1], [0.0144, 0.55, -8.7], [1e-6, -2e-6, 1.0]])


def make(**kw) -> Calibration:
    args = dict(ir_from_vis=TRUE, vis_size=(640, 480), ir_size=(320, 256), rms_px=0.123,
                method="points-ransac", date="2026-11-25")
    args.update(kw)
    return Calibration(**args)


def write(tmp_path, **changes):
    data = make().to_dict()
    for k, v in changes.items():
        if v is None:
            data.pop(k)
        else:
            data[k] = v
    path = tmp_path / "cal.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_round_trip_keeps_everything_and_the_id(tmp_path):
    cal = make()
    path = cal.save(tmp_path / "sub" / "cal.yaml")
    back = calibration.load(path)
    np.testing.assert_allclose(back.ir_from_vis, TRUE, rtol=1e-12, atol=1e-15)
    assert back.vis_size == (640, 480) and back.ir_size == (320, 256)
    assert back.model == "homography" and back.method == "points-ransac" and back.date == "2026-11-25"
    assert back.rms_px == pytest.approx(0.123)
    assert back.id == cal.id and len(cal.id) == 12
    raw = yaml.safe_load(path.read_text())
    assert raw["version"] == 1 and raw["direction"] == "ir_from_vis"


def test_id_changes_with_matrix_and_sizes():
    base = make()
    moved = TRUE.copy()
    moved[0, 2] += 0.5
    assert make(ir_from_vis=moved).id != base.id
    assert make(ir_size=(640, 512)).id != base.id


@pytest.mark.parametrize("changes, key", [
    ({"direction": "vis_from_ir"}, "direction"),
    ({"version": 2}, "version"),
    ({"ir_size": None}, "ir_size"),
    ({"ir_from_vis": [[1, 0], [0, 1]]}, "ir_from_vis"),
    ({"vis_size": [640, -1]}, "vis_size"),
    ({"date": "25/11/2026"}, "date"),
    ({"scale": 2}, "scale"),
])
def test_bad_file_is_a_one_line_error_naming_file_and_key(tmp_path, changes, key):
    path = write(tmp_path, **changes)
    with pytest.raises(CalibrationError) as err:
        calibration.load(path)
    msg = str(err.value)
    assert str(path) in msg and f"'{key}'" in msg and "\n" not in msg


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(CalibrationError, match="cannot read"):
        calibration.load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: [1, 2\n")
    with pytest.raises(CalibrationError, match="not valid YAML"):
        calibration.load(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(CalibrationError, match="mapping"):
        calibration.load(bad)


def test_size_mismatch_names_expected_and_actual(tmp_path):
    path = make().save(tmp_path / "cal.yaml")
    calibration.load(path, vis_size=(640, 480), ir_size=(320, 256))  # matches: fine
    with pytest.raises(CalibrationError) as err:
        calibration.load(path, vis_size=(1280, 720), ir_size=(320, 256))
    msg = str(err.value)
    assert "640x480" in msg and "1280x720" in msg and str(path) in msg
    with pytest.raises(CalibrationError, match="640x512"):
        make().check_sizes((640, 480), (640, 512))


def test_warp_maps_vis_points_to_ir_points():
    cal = make()
    vis = np.zeros((480, 640, 3), np.uint8)
    vis[200:260, 300:360] = 255  # a bright square around VIS (329.5, 229.5)
    out = cal.warp(vis)
    assert out.shape == (256, 320, 3) and out.dtype == np.uint8
    ys, xs = np.nonzero(out[..., 0] > 127)
    expect = calibration.geometry.apply(TRUE, [[329.5, 229.5]])[0]
    assert abs(xs.mean() - expect[0]) < 0.5 and abs(ys.mean() - expect[1]) < 0.5
    assert cal.warp(vis[..., 0]).shape == (256, 320)
    with pytest.raises(CalibrationError, match="640x480"):
        cal.warp(np.zeros((240, 320, 3), np.uint8))


def test_singular_matrix_rejected():
    with pytest.raises(CalibrationError, match="singular"):
        make(ir_from_vis=np.zeros((3, 3)))
