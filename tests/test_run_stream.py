"""run_stream.py end to end: real processes, real sockets, a real recording decoded with PyAV."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import yaml
import zmq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from feed_listener import FeedListener  # noqa: E402


def write_calibration(path: Path, vis_size=(640, 480)) -> Path:
    from common.synthetic_scene import TRUE_IR_FROM_VIS
    path.write_text(yaml.safe_dump({
        "version": 1, "direction": "ir_from_vis", "model": "homography", "vis_size": list(vis_size),
        "ir_size": [320, 256], "ir_from_vis": TRUE_IR_FROM_VIS.tolist(), "rms_px": 0.0,
        "method": "synthetic-truth", "date": "2026-11-25"}))
    return path


def cli(tmp_path, *extra, feed=True):
    cmd = [sys.executable, str(REPO / "run_stream.py"), "--quiet", "--output", str(tmp_path / "rec"),
           "--calibration", str(write_calibration(tmp_path / "cal.yaml")),
           "--summary-json", str(tmp_path / "summary.json"), "--fuser", "laplacian",
           # A busy machine can take many seconds to import torch in every stage: be patient.
           "--set", "pipeline.startup_timeout_s=180", "--set", "pipeline.shutdown_timeout_s=30"]
    feed_ep = f"ipc://{tmp_path}/feed.sock"
    cmd += ["--set", f"detector_feed.endpoint=pub+bind:{feed_ep}"] if feed else ["--set", "detector_feed.enabled=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return [*cmd, *extra], env, feed_ep


def worker_pids(stderr: str) -> list[int]:
    return [int(m) for m in re.findall(r"started \w+ \(pid (\d+)\)", stderr)]


def assert_gone(pids):
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists(), f"worker {pid} outlived run_stream.py"


def decode_recording(path: Path) -> tuple[int, float, tuple[int, int]]:
    """(frames, duration s from PTS, (w, h)) of a recording, decoded for real."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        pts = [f.pts * f.time_base for f in c.decode(s)]
        size = (s.codec_context.width, s.codec_context.height)
    frames = len(pts)
    return frames, float(pts[-1] - pts[0]) if frames > 1 else 0.0, size


def test_demo_end_to_end_through_processes_and_sockets(tmp_path):
    cmd, env, feed_ep = cli(tmp_path, "--max-frames", "25", "--set", "pipeline.policy=lossless",
                            "--set", "image_dump.enabled=true", "--set", "image_dump.every_n=5",
                            "--set", "image_dump.buffers=[fused]")
    feed = FeedListener(feed_ep)
    feed.start()
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    time.sleep(0.3)
    feed.stop.set()
    feed.join(5)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    nodes = summary["nodes"]
    # Counts: exactly --max-frames fused frames, all recorded; every pairing decision is counted.
    assert nodes["fusion"]["out"] == 25 and nodes["recorder"]["stage"]["frames_written"] == 25
    reg = nodes["registration"]["stage"]
    assert reg["pairs"] >= 25
    assert reg["vis_in"] + reg["ir_in"] == 2 * reg["pairs"] + reg["unmatched_vis"] + reg["unmatched_ir"]
    assert nodes["capture_vis"]["out"] == reg["vis_in"] and nodes["capture_ir"]["out"] == reg["ir_in"]
    # Ordering and pairing, as a detector sees them on the feed.
    fused = feed.fused()
    assert len(fused) >= 15, "the subscriber joined late but must see most frames"
    assert feed.rows[-1].kind == "eos"
    seqs = [p.seq for p in fused]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert [p.meta["ir_seq"] for p in fused] == sorted(p.meta["ir_seq"] for p in fused)
    assert [p.meta["vis_seq"] for p in fused] == sorted(p.meta["vis_seq"] for p in fused)
    assert all(abs(p.meta["skew_ms"]) <= 35.0 for p in fused)
    # Both synthetic cameras share the runner's clock origin: skew is only their jitter (1 + 4 ms).
    assert reg["skew_ms_max_abs"] <= 5.5
    assert all(p.meta["fuser"] == "laplacian" and p.shapes["fused"] == (256, 320, 3) for p in fused)
    # The recording decodes, with every frame and a duration matching the capture times.
    files = sorted((tmp_path / "rec").glob("fused_*.mp4"))
    assert len(files) == 1 and str(files[0]) in r.stderr
    frames, duration, size = decode_recording(files[0])
    assert frames == 25 and size == (320, 256)
    # The image dump sink got the same fused frames: every 5th of 25.
    assert len(list((tmp_path / "rec" / "dump").glob("demo_*_fused.png"))) == 5
    assert nodes["image_dump"]["out"] == 25
    t = [p.t_mono for p in fused]
    span = (t[-1] - t[0]) * (24 / (seqs[-1] - seqs[0]))    # the feed may have missed the first frames
    assert abs(duration - span) < 0.15, (duration, span)
    assert_gone(worker_pids(r.stderr))


def test_sigterm_mid_run_finalises_the_recording_and_exits_0(tmp_path):
    fusion_in = f"ipc://{tmp_path}/fusion.sock"
    cmd, env, _ = cli(tmp_path, "--duration", "0", "--set", f"endpoints.fusion=pull+bind:{fusion_in}", feed=False)
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        rec = tmp_path / "rec"
        while time.monotonic() < deadline and not list(rec.glob("fused_*.mp4")):
            time.sleep(0.2)
        # A stranger writes garbage into fusion's input: counted, skipped, the run goes on.
        ctx = zmq.Context()
        rogue = ctx.socket(zmq.PUSH)
        rogue.connect(fusion_in)
        rogue.send_multipart([b"not a packet"])
        rogue.send_multipart([b'{"wire": "smokefusion", "v": 7}'])
        time.sleep(3.0)                       # a few seconds of fused video
        rogue.close(0)
        ctx.term()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    written = summary["nodes"]["recorder"]["stage"]["frames_written"]
    assert written >= 3
    assert summary["nodes"]["fusion"]["corrupt"] == 2
    assert "skipped a corrupt message (wire version 7, expected 1)" in err
    frames, duration, _ = decode_recording(sorted(rec.glob("fused_*.mp4"))[0])
    assert frames == written
    assert duration > 0.5
    assert "stopping: SIGTERM" in err
    assert_gone(worker_pids(err))


def test_failed_stage_exits_1_with_one_line_reason_and_no_orphans(tmp_path):
    cmd, env, _ = cli(tmp_path, "--duration", "30", feed=False)
    bad = write_calibration(tmp_path / "wrong.yaml", vis_size=(800, 600))
    cmd[cmd.index("--calibration") + 1] = str(bad)
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 1
    assert json.loads((tmp_path / "summary.json").read_text())["elapsed_s"] < 20   # not the 30 s duration
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: stage registration failed: ") and "800" in last
    assert_gone(worker_pids(r.stderr))


def test_bad_config_key_is_exit_2_naming_the_key(tmp_path):
    cmd, env, _ = cli(tmp_path, "--set", "fusion.fuserr=average")
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert re.search(r"error: .*demo\.yaml: fusion\.fuserr: unknown key \(expected one of: fuser, fallback", r.stderr)
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "configs" / "demo.yaml").read_text().replace("tolerance_ms: 35.0", "tolerance_ms: -1"))
    r = subprocess.run([*cmd[:2], "--config", str(bad)], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "registration.tolerance_ms: must be > 0" in r.stderr


def test_unreachable_rtsp_camera_is_a_clear_error_within_its_timeout(tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]                  # nothing listens here once closed
    url = f"rtsp://admin:Sekr1t@127.0.0.1:{port}/vis"
    cmd, env, _ = cli(tmp_path, "--vis", url, "--duration", "60", feed=False,
                      )
    cmd += ["--set", "capture_vis.open_timeout_s=1", "--set", "capture_vis.max_retries=1",
            "--set", "capture_vis.backoff_initial_s=0.2"]
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: stage capture_vis failed: ") and f"127.0.0.1:{port}" in last
    assert "Sekr1t" not in r.stderr                # the password never reaches a log line
    # From the go signal (the camera is opened then) to the end of the run: two 1 s attempts, a
    # 0.2 s backoff, and stopping the other stages; not the 60 s --duration.
    assert json.loads((tmp_path / "summary.json").read_text())["elapsed_s"] < 20
    assert_gone(worker_pids(r.stderr))


def test_hotspot_subscriber_prints_boxes_from_the_live_feed(tmp_path):
    cmd, env, feed_ep = cli(tmp_path, "--duration", "0")
    run = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        sub = subprocess.run([sys.executable, str(REPO / "examples" / "hotspot_subscriber.py"),
                              "--endpoint", f"sub+connect:{feed_ep}", "--count", "5", "--timeout", "150"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=200)
    finally:
        run.send_signal(signal.SIGINT)
        run.communicate(timeout=90)
    assert sub.returncode == 0, sub.stderr
    lines = [l for l in sub.stdout.splitlines() if "hotspots" in l]
    assert len(lines) == 5
    # The synthetic street has warm people and vehicles: most frames show at least one box.
    counts = [int(re.search(r"hotspots (\d+)", l).group(1)) for l in lines]
    assert sum(c > 0 for c in counts) >= 3, sub.stdout
    assert all("fuser=laplacian" in l and "320x256" in l for l in lines)


def test_only_runs_a_graph_split_over_two_invocations(tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ep = ["--set", f"endpoints.registration_vis=pull+bind:tcp://127.0.0.1:{port}",
          "--set", f"endpoints.registration_ir=pull+bind:ipc://{tmp_path}/reg_ir.sock"]
    # Host B: registration, fusion, recorder; runs until host A's end-of-stream arrives.
    cmd_b, env, _ = cli(tmp_path, "--only", "registration,fusion,recorder", "--duration", "0", *ep, feed=False)
    proc_b = subprocess.Popen(cmd_b, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Host A: the two cameras, for 5 s.
        cmd_a = [c for c in cmd_b]
        cmd_a[cmd_a.index("--only") + 1] = "capture_vis,capture_ir"
        cmd_a[cmd_a.index("--duration") + 1] = "5"
        cmd_a[cmd_a.index("--summary-json") + 1] = str(tmp_path / "summary_a.json")
        ra = subprocess.run(cmd_a, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
        _, err_b = proc_b.communicate(timeout=90)
    finally:
        if proc_b.poll() is None:
            proc_b.kill()
    assert ra.returncode == 0, ra.stderr[-1500:]
    assert proc_b.returncode == 0, err_b[-1500:]
    a = json.loads((tmp_path / "summary_a.json").read_text())["nodes"]
    b = json.loads((tmp_path / "summary.json").read_text())["nodes"]
    assert set(a) == {"capture_vis", "capture_ir"} and set(b) == {"registration", "fusion", "recorder"}
    # Host B may still be starting while host A's first frames go out (live edges drop them).
    assert b["registration"]["stage"]["ir_in"] > 0 and b["registration"]["stage"]["vis_in"] > 0
    written = b["recorder"]["stage"]["frames_written"]
    assert written >= 1
    frames, _, _ = decode_recording(sorted((tmp_path / "rec").glob("fused_*.mp4"))[0])
    assert frames == written


def test_only_refuses_an_edge_without_an_endpoint(tmp_path):
    cmd, env, _ = cli(tmp_path, "--only", "fusion", feed=False)
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "endpoints.fusion: must be set when running --only fusion" in r.stderr


def write_video(path: Path, frames: list, fps: int) -> None:
    """Frames (BGR or gray uint8) -> H.264 MP4 with PyAV."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = "yuv420p"
        for img in frames:
            fmt = "gray" if img.ndim == 2 else "bgr24"
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format=fmt)):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)


def test_two_video_files_are_fused_losslessly(tmp_path):
    from common.synthetic_scene import render_ir, render_vis
    write_video(tmp_path / "vis.mp4", [render_vis(n / 20) for n in range(40)], 20)
    write_video(tmp_path / "ir.mp4", [render_ir(n / 10) for n in range(20)], 10)
    cmd, env, _ = cli(tmp_path, "--config", str(REPO / "configs" / "files.yaml"),
                      "--vis", str(tmp_path / "vis.mp4"), "--ir", str(tmp_path / "ir.mp4"), feed=False)
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    nodes = json.loads((tmp_path / "summary.json").read_text())["nodes"]
    assert nodes["capture_vis"]["out"] == 40 and nodes["capture_ir"]["out"] == 20
    reg = nodes["registration"]["stage"]
    assert reg["pairs"] == 20 and reg["unmatched_ir"] == 0          # every IR frame found its VIS partner
    assert sum(n.get("drops_in", 0) + n.get("drops_out", 0) for n in nodes.values()) == 0
    assert nodes["recorder"]["stage"]["frames_written"] == 20
    frames, duration, _ = decode_recording(sorted((tmp_path / "rec").glob("fused_*.mp4"))[0])
    assert frames == 20 and abs(duration - 1.9) < 0.05


def test_runs_from_any_directory_with_outputs_relative_to_it(tmp_path):
    # The shipped demo config names its calibration relative to the repository; --output is the user's.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, str(REPO / "run_stream.py"), "--quiet", "--max-frames", "5",
                        "--output", "rel_out", "--set", "detector_feed.enabled=false",
                        "--set", "pipeline.policy=lossless", "--set", "pipeline.startup_timeout_s=180"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    files = list((tmp_path / "rel_out").glob("fused_*.mp4"))
    assert len(files) == 1 and decode_recording(files[0])[0] == 5, r.stderr[-2000:]
    assert "recording: rel_out/fused_000.mp4" in r.stderr


def test_lmfusion_without_weights_fails_clearly_or_falls_back_when_configured(tmp_path):
    cmd, env, _ = cli(tmp_path, "--max-frames", "3", "--set", f"fusion.weights_dir={tmp_path / 'none'}", feed=False)
    cmd[cmd.index("--fuser") + 1] = "lmfusion"
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: stage fusion failed: FusionError: fusion.fuser: lmfusion cannot load")
    r = subprocess.run([*cmd, "--set", "fusion.fallback=laplacian"], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-1500:]
    assert "using fallback fuser 'laplacian' as configured by fusion.fallback" in r.stderr
    assert json.loads((tmp_path / "summary.json").read_text())["nodes"]["fusion"]["stage"]["fuser"] == "laplacian"


def test_two_camera_pairs_through_one_batching_fusion_process_into_their_own_recordings(tmp_path):
    # Two synthetic pairs (different worlds; cam2 fused at another size, a marker its recording
    # must show) -> one fusion process batching both (max_batch 2) -> one recorder per pair.
    config = tmp_path / "pairs.yaml"
    unpaced = {"url": "synthetic://", "paced": False}
    config.write_text(yaml.safe_dump({
        "version": 1, "pipeline": {"stream": "site", "policy": "lossless"},
        "pairs": [{"name": "cam1", "capture_vis": {**unpaced, "seed": 0}, "capture_ir": {**unpaced, "seed": 0}},
                  {"name": "cam2", "capture_vis": {**unpaced, "seed": 1}, "capture_ir": {**unpaced, "seed": 1},
                   "registration": {"output_size": [160, 128]}}],
        "fusion": {"max_batch": 2, "max_wait_ms": 500.0}}))
    cmd, env, feed_ep = cli(tmp_path, "--config", str(config), "--max-frames", "20")
    feed = FeedListener(feed_ep)
    feed.start()
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    time.sleep(0.3)
    feed.stop.set()
    feed.join(5)
    assert r.returncode == 0, r.stderr[-2000:]
    nodes = json.loads((tmp_path / "summary.json").read_text())["nodes"]
    fusion = nodes["fusion"]["stage"]
    assert nodes["fusion"]["out"] == 20 and fusion["max_batch_seen"] == 2 and fusion["mean_batch"] > 1.2, fusion
    assert "mean_batch=" in r.stderr                               # the exit summary shows it
    for name, size in (("cam1", (320, 256)), ("cam2", (160, 128))):
        files = sorted((tmp_path / "rec" / name).glob("fused_*.mp4"))
        assert len(files) == 1 and str(files[0]) in r.stderr
        frames, _, got_size = decode_recording(files[0])
        assert frames == fusion["per_stream"][name] == nodes[f"recorder@{name}"]["stage"]["frames_written"] > 0
        assert got_size == size                                    # only its own pair's frames
        with av.open(str(files[0])) as c:
            assert f"stream={name} " in c.metadata.get("comment", "")
    fused = feed.fused()
    assert {p.meta["vis_source"].split("seed=")[1][0] for p in fused} <= {"0", "1"}
    by = {}
    for p in fused:
        by.setdefault(p.shapes["fused"], set()).add(p.meta["vis_source"])
    # On the shared detector feed, each pair's frames are told apart by size and source.
    assert by.get((256, 320, 3), set()) <= {"synthetic://vis?seed=0&scene=smoke"}
    assert by.get((128, 160, 3), set()) <= {"synthetic://vis?seed=1&scene=smoke"}
    assert_gone(worker_pids(r.stderr))
