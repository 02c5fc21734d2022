"""Fusion strategies on the test split's smoky pairs, through the evaluation's own code path.

    python bench/studies/fusion_test_check.py [--weights weights] [--strategies detail_soft detail_denoise]

On exactly the evaluation's smoky RoadScene test pairs (``smoky_test_pairs``: EVAL_SMOKE, seeds
1000 + index), for the two baselines and LMFusion with each given strategy: Qabf and SSIM
against the clean VIS (``metrics.fusion_metrics``, as ``python -m lmfusion evaluate``), each
row's margin over the corner the model issue asks to beat (the Laplacian baseline's Qabf and the
average baseline's SSIM), and on how many pairs the row is ahead of that corner pair by pair. About 2 minutes on one core, where the full
evaluation takes 15. Choose strategies on RoadScene *train* pairs
(bench/studies/fusion_strategy_study.py); this is the one-shot check, not a tuning loop.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402

from lmfusion import api, baselines, metrics as M  # noqa: E402
from lmfusion.evaluate import smoky_test_pairs  # noqa: E402
from lmfusion.networks import STRATEGIES  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default="weights")
    ap.add_argument("--strategies", nargs="+", default=["detail_soft", "detail_denoise"], choices=list(STRATEGIES))
    ap.add_argument("--limit", type=int, default=None, help="the first N test pairs")
    ap.add_argument("--kinds", nargs="+", choices=["smoky", "clean"], default=["smoky"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    fuser = api.load(args.weights)
    methods = {"average baseline": baselines.fuse_average, "laplacian baseline": baselines.fuse_laplacian}
    methods.update({f"LMFusion {s}": (lambda v, i, s=s: fuser.fuse(v, i, strategy=s)) for s in args.strategies})
    pairs = smoky_test_pairs(args.limit)
    t0 = time.perf_counter()
    for kind in args.kinds:
        per = {name: [] for name in methods}   # per pair: (Qabf, SSIM)
        for p in pairs:
            vis, ir = (p.vis_smoky, p.ir_smoky) if kind == "smoky" else (p.vis_clean, p.ir_clean)
            for name, fn in methods.items():
                r = M.fusion_metrics(p.vis_clean, p.ir_clean, fn(vis, ir))
                per[name].append((r["Qabf"], r["SSIM"]))
        lap, avg = np.array(per["laplacian baseline"]), np.array(per["average baseline"])
        lap_q, avg_s = lap[:, 0].mean(), avg[:, 1].mean()
        print(f"\n### {kind} VIS + IR, {len(pairs)} RoadScene test pairs (evaluate.py's pairs and smoke)\n")
        print("| | Qabf | SSIM | Qabf - Laplacian's | SSIM - average's | beats both | pairs ahead: Qabf / SSIM / both |")
        print("|---|---|---|---|---|---|---|")
        for name, rows in per.items():
            r = np.array(rows)
            q, s = r[:, 0].mean(), r[:, 1].mean()
            win = "yes" if q > lap_q and s > avg_s and "baseline" not in name else ""
            aq, as_ = r[:, 0] > lap[:, 0], r[:, 1] > avg[:, 1]
            counts = "" if "baseline" in name else f"{aq.sum()} / {as_.sum()} / {(aq & as_).sum()}"
            print(f"| {name} | {q:.4f} | {s:.4f} | {q - lap_q:+.4f} | {s - avg_s:+.4f} | {win} | {counts} |")
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
