#!/usr/bin/env python3
"""Soak: run the pipeline for a long time while the cameras flap, and plot what it does.

    python bench/soak.py --minutes 60                       # two RTSP cameras, flapped at random
    python bench/soak.py --minutes 60 --source demo         # the synthetic demo, no flaps
    python bench/soak.py --minutes 2 --flap-every 20 40 --out out/soak_ci --check   # what CI runs

Cameras (`--source rtsp`): two real GStreamer RTSP servers (tests/rtsp_server.py --scene, one
process per camera so each flaps on its own) serving one synthetic street, VIS 640x480 @ 20 fps and
IR 320x256 @ 10 fps, with the demo calibration. Each camera is SIGKILLed (a power cut) after a
random `--flap-every` interval and comes back after a random `--off` time (2-10 s by default).

`run_stream.py` runs as a user would run it (one process per stage, the recorder on, the
detector feed on, `--http` for /metrics). Every `--sample-s` the script writes one CSV row from
/metrics and the detector feed: fused fps, capture->feed latency p50/p99 (over the last 60 s),
resident memory and open fds summed over the pipeline's processes, queue depth per stage, RTSP
reconnects, drops, the machine's load average. At the end: `soak.csv`, `soak.png` (every series
over time, camera outages shaded), `soak_summary.json` and a printed table of the criteria:

- RSS growth after the first 5 minutes <= 20 MB: the median of the last 5 minutes minus the median
  of minutes 5-10 (a reconnect briefly allocates ~25 MB that it gives back within seconds: the
  peak above the 5-minute value is reported beside it); open fds flat (range <= 4 after 5 minutes);
- latency p99 (60 s window) never above 2x its value over the first 5 minutes;
- every flap recovered (the camera's first new frame) within 3 s of the camera's return;
- frames recorded + frames counted as dropped on the way to the recorder = frames fused.

Criteria that need more than 5 minutes say "n/a" on shorter runs. `--check` exits 1 if any
criterion that applies failed.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import zmq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.append(str(REPO / "tests"))     # the RTSP test server's wrapper (appended: never shadows a package)

from pipeline.codec import decode  # noqa: E402
from pipeline.transport import free_loopback_port  # noqa: E402

WARMUP_S = 300.0            # the "first 5 minutes" the criteria compare against
LAT_WINDOW_S = 60.0         # latency percentiles are taken over this trailing window
RSS_GROWTH_MB = 20.0
FDS_RANGE = 4               # a reconnect in progress briefly holds a socket or two
P99_FACTOR = 2.0
RECOVERY_S = 3.0


# -- the detector feed: latency of every fused frame --------------------------------------------
class FeedWatch(threading.Thread):
    """Subscribes to the detector feed; keeps (arrival monotonic s, latency ms) of each fused packet."""

    def __init__(self, address: str):
        super().__init__(daemon=True, name="feed")
        self.address = address
        self.samples: list[tuple[float, float]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def run(self) -> None:
        ctx = zmq.Context()
        s = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.SUBSCRIBE, b"")
        s.setsockopt(zmq.LINGER, 0)
        s.connect(self.address)
        try:
            while not self.stop.is_set():
                if s.poll(100):
                    p = decode(s.recv_multipart(copy=False))
                    now = time.monotonic()
                    if p.kind == "fused":
                        with self.lock:
                            self.samples.append((now, (now - p.t_mono) * 1000.0))
        finally:
            s.close(0)
            ctx.term()

    def first_time(self) -> float | None:
        with self.lock:
            return self.samples[0][0] if self.samples else None

    def window(self, t0: float, t1: float) -> np.ndarray:
        with self.lock:
            return np.array([lat for t, lat in self.samples if t0 < t <= t1], dtype=np.float64)

    def count(self, t0: float, t1: float) -> int:
        with self.lock:
            return sum(1 for t, _ in self.samples if t0 < t <= t1)


# -- /metrics --------------------------------------------------------------------------------------
def scrape(url: str) -> dict[str, dict[tuple, float]] | None:
    """metric name -> {sorted label items: value} from the Prometheus text; None if unreachable."""
    from prometheus_client.parser import text_string_to_metric_families
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return None
    out: dict[str, dict[tuple, float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def by_stage(m: dict, name: str) -> dict[str, float]:
    return {dict(k).get("stage", "?"): v for k, v in (m.get(name) or {}).items()}


# -- flapping cameras -------------------------------------------------------------------------------
class Flapper(threading.Thread):
    """Kills one camera's server after a random interval and starts it again after a random outage."""

    def __init__(self, name: str, server, every: tuple[float, float], off: tuple[float, float],
                 rng: random.Random, stop_flapping_at: float):
        super().__init__(daemon=True, name=f"flap-{name}")
        self.cam, self.server, self.every, self.off, self.rng = name, server, every, off, rng
        self.stop_flapping_at = stop_flapping_at
        self.events: list[dict] = []       # {camera, t_down, t_up} in time.monotonic() s
        self.stop = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                wait = self.rng.uniform(*self.every)
                off = self.rng.uniform(*self.off)
                # the last flap must end early enough for its recovery to be seen
                if time.monotonic() + wait + off + 15.0 > self.stop_flapping_at or self.stop.wait(wait):
                    return
                t_down = time.monotonic()
                self.server.kill()
                self.stop.wait(off)
                t_up = self.server.start()
                self.events.append({"camera": self.cam, "t_down": t_down, "t_up": t_up, "off_s": t_up - t_down})
        except Exception as e:       # a server that does not come back ends the flapping, and says why
            self.error = f"{self.cam}: {e}"


def start_cameras(tmp: Path):
    """Two RtspTestServer processes serving one synthetic street: (vis server, ir server)."""
    import cv2
    from rtsp_fixture import RtspTestServer, rtsp_unavailable_reason
    from common.synthetic_scene import render_pair
    reason = rtsp_unavailable_reason()
    if reason:
        raise SystemExit(f"soak: cannot run RTSP cameras: {reason}")
    vis, ir = render_pair(2.0, seed=0, smoke=0.5)
    cv2.imwrite(str(tmp / "vis.png"), vis)
    cv2.imwrite(str(tmp / "ir.png"), ir)
    servers = (RtspTestServer(free_loopback_port(), scene=tmp), RtspTestServer(free_loopback_port(), scene=tmp))
    for s in servers:
        s.start()
    return servers


# -- run ----------------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0, help="streaming time (default 60)")
    ap.add_argument("--source", choices=("rtsp", "demo"), default="rtsp",
                    help="rtsp: two flapped RTSP cameras (default) | demo: the synthetic demo cameras")
    ap.add_argument("--flap-every", type=float, nargs=2, default=(60.0, 180.0), metavar=("MIN", "MAX"),
                    help="seconds between one camera's flaps, uniform (default 60 180)")
    ap.add_argument("--off", type=float, nargs=2, default=(2.0, 10.0), metavar=("MIN", "MAX"),
                    help="seconds a camera stays off, uniform (default 2 10)")
    ap.add_argument("--sample-s", type=float, default=10.0, help="seconds between CSV rows (default 10)")
    ap.add_argument("--seed", type=int, default=0, help="flap schedule seed")
    ap.add_argument("--out", default="out/soak", help="CSV, PNG, summary and the recording go here")
    ap.add_argument("--fuser", choices=("lmfusion", "laplacian", "average"), help="fusion.fuser (default: the demo's)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="passed to run_stream.py")
    ap.add_argument("--check", action="store_true", help="exit 1 if a criterion that applies failed")
    return ap.parse_args(argv)


def run_command(args, out: Path, feed_ep: str, http_port: int, cams) -> list[str]:
    cmd = [sys.executable, str(REPO / "run_stream.py"), "--quiet", "--output", str(out / "rec"),
           "--duration", str(args.minutes * 60.0), "--http", f"127.0.0.1:{http_port}",
           "--summary-json", str(out / "run_summary.json"),
           "--set", f"detector_feed.endpoint=pub+bind:{feed_ep}",
           "--set", "pipeline.startup_timeout_s=300", "--set", "pipeline.shutdown_timeout_s=60"]
    if cams is not None:
        vis, ir = cams
        cmd += ["--vis", vis.url("/scene_vis"), "--ir", ir.url("/scene_ir"),
                "--calibration", str(REPO / "configs/calibration/demo.yaml")]
        for node in ("capture_vis", "capture_ir"):
            # A field camera may stay away for a while: never give up, and retry at least every
            # second so it is back within ~1 s of its return (configs/rtsp.yaml does the same).
            cmd += ["--set", f"{node}.max_retries=null", "--set", f"{node}.backoff_max_s=1.0"]
    if args.fuser:
        cmd += ["--fuser", args.fuser]
    for s in args.set:
        cmd += ["--set", s]
    return cmd


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    skipped = 0
    feed_ep = f"ipc://{tmp}/feed.sock"
    http_port = free_loopback_port()
    metrics_url = f"http://127.0.0.1:{http_port}/metrics"
    cams = start_cameras(tmp) if args.source == "rtsp" else None
    feed = FeedWatch(feed_ep)
    feed.start()
    cmd = run_command(args, out, feed_ep, http_port, cams)
    log = open(out / "run_stream.log", "w")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    flappers: list[Flapper] = []
    rows: list[dict] = []
    stopping = {"why": ""}

    def on_signal(signum, _frame):
        stopping["why"] = signal.Signals(signum).name
        proc.send_signal(signal.SIGINT)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        # Time 0 is the first fused frame on the feed (start-up, model load and warm-up excluded).
        deadline = time.monotonic() + 300
        while feed.first_time() is None and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        t0 = feed.first_time()
        if t0 is None:
            print(f"soak: no fused frame within 300 s (run_stream exit {proc.poll()}); see {out / 'run_stream.log'}",
                  file=sys.stderr)
            return 1
        print(f"soak: first fused frame; streaming {args.minutes:g} min, rows every {args.sample_s:g} s -> {out}",
              file=sys.stderr)
        if cams is not None:
            rng = random.Random(args.seed)
            end = t0 + args.minutes * 60.0
            flappers = [Flapper(name, server, tuple(args.flap_every), tuple(args.off),
                                random.Random(rng.random()), end) for name, server in zip(("vis", "ir"), cams)]
            for f in flappers:
                f.start()
        next_row = t0 + args.sample_s
        last_fused = None
        n_stages, skipped = 0, 0
        while proc.poll() is None:
            now = time.monotonic()
            if now < next_row:
                time.sleep(min(0.5, next_row - now))
                continue
            next_row += args.sample_s
            m = scrape(metrics_url)
            if m is None:
                continue          # the run is ending (or the server is busy): no row
            rss = by_stage(m, "smokefusion_process_resident_memory_bytes")
            n_stages = max(n_stages, len(rss))
            if len(rss) < n_stages:
                skipped += 1      # a stage is ending (end of the run) or restarting: not a whole picture
                continue
            lat = feed.window(now - LAT_WINDOW_S, now)
            frames = by_stage(m, "smokefusion_frames_total")
            fused = frames.get("fusion", 0.0)
            fps = None if last_fused is None else (fused - last_fused[1]) / (now - last_fused[0])
            last_fused = (now, fused)
            depth = by_stage(m, "smokefusion_queue_depth")
            recon = by_stage(m, "smokefusion_rtsp_reconnects_total")
            row = {"t_s": round(now - t0, 1), "fused_fps": None if fps is None else round(fps, 2),
                   "lat_p50_ms": round(float(np.percentile(lat, 50)), 1) if lat.size else None,
                   "lat_p99_ms": round(float(np.percentile(lat, 99)), 1) if lat.size else None,
                   "rss_mb": round(sum(rss.values()) / 2**20, 1),
                   "open_fds": int(sum(by_stage(m, "smokefusion_process_open_fds").values())),
                   "reconnects_vis": int(recon.get("capture_vis", 0)), "reconnects_ir": int(recon.get("capture_ir", 0)),
                   "drops_total": int(sum(by_stage(m, "smokefusion_drops_total").values())),
                   "fused_total": int(fused), "load1": round(os.getloadavg()[0], 2)}
            for stage in ("registration", "fusion", "recorder"):
                row[f"depth_{stage}"] = int(depth.get(stage, 0))
            for stage in ("runner", "capture_vis", "capture_ir", "registration", "fusion", "recorder"):
                row[f"rss_mb_{stage}"] = round(rss.get(stage, 0.0) / 2**20, 1)     # which stage grows
            rows.append(row)
            write_csv(out / "soak.csv", rows)
        rc = proc.wait()
    finally:
        for f in flappers:
            f.stop.set()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for f in flappers:
            f.join(30)
        feed.stop.set()
        feed.join(5)
        if cams is not None:
            for s in cams:
                s.kill()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
    summary_path = out / "run_summary.json"
    if not summary_path.exists():
        print(f"soak: run_stream exited {rc} without a summary; see {out / 'run_stream.log'}", file=sys.stderr)
        return 1
    run = json.loads(summary_path.read_text())
    flaps = sorted((e for f in flappers for e in f.events), key=lambda e: e["t_down"])
    first = feed.window(t0 - 1.0, t0 + WARMUP_S)
    p99_first = float(np.percentile(first, 99)) if first.size else None
    result = evaluate(rows, run, flaps, t0, p99_first, args)
    result["run_stream_exit"] = rc
    result["flapper_errors"] = [f.error for f in flappers if f.error]
    result["interrupted"] = stopping["why"] or None
    result["rows_skipped_partial"] = skipped
    (out / "soak_summary.json").write_text(json.dumps(result, indent=1))
    plot(rows, flaps, t0, out / "soak.png", args)
    print(report(result))
    print(f"soak: {out / 'soak.csv'}, {out / 'soak.png'}, {out / 'soak_summary.json'}")
    failed = [k for k, c in result["criteria"].items() if c["pass"] is False]
    if rc != 0 or result["flapper_errors"]:
        failed.append(f"run_stream exit {rc}" if rc else "flapper")
    if failed:
        print(f"soak: failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if (args.check and failed) else 0


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


# -- criteria ------------------------------------------------------------------------------------------
def evaluate(rows: list[dict], run: dict, flaps: list[dict], t0: float, p99_first: float | None, args) -> dict:
    """The four criteria, each {value..., pass: True | False | None (n/a)}. p99_first: latency p99
    over every fused frame of the first 5 minutes, ms."""
    crit: dict[str, dict] = {}
    long_enough = bool(rows) and rows[-1]["t_s"] > WARMUP_S + args.sample_s
    after = [r for r in rows if r["t_s"] >= WARMUP_S]
    if long_enough:
        base = after[0]
        early = float(np.median([r["rss_mb"] for r in after if r["t_s"] < 2 * WARMUP_S]))
        late = float(np.median([r["rss_mb"] for r in rows if r["t_s"] >= rows[-1]["t_s"] - WARMUP_S]))
        growth = late - early
        fds = [r["open_fds"] for r in after]
        crit["rss_growth_mb"] = {"at_5min": base["rss_mb"], "median_5_10min": round(early, 1),
                                 "median_last_5min": round(late, 1), "growth": round(growth, 1),
                                 "peak_above_5min": round(max(r["rss_mb"] for r in after) - base["rss_mb"], 1),
                                 "limit": RSS_GROWTH_MB, "pass": growth <= RSS_GROWTH_MB}
        crit["open_fds"] = {"at_5min": base["open_fds"], "min_after": min(fds), "max_after": max(fds),
                            "end": fds[-1], "limit_range": FDS_RANGE, "pass": max(fds) - min(fds) <= FDS_RANGE}
    else:
        crit["rss_growth_mb"] = {"pass": None, "why": "needs more than 5 minutes"}
        crit["open_fds"] = {"pass": None, "why": "needs more than 5 minutes"}
    p99s_after = [r["lat_p99_ms"] for r in after if r["lat_p99_ms"] is not None]
    if long_enough and p99s_after and p99_first is not None:
        worst = max(p99s_after)
        crit["latency_p99"] = {"first_5min_ms": round(p99_first, 1), "max_window_ms": worst,
                               "factor": round(worst / p99_first, 2), "factor_limit": P99_FACTOR,
                               "pass": worst <= P99_FACTOR * p99_first}
    else:
        crit["latency_p99"] = {"pass": None, "why": "needs more than 5 minutes"}
    nodes = run.get("nodes", {})
    # recovery: each flap's camera gets its first new frame how long after the server was back?
    recoveries = []
    for f in flaps:
        node = nodes.get(f"capture_{f['camera']}", {})
        events = (node.get("stage") or {}).get("reconnect_events", [])
        after_up = [e["t_first_frame"] for e in events if e["t_first_frame"] >= f["t_down"]]
        t_first = min(after_up) if after_up else None
        recoveries.append({"camera": f["camera"], "t_down_s": round(f["t_down"] - t0, 1), "off_s": round(f["off_s"], 2),
                           "recovered_s": None if t_first is None else round(t_first - f["t_up"], 2)})
    rec = [r["recovered_s"] for r in recoveries]
    crit["flap_recovery_s"] = {"flaps": len(flaps), "max": max((r for r in rec if r is not None), default=None),
                               "not_recovered": sum(r is None for r in rec), "limit": RECOVERY_S,
                               "pass": None if not flaps else all(r is not None and r <= RECOVERY_S for r in rec)}
    # accounting: fused = recorded + dropped on the way to the recorder
    fusion, recorder = nodes.get("fusion", {}), nodes.get("recorder", {})
    fused = int((fusion.get("totals") or {}).get("out", 0))
    edge = (fusion.get("outputs") or {}).get("fusion->recorder", {})
    recorded = int((recorder.get("stage") or {}).get("frames_written", 0))
    dropped = int(edge.get("dropped", 0)) + int(recorder.get("drops_in", 0)) + int(recorder.get("drops_stage", 0))
    crit["frame_accounting"] = {"fused": fused, "recorded": recorded, "dropped": dropped,
                                "dropped_fusion_to_recorder": int(edge.get("dropped", 0)),
                                "dropped_in_recorder_queue": int(recorder.get("drops_in", 0)),
                                "pass": fused > 0 and recorded + dropped == fused}
    return {"minutes": args.minutes, "source": args.source, "rows": len(rows), "criteria": crit,
            "recoveries": recoveries, "latency_ms_run": run.get("latency_ms"),
            "load1": {"min": min((r["load1"] for r in rows), default=None),
                      "median": float(np.median([r["load1"] for r in rows])) if rows else None,
                      "max": max((r["load1"] for r in rows), default=None)}}


def report(result: dict) -> str:
    lines = [f"soak: {result['minutes']:g} min, source {result['source']}, {result['rows']} rows, "
             f"load1 {result['load1']['min']}-{result['load1']['max']} (median {result['load1']['median']})"]
    for name, c in result["criteria"].items():
        verdict = {True: "PASS", False: "FAIL", None: "n/a"}[c["pass"]]
        detail = ", ".join(f"{k}={v}" for k, v in c.items() if k != "pass")
        lines.append(f"  {name:18s} {verdict:4s}  {detail}")
    return "\n".join(lines)


# -- plot --------------------------------------------------------------------------------------------
def plot(rows: list[dict], flaps: list[dict], t0: float, path: Path, args) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    if not rows:
        return
    t = np.array([r["t_s"] for r in rows]) / 60.0

    def col(key):
        return np.array([np.nan if r[key] is None else r[key] for r in rows], dtype=float)

    fig, axes = plt.subplots(6, 1, figsize=(11, 13), sharex=True)
    panels = [
        ("fused fps", [("fused_fps", "fused")]),
        ("latency ms (60 s window)", [("lat_p50_ms", "p50"), ("lat_p99_ms", "p99")]),
        ("RSS MB (all stages)", [("rss_mb", "RSS")]),
        ("open fds (all stages)", [("open_fds", "fds")]),
        ("queue depth", [("depth_registration", "registration"), ("depth_fusion", "fusion"),
                         ("depth_recorder", "recorder")]),
        ("reconnects / load", [("reconnects_vis", "reconnects VIS"), ("reconnects_ir", "reconnects IR"),
                               ("load1", "load avg 1 min")]),
    ]
    for ax, (title, series) in zip(axes, panels):
        for key, label in series:
            ax.plot(t, col(key), label=label, lw=1)
        ax.set_ylabel(title, fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
        for f in flaps:
            ax.axvspan((f["t_down"] - t0) / 60, (f["t_up"] - t0) / 60,
                       color="tab:red" if f["camera"] == "vis" else "tab:blue", alpha=0.15, lw=0)
    axes[-1].set_xlabel("minutes since the first fused frame (shaded: VIS red / IR blue camera off)")
    fig.suptitle(f"bench/soak.py --minutes {args.minutes:g} --source {args.source}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
