"""Registration without a calibration file: estimated at start, nothing fused until then."""
import logging

import numpy as np
import pytest
import yaml

from pipeline.packet import Packet
from pipeline.telemetry import NodeView, status_line
from stages.registration import (DEMO_CALIBRATION, OnlineRefineConfig, RegistrationConfig, RegistrationError,
                                 RegistrationStage, resolve_calibration)


def frames(t, vis_img, ir_img, seq):
    """One VIS and one IR frame packet captured at t (s), as the sources send them."""
    v = Packet("cam", "frame", seq, t, 1e9 + t, pts=t, buffers={"vis": vis_img}, meta={"modality": "vis"})
    i = Packet("cam", "frame", seq, t + 0.002, 1e9 + t, pts=t, buffers={"ir": ir_img}, meta={"modality": "ir"})
    return [v, i]


def feed(st, packets):
    out = []
    for p in packets:
        out.extend(st.process(p))
    return out


def auto_stage(tmp_path, **kw):
    cfg = RegistrationConfig(calibration="auto", calibration_out=str(tmp_path / "rec" / "calibration.yaml"),
                             online_refine=OnlineRefineConfig(background=False), **kw)
    st = RegistrationStage(cfg)
    st.start()
    return st


def test_an_empty_calibration_means_the_demo_one_only_for_the_synthetic_source():
    cfg = RegistrationConfig()
    assert resolve_calibration(cfg, ("synthetic", "synthetic"), "out/demo").calibration == str(DEMO_CALIBRATION)
    for kinds in (("rtsp", "rtsp"), ("synthetic", "rtsp"), ("file", "folder")):
        r = resolve_calibration(cfg, kinds, "out/site")
        assert (r.calibration, r.calibration_out) == ("auto", "out/site/calibration.yaml")
    named = resolve_calibration(RegistrationConfig(calibration="site.yaml"), ("rtsp", "rtsp"), "out/site")
    assert (named.calibration, named.calibration_out) == ("site.yaml", "")
    own = resolve_calibration(RegistrationConfig(calibration_out="x/c.yaml"), ("rtsp", "rtsp"), "out/site")
    assert own.calibration_out == "x/c.yaml"


def test_estimates_at_start_fuses_nothing_before_and_writes_it_beside_the_recording(tmp_path, caplog):
    from calibration import corner_error, load
    from common.synthetic_scene import TRUE_IR_FROM_VIS, render_pair
    st = auto_stage(tmp_path)
    assert "waiting for frames" in st.stats()["waiting"]
    flat_vis, flat_ir = np.full((480, 640, 3), 128, np.uint8), np.full((256, 320), 128, np.uint8)
    # Two structureless pairs (smoke-blind VIS): gated, not fused, said so on the status line.
    out = feed(st, frames(0.0, flat_vis, flat_ir, 0) + frames(0.1, flat_vis, flat_ir, 1))
    assert out == [] or all(p.kind != "pair" for p in out)
    s = st.stats()
    assert s["estimates"]["structureless"] >= 1 and "calibrating, nothing fused yet" in s["waiting"]
    view = NodeView("registration")
    view.update({"stage": s})
    assert "registration: calibrating, nothing fused yet" in status_line(1.0, {"registration": view}, "fusion")
    vis_img, ir_img = render_pair(1.0, scene="smoke", smoke=0.0)
    with caplog.at_level(logging.INFO):
        out = feed(st, frames(0.2, vis_img, ir_img, 2) + frames(0.3, vis_img, ir_img, 3) + frames(0.4, vis_img, ir_img, 4))
    pairs = [p for p in out if p.kind == "pair"]
    assert pairs, "no pair after a stable estimate"
    line = [r.getMessage() for r in caplog.records if "stability self-check passed" in r.getMessage()]
    assert len(line) == 1 and "written to" in line[0] and "online refinement on" in line[0]
    saved = load(tmp_path / "rec" / "calibration.yaml")
    assert corner_error(saved.ir_from_vis, TRUE_IR_FROM_VIS, (640, 480)) < 1.0
    assert pairs[0].meta["calibration_id"] == saved.id and pairs[0].buffers["vis"].shape == (256, 320, 3)
    s = st.stats()
    assert "waiting" not in s and s["calibrated_after_s"] is not None and s["uncalibrated"] >= 3
    assert "refine_attempts" in s           # online refinement runs from here on
    st.stop()


def test_no_stable_estimate_within_the_timeout_is_one_line_saying_how_to_make_one(tmp_path):
    st = auto_stage(tmp_path, calibration_timeout_s=3.0)
    flat_vis, flat_ir = np.full((480, 640, 3), 90, np.uint8), np.full((256, 320), 200, np.uint8)
    with pytest.raises(RegistrationError) as e:
        feed(st, [p for n in range(40) for p in frames(0.1 * n, flat_vis, flat_ir, n)])
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("registration.calibration: no calibration after 3 s of frames")
    assert "structureless" in msg and "python -m calibration auto --vis" in msg and "--calibration site.yaml" in msg
    assert (tmp_path / "rec" / "calibration_vis.png").is_file() and (tmp_path / "rec" / "calibration_ir.png").is_file()


def test_a_named_calibration_that_does_not_fit_the_frames_names_the_file(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "direction": "ir_from_vis", "model": "homography",
                                    "vis_size": [640, 480], "ir_size": [320, 256],
                                    "ir_from_vis": np.eye(3).tolist(), "rms_px": 0.0, "method": "test",
                                    "date": "2026-12-03"}))
    st = RegistrationStage(RegistrationConfig(calibration=str(path)))
    st.start()
    with pytest.raises(RegistrationError) as e:
        feed(st, frames(0.0, np.zeros((480, 640, 3), np.uint8), np.zeros((512, 640), np.uint8), 0))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"registration.calibration {path}:") and "640x512" in msg


def test_on_its_thread_the_estimate_never_holds_up_frames_and_the_status_says_so(tmp_path):
    import time
    from common.synthetic_scene import render_pair
    st = RegistrationStage(RegistrationConfig(calibration="auto",
                                              calibration_out=str(tmp_path / "rec" / "calibration.yaml")))
    st.start()
    vis_img, ir_img = render_pair(1.0, smoke=0.0)
    t0 = time.monotonic()
    assert feed(st, frames(0.0, vis_img, ir_img, 0) + frames(0.1, vis_img, ir_img, 1)) == []
    assert time.monotonic() - t0 < 0.3            # handed over, not estimated on the frame path
    assert "estimating on the pair ir#0 vis#0" in st.stats()["waiting"]
    deadline = time.monotonic() + 120
    while not st._estimate_worker.idle() and time.monotonic() < deadline:
        time.sleep(0.05)
    out = feed(st, frames(0.2, vis_img, ir_img, 2) + frames(0.3, vis_img, ir_img, 3))
    assert out and all(p.kind == "pair" for p in out) and "waiting" not in st.stats()
    assert (tmp_path / "rec" / "calibration.yaml").is_file()
    st.stop()
