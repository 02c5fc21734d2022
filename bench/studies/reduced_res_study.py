"""The CPU default (the shipped model at 1/2 resolution) against the full model: rules for the
full-resolution detail that ReducedResEngine adds back, on the validation slice.

    python bench/studies/reduced_res_study.py [--pairs 22] [--seed 5000]      # 27 rules
    python bench/studies/reduced_res_study.py --seed 6000 --narrow           # the 8 around the best

Data: RoadScene train-split pairs with index % 10 == 5 (the smoke model's validation slice, never
trained on; not the test split), each with the evaluation's synthetic smoke (seed + i). For each
rule: Qabf(clean VIS, IR, F) and SSIM(F, clean VIS) on smoky and on clean input, and the gap to
the full-resolution model on each. The rule shipped has the smallest largest gap over the means
of both seeds (docs/inference.md).
Prints one Markdown table.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lmfusion import data as D, metrics as M  # noqa: E402
from lmfusion.api import load  # noqa: E402
from lmfusion.evaluate import EVAL_SMOKE, smoky_pairs, y_of  # noqa: E402
from lmfusion.train_smoke import is_validation  # noqa: E402

BIASES = (3.0, 4.0, 5.0)
POWERS = (6.0, 7.0, 8.0)
BANDS = ((0.1, 0.5), (0.15, 0.6), (0.2, 0.7))
# the front's best corner, for a second smoke seed: --narrow
NARROW = dict(BIASES=(3.0, 4.0), POWERS=(6.0, 7.0), BANDS=((0.15, 0.6), (0.2, 0.7)))


def rules(biases=BIASES, powers=POWERS, bands=BANDS) -> dict:
    """name -> (detail_bias, detail_power, clear_band) for every combination."""
    return {f"bias {b:g}, power {p:g}, w band {lo:g}-{hi:g}": (b, p, (lo, hi))
            for b in biases for p in powers for lo, hi in bands}


def scores(fuse, pairs) -> dict[str, float]:
    out = {}
    for kind in ("smoky", "clean"):
        q, s = [], []
        for p in pairs:
            vis, ir = (p.vis_smoky, p.ir_smoky) if kind == "smoky" else (p.vis_clean, p.ir_clean)
            f = fuse(vis, ir)
            q.append(M.qabf(y_of(p.vis_clean), p.ir_clean, y_of(f)))
            s.append(M.ssim(y_of(p.vis_clean), y_of(f)))
        out[f"{kind} Qabf"], out[f"{kind} SSIM(F,VIS)"] = float(np.mean(q)), float(np.mean(s))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=22)
    ap.add_argument("--seed", type=int, default=5000)
    ap.add_argument("--weights", default="weights")
    ap.add_argument("--narrow", action="store_true", help="only the 8 rules around the best corner")
    args = ap.parse_args()
    val = [p for i, p in enumerate(D.roadscene_pairs("all")) if i % 10 != 0 and is_validation(i)][:args.pairs]
    pairs = smoky_pairs(val, args.seed, EVAL_SMOKE)
    t0 = time.time()
    full = scores(load(args.weights).fuse, pairs)
    half = load(args.weights, engine_options={"resolution_scale": 2})
    rows = {"full resolution": (full, None)}
    grid = rules(*(NARROW[k] for k in ("BIASES", "POWERS", "BANDS"))) if args.narrow else rules()
    for name, (bias, power, band) in grid.items():
        half.engine.detail_bias, half.engine.detail_power, half.engine.clear_band = bias, power, band
        r = scores(half.fuse, pairs)
        rows[f"1/2, {name}"] = (r, max(abs(r[k] - full[k]) for k in full))
        print(f"{name}: {time.time() - t0:.0f} s", file=sys.stderr)
    keys = list(full)
    print(f"{len(pairs)} validation pairs (RoadScene train split, index % 10 == 5), smoke seed {args.seed}\n")
    print("| | " + " | ".join(keys) + " | largest gap |")
    print("|---" * (len(keys) + 2) + "|")
    for name, (r, gap) in rows.items():
        print(f"| {name} | " + " | ".join(f"{r[k]:.3f}" for k in keys) + f" | {'' if gap is None else f'{gap:.3f}'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
