"""Registration stage, called directly: time pairing, skew, unmatched counts, geometry."""
import numpy as np
import pytest

from pipeline.packet import Packet
from stages.registration import RegistrationConfig, RegistrationError, RegistrationStage


def vis(seq, t, size=(640, 480)):
    img = np.zeros((size[1], size[0], 3), np.uint8)
    return Packet("cam", "frame", seq, t, 1e9 + t, pts=t, buffers={"vis": img}, meta={"modality": "vis", "source": "v"})


def ir(seq, t, size=(320, 256)):
    img = np.zeros((size[1], size[0]), np.uint8)
    return Packet("cam", "frame", seq, t, 1e9 + t, pts=t, buffers={"ir": img}, meta={"modality": "ir", "source": "i"})


def stage_for(calibration_file, **kw):
    st = RegistrationStage(RegistrationConfig(calibration=str(calibration_file), **kw))
    st.start()
    return st


def run(st, packets):
    out = []
    for p in packets:
        out.extend(st.process(p))
    return out


def test_pairs_each_ir_frame_with_the_nearest_vis_frame(calibration_file):
    st = stage_for(calibration_file, tolerance_ms=30)
    # VIS at 20 fps, IR at 10 fps offset by +7 ms; interleaved as they would arrive.
    packets = []
    for n in range(20):
        packets.append(vis(n, n * 0.05))
        if n % 2 == 0:
            packets.append(ir(n // 2, n * 0.05 + 0.007))
    out = run(st, packets) + st.finish()
    pairs = [p for p in out if p.kind == "pair"]
    assert len(pairs) == len(out)
    assert [p.meta["ir_seq"] for p in pairs] == list(range(10))
    assert [p.meta["vis_seq"] for p in pairs] == list(range(0, 20, 2))
    assert all(p.meta["skew_ms"] == pytest.approx(-7.0, abs=1e-6) for p in pairs)
    assert [p.seq for p in pairs] == list(range(10))
    assert pairs[0].t_mono == pytest.approx(0.007) and pairs[0].pts == pytest.approx(0.007)
    assert pairs[0].meta["clock"] == "capture"     # the IR frame's clock kind travels with the pair
    s = st.stats()
    assert s["pairs"] == 10 and s["unmatched_ir"] == 0
    assert s["unmatched_vis"] == 10           # every other VIS frame has no IR partner, and says so
    assert s["vis_in"] == s["pairs"] + s["unmatched_vis"]
    assert s["skew_ms_max_abs"] == pytest.approx(7.0, abs=0.01)


def test_waits_for_a_nearer_vis_frame_that_may_still_come(calibration_file):
    st = stage_for(calibration_file, tolerance_ms=40)
    assert st.process(vis(0, 0.000)) == []
    assert st.process(ir(0, 0.030)) == []        # VIS@0.05 could be nearer: wait
    out = st.process(vis(1, 0.050))
    assert len(out) == 1 and out[0].meta["vis_seq"] == 1 and out[0].meta["skew_ms"] == pytest.approx(20.0)
    assert st.stats()["unmatched_vis"] == 1


def test_frames_outside_tolerance_are_counted_not_paired(calibration_file):
    st = stage_for(calibration_file, tolerance_ms=10)
    out = run(st, [vis(0, 0.0), ir(0, 0.025), vis(1, 0.05), ir(1, 0.1), vis(2, 0.104), vis(3, 0.2)])
    out += st.finish()
    pairs = [p for p in out if p.kind == "pair"]
    assert [(p.meta["vis_seq"], p.meta["ir_seq"]) for p in pairs] == [(2, 1)]
    s = st.stats()
    assert s["unmatched_ir"] == 1 and s["unmatched_vis"] == 3   # vis 0, 1 too far; vis 3 left at the end
    assert s["vis_in"] + s["ir_in"] == 2 * s["pairs"] + s["unmatched_vis"] + s["unmatched_ir"]


def test_a_stalled_partner_stream_is_bounded_and_counted(calibration_file):
    st = stage_for(calibration_file, max_pending=4)
    run(st, [ir(i, i * 0.1) for i in range(10)])       # no VIS at all
    s = st.stats()
    assert s["pending_ir"] == 4 and s["unmatched_ir"] == 6
    st.stop()
    assert st.stats()["unmatched_ir"] == 10


def test_vis_is_warped_into_ir_geometry(calibration_file):
    from common.synthetic_scene import TRUE_IR_FROM_VIS
    st = stage_for(calibration_file)
    v = vis(0, 0.0)
    img = np.zeros((480, 640, 3), np.uint8)
    img[300:310, 400:410] = 255                         # a bright square centred at (404.5, 304.5)
    v.buffers["vis"] = img
    out = run(st, [v, ir(0, 0.0), vis(1, 0.05)])
    warped = out[0].buffers["vis"]
    assert warped.shape == (256, 320, 3) and out[0].buffers["ir"].shape == (256, 320)
    ys, xs = np.nonzero(warped[..., 0] > 64)
    expect = TRUE_IR_FROM_VIS @ np.array([404.5, 304.5, 1.0])
    assert abs(xs.mean() - expect[0] / expect[2]) < 0.5 and abs(ys.mean() - expect[1] / expect[2]) < 0.5
    assert out[0].meta["calibration_id"]


def test_crop_and_output_size(calibration_file):
    st = stage_for(calibration_file, crop=[10, 20, 200, 160], output_size=[100, 80])
    out = run(st, [vis(0, 0.0), ir(0, 0.0), vis(1, 0.05)])
    assert out[0].buffers["vis"].shape == (80, 100, 3) and out[0].buffers["ir"].shape == (80, 100)


def test_frame_sizes_that_do_not_match_the_calibration_are_an_error(calibration_file):
    st = stage_for(calibration_file)
    with pytest.raises(Exception, match=r"640.*480|480.*640") as e:
        st.process(vis(0, 0.0, size=(1280, 720)))
    assert "1280" in str(e.value)


def test_missing_calibration_file_names_the_key(tmp_path):
    st = RegistrationStage(RegistrationConfig(calibration=str(tmp_path / "nope.yaml")))
    with pytest.raises(RegistrationError, match="registration.calibration: file .*nope.yaml not found"):
        st.start()


def test_bad_config_values():
    with pytest.raises(ValueError, match="tolerance_ms"):
        RegistrationConfig(tolerance_ms=0)
    with pytest.raises(ValueError, match="crop"):
        RegistrationConfig(crop=[0, 0, 4])


def test_decides_without_waiting_when_the_next_vis_frame_cannot_be_nearer(calibration_file):
    st = stage_for(calibration_file, tolerance_ms=40)
    assert run(st, [vis(n, n * 0.05) for n in range(4)]) == []      # learn the 50 ms VIS interval
    out = st.process(ir(0, 0.155))          # VIS@0.15 is 5 ms away; the next can't come before ~0.19
    assert len(out) == 1 and out[0].meta["vis_seq"] == 3
    assert st.process(ir(1, 0.185)) == []   # VIS@0.15 is 35 ms away, VIS@~0.2 may be nearer: wait
    out = st.process(vis(4, 0.2))
    assert out[0].meta["vis_seq"] == 4 and out[0].meta["skew_ms"] == pytest.approx(15.0)
