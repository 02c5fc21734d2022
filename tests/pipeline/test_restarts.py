"""Stage restarts for real: SIGKILL the capture process, then the recorder, mid-run (run_stream.py
in process mode, watched through --http). The run goes on, exits 0, and every recording segment
decodes with PyAV; a crash beyond the budget still ends the run."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av

from calibration_files import write_calibration
from pipeline.transport import free_loopback_port
from test_ops import frames_total, get, stop_run, wait_for

REPO = Path(__file__).resolve().parents[2]


def start_run(tmp: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    port = free_loopback_port()
    cmd = [sys.executable, str(REPO / "run_stream.py"), "--quiet", "--fuser", "laplacian",
           "--http", f"127.0.0.1:{port}", "--output", str(tmp / "rec"), "--summary-json", str(tmp / "summary.json"),
           "--calibration", str(write_calibration(tmp / "cal.yaml")), "--set", "detector_feed.enabled=false",
           "--set", "pipeline.startup_timeout_s=180", "--set", "pipeline.shutdown_timeout_s=30", *extra]
    log = open(tmp / "run.log", "w")
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=log, stderr=log)
    return proc, f"http://127.0.0.1:{port}"


def stage(base: str, name: str) -> dict:
    return next(s for s in json.loads(get(base + "/api/status")[1])["stages"] if s["name"] == name)


def fused(base: str) -> float:
    return frames_total(get(base + "/metrics")[1].decode(), "fusion")


def decode_pts(path: Path) -> list[float]:
    with av.open(str(path)) as c:
        return [float(f.pts * f.time_base) for f in c.decode(c.streams.video[0])]


def test_sigkilled_capture_and_recorder_are_restarted_and_the_run_exits_0(tmp_path):
    proc, base = start_run(tmp_path, "--duration", "0")
    try:
        wait_for(lambda: proc.poll() is None and get(base + "/health", 2.0)[0] == 200, 240, "a healthy run")
        wait_for(lambda: fused(base) >= 20, 60, "20 fused frames")
        old_pid = stage(base, "capture_ir")["pid"]
        t_cap = time.monotonic()
        os.kill(old_pid, signal.SIGKILL)
        # Restarted (a new process), and fusion goes on producing frames from it.
        wait_for(lambda: stage(base, "capture_ir")["restarts"] == 1 and stage(base, "capture_ir")["alive"], 120,
                 "capture_ir to be restarted")
        assert stage(base, "capture_ir")["pid"] != old_pid
        after = fused(base)
        wait_for(lambda: fused(base) >= after + 20, 120, "fused frames after the capture restart")
        wait_for(lambda: get(base + "/health", 2.0)[0] == 200, 60, "/health ok again")
        t_rec = time.monotonic()
        os.kill(stage(base, "recorder")["pid"], signal.SIGKILL)
        wait_for(lambda: stage(base, "recorder")["restarts"] == 1 and stage(base, "recorder")["alive"], 120,
                 "the recorder to be restarted")
        rec_out = stage(base, "recorder")["out"]
        wait_for(lambda: stage(base, "recorder")["out"] >= rec_out + 20, 120, "frames recorded after its restart")
        metrics = get(base + "/metrics")[1].decode()
        assert 'smokefusion_restarts_total{stage="capture_ir"} 1.0' in metrics
        assert 'smokefusion_restarts_total{stage="recorder"} 1.0' in metrics
    finally:
        stop_run(proc)
    log = (tmp_path / "run.log").read_text()
    assert proc.returncode == 0, log[-3000:]
    assert "stage capture_ir failed: process ended (killed by signal 9); restarting it in 0.5 s" in log
    nodes = json.loads((tmp_path / "summary.json").read_text())["nodes"]
    assert nodes["capture_ir"]["restarts"] == 1 and nodes["recorder"]["restarts"] == 1
    files = sorted((tmp_path / "rec").glob("fused_*.mp4"))
    # The restarted recorder opened a new segment; the SIGKILLed one stays playable (fragmented MP4).
    assert [f.name for f in files] == ["fused_000.mp4", "fused_001.mp4"], files
    assert [str(f) for f in files] == nodes["recorder"]["files"]
    first, second = decode_pts(files[0]), decode_pts(files[1])
    assert len(first) >= 40 and len(second) >= 20
    # The first segment runs across the capture restart: it spans from before the capture was
    # killed to the recorder's kill (less at most one fragment, gop_s 1 s, lost to SIGKILL).
    assert first[-1] - first[0] >= (t_rec - t_cap) - 1.5, (first[0], first[-1], t_rec - t_cap)
    assert nodes["recorder"]["totals"]["out"] >= len(first) + len(second) - 2


def test_a_crash_beyond_the_restart_budget_ends_the_run(tmp_path):
    proc, base = start_run(tmp_path, "--duration", "0", "--set", "pipeline.restart={max: 1, window_s: 60}")
    try:
        wait_for(lambda: proc.poll() is None and get(base + "/health", 2.0)[0] == 200, 240, "a healthy run")
        os.kill(stage(base, "capture_vis")["pid"], signal.SIGKILL)
        wait_for(lambda: stage(base, "capture_vis")["restarts"] == 1 and stage(base, "capture_vis")["alive"], 120,
                 "capture_vis to be restarted")
        os.kill(stage(base, "capture_vis")["pid"], signal.SIGKILL)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = (tmp_path / "run.log").read_text()
    assert proc.returncode == 1, log[-2000:]
    assert log.rstrip().splitlines()[-1] == ("error: stage capture_vis failed: process ended (killed by signal 9) "
                                             "(restart budget used up: 1 restarts within 60s)")
