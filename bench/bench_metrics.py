"""Time every fusion metric and classical fuser on one 640x512 pair; print a table.

    python bench/bench_metrics.py                 # 640x512, 20 runs each
    python bench/bench_metrics.py --size 1280x1024 --runs 10
    OMP_NUM_THREADS=1 python bench/bench_metrics.py --threads 1   # one core, as in the CI numbers
    python bench/bench_metrics.py --quality       # also score both baselines on the VIFB pairs

Speed: the pair is synthetic (smooth random texture; colour VIS, gray IR), so it needs no data.
Reported: median and min milliseconds per call, after one warm-up call.
Quality (--quality): mean of every fusion metric over the 21 VIFB pairs in ../shared/data/vifb
(read-only, never copied), for fuse_average and fuse_laplacian; skipped with a note if absent.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

# Run from a checkout without `pip install -e .` (as the other bench scripts do).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmfusion import metrics as M  # noqa: E402
from lmfusion.baselines import fuse_average, fuse_laplacian  # noqa: E402


def textured(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 256, (h, w)).astype(np.float32), (0, 0), 1.5)
    return np.clip(img * 3 - 255, 0, 255).astype(np.uint8)


def time_ms(fn, runs: int) -> tuple[float, float]:
    fn()  # warm-up: first-call allocations and OpenCV dispatch
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts), min(ts)


DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def quality_table() -> None:
    vifb = DATA / "vifb"
    pairs = sorted(p.name for p in (vifb / "vis").glob("*.jpg")) if vifb.is_dir() else []
    if not pairs:
        print(f"\n(no quality table: VIFB pairs not found under {vifb})")
        return
    fusers = {"fuse_average": fuse_average, "fuse_laplacian": fuse_laplacian}
    scores: dict[str, list[dict[str, float]]] = {k: [] for k in fusers}
    for name in pairs:
        vis = cv2.imread(str(vifb / "vis" / name), cv2.IMREAD_COLOR)
        ir = cv2.imread(str(vifb / "ir" / name), cv2.IMREAD_GRAYSCALE)
        for k, fuse in fusers.items():
            scores[k].append(M.fusion_metrics(vis, ir, fuse(vis, ir)))
    keys = list(scores["fuse_average"][0])
    print(f"\n# mean over {len(pairs)} VIFB pairs (higher is better for every column)")
    print("| fuser            | " + " | ".join(f"{k:>6}" for k in keys) + " |")
    print("|------------------|" + "|".join("-" * 8 for _ in keys) + "|")
    for k, rows in scores.items():
        means = [float(np.mean([r[m] for r in rows])) for m in keys]
        print(f"| {k:<16} | " + " | ".join(f"{v:6.3f}" for v in means) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="640x512", help="WxH of the pair (default 640x512)")
    ap.add_argument("--runs", type=int, default=20, help="timed calls per row (default 20)")
    ap.add_argument("--quality", action="store_true", help="also score the baselines on VIFB")
    ap.add_argument("--threads", type=int, default=0, help="cv2.setNumThreads (0 = OpenCV default)")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    if args.threads:
        cv2.setNumThreads(args.threads)

    vis = cv2.merge([textured(h, w, s) for s in (1, 2, 3)])
    ir = textured(h, w, 4)
    vis_y = cv2.cvtColor(vis, cv2.COLOR_BGR2GRAY)
    fused = fuse_laplacian(vis, ir)
    fused_y = cv2.cvtColor(fused, cv2.COLOR_BGR2GRAY)

    rows = [
        ("EN  entropy", lambda: M.entropy(fused_y)),
        ("SD  std_dev", lambda: M.std_dev(fused_y)),
        ("SF  spatial_frequency", lambda: M.spatial_frequency(fused_y)),
        ("AG  average_gradient", lambda: M.average_gradient(fused_y)),
        ("MI  fusion_mi", lambda: M.fusion_mi(vis_y, ir, fused_y)),
        ("VIF fusion_vif", lambda: M.fusion_vif(vis_y, ir, fused_y)),
        ("Qabf qabf", lambda: M.qabf(vis_y, ir, fused_y)),
        ("SSIM ssim (one pair)", lambda: M.ssim(fused_y, vis_y)),
        ("PSNR psnr", lambda: M.psnr(vis_y, fused_y)),
        ("fusion_metrics (all 8, BGR vis)", lambda: M.fusion_metrics(vis, ir, fused)),
        ("reference_metrics (gray)", lambda: M.reference_metrics(vis_y, fused_y)),
        ("fuse_average (BGR vis)", lambda: fuse_average(vis, ir)),
        ("fuse_average (gray vis)", lambda: fuse_average(vis_y, ir)),
        ("fuse_laplacian levels=4 (BGR vis)", lambda: fuse_laplacian(vis, ir)),
        ("fuse_laplacian levels=4 (gray vis)", lambda: fuse_laplacian(vis_y, ir)),
    ]
    print(f"# {w}x{h}, {args.runs} runs, cv2 threads {cv2.getNumThreads()}, "
          f"{platform.processor() or platform.machine()}, numpy {np.__version__}, cv2 {cv2.__version__}")
    print(f"| {'call':<36} | median ms | min ms |")
    print(f"|{'-' * 38}|-----------|--------|")
    for name, fn in rows:
        med, best = time_ms(fn, args.runs)
        print(f"| {name:<36} | {med:9.2f} | {best:6.2f} |")
    if args.quality:
        quality_table()


if __name__ == "__main__":
    main()
