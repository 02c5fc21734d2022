"""16-bit IR through registration: the radiometric synthetic camera's hottest spot, FFC freezes,
the config keys, and the whole pipeline publishing temperatures on the detector feed."""
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from app.registry import load
from common.schema import build
from common.synthetic_scene import TRUE_IR_FROM_VIS, scene_objects
from pipeline.config import ConfigError
from pipeline.packet import Packet
from stages.capture.synthetic import SyntheticConfig, SyntheticSource
from stages.registration import DEMO_CALIBRATION, RegistrationConfig, RegistrationStage
from thermal.agc import AgcConfig
from thermal.camera import IrCamera, IrCameraError
from thermal.radiometry import counts_to_celsius
from thermal.scene import ENGINE_C, PERSON_C, PLANCK, fire_truth

REPO = Path(__file__).resolve().parents[2]


def cameras(seconds: float, smoke: float = 0.0, **ir_options):
    """VIS and 16-bit IR synthetic cameras (unpaced, one clock), frames interleaved in capture order."""
    origin = time.monotonic()
    vis = SyntheticSource(SyntheticConfig(modality="vis", paced=False, smoke=smoke, max_frames=int(20 * seconds),
                                          clock_origin_mono=origin))
    ir = SyntheticSource(SyntheticConfig(modality="ir", bits=16, paced=False, smoke=smoke,
                                         max_frames=int(10 * seconds), clock_origin_mono=origin, **ir_options))
    # What the runtime adds to each IR frame for capture_ir.agc / .radiometric (NodeSpec.meta)
    camera_meta = {"ir_camera": IrCamera(AgcConfig(), PLANCK).to_meta()}
    frames = []
    for src in (vis, ir):
        src.start()
        while (p := src.read(1.0)) is not None and not p.is_eos:
            if src is ir:
                p.meta.update(camera_meta)
            frames.append(p)
    return sorted(frames, key=lambda p: p.t_mono)


def register(frames, **config):
    st = RegistrationStage(build(RegistrationConfig, {"calibration": str(DEMO_CALIBRATION), **config}, "registration"))
    st.start()
    out = []
    for p in frames:
        out += st.process(p)
    out += st.finish()
    return st, out


def test_the_hottest_spot_of_the_radiometric_demo_is_the_fire_within_1c_and_2px():
    _, pairs = register(cameras(4.0))
    assert len(pairs) >= 35
    fx, fy, fc = fire_truth()
    errors_c, errors_px = [], []
    for p in pairs:
        assert p.buffers["ir_counts"].dtype == np.uint16 and p.buffers["ir"].dtype == np.uint8
        hot = p.meta["ir_temperature_c"]["hottest"]
        errors_c.append(abs(hot["c"] - fc))
        errors_px.append(float(np.hypot(hot["x"] - fx, hot["y"] - fy)))
    print(f"hottest spot over {len(pairs)} pairs: max error {max(errors_c):.3f} °C, {max(errors_px):.2f} px")
    assert max(errors_c) <= 1.0 and max(errors_px) <= 2.0
    # The other known temperatures read back from the counts: a person's torso, an engine.
    p = pairs[len(pairs) // 2]
    temp = counts_to_celsius(p.buffers["ir_counts"], PLANCK)
    t_s = p.t_mono - pairs[0].t_mono + pairs[0].meta["ir_pts"]     # the IR frame's scene time

    def ir_px(x, y):
        q = TRUE_IR_FROM_VIS @ np.array([x, y, 1.0])
        return int(round(q[1] / q[2])), int(round(q[0] / q[2]))

    objs = scene_objects(p.meta["ir_pts"])
    person = max((o for o in objs if o.kind == "person" and 10 < o.x < 630), key=lambda o: o.h)
    assert temp[ir_px(person.x, person.y - 0.08 * person.h)] == pytest.approx(PERSON_C, abs=1.0)
    car = max((o for o in objs if o.kind == "vehicle" and 80 < o.x < 560), key=lambda o: o.h, default=None)
    if car is not None:
        (r0, c0), (r1, c1) = ir_px(car.x - car.w / 2, car.y - car.h / 2), ir_px(car.x + car.w / 2, car.y + car.h / 2)
        assert temp[r0:r1, c0:c1].max() == pytest.approx(ENGINE_C, abs=1.0)
    assert t_s >= 0


def _content_times(frames):
    """hash of each distinct IR content -> capture time of the first frame that showed it."""
    first = {}
    for p in frames:
        if p.meta["modality"] == "ir":
            first.setdefault(hashlib.sha1(p.buffers["ir"].tobytes()).hexdigest(), p.t_mono)
    return first


def test_a_half_second_ffc_freeze_never_gives_an_unmarked_stale_pair():
    hold_ms = 300.0
    frames = cameras(6.0, ffc_every_s=2.0, ffc_freeze_s=0.5)
    first_seen = _content_times(frames)
    st, pairs = register(frames, ffc_hold_ms=hold_ms, online_refine={"enabled": True, "every_s": 100.0,
                                                                     "background": False})
    stale_unmarked, frozen, oldest_ms = 0, 0, 0.0
    for p in pairs:
        age_ms = (p.t_mono - first_seen[hashlib.sha1(p.buffers["ir_counts"].tobytes()).hexdigest()]) * 1000.0
        oldest_ms = max(oldest_ms, age_ms)
        frozen += p.meta["ir_frozen"]
        if age_ms > 0 and not p.meta["ir_frozen"]:
            stale_unmarked += 1
        if p.meta["ir_frozen"]:
            assert p.meta["ir_age_ms"] == pytest.approx(age_ms, abs=0.5)
    s = st.stats()
    print(f"FFC: {s['ffc_freezes']} freezes of 0.5 s, {frozen} pairs marked frozen (held <= {hold_ms:g} ms), "
          f"{s['ir_frozen_dropped']} frozen frames dropped, oldest IR in a pair {oldest_ms:.0f} ms, jumps {s['ffc_jumps']}")
    assert stale_unmarked == 0
    assert oldest_ms <= hold_ms + 10                      # the 10 fps frame grid, plus the jitter
    assert s["ffc_freezes"] == 2 and frozen >= 4 and s["ir_frozen_dropped"] >= 2
    assert s["ir_frozen_held"] + s["ir_frozen_dropped"] == s["ffc_frozen_frames"]
    assert s["refine_skipped_frozen"] == frozen           # online refinement never sees a frozen frame


def test_ffc_detection_is_off_for_8_bit_ir_unless_asked():
    still = np.full((256, 320), 90, np.uint8)
    frames = [Packet("s", "frame", n, 0.1 * n, 0.0, buffers={"ir": still}, meta={"modality": "ir"}) for n in range(5)]
    frames += [Packet("s", "frame", n, 0.1 * n + 0.001, 0.0, buffers={"vis": np.zeros((480, 640, 3), np.uint8)},
                      meta={"modality": "vis"}) for n in range(5)]
    frames.sort(key=lambda p: p.t_mono)
    _, pairs = register(frames)
    assert len(pairs) == 5 and all("ir_frozen" not in p.meta for p in pairs)   # a still scene is not a freeze
    _, pairs = register(frames, ffc_detect=True, ffc_hold_ms=250)
    assert [p.meta["ir_frozen"] for p in pairs] == [False, True, True]        # 0.3, 0.4 s: dropped


def test_the_synthetic_camera_refuses_other_bit_depths():
    from stages.capture import CaptureError
    with pytest.raises(CaptureError, match="bits must be 8, or 16 for the IR camera"):
        SyntheticSource(SyntheticConfig(modality="ir", bits=12))
    with pytest.raises(CaptureError, match="bits must be 8, or 16 for the IR camera"):
        SyntheticSource(SyntheticConfig(modality="vis", bits=16))


def test_radiometry_on_an_8_bit_picture_is_a_one_line_error():
    st = RegistrationStage(RegistrationConfig(calibration=str(DEMO_CALIBRATION)))
    st.start()
    pkt = Packet("s", "frame", 0, 0.0, 0.0, buffers={"ir": np.zeros((256, 320), np.uint8)},
                 meta={"modality": "ir", "ir_camera": IrCamera(AgcConfig(), PLANCK).to_meta()})
    with pytest.raises(IrCameraError, match="^capture_ir.radiometric: the IR camera delivers uint8 frames"):
        st.process(pkt)


@pytest.mark.parametrize("override, message", [
    ({"capture_vis": {"url": "synthetic://", "agc": {"mode": "plateau"}}}, r"capture_vis.agc: only an IR camera"),
    ({"capture_ir": {"url": "synthetic://", "bits": 16, "agc": {"mode": "gamma"}}}, r"capture_ir.agc.mode: 'gamma' is not one of"),
    ({"capture_ir": {"url": "synthetic://", "bits": 16, "agc": {"mode": "window"}}}, r"capture_ir.agc.mode: window needs"),
    ({"capture_ir": {"url": "synthetic://", "bits": 16, "radiometric": {"kind": "planck", "R": 1.0}}},
     r"capture_ir.radiometric.B: must be > 0"),
])
def test_bad_ir_camera_keys_name_the_key(tmp_path, override, message):
    import yaml
    data = yaml.safe_load((REPO / "configs" / "demo_radiometric.yaml").read_text())
    data.update(override)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=message):
        load(str(path))


def test_radiometric_demo_publishes_temperatures_and_counts_on_the_detector_feed(tmp_path):
    from feed_listener import FeedListener
    feed_ep = f"ipc://{tmp_path}/feed.sock"
    cmd = [sys.executable, str(REPO / "run_stream.py"), "--config", str(REPO / "configs/demo_radiometric.yaml"),
           "--quiet", "--fuser", "laplacian", "--duration", "0", "--output", str(tmp_path / "rec"),
           "--set", "capture_ir.smoke=0", "--set", "capture_vis.smoke=0",
           "--set", "pipeline.startup_timeout_s=180", "--set", f"detector_feed.endpoint=pub+bind:{feed_ep}"]
    feed = FeedListener(feed_ep)
    feed.start()
    run = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"},
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while len(feed.fused()) < 10 and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        sub_out = subprocess.run([sys.executable, str(REPO / "examples/hotspot_subscriber.py"),
                                  "--endpoint", f"sub+connect:{feed_ep}", "--count", "3", "--timeout", "60"],
                                 cwd=REPO, capture_output=True, text=True, timeout=120)
    finally:
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=90)
        feed.stop.set()
        feed.join(5)
    got = feed.fused()[:10]
    assert run.returncode == 0, err[-2000:]
    assert len(got) == 10
    fx, fy, fc = fire_truth()
    for p in got:
        t = p.meta["ir_temperature_c"]
        assert p.dtypes["ir_counts"] == np.uint16 and p.dtypes["ir"] == np.uint8
        assert t["hottest"]["c"] == pytest.approx(fc, abs=1.0)
        assert np.hypot(t["hottest"]["x"] - fx, t["hottest"]["y"] - fy) <= 2.0
        assert t["min"] < t["p99"] < t["max"] and p.meta["ir_frozen"] is False
    assert sub_out.returncode == 0, sub_out.stderr
    lines = sub_out.stdout.splitlines()
    assert len(lines) == 3 and all(re.search(r"hottest \(24\d\.\d,1[56]\d\.\d\) 4\d\d\.\d °C", l) for l in lines), lines
