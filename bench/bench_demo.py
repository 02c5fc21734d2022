"""`make demo` as a user sees it: fused pairs per second read from the recording, and latency.

    python bench/bench_demo.py                      # 3 runs of `python run_stream.py` (20 s each), median row
    python bench/bench_demo.py --runs 5 -- --config configs/pairs.yaml    # arguments after -- go to run_stream.py

Per run: the recording's own timestamps give the fused rate (frames / the span of their PTS,
which are capture times: drops leave gaps, they do not shorten the video) and the largest gap
between frames; the run's --summary-json gives capture->fused latency p50/p99 and the drops.
The load average is printed with every run: this CPU is shared, and the rate depends on it.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import av

REPO = Path(__file__).resolve().parents[1]


def recording_rate(path: Path) -> tuple[int, float, float]:
    """(frames, frames per second of capture time, largest gap between frames in s) of one file."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        pts = [float(f.pts * stream.time_base) for f in c.decode(stream)]
    if len(pts) < 2:
        return len(pts), 0.0, 0.0
    pts.sort()
    span = pts[-1] - pts[0]
    return len(pts), (len(pts) - 1) / span, max(b - a for a, b in zip(pts, pts[1:]))


def one_run(extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        tmp = Path(tmp)
        load0 = os.getloadavg()[0]
        cmd = [sys.executable, str(REPO / "run_stream.py"), "--quiet", "--output", str(tmp / "rec"),
               "--summary-json", str(tmp / "summary.json"), *extra]
        res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
        if res.returncode != 0:
            raise SystemExit(f"error: run_stream.py exited {res.returncode}: {res.stderr.strip().splitlines()[-1]}")
        s = json.loads((tmp / "summary.json").read_text())
        files = sorted((tmp / "rec").rglob("fused_*.mp4"))
        frames, rate, gap = 0, 0.0, 0.0
        for f in files:     # several pairs: one file each; rates add up
            n, r, g = recording_rate(f)
            frames, rate, gap = frames + n, rate + r, max(gap, g)
        drops = sum(int(v.get("drops_in", 0)) + int(v.get("drops_stage", 0)) for v in s["nodes"].values())
        choice = (s["nodes"].get("fusion", {}).get("stage") or {}).get("choice", "")
        return {"frames": frames, "fps": rate, "gap_s": gap, "p50": s["latency_ms"]["p50"],
                "p99": s["latency_ms"]["p99"], "drops": drops, "load": f"{load0:.1f}-{os.getloadavg()[0]:.1f}",
                "choice": choice.split(" (")[0]}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--runs", type=int, default=3, help="runs (the median row is printed last)")
    args = ap.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    rows = []
    print("| run | fused fps (recording) | frames | largest gap s | latency p50 ms | p99 ms | drops | load | fusion |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---|")
    for i in range(args.runs):
        r = one_run(extra)
        rows.append(r)
        print(f"| {i + 1} | {r['fps']:.2f} | {r['frames']} | {r['gap_s']:.2f} | {r['p50']:.0f} | {r['p99']:.0f} | "
              f"{r['drops']} | {r['load']} | {r['choice']} |", flush=True)
    med = lambda k: statistics.median(r[k] for r in rows)
    print(f"| median | {med('fps'):.2f} | {med('frames'):.0f} | {med('gap_s'):.2f} | {med('p50'):.0f} | "
          f"{med('p99'):.0f} | {med('drops'):.0f} | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
