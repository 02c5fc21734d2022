"""How much smoke can one per-image gain and offset, predicted from image statistics, remove?

    python bench/studies/global_correction_study.py [--smokes 4] [--lam 1 10 100]

The question behind it: the shipped LMF gains +1.25 dB on the evaluation's synthetic smoke
(RoadScene test split, `python -m lmfusion evaluate`), although an oracle per-image gain and
offset reaches far more. Is the cue for a global correction in the smoky image at all?

Training data: the RoadScene *train* split's VIS-Y, each under `--smokes` smokes from the
training smoke generator (all kinds, every sample smoky). Features of the smoky Y: 13
percentiles, the mean gradient magnitude at 3 scales, the standard deviation, and all their
pairwise products. Target: the least-squares gain and offset from smoky to clean. Model: ridge
regression, closed form. Test: exactly the evaluation's smoky test split (seeds 1000 + i), and
SOTS-indoor hazy -> clear (evaluation only, never fitted on). Prints Y PSNR (dB): the input,
the regression, and the oracle (the best gain/offset per image, fitted on the truth).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lmfusion import data as D  # noqa: E402
from lmfusion.metrics import psnr  # noqa: E402
from lmfusion.evaluate import EVAL_SMOKE, y_of  # noqa: E402
from lmfusion.smoke import SmokeConfig, add_smoke  # noqa: E402

PERCENTILES = [0.5, 1, 2, 5, 10, 25, 50, 75, 90, 95, 98, 99, 99.5]


def features(y: np.ndarray) -> np.ndarray:
    y = y.astype(np.float32) / 255
    grads = [np.mean(np.abs(cv2.Sobel(cv2.resize(y, None, fx=s, fy=s, interpolation=cv2.INTER_AREA), cv2.CV_32F, 1, 0)))
             for s in (1.0, 0.5, 0.25)]
    f = np.concatenate([np.percentile(y, PERCENTILES), grads, [y.std()]])
    return np.concatenate([[1.0], f, np.outer(f, f)[np.triu_indices(len(f))]])


def best_affine(x: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    x = x.astype(np.float64).ravel()
    g, o = np.linalg.lstsq(np.stack([x, np.ones_like(x)], 1), target.astype(np.float64).ravel(), rcond=None)[0]
    return float(g), float(o)


def u8(a: np.ndarray) -> np.ndarray:
    return np.clip(a * 255 + 0.5, 0, 255).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smokes", type=int, default=4, help="smokes per training image")
    ap.add_argument("--lam", type=float, nargs="+", default=[1.0, 10.0, 100.0], help="ridge strengths")
    args = ap.parse_args()
    t0 = time.perf_counter()
    train_smoke = SmokeConfig(p_clean=0.0, tau_max=(0.3, 3.0))
    xs, ys = [], []
    for k, p in enumerate(D.roadscene_pairs("train")):
        clean = y_of(D.load_roadscene_pair(p)[0])
        for r in range(args.smokes):
            smoky = u8(add_smoke(clean.astype(np.float32) / 255, np.random.default_rng(77 + 10 * k + r),
                                 train_smoke, force_smoke=True).smoky)
            xs.append(features(smoky))
            ys.append(best_affine(smoky, clean))
    x, y = np.array(xs), np.array(ys)
    mu, sd = x.mean(0), x.std(0) + 1e-9
    mu[0], sd[0] = 0.0, 1.0
    xn = (x - mu) / sd
    test = []
    for i, p in enumerate(D.roadscene_pairs("test")):
        vis, ir = D.load_roadscene_pair(p)
        s = add_smoke(vis.astype(np.float32) / 255, np.random.default_rng(1000 + i), EVAL_SMOKE,
                      ir=ir.astype(np.float32) / 255, force_smoke=True)
        test.append((y_of(u8(s.smoky)), y_of(vis)))
    sots = [(y_of(cv2.imread(str(p.vis))), y_of(cv2.imread(str(p.ir)))) for p in D.sots_pairs()]
    print(f"{len(x)} training samples ({args.smokes} smokes x RoadScene train VIS), "
          f"{len(test)} smoky test pairs, {len(sots)} SOTS pairs\n")
    print("| | synthetic smoke, test split | SOTS-indoor |\n|---|---|---|")
    print(f"| input | {np.mean([psnr(a, b) for a, b in test]):.2f} | {np.mean([psnr(a, b) for a, b in sots]):.2f} |")
    for lam in args.lam:
        w = np.linalg.solve(xn.T @ xn + lam * np.eye(xn.shape[1]), xn.T @ y)

        def corrected(a):
            g, o = ((features(a) - mu) / sd) @ w
            return np.clip(g * a.astype(np.float64) + o, 0, 255)
        print(f"| ridge, lambda {lam:g} | {np.mean([psnr(corrected(a), b) for a, b in test]):.2f} | "
              f"{np.mean([psnr(corrected(a), b) for a, b in sots]):.2f} |")

    def oracle(a, b):
        g, o = best_affine(a, b)
        return np.clip(g * a.astype(np.float64) + o, 0, 255)
    print(f"| oracle gain/offset | {np.mean([psnr(oracle(a, b), b) for a, b in test]):.2f} | "
          f"{np.mean([psnr(oracle(a, b), b) for a, b in sots]):.2f} |")
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
