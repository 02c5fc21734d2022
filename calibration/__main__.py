"""Calibration tools: fit the VIS->IR geometry and check it by eye.

    python -m calibration points --csv pairs.csv --vis-size 640 480 --ir-size 320 256 --out cal.yaml
    python -m calibration points --pair 100 80 61 40 --pair ... --vis-size 640 480 --ir-size 320 256 --out cal.yaml
    python -m calibration target --vis vis_*.png --ir ir_*.png --pattern chessboard --grid 9x6 --out cal.yaml
    python -m calibration target --synthetic 8 --out configs/calibration/demo.yaml   # the demo rig
    python -m calibration auto --vis vis.png --ir ir.png --out cal.yaml
    python -m calibration auto --vis vis.png --ir ir.png --out cal.yaml --stability   # + self-check
    python -m calibration check --calib cal.yaml --vis vis.png --ir ir.png --out check.png

Exit status 0 on success, 2 with a one-line reason on bad input or a failed fit, 3 after
`auto --stability` when the answer moves by more than 2 px with part of the scene out of view
(the file is written; the warning says what to do).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from common.cli import run_command
from common.synthetic_scene import render_pair

from .geometry import CalibrationError, load


def _read(path: str, gray: bool) -> np.ndarray:
    img = cv2.imread(path, cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
    if img is None:
        raise CalibrationError(f"{path}: cannot read image")
    return img


def _grid(text: str) -> tuple[int, int]:
    try:
        c, r = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--grid must be COLSxROWS like 9x6, got {text!r}") from None
    return c, r


def _summary(calib, out: Path) -> str:
    rms = "n/a" if calib.rms_px != calib.rms_px else f"{calib.rms_px:.3f} px"
    return (f"wrote {out}: {calib.model}, rms {rms}, method {calib.method}, id {calib.id}\n"
            f"ir_from_vis =\n{np.array2string(calib.ir_from_vis, precision=6, suppress_small=True)}")


def cmd_points(args) -> int:
    from .points import fit_points, read_pairs_csv
    if args.csv:
        vis_xy, ir_xy = read_pairs_csv(args.csv)
    elif args.pair:
        arr = np.asarray(args.pair, np.float64)
        vis_xy, ir_xy = arr[:, :2], arr[:, 2:]
    else:
        raise CalibrationError("points: give --csv FILE or at least 4 --pair VX VY IX IY")
    vis_size = tuple(args.vis_size) if args.vis_size else None
    ir_size = tuple(args.ir_size) if args.ir_size else None
    if args.vis:
        v = _read(args.vis, gray=True)
        vis_size = vis_size or (v.shape[1], v.shape[0])
    if args.ir:
        r = _read(args.ir, gray=True)
        ir_size = ir_size or (r.shape[1], r.shape[0])
    if vis_size is None or ir_size is None:
        raise CalibrationError("points: give --vis-size W H and --ir-size W H (or --vis/--ir images)")
    calib = fit_points(vis_xy, ir_xy, vis_size, ir_size, model=args.model, ransac_px=args.ransac_px)
    print(_summary(calib, calib.save(args.out)))
    return 0


def _synthetic_target_frames(n: int):
    """n frame pairs of the synthetic source's heated checkerboard (scene="target")."""
    times = np.linspace(0.0, 10.0, n) if n > 1 else [0.0]
    pairs = [render_pair(float(t), seed=0, scene="target") for t in times]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def cmd_target(args) -> int:
    from .target import fit_target
    if args.synthetic:
        vis, ir = _synthetic_target_frames(args.synthetic)
    else:
        if not args.vis or not args.ir:
            raise CalibrationError("target: give --vis FILES and --ir FILES (same count), or --synthetic N")
        if len(args.vis) != len(args.ir):
            raise CalibrationError(f"target: {len(args.vis)} --vis files but {len(args.ir)} --ir files")
        vis = [_read(p, gray=False) for p in sorted(args.vis)]
        ir = [_read(p, gray=True) for p in sorted(args.ir)]
    report: list[str] = []
    calib = fit_target(vis, ir, pattern=args.pattern, grid=args.grid, model=args.model,
                       ransac_px=args.ransac_px, min_pairs=args.min_pairs, report=report)
    for line in report:
        print(line)
    print(f"reprojection error: {calib.rms_px:.3f} px RMS (IR px)")
    print(_summary(calib, calib.save(args.out)))
    return 0


def cmd_auto(args) -> int:
    from .auto import STABLE_PX, AutoConfig, estimate_auto, stability
    vis, ir = _read(args.vis, gray=False), _read(args.ir, gray=True)
    init = load(args.init).ir_from_vis if args.init else None
    cfg = AutoConfig(model=args.model)
    calib = estimate_auto(vis, ir, init=init, config=cfg)
    print(_summary(calib, calib.save(args.out)))
    if args.stability:
        moves = stability(vis, ir, calib, init=init, config=cfg)
        worst = max(moves)
        print("stability: with 12 % of the VIS frame left out on the left/right/top/bottom the answer moves "
              + " / ".join(f"{m:.2f}" for m in moves) + f" px (largest {worst:.2f} px)")
        if not worst <= STABLE_PX:
            print(f"warning: {args.vis} + {args.ir}: the answer moves by more than {STABLE_PX:g} px with the view "
                  "(depth, lens distortion, or too little structure both cameras see): check it with "
                  "`python -m calibration check`, use a scene with structure across the frame at the working "
                  "distance, or a target", file=sys.stderr)
            return 3
    return 0


def cmd_check(args) -> int:
    from .check import check_image
    from .score import alignment_score
    vis, ir = _read(args.vis, gray=False), _read(args.ir, gray=True)
    calib = load(args.calib)
    img = check_image(calib, vis, ir, mode=args.mode, tile_px=args.tile)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), img):
        raise CalibrationError(f"{out}: cannot write image (use .png or .jpg)")
    print(f"wrote {out} ({args.mode}); alignment score (gradient correlation) "
          f"{alignment_score(calib.ir_from_vis, vis, ir):.3f}; calibration {calib.id}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m calibration", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[2:9]))
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("points", help="fit from point pairs (CSV or --pair), with RANSAC")
    p.add_argument("--csv", help="CSV with header vis_x,vis_y,ir_x,ir_y")
    p.add_argument("--pair", nargs=4, type=float, action="append", metavar=("VX", "VY", "IX", "IY"))
    p.add_argument("--vis-size", nargs=2, type=int, metavar=("W", "H"))
    p.add_argument("--ir-size", nargs=2, type=int, metavar=("W", "H"))
    p.add_argument("--vis", help="a VIS image, to take its size")
    p.add_argument("--ir", help="an IR image, to take its size")
    p.add_argument("--model", choices=["homography", "affine"], default="homography")
    p.add_argument("--ransac-px", type=float, default=3.0, help="inlier threshold, IR px (default 3)")
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_points)

    p = sub.add_parser("target", help="fit from a heated checkerboard / circle grid over several pairs")
    p.add_argument("--vis", nargs="+", help="VIS images of the target (paired with --ir by sorted name)")
    p.add_argument("--ir", nargs="+", help="IR images of the target")
    p.add_argument("--synthetic", type=int, default=0, metavar="N",
                   help="use N frame pairs of the built-in synthetic source's target instead")
    p.add_argument("--pattern", choices=["chessboard", "circles", "acircles"], default="chessboard")
    p.add_argument("--grid", type=_grid, default=(9, 6), help="inner corners / circles, COLSxROWS (9x6)")
    p.add_argument("--model", choices=["homography", "affine"], default="homography")
    p.add_argument("--ransac-px", type=float, default=2.0, help="inlier threshold, IR px (default 2)")
    p.add_argument("--min-pairs", type=int, default=1, help="pairs that must show the target (default 1)")
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_target)

    p = sub.add_parser("auto", help="automatic, from one ordinary scene pair (no target)")
    p.add_argument("--vis", required=True)
    p.add_argument("--ir", required=True)
    p.add_argument("--init", help="a calibration file to start from (default: stretch VIS onto IR)")
    p.add_argument("--model", choices=["homography", "affine"], default="homography")
    p.add_argument("--stability", action="store_true",
                   help="also check how far the answer moves with part of the scene out of view (4 more "
                        "estimates); exit status 3 (the file is still written) when more than 2 px")
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_auto)

    p = sub.add_parser("check", help="write a checkerboard-blend or overlay image to judge by eye")
    p.add_argument("--calib", required=True)
    p.add_argument("--vis", required=True)
    p.add_argument("--ir", required=True)
    p.add_argument("--mode", choices=["checker", "overlay"], default="checker")
    p.add_argument("--tile", type=int, default=32, help="checker tile, IR px (default 32)")
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_check)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args.fn, args, (CalibrationError,))


if __name__ == "__main__":
    raise SystemExit(main())
