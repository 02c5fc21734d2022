"""A wall-clock step of +-1 h mid-run changes nothing in pairing or latency; t_wall follows it.

Stepping this machine's real clock would disturb everything else running on it, so the step is
made inside the process: the whole pipeline runs in thread mode (every stage in this process)
with `time.time` replaced by the real clock plus 0 before the step and +-3600 s after it. Every
module reads the wall clock through `time.time`, so a stage that used it for a duration or an
ordering would show it here; pairing, pacing and latency use `time.monotonic`.
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import run_stream  # noqa: E402
from feed_listener import FeedListener  # noqa: E402

STEP_AT_S = 4.0            # seconds after the first fused frame
DURATION_S = 10


@pytest.mark.parametrize("step_s", [3600.0, -3600.0])
def test_wall_clock_step_mid_run(tmp_path, monkeypatch, calibration_file, step_s):
    feed_ep = f"ipc://{tmp_path}/feed.sock"
    feed = FeedListener(feed_ep)
    feed.start()
    real_time = time.time
    stepped = {"at": None}

    def wall() -> float:
        fused = feed.fused()
        first = fused[0].arrival if fused else None
        if first is not None and time.monotonic() - first >= STEP_AT_S:
            stepped["at"] = stepped["at"] or time.monotonic()
            return real_time() + step_s
        return real_time()

    monkeypatch.setattr(time, "time", wall)
    code = run_stream.main(["--mode", "thread", "--quiet", "--fuser", "laplacian", "--duration", str(DURATION_S),
                            "--calibration", str(calibration_file), "--output", str(tmp_path / "rec"),
                            "--summary-json", str(tmp_path / "summary.json"),
                            "--set", f"detector_feed.endpoint=pub+bind:{feed_ep}"])
    monkeypatch.setattr(time, "time", real_time)
    feed.stop.set()
    feed.join(5)
    assert code == 0 and stepped["at"] is not None
    rows = np.array([(r.arrival, r.t_mono, r.t_wall) for r in feed.fused()])
    before, after = rows[rows[:, 0] < stepped["at"] - 0.5], rows[rows[:, 0] > stepped["at"] + 0.5]
    assert len(before) >= 25 and len(after) >= 25
    # t_wall follows the new clock: its offset from t_mono moves by the step, and only by it.
    offset_before = before[:, 2] - before[:, 1]
    offset_after = after[:, 2] - after[:, 1]
    assert np.ptp(offset_before) < 0.05 and np.ptp(offset_after) < 0.05
    assert offset_after.mean() - offset_before.mean() == pytest.approx(step_s, abs=0.05)
    # Pairing and latency do not notice: the same rate, no gap, the same delay.
    gaps = np.diff(rows[:, 0])
    lat_before, lat_after = before[:, 0] - before[:, 1], after[:, 0] - after[:, 1]
    rate = lambda r: (len(r) - 1) / (r[-1, 0] - r[0, 0])          # noqa: E731
    print(f"step {step_s:+.0f} s: {rate(before):.1f} / {rate(after):.1f} pairs/s before / after, "
          f"latency p50 {1000 * np.median(lat_before):.0f} / {1000 * np.median(lat_after):.0f} ms, max gap {gaps.max():.2f} s")
    assert gaps.max() < 1.0
    assert rate(after) == pytest.approx(rate(before), rel=0.2)
    assert np.median(lat_after) < np.median(lat_before) + 0.1 and lat_after.max() < 1.0
    summary = json.loads((tmp_path / "summary.json").read_text())
    reg = summary["nodes"]["registration"]["stage"]
    assert reg["pairs"] >= 0.8 * reg["ir_in"] and reg["skew_ms_max_abs"] < 35.0   # live drops under load aside
