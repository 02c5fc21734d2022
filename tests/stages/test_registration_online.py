"""Online refinement in the registration stage, fed by the synthetic cameras (exact geometry).

A knocked calibration is corrected from live pairs; a VIS stream without structure (dense smoke,
a flat frame) never changes it; a correct calibration survives smoke; bad keys are named.
"""
import logging
import math
import time

import numpy as np
import pytest

from calibration import corner_error
from calibration_files import write_calibration
from common.schema import ConfigError, build
from pipeline.packet import Packet
from common.synthetic_scene import TRUE_IR_FROM_VIS, VIS_SIZE
from stages.capture.synthetic import SyntheticConfig, SyntheticSource
from stages.registration import OnlineRefineConfig, RegistrationConfig, RegistrationStage


def knock(m, dx=4.0, dy=-3.0, deg=0.8, centre=(160.0, 128.0)):
    """The rig after a knock: a rotation about the IR centre and a shift, in IR px."""
    a = math.radians(deg)
    r = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    k = np.eye(3)
    k[:2, :2] = r
    k[:2, 2] = np.asarray(centre) + (dx, dy) - r @ np.asarray(centre)
    return k @ m


KNOCKED = knock(TRUE_IR_FROM_VIS)


def synthetic_stream(seconds, smoke=0.0, vis_fps=10.0, flat_vis=False):
    """Frame packets of both synthetic cameras (unpaced), merged in capture-time order."""
    srcs = [SyntheticSource(SyntheticConfig(modality=m, smoke=smoke, paced=False, clock_origin_mono=0.0,
                                            fps=vis_fps if m == "vis" else None,
                                            max_frames=int(seconds * (vis_fps if m == "vis" else 10))))
            for m in ("vis", "ir")]
    for s in srcs:
        s.start()
    heads = [s.read(1.0) for s in srcs]
    while not all(h.is_eos for h in heads):
        i = min((i for i in range(2) if not heads[i].is_eos), key=lambda i: heads[i].t_mono)
        pkt = heads[i]
        if flat_vis and "vis" in pkt.buffers:   # a white-out: airlight plus sensor noise
            rng = np.random.default_rng(pkt.seq)
            pkt.buffers["vis"] = np.clip(200 + rng.normal(0, 2, pkt.buffers["vis"].shape), 0, 255).astype(np.uint8)
        yield pkt
        heads[i] = srcs[i].read(1.0)


def stage_with(tmp_path, matrix, **refine):
    path = write_calibration(tmp_path / "cal.yaml", ir_from_vis=matrix)
    st = RegistrationStage(RegistrationConfig(calibration=str(path), online_refine=OnlineRefineConfig(enabled=True, **refine)))
    st.start()
    return st


def pairs_of(st, packets):
    out = []
    for p in packets:
        out.extend(st.process(p))
    return [p for p in out if p.kind == "pair"]


def test_a_knocked_calibration_is_corrected_inline_and_logged(tmp_path, caplog):
    assert corner_error(KNOCKED, TRUE_IR_FROM_VIS, VIS_SIZE) > 4     # 5 px off before
    st = stage_with(tmp_path, KNOCKED, every_s=1.0, background=False)
    old_id = st.stats()["calibration_id"]
    with caplog.at_level(logging.INFO, logger="calibration.online"):
        pairs = pairs_of(st, synthetic_stream(2.5))
    assert corner_error(st._cal.ir_from_vis, TRUE_IR_FROM_VIS, VIS_SIZE) < 1.0
    s = st.stats()
    # Pairs about 1 s apart are re-estimated: the first adopts, the others find nothing better.
    assert s["refine_attempts"] >= 2 and s["refine_adopted"] == 1
    assert s["refine_rejected_by"] == {"not-better": s["refine_attempts"] - 1}
    new_id = s["calibration_id"]
    assert new_id != old_id
    # Inline, the pair that triggered the estimate already carries the new geometry.
    assert {p.meta["calibration_id"] for p in pairs} == {new_id}
    lines = [r.getMessage() for r in caplog.records if r.name == "calibration.online"]
    assert len(lines) == 1 and f"{old_id} -> {new_id}" in lines[0]
    assert "score" in lines[0] and "px" in lines[0] and "ir#0" in lines[0]


def slowest_call(st, packets) -> float:
    """Seconds of the slowest st.process() call over `packets`."""
    worst = 0.0
    for pkt in packets:
        t0 = time.perf_counter()
        st.process(pkt)
        worst = max(worst, time.perf_counter() - t0)
    return worst


def test_a_knocked_calibration_is_corrected_in_the_background_without_stalling_pairs(tmp_path):
    # What an estimate costs the frame path when it runs inline (same machine, same moment).
    inline_stall = slowest_call(stage_with(tmp_path, KNOCKED, every_s=100.0, background=False),
                                synthetic_stream(0.5))
    st = stage_with(tmp_path, KNOCKED, every_s=0.3)
    old_id = st.stats()["calibration_id"]
    ids, worst = [], 0.0
    deadline = time.monotonic() + 60
    for pkt in synthetic_stream(30.0):
        t0 = time.perf_counter()
        out = st.process(pkt)
        worst = max(worst, time.perf_counter() - t0)
        ids += [p.meta["calibration_id"] for p in out if p.kind == "pair"]
        if (ids and ids[-1] != old_id) or time.monotonic() > deadline:
            break                                  # a pair went out with the new geometry
    s = st.stats()
    st.stop()
    assert s["refine_adopted"] >= 1, s
    assert corner_error(st._cal.ir_from_vis, TRUE_IR_FROM_VIS, VIS_SIZE) < 1.0
    # Pairs kept flowing with the old geometry while the estimate ran, then switched.
    assert ids[0] == old_id and ids[-1] == s["calibration_id"] != old_id
    # The frame path only copies the pair for the thread (measured: slowest call 9 ms in the
    # background vs 100 ms inline on this 2-core machine).
    assert worst < 0.5 * inline_stall, f"slowest process() call {worst:.3f} s, inline estimate {inline_stall:.3f} s"


@pytest.mark.parametrize("kind", ["dense-smoke", "flat"])
def test_vis_without_structure_never_changes_the_calibration(tmp_path, kind):
    st = stage_with(tmp_path, KNOCKED, every_s=0.5, background=False)
    old_id = st.stats()["calibration_id"]
    stream = synthetic_stream(3.0, smoke=30.0) if kind == "dense-smoke" else synthetic_stream(3.0, flat_vis=True)
    pairs = pairs_of(st, stream)
    s = st.stats()
    assert s["refine_attempts"] >= 5 and s["refine_adopted"] == 0          # every ~0.5 s of 3 s
    assert s["refine_rejected_by"] == {"structureless": s["refine_attempts"]}
    assert {p.meta["calibration_id"] for p in pairs} == {old_id}
    assert np.array_equal(st._cal.ir_from_vis, KNOCKED)


def test_a_correct_calibration_survives_smoke(tmp_path):
    """Smoke thins and thickens: frames that pass the gate re-estimate; nothing may move it off."""
    st = stage_with(tmp_path, TRUE_IR_FROM_VIS, every_s=0.5, background=False)
    pairs_of(st, synthetic_stream(5.0, smoke=1.5))
    s = st.stats()
    assert s["refine_attempts"] >= 8                                   # every ~0.5 s of 5 s
    assert s["refine_rejected_by"].get("not-better", 0) >= 1          # some frames were estimated
    assert corner_error(st._cal.ir_from_vis, TRUE_IR_FROM_VIS, VIS_SIZE) < 0.3


def test_off_by_default_with_a_calibration_file_and_no_refine_stats(calibration_file):
    st = RegistrationStage(RegistrationConfig(calibration=str(calibration_file)))
    st.start()
    assert st.config.online_refine.enabled == "auto"      # auto: on only for a calibration estimated at start
    assert st._refiner is None and "refine_attempts" not in st.stats()


def test_bad_online_refine_keys_and_values_are_named():
    with pytest.raises(ConfigError, match=r"^cfg: registration\.online_refine\.every_ss: unknown key \(expected one of: enabled, every_s"):
        build(RegistrationConfig, {"online_refine": {"enabled": True, "every_ss": 3}}, "cfg: registration")
    with pytest.raises(ConfigError, match=r"^cfg: registration\.online_refine\.every_s: must be > 0 seconds, got 0"):
        build(RegistrationConfig, {"online_refine": {"every_s": 0}}, "cfg: registration")
    with pytest.raises(ConfigError, match=r"registration\.online_refine\.enabled: 'yes' is not a valid value \(expected bool or 'auto'\)"):
        build(RegistrationConfig, {"online_refine": {"enabled": "yes"}}, "cfg: registration")
    with pytest.raises(ConfigError, match=r"^cfg: registration\.online_refine\.margin: must be >= 0"):
        build(RegistrationConfig, {"online_refine": {"margin": -1}}, "cfg: registration")
    assert build(RegistrationConfig, {"online_refine": {"enabled": True}}, "r").online_refine == OnlineRefineConfig(enabled=True)
