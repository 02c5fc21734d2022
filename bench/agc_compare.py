#!/usr/bin/env python3
"""The three AGCs side by side on one 16-bit frame: docs/agc_comparison.png.

    python bench/agc_compare.py                          # the radiometric demo camera (thermal/scene.py)
    python bench/agc_compare.py --t 6.0 --smoke 1.0 --out docs/agc_comparison.png

No 16-bit data is in ../shared/data (every IR set there is 8-bit JPEG/PNG), so the frame is the
synthetic radiometric street: people at 34 °C, engines at 80 °C, a 400 °C fire, in smoke.
Panels: plateau histogram equalisation (default), percentile-linear 1-99 %, a fixed 0-100 °C
window, and for reference a plain min..max linear map. Each AGC runs over the 2 s before --t
first, so the smoothed limits have settled as they would live. Prints the time per frame of each.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from thermal.agc import AgcConfig, make_agc  # noqa: E402
from thermal.radiometry import frame_temperatures  # noqa: E402
from thermal.scene import PLANCK, render_ir_counts  # noqa: E402


def label(img: np.ndarray, text: str) -> np.ndarray:
    out = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    out = cv2.resize(out, (out.shape[1] * 2, out.shape[0] * 2), interpolation=cv2.INTER_NEAREST)
    cv2.rectangle(out, (0, 0), (out.shape[1], 26), (0, 0, 0), -1)
    cv2.putText(out, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--t", type=float, default=6.0, help="scene time of the frame, s")
    ap.add_argument("--smoke", type=float, default=1.0, help="smoke density multiplier")
    ap.add_argument("--out", default=str(REPO / "docs" / "agc_comparison.png"))
    args = ap.parse_args(argv)
    agcs = [("plateau equalisation (default)", AgcConfig(mode="plateau")),
            ("percentile 1-99 %, smoothed", AgcConfig(mode="percentile")),
            ("window 0-100 C", AgcConfig(mode="window", window_c=[0.0, 100.0])),
            ("plain min..max linear", AgcConfig(mode="percentile", low_pct=0, high_pct=100, smoothing_s=0))]
    warmup = [k / 10 for k in range(int((args.t - 2.0) * 10), int(args.t * 10))]
    frames = [render_ir_counts(t, smoke=args.smoke, frame=i) for i, t in enumerate(warmup)]
    counts = render_ir_counts(args.t, smoke=args.smoke, frame=len(warmup))
    panels = []
    for name, cfg in agcs:
        agc = make_agc(cfg, PLANCK)
        for t, f in zip(warmup, frames):
            agc(f, t)
        times = []
        for _ in range(5):            # the same frame again: the limits stay put, the median is the cost
            t0 = time.perf_counter()
            out = agc(counts, args.t)
            times.append((time.perf_counter() - t0) * 1000)
        ms = float(np.median(times))
        print(f"{name:32s} {ms:5.2f} ms/frame, grey levels used {len(np.unique(out))}")
        panels.append(label(out, name))
    temps = frame_temperatures(counts, PLANCK)
    grid = np.vstack([np.hstack(panels[:2]), np.hstack(panels[2:])])
    foot = np.zeros((28, grid.shape[1], 3), np.uint8)
    hot = temps["hottest"]
    cv2.putText(foot, f"synthetic 16-bit radiometric frame, t={args.t:g} s, smoke {args.smoke:g}: {temps['min']:.1f}.."
                f"{temps['max']:.1f} C, p99 {temps['p99']:.1f} C, hottest ({hot['x']}, {hot['y']})",
                (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    cv2.imwrite(args.out, np.vstack([grid, foot]))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
