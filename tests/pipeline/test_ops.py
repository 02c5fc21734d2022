"""The operations server (pipeline/ops.py): health rules, restart budget, preview rate cap, the
smoke prior, and a real run_stream.py --http scraped with urllib and rendered in headless Chromium."""
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import zmq

from calibration_files import write_calibration
from pipeline.ops import evaluate_health, transmission_prior
from pipeline.packet import Packet
from pipeline.runner import RestartBudget
from pipeline.transport import PacketSender, free_loopback_port, parse_endpoint

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"


# -- health rules (pure, clock injected) -----------------------------------------------------------
def node(role="stage", alive=True, last_out=100.0, restarting=False, exit_code=None, connected=None, restarts=0):
    st = {} if connected is None else {"connected": connected}
    return {"role": role, "alive": alive, "ready": True, "pid": None, "exit_code": exit_code, "restarts": restarts,
            "restarting": restarting, "started_at": 0.0, "last": {"last_out": last_out, "stage": st},
            "totals": {}}


def graph(**over):
    g = {"capture_vis": node("source"), "capture_ir": node("source"), "registration": node(),
         "fusion": node(), "recorder": node("sink")}
    g.update(over)
    return g


def test_health_ok_while_every_stage_runs_and_fuses():
    h = evaluate_health(graph(), "running", now=101.0, stale_s=5.0, go_at=0.0)
    assert (h.status, h.http_code, h.reason) == ("ok", 200, "")


def test_health_names_the_camera_that_is_reconnecting_before_the_stale_fusion():
    g = graph(capture_ir=node("source", last_out=96.8, connected=False), fusion=node(last_out=90.0))
    h = evaluate_health(g, "running", now=101.0, stale_s=5.0, go_at=0.0)
    assert h.status == "degraded" and h.http_code == 503
    assert h.reason == "capture_ir: no frame for 4.2 s (reconnecting)"
    assert "fusion: no fused frame for 11.0 s" in h.problems


def test_health_stale_fusion_dead_stage_restart_and_phases():
    h = evaluate_health(graph(fusion=node(last_out=95.0)), "running", now=101.0, stale_s=5.0, go_at=0.0)
    assert (h.status, h.reason) == ("degraded", "fusion: no fused frame for 6.0 s")
    h = evaluate_health(graph(fusion=node(alive=False, exit_code=1)), "running", now=101.0, stale_s=5.0, go_at=0.0)
    assert (h.status, h.reason) == ("down", "fusion: process ended (exit status 1)")
    h = evaluate_health(graph(capture_vis=node("source", alive=False, exit_code=-9, restarting=True)),
                        "running", now=101.0, stale_s=5.0, go_at=0.0)
    assert (h.status, h.reason) == ("degraded", "capture_vis: crashed, restarting (restart 1)")
    assert evaluate_health(graph(), "starting", 1.0, 5.0, None).status == "down"
    assert evaluate_health(graph(), "ended", 1.0, 5.0, None).reason == "run ended"
    # No frame yet: measured from the go signal, so a fresh run is not stale at once.
    g = graph(fusion=node(last_out=None), capture_vis=node("source", last_out=105.0),
              capture_ir=node("source", last_out=105.0))
    assert evaluate_health(g, "running", now=103.0, stale_s=5.0, go_at=100.0).status == "ok"
    assert evaluate_health(g, "running", now=106.0, stale_s=5.0, go_at=100.0).reason == "fusion: no fused frame for 6.0 s"


# -- restart budget (clock injected) ----------------------------------------------------------------
def test_restart_budget_backs_off_and_runs_out_within_the_window():
    now = [0.0]
    b = RestartBudget(max=3, window_s=60.0, backoff_s=0.5, backoff_max_s=1.5, clock=lambda: now[0])
    assert [b.take("cap"), b.take("cap"), b.take("cap")] == [0.5, 1.0, 1.5]
    assert b.take("cap") is None              # a 4th within 60 s: the run ends
    assert b.take("rec") == 0.5               # budgets are per stage
    now[0] = 61.0
    assert b.take("cap") == 0.5               # the window slid past the old restarts
    assert RestartBudget(max=0).take("x") is None


# -- the preview output never sends more than view_fps -----------------------------------------------
def test_preview_sender_skips_packets_beyond_its_fps_cap():
    ctx = zmq.Context()
    now = [0.0]
    ep = parse_endpoint("pub+bind:inproc://preview-cap")
    sender = PacketSender(ctx, ep, block=False, max_fps=8.0, clock=lambda: now[0])
    try:
        sent = []
        for i in range(32):                   # 32 packets over 1 s (32 fps; times exact in binary) -> 8 leave
            now[0] = i / 32.0
            sent.append(sender.send(Packet(stream="s", kind="fused", seq=i, t_mono=now[0], t_wall=now[0])))
        assert sum(sent) == 8 and sender.skipped == 24 and sender.dropped == 0
        # At the cap with jitter (10 fps, each frame 2 ms early or late) every frame passes.
        sender2 = PacketSender(ctx, parse_endpoint("pub+bind:inproc://preview-cap2"), block=False, max_fps=10.0,
                               clock=lambda: now[0])
        passed = []
        for i in range(50):
            now[0] = 10.0 + i * 0.1 + (0.002 if i % 2 else -0.002)
            passed.append(sender2.send(Packet(stream="s", kind="fused", seq=i, t_mono=now[0], t_wall=now[0])))
        sender2.close()
        assert sum(passed) >= 48
        assert sender.send(Packet.eos("s"))   # end-of-stream is never skipped
    finally:
        sender.close()
        ctx.term()


def test_transmission_prior_sees_haze_where_contrast_is_gone():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)
    img[:, 64:] = (0.3 * img[:, 64:] + 0.7 * 230).astype(np.uint8)    # right half: a bright veil
    t = transmission_prior(img)
    assert t.shape == (64, 128) and t.dtype == np.float32
    assert t[:, :56].mean() > 0.8 and t[:, 72:].mean() < 0.5


# -- a real run ------------------------------------------------------------------------------------
def get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """(status, body); (0, b"") while nothing listens yet."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, ConnectionError):
        return 0, b""


def frames_total(metrics: str, stage: str) -> float:
    m = re.search(r'^smokefusion_frames_total\{stage="%s"\} ([0-9.e+]+)$' % stage, metrics, re.M)
    assert m, metrics[:2000]
    return float(m.group(1))


def stop_run(proc: subprocess.Popen, timeout_s: float = 120) -> None:
    """SIGINT a run_stream.py process (the user's Ctrl-C) and wait; kill it if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()


def wait_for(cond, timeout_s: float, what: str, step_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(step_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def live_run(tmp_path_factory):
    """run_stream.py --http on the demo (laplacian fuser), until the module's tests are done."""
    tmp = tmp_path_factory.mktemp("ops")
    port = free_loopback_port()
    cmd = [sys.executable, str(REPO / "run_stream.py"), "--quiet", "--duration", "0", "--fuser", "laplacian",
           "--http", f"127.0.0.1:{port}", "--output", str(tmp / "rec"),
           "--calibration", str(write_calibration(tmp / "cal.yaml")),
           "--set", "detector_feed.enabled=false", "--set", "pipeline.startup_timeout_s=180"]
    log = open(tmp / "run.log", "w")
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        def healthy():
            if proc.poll() is not None:
                raise AssertionError(f"run_stream.py ended: {(tmp / 'run.log').read_text()[-2000:]}")
            try:
                return get(base + "/health", 2.0)[0] == 200
            except OSError:
                return False
        wait_for(healthy, 240, "/health to say ok")
        yield base, proc
    finally:
        stop_run(proc, 90)
        log.close()
    assert proc.returncode == 0, (tmp / "run.log").read_text()[-2000:]


def test_health_is_ok_and_fused_frames_grow_between_scrapes(live_run):
    base, _ = live_run
    code, body = get(base + "/health")
    assert code == 200 and json.loads(body) == {"status": "ok", "reason": "", "problems": []}
    code, m1 = get(base + "/metrics")
    assert code == 200
    first = frames_total(m1.decode(), "fusion")
    time.sleep(1.5)
    m2 = get(base + "/metrics")[1].decode()
    assert frames_total(m2, "fusion") > first
    for family in ("smokefusion_drops_total{stage=\"capture_vis\"}", "smokefusion_latency_seconds_bucket",
                   "smokefusion_calibration_info{", "smokefusion_calibration_age_seconds{",
                   "smokefusion_calibration_adoptions_total{stage=\"registration\"}",
                   "smokefusion_process_resident_memory_bytes{stage=\"fusion\"}",
                   "smokefusion_process_open_fds{stage=\"capture_ir\"}", "smokefusion_restarts_total"):
        assert family in m2, family
    status = json.loads(get(base + "/api/status")[1])
    assert {s["name"] for s in status["stages"]} == {"capture_vis", "capture_ir", "registration", "fusion", "recorder"}
    assert status["frame"]["views"] == ["fused", "vis", "ir", "smoke"]


def test_live_view_moves_in_headless_chromium(live_run):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not found (Debian's chromium; .ci/run installs it)")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
    base, _ = live_run
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 600})
            page.goto(base + "/", wait_until="commit")      # an MJPEG page never finishes loading
            page.wait_for_function("document.getElementById('video').naturalWidth > 0", timeout=60_000)
            page.wait_for_function("document.querySelectorAll('#stages tr').length === 5", timeout=30_000)
            video = page.locator("#video")
            a = video.screenshot()
            time.sleep(1.0)
            b = video.screenshot()
            whole = page.screenshot()
            # The smoke map toggle switches the stream.
            page.click("button[data-view=smoke]")
            page.wait_for_function("document.getElementById('video').src.includes('view=smoke')")
        finally:
            browser.close()
    import cv2
    ia = cv2.imdecode(np.frombuffer(a, np.uint8), cv2.IMREAD_GRAYSCALE).astype(np.int16)
    ib = cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_GRAYSCALE).astype(np.int16)
    assert ia.shape == ib.shape and ia.std() > 10, "the video element shows a picture"
    assert np.abs(ia - ib).mean() > 0.5, "two screenshots a second apart must differ: the picture moves"
    (REPO / "docs").mkdir(exist_ok=True)
    (REPO / "docs" / "live_view.png").write_bytes(whole)
