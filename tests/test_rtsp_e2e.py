"""The whole pipeline against a real GStreamer RTSP server on loopback, across a server outage.

Two mounts (/vis 640x480 @ 20 fps, /ir 320x256 gray @ 10 fps) from tests/rtsp_server.py. The
server is SIGKILLed mid-run and restarted on the same port 2 s later; the pipeline must
reconnect, go on fusing, exit 0, and leave a playable recording. Prints the time from the
server's return to the first fused frame captured after it.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import pytest
import zmq

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from rtsp_fixture import RTSP_PASSWORD, rtsp_server  # noqa: E402,F401  (registers the fixture)
from test_run_stream import worker_pids, write_calibration  # noqa: E402

from pipeline.codec import decode  # noqa: E402

OUTAGE_S = 2.0


class FeedTimes(threading.Thread):
    """(arrival monotonic time, capture t_mono) of every fused frame on the detector feed."""

    def __init__(self, address):
        super().__init__(daemon=True)
        self.address, self.times, self.stop = address, [], threading.Event()

    def run(self):
        ctx = zmq.Context()
        s = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.SUBSCRIBE, b"")
        s.setsockopt(zmq.LINGER, 0)
        s.connect(self.address)
        while not self.stop.is_set():
            if s.poll(20):
                p = decode(s.recv_multipart(copy=False))
                if p.kind == "fused":
                    self.times.append((time.monotonic(), p.t_mono))
        s.close(0)
        ctx.term()


@pytest.mark.rtsp
def test_pipeline_survives_a_2s_rtsp_server_outage(rtsp_server, tmp_path):
    feed_ep = f"ipc://{tmp_path}/feed.sock"
    cmd = [sys.executable, str(REPO / "run_stream.py"), "--quiet",
           "--vis", rtsp_server.url("/vis"), "--ir", rtsp_server.url("/ir"),
           "--calibration", str(write_calibration(tmp_path / "cal.yaml")),
           "--output", str(tmp_path / "rec"), "--duration", "60", "--fuser", "laplacian",
           "--summary-json", str(tmp_path / "summary.json"),
           "--set", f"detector_feed.endpoint=pub+bind:{feed_ep}",
           "--set", "pipeline.startup_timeout_s=180", "--set", "pipeline.shutdown_timeout_s=30"]
    feed = FeedTimes(feed_ep)
    feed.start()
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180       # a busy machine may take long to start every stage
        while len(feed.times) < 20 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert len(feed.times) >= 20, "no fused frames before the outage"
        rtsp_server.kill()
        t_kill = time.monotonic()
        time.sleep(OUTAGE_S)
        t_back = rtsp_server.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            after = [a for a, c in feed.times if c > t_back]
            if len(after) >= 20:
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
        feed.stop.set()
        feed.join(5)
    assert proc.returncode == 0, err[-3000:]
    assert RTSP_PASSWORD not in err and RTSP_PASSWORD not in out
    new = [a for a, c in feed.times if c > t_back]
    assert len(new) >= 20, f"only {len(new)} fused frames after the server returned"
    gap = [a for a, c in feed.times if t_kill < a < t_back]
    recovery_s = new[0] - t_back
    print(f"\nRTSP outage {OUTAGE_S:.1f}s: first new fused frame {recovery_s:.2f}s after the server returned "
          f"({len(gap)} fused frames during the outage, {len(new)} after)")
    summary = json.loads((tmp_path / "summary.json").read_text())
    nodes = summary["nodes"]
    assert nodes["capture_vis"]["stage"].get("reconnects", 0) >= 1
    assert nodes["capture_ir"]["stage"].get("reconnects", 0) >= 1
    files = sorted((tmp_path / "rec").glob("fused_*.mp4"))
    assert files
    with av.open(str(files[0])) as c:
        decoded = sum(1 for _ in c.decode(video=0))
    assert decoded == nodes["recorder"]["stage"]["frames_written"] >= 40
    for pid in worker_pids(err):
        assert not Path(f"/proc/{pid}").exists()
