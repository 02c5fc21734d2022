"""Synthetic VIS+IR source: determinism, sizes, rates, timestamps and exact geometry."""
import time

import cv2
import numpy as np
import pytest

from common.synthetic_scene import (IR_SIZE, TARGET_INNER_CORNERS, TRUE_IR_FROM_VIS, VIS_SIZE, render_pair,
                                    render_thermal_vis_coords, scene_objects, target_corners_vis)
from fake_clock import FakeClock
from stages.capture.source import CaptureError
from stages.capture.synthetic import SyntheticConfig, SyntheticSource


def _frames(cfg, n):
    src = SyntheticSource(cfg)
    src.start()
    out = [src.read(1.0) for _ in range(n)]
    src.stop()
    return out


def test_true_ir_from_vis_is_the_documented_rig():
    a = np.deg2rad(1.5)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    vis_xy = np.array([100.0, 400.0])
    expected = 0.55 * rot @ (vis_xy - (320, 240)) + (166, 124)
    got = cv2.perspectiveTransform(vis_xy[None, None], TRUE_IR_FROM_VIS)[0, 0]
    np.testing.assert_allclose(got, expected, atol=1e-9)


def test_render_pair_sizes_and_determinism():
    vis, ir = render_pair(2.5, seed=3)
    assert vis.shape == (VIS_SIZE[1], VIS_SIZE[0], 3) and vis.dtype == np.uint8
    assert ir.shape == (IR_SIZE[1], IR_SIZE[0]) and ir.dtype == np.uint8
    vis2, ir2 = render_pair(2.5, seed=3)
    assert np.array_equal(vis, vis2) and np.array_equal(ir, ir2)
    vis3, _ = render_pair(2.5, seed=4)
    assert not np.array_equal(vis, vis3)


def test_smoke_blinds_vis_but_not_ir():
    # Contrast (std) of VIS collapses in smoke; IR keeps most of its contrast.
    times = np.arange(0, 20, 0.5)
    def contrast(smoke):
        v = [render_pair(t, smoke=smoke) for t in times]
        return (np.mean([cv2.cvtColor(a, cv2.COLOR_BGR2GRAY).std() for a, _ in v]),
                np.mean([b.std() for _, b in v]))
    vis_clear, ir_clear = contrast(0.0)
    vis_smoke, ir_smoke = contrast(1.0)
    assert vis_smoke < 0.75 * vis_clear
    assert ir_smoke > 0.9 * ir_clear


def test_smoke_thickens_and_thins_over_time():
    vis_clear = render_pair(0.0, smoke=0.0)[0].astype(np.float32)
    loss = [np.abs(render_pair(t)[0].astype(np.float32) - render_pair(t, smoke=0.0)[0]).mean() for t in np.arange(0, 20, 1.0)]
    assert max(loss) > 2.5 * min(loss), loss
    assert vis_clear.std() > 0


def test_warm_objects_land_at_true_ir_from_vis_of_their_vis_position():
    seed, t = 1, 3.0
    _, ir = render_pair(t, seed=seed)
    thermal = render_thermal_vis_coords(t, seed=seed)
    background = np.median(ir)
    checked = 0
    for o in scene_objects(t, seed):
        if o.kind != "person" or not (40 < o.x < VIS_SIZE[0] - 40):
            continue
        head_vis = np.array([o.x, o.y - o.h / 2 + 0.09 * o.h])            # centre of the head
        assert thermal[int(head_vis[1]), int(head_vis[0])] > background + 80
        hx, hy = cv2.perspectiveTransform(head_vis[None, None], TRUE_IR_FROM_VIS)[0, 0]
        patch = ir[int(round(hy)) - 1:int(round(hy)) + 2, int(round(hx)) - 1:int(round(hx)) + 2]
        assert patch.max() > background + 60, (o, patch, background)
        checked += 1
    assert checked >= 2


@pytest.mark.parametrize("t", [0.0, 5.0])
def test_target_corners_match_geometry_in_both_cameras(t):
    vis, ir = render_pair(t, scene="target")
    truth_vis = target_corners_vis(t)
    truth_ir = cv2.perspectiveTransform(truth_vis[None], TRUE_IR_FROM_VIS)[0]
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 30, 0.01)
    for img, truth, win in ((cv2.cvtColor(vis, cv2.COLOR_BGR2GRAY), truth_vis, 5), (ir, truth_ir, 3)):
        ok, corners = cv2.findChessboardCorners(img, TARGET_INNER_CORNERS)
        assert ok
        corners = cv2.cornerSubPix(img, corners, (win, win), (-1, -1), crit).reshape(-1, 2)
        if np.linalg.norm(corners[0] - truth[0]) > np.linalg.norm(corners[0] - truth[-1]):
            corners = corners[::-1]                       # detector may start from the other end
        assert np.abs(corners - truth).max() < 0.6


def test_unpaced_source_sizes_rates_and_jitter():
    vis = _frames(SyntheticConfig(modality="vis", paced=False, seed=2), 40)
    ir = _frames(SyntheticConfig(modality="ir", paced=False, seed=2), 20)
    assert all(p.kind == "frame" for p in vis + ir)
    assert vis[0].buffers["vis"].shape == (480, 640, 3) and ir[0].buffers["ir"].shape == (256, 320)
    assert [p.seq for p in vis] == list(range(40))
    assert vis[0].meta["modality"] == "vis" and ir[0].meta["modality"] == "ir"
    assert [p.pts for p in ir] == pytest.approx([n / 10 for n in range(20)])
    for frames, fps, jitter in ((vis, 20, 0.001), (ir, 10, 0.004)):
        t = np.array([p.t_mono for p in frames]) - frames[0].t_mono
        dev = t - np.arange(len(t)) / fps - (t[0])
        assert np.abs(dev).max() <= 2 * jitter + 1e-9          # bounded: within +-jitter of the grid
        assert np.abs(dev).max() > 0.2 * jitter                # ...and really jittered
        assert np.all(np.diff(t) > 0)
        wall = np.array([p.t_wall for p in frames])
        np.testing.assert_allclose(wall - wall[0], t, atol=1e-6)


def test_source_is_deterministic_by_seed():
    a = _frames(SyntheticConfig(modality="ir", paced=False, seed=7), 5)
    b = _frames(SyntheticConfig(modality="ir", paced=False, seed=7), 5)
    for p, q in zip(a, b):
        assert np.array_equal(p.buffers["ir"], q.buffers["ir"])
        assert p.t_mono - a[0].t_mono == pytest.approx(q.t_mono - b[0].t_mono, abs=1e-9)


def test_source_frames_are_render_pair_at_their_capture_time():
    src = SyntheticSource(SyntheticConfig(modality="ir", paced=False, seed=5))
    src.start()
    p = [src.read(1.0) for _ in range(3)][-1]
    assert np.array_equal(p.buffers["ir"], render_pair(src.frame_time(2), seed=5)[1])


def test_max_frames_then_eos_once():
    src = SyntheticSource(SyntheticConfig(modality="vis", paced=False, max_frames=3))
    src.start()
    kinds = [(p.kind if p is not None else None) for p in (src.read(0.1) for _ in range(5))]
    assert kinds == ["frame", "frame", "frame", "eos", None]


def test_paced_source_runs_in_real_time():
    clock = FakeClock()
    src = SyntheticSource(SyntheticConfig(modality="ir", paced=True, max_frames=6), clock=clock.host())
    src.start()
    t0 = clock.now
    packets = [p for p in (src.read(0.05) for _ in range(40)) if p is not None]
    assert packets[-1].is_eos and len(packets) == 7 and src.drops == 0
    # 6 frames at 10 fps: the 6th is due at 0.5 s (+- 4 ms jitter), and reading waited for each.
    assert clock.now - t0 == pytest.approx(0.5, abs=0.005)
    assert [p.t_mono - t0 for p in packets[:-1]] == pytest.approx([n / 10 for n in range(6)], abs=0.005)
    assert all(p.meta["clock"] == "capture" for p in packets[:-1])


def test_paced_source_skips_stale_frames_and_counts_drops():
    clock = FakeClock()
    src = SyntheticSource(SyntheticConfig(modality="vis", paced=True, jitter_ms=0), clock=clock.host())
    src.start()
    t0 = clock.now
    assert src.read(1.0).seq == 0
    clock.now += 0.35                               # a slow reader misses 6 frames at 20 fps
    p = src.read(1.0)
    assert (p.seq, src.drops) == (7, 6)             # the newest frame due (0.35 s), not frame 1
    assert p.t_mono == pytest.approx(t0 + 0.35)


def test_bad_config_is_a_clear_error():
    with pytest.raises(CaptureError, match="modality"):
        SyntheticSource(SyntheticConfig(modality="uv"))
    with pytest.raises(CaptureError, match="scene"):
        SyntheticSource(SyntheticConfig(scene="beach"))
    with pytest.raises(ValueError, match="scene"):
        render_pair(0.0, scene="beach")


def test_shared_clock_origin_aligns_two_cameras_started_apart():
    origin = time.monotonic()
    vis = SyntheticSource(SyntheticConfig(modality="vis", paced=False, jitter_ms=0, clock_origin_mono=origin))
    ir = SyntheticSource(SyntheticConfig(modality="ir", paced=False, jitter_ms=0, clock_origin_mono=origin))
    vis.start()
    time.sleep(0.2)                                  # e.g. the IR process came up later
    ir.start()
    v = [vis.read(1.0) for _ in range(3)]
    i = [ir.read(1.0) for _ in range(2)]
    assert v[2].t_mono == pytest.approx(i[1].t_mono, abs=1e-6)      # both at 0.1 s after the origin
    assert v[0].t_mono == pytest.approx(origin, abs=1e-6)
    assert abs(v[0].t_wall - (time.time() - (time.monotonic() - origin))) < 0.01


def test_frames_are_rendered_in_float32():
    # A float64 smoke field (a numpy scalar promoting the frame) made rendering ~1.5x slower.
    from common.synthetic_scene import world_of
    assert world_of(0).smoke_density(3.0, 1.0).dtype == np.float32
    assert render_thermal_vis_coords(3.0).dtype == np.float32
