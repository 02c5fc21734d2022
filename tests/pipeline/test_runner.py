"""The runner with real sockets: a live graph behind a slow stage, and a stage that fails."""
import os
import time
from pathlib import Path

import pytest

from app.registry import load
from pipeline.graph import build_specs
from pipeline.runner import Runner
from pipeline.telemetry import percentiles

REPO = Path(__file__).resolve().parents[2]


def demo_config(tmp_path, calibration, **over):
    ov = {"registration.calibration": str(calibration), "recorder.out_dir": str(tmp_path / "rec"),
          "detector_feed.enabled": False, "pipeline.status_interval_s": 0.5,
          "pipeline.startup_timeout_s": 180.0}     # a busy machine can take long to import torch
    ov.update(over)
    return load(REPO / "configs" / "demo.yaml", ov)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_slow_fusion_behind_a_live_source_drops_oldest_and_stays_bounded(tmp_path, calibration_file):
    gc = demo_config(tmp_path, calibration_file, **{"pipeline.queue_len": 2})
    specs = build_specs(gc, "thread", factories={"fusion": "slow_stage:SlowFusionStage"})
    depths, rss = [], []

    def on_event(msg):
        if msg.get("type") == "stats" and msg["node"] == "fusion":
            depths.append(msg.get("depth", 0))
            rss.append(rss_mb())

    runner = Runner(specs, mode="thread", duration_s=6.0, status_interval_s=0.5, status_out=None,
                    shutdown_timeout_s=5.0, on_event=on_event)
    res = runner.run()
    assert res.exit_code == 0, res.reason
    fusion = res.stage("fusion")
    reg = res.stage("registration")
    assert 3 <= fusion["out"] <= 17              # at most 2.5 fps for 6 s
    assert reg["out"] >= fusion["out"] + 5       # pairs kept coming faster than fusion took them
    assert fusion["drops_in"] >= reg["out"] - fusion["out"] - 3   # everything not fused was a counted drop
    assert max(depths) <= 2                      # the queue never grew past queue_len
    lat = res.views["fusion"].latencies
    p50, p99 = percentiles(lat)
    # Drop-oldest: a fused frame is at most ~queue_len + 1 processing times old, and it does not
    # grow over the run (without dropping, 6 s at 4x overload would reach several seconds).
    assert p99 < 2500, lat
    assert max(lat[-3:]) < 2500
    # Memory stays flat once running: start-up (stage imports, e.g. torch loaded lazily by a
    # stage: ~500 MB) is excluded by skipping the first third of the samples; shrinking at
    # shutdown is fine, growth is not.
    steady = rss[len(rss) // 3:]
    assert len(steady) >= 5 and max(steady) - steady[0] < 150, rss


def test_crashed_stage_stops_the_run_with_one_line_and_no_orphans(tmp_path):
    from calibration_files import write_calibration
    wrong = write_calibration(tmp_path / "wrong.yaml", vis_size=(1280, 720))   # the cameras are 640x480
    gc = demo_config(tmp_path, wrong)
    specs = build_specs(gc, "process")
    res = Runner(specs, mode="process", duration_s=60.0, status_out=None, shutdown_timeout_s=5.0).run()
    assert res.exit_code == 1
    assert res.reason.startswith("stage registration failed: ") and "\n" not in res.reason
    assert "1280" in res.reason and "640" in res.reason
    assert res.elapsed_s < 20.0, "the failure must end the run long before its 60 s duration"
    assert len(res.pids) == 5
    for pid in res.pids:
        assert not Path(f"/proc/{pid}").exists(), f"worker {pid} outlived the run"


def test_max_frames_ends_the_run_with_exactly_that_many_fused_frames(tmp_path, calibration_file):
    gc = demo_config(tmp_path, calibration_file, **{"pipeline.max_frames": 12, "pipeline.policy": "lossless",
                                                   "fusion.fuser": "average"})
    res = Runner(build_specs(gc, "thread"), mode="thread", status_out=None, duration_s=30).run()
    assert res.exit_code == 0, res.reason
    assert res.stage("fusion")["out"] == 12
    assert res.stage("recorder")["stage"]["frames_written"] == 12
    assert res.elapsed_s < 20


def test_batched_fusion_keeps_every_frame_in_order(tmp_path, calibration_file):
    gc = demo_config(tmp_path, calibration_file, **{
        "pipeline.max_frames": 15, "pipeline.policy": "lossless", "fusion.max_batch": 4,
        "capture_vis.paced": False, "capture_ir.paced": False})
    seqs = []
    specs = build_specs(gc, "thread", factories={"recorder": "recording_probe:RecordingProbe"})
    import recording_probe
    recording_probe.SEEN = seqs
    res = Runner(specs, mode="thread", status_out=None, duration_s=30).run()
    assert res.exit_code == 0, res.reason
    assert res.stage("fusion")["out"] == 15
    assert seqs == list(range(15))


def test_a_stage_process_killed_mid_run_stops_everything(tmp_path, calibration_file):
    import signal
    import threading
    gc = demo_config(tmp_path, calibration_file)
    pids, result = {}, []

    def on_event(msg):
        if msg.get("type") == "ready":
            pids[msg["node"]] = msg["pid"]
        if msg.get("type") == "stats" and msg["node"] == "fusion" and msg.get("out", 0) >= 5 and "killed" not in pids:
            pids["killed"] = True
            os.kill(pids["fusion"], signal.SIGKILL)     # as the OOM killer would

    runner = Runner(build_specs(gc, "process"), mode="process", duration_s=30, status_out=None,
                    shutdown_timeout_s=5.0, on_event=on_event)
    t = threading.Thread(target=lambda: result.append(runner.run()))
    t0 = time.monotonic()
    t.start()
    t.join(60)
    assert not t.is_alive(), "the runner hung after a stage died"
    res = result[0]
    assert res.exit_code == 1 and res.reason == "stage fusion failed: process ended (killed by signal 9)"
    assert time.monotonic() - t0 < 30
    for pid in res.pids:
        assert not Path(f"/proc/{pid}").exists()


def test_second_stop_request_stops_at_once_and_still_finalises(tmp_path, calibration_file, monkeypatch):
    # Lossless edges hold ~8 pairs in front of a fusion stage that takes 2 s each: a first stop
    # request alone would drain them for ~16 s. The second one must not wait (what Ctrl-C twice does).
    import threading
    here = str(Path(__file__).resolve().parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("SLOW_FUSION_DELAY_S", "2.0")
    gc = demo_config(tmp_path, calibration_file, **{"pipeline.policy": "lossless"})
    specs = build_specs(gc, "process", factories={"fusion": "slow_stage:SlowFusionStage"})
    state = {}

    def on_event(msg):
        if msg.get("type") == "stats" and msg["node"] == "fusion" and msg.get("out", 0) >= 2 and "t1" not in state:
            state["t1"] = time.monotonic()
            runner.request_stop("SIGINT")
            time.sleep(0.5)
            runner.request_stop("SIGINT")
            state["t2"] = time.monotonic()

    runner = Runner(specs, mode="process", duration_s=60, status_out=None, shutdown_timeout_s=60, on_event=on_event)
    result = []
    t = threading.Thread(target=lambda: result.append(runner.run()))
    t.start()
    t.join(180)
    t_end = time.monotonic()
    assert not t.is_alive()
    res = result[0]
    assert res.exit_code == 0, res.reason
    assert t_end - state["t2"] < 10          # the frame in progress (2 s), stop(), exit
    reg, fus = res.stage("registration"), res.stage("fusion")
    assert reg["out"] >= fus["out"] + 3            # the queued pairs it did not wait for
    written = res.stage("recorder")["stage"]["frames_written"]
    # Stopping at once: frames still on their way to the recorder when it stopped are not recorded.
    assert 1 <= written <= fus["out"]
    import av
    with av.open(res.stage("recorder")["stage"]["files"][0]) as c:
        assert sum(1 for _ in c.decode(video=0)) == written
    for pid in res.pids:
        assert not Path(f"/proc/{pid}").exists()


def pairs_config(tmp_path, calibration, **over):
    """configs/pairs.yaml (two synthetic pairs, seeds 0 and 1) with test settings."""
    import yaml
    from app.registry import check
    data = yaml.safe_load((REPO / "configs" / "pairs.yaml").read_text())
    for p in data["pairs"]:
        p["registration"]["calibration"] = str(calibration)
    ov = {"recorder.out_dir": str(tmp_path / "rec"), "detector_feed.enabled": False,
          "fusion.fuser": "average", "pipeline.status_interval_s": 0.5, "pipeline.startup_timeout_s": 180.0}
    ov.update(over)
    for dotted, value in ov.items():
        section, _, key = dotted.partition(".")
        if section == "pairs":
            for p in data["pairs"]:
                p["capture_vis"][key] = p["capture_ir"][key] = value
            continue
        data.setdefault(section, {})[key] = value
    return check(data, "pairs.yaml")


def test_two_camera_pairs_share_one_batching_fusion_stage_and_each_sink_gets_only_its_pair(tmp_path, calibration_file):
    import recording_probe
    recording_probe.BY_SINK.clear()
    gc = pairs_config(tmp_path, calibration_file, **{
        "pipeline.max_frames": 24, "pipeline.policy": "lossless", "pairs.paced": False,
        "fusion.max_batch": 2, "fusion.max_wait_ms": 500.0})
    specs = build_specs(gc, "thread", factories={"recorder": "recording_probe:StreamProbe"})
    res = Runner(specs, mode="thread", status_out=None, duration_s=60).run()
    assert res.exit_code == 0, res.reason
    fusion = res.stage("fusion")
    assert fusion["out"] == 24
    st = fusion["stage"]
    # Pairs of both cameras were fused together: batches of 2, not one pair per call.
    assert st["max_batch_seen"] == 2 and st["mean_batch"] > 1.5, st
    seen = {Path(k).name: v for k, v in recording_probe.BY_SINK.items()}
    assert sorted(seen) == ["cam1", "cam2"]
    for name, seed in (("cam1", 0), ("cam2", 1)):
        got = seen[name]
        # Only its own pair's frames, every one fusion made for it, in order, from its own cameras.
        assert got and {s for s, _, _ in got} == {name}
        assert len(got) == st["per_stream"][name]
        assert [q for _, q, _ in got] == list(range(len(got)))
        assert all(src == f"synthetic://vis?seed={seed}&scene=smoke" for _, _, src in got)
    assert len(seen["cam1"]) + len(seen["cam2"]) == 24


def test_live_pairs_batch_within_the_wait_and_latency_stays_bounded(tmp_path, calibration_file):
    # Two live pairs (IR 10 fps each, one shared clock origin): their pairs arrive together, so a
    # 60 ms wait finds the partner; latency is the fuse time plus at most the wait.
    gc = pairs_config(tmp_path, calibration_file, **{"fusion.max_batch": 2, "fusion.max_wait_ms": 60.0})
    res = Runner(build_specs(gc, "thread"), mode="thread", status_out=None, duration_s=5.0,
                 shutdown_timeout_s=5.0).run()
    assert res.exit_code == 0, res.reason
    st = res.stage("fusion")["stage"]
    assert st["fused"] >= 40 and st["mean_batch"] > 1.5, st
    assert set(st["per_stream"]) == {"cam1", "cam2"}
    p50, p99 = percentiles(res.views["fusion"].latencies)
    assert p99 < 1000, (p50, p99)
    for name in ("cam1", "cam2"):
        rec = res.stage(f"recorder@{name}")["stage"]
        assert rec["frames_written"] == st["per_stream"][name]
        assert all(f"/{name}/" in f for f in rec["files"])
