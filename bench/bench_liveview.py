#!/usr/bin/env python3
"""Does watching the live view slow the pipeline? Fused fps and latency p99 of the same run with
and without a viewer pulling /stream.mjpg, runs interleaved, median per variant.

    python bench/bench_liveview.py                          # 3 x 2 runs of 20 s, laplacian fuser
    python bench/bench_liveview.py --runs 5 --duration 30 --args ""    # the demo's own fusion (lmfusion, auto)

Each run is `run_stream.py --http 127.0.0.1:PORT --duration D` (the http server is on in both
variants: what is measured is the viewer). With a viewer, a client reads the MJPEG stream of the
fused view for the whole run and counts the frames it got. Prints one table.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.transport import free_loopback_port  # noqa: E402


class Viewer(threading.Thread):
    """Reads /stream.mjpg until told to stop; counts JPEG parts."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.frames, self.stop = url, 0, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=5) as r:
                    while not self.stop.is_set():
                        line = r.readline()
                        if not line:
                            break
                        if line.lower().startswith(b"content-length:"):
                            n = int(line.split(b":")[1])
                            r.readline()
                            r.read(n)
                            self.frames += 1
            except OSError:
                time.sleep(0.2)      # not listening yet, or the run ended


def one_run(duration: float, viewer: bool, extra: list[str], view_fps: float) -> dict:
    port = free_loopback_port()
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "summary.json"
        cmd = [sys.executable, str(REPO / "run_stream.py"), "--quiet", "--duration", str(duration),
               "--http", f"127.0.0.1:{port}", "--output", str(Path(tmp) / "rec"), "--summary-json", str(summary),
               "--set", "detector_feed.enabled=false", "--set", f"http.view_fps={view_fps}", *extra]
        v = Viewer(f"http://127.0.0.1:{port}/stream.mjpg?view=fused") if viewer else None
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if v is not None:
            v.start()
        _, err = proc.communicate(timeout=duration + 300)
        if v is not None:
            v.stop.set()
            v.join(10)
        if proc.returncode != 0:
            raise SystemExit(f"error: run failed ({proc.returncode}): {err.strip().splitlines()[-1] if err.strip() else ''}")
        s = json.loads(summary.read_text())
        return {"fps": s["nodes"]["fusion"]["avg_fps"], "p99": s["latency_ms"]["p99"], "p50": s["latency_ms"]["p50"],
                "viewer_frames": v.frames if v is not None else 0}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3, help="runs per variant (interleaved)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds per run")
    p.add_argument("--view-fps", type=float, default=10.0, help="http.view_fps")
    p.add_argument("--args", default="--fuser laplacian", help="extra run_stream.py options (one string)")
    a = p.parse_args()
    extra = shlex.split(a.args)
    results: dict[str, list[dict]] = {"without viewer": [], "with viewer": []}
    for i in range(a.runs):
        for name in (("without viewer", "with viewer") if i % 2 == 0 else ("with viewer", "without viewer")):
            r = one_run(a.duration, name == "with viewer", extra, a.view_fps)
            results[name].append(r)
            print(f"run {i + 1} {name}: fused {r['fps']:.2f} fps, p50 {r['p50']:.0f} ms, p99 {r['p99']:.0f} ms"
                  + (f", viewer got {r['viewer_frames']} frames" if name == "with viewer" else ""), file=sys.stderr)
    base = {k: statistics.median(r[k] for r in results["without viewer"]) for k in ("fps", "p99")}
    print(f"\nlive view overhead: run_stream.py {a.args} --duration {a.duration:g}, {a.runs} runs each, median; "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"{'variant':<16} {'fused fps':>10} {'p99 ms':>8} {'fps vs without':>15} {'p99 without/with':>17} {'viewer fps':>11}")
    for name, rs in results.items():
        fps = statistics.median(r["fps"] for r in rs)
        p99 = statistics.median(r["p99"] for r in rs)
        vf = statistics.median(r["viewer_frames"] for r in rs) / a.duration
        print(f"{name:<16} {fps:>10.2f} {p99:>8.0f} {100 * fps / base['fps']:>14.1f}% "
              f"{100 * base['p99'] / p99:>16.1f}% {vf:>11.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
