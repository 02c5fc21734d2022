"""Does the part of the scene a distortion crops away decide the registration's answer?

    OMP_NUM_THREADS=1 python bench/studies/registration_coverage_study.py \
        --scenes man_in_doorway Movie_12 2_men --seeds 0 5 9 13 21 33

For TNO scenes (as in bench/bench_registration.py, with the same distortions) the method is
run three times per scene and seed: on the undistorted pair ("und"), on the distorted pair
(its answer mapped back through the known distortion, "dist"), and on the undistorted pair
with the part of VIS that the distortion pushes out of view blanked ("cut",
`same_content`). Printed: the distortion's zoom, the share of the VIS frame kept, and the mean
corner distances (IR px) between the three answers. When "cut" sits next to "dist" and away
from "und", the answer moved because of what is in view, not because of the distortion: the
pair is not one homography (depth, lens distortion), and the best-fitting one depends on
which part of the scene is seen.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # bench/, for bench_registration

from bench_registration import DATA, set_seed, tno_pairs  # noqa: E402
from calibration.distortion import random_homography, same_content  # noqa: E402
from calibration.auto import estimate_auto  # noqa: E402
from calibration.geometry import corner_error  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", nargs="+", required=True, help="substrings of TNO scene names")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 5, 9, 13])
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    pairs = list(tno_pairs(args.data / "tno"))
    if not pairs:
        print(f"no TNO pairs under {(args.data / 'tno').resolve()}", file=sys.stderr)
        return 2
    dist = {}
    for s in args.seeds:  # the bench's draws: one distortion per scene, in order
        rng = np.random.default_rng(set_seed(s, "tno"))
        for name, vis, _ in pairs:
            dist[(s, name)] = random_homography((vis.shape[1], vis.shape[0]), rng)
    print(f"{'scene':44s} {'seed':>4s} {'zoom':>6s} {'kept':>6s} {'dist-und':>9s} {'cut-und':>8s} {'cut-dist':>9s}")
    for name, vis, ir in pairs:
        if not any(k in name for k in args.scenes):
            continue
        h, w = vis.shape[:2]
        und = estimate_auto(vis, ir).ir_from_vis
        for s in args.seeds:
            g = dist[(s, name)]
            d = estimate_auto(cv2.warpPerspective(vis, g, (w, h), flags=cv2.INTER_LINEAR), ir).ir_from_vis @ g
            d /= d[2, 2]
            cut_img = same_content(vis, g)
            cut = estimate_auto(cut_img, ir).ir_from_vis
            zoom = float(np.sqrt(abs(np.linalg.det(g[:2, :2]))))
            kept = float(np.mean(cut_img > 0)) if vis.ndim == 2 else float(np.mean(cut_img.any(axis=2)))
            print(f"{name:44s} {s:4d} {zoom:6.3f} {100 * kept:5.1f}% {corner_error(d, und, (w, h)):9.2f} "
                  f"{corner_error(cut, und, (w, h)):8.2f} {corner_error(cut, d, (w, h)):9.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
