"""The fuse / clear / evaluate subcommands of ``python -m lmfusion`` (need the inference API)."""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2

from .data import IMAGE_EXTS
from .errors import InputError, LMFusionError


def _inputs(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    if path.is_file():
        return [path]
    raise InputError(f"{path}: no such file or folder")


def _read(p: Path, flags: int):
    img = cv2.imread(str(p), flags)
    if img is None:
        raise InputError(f"{p}: not a readable image")
    return img


def _fuser(args):
    from . import load
    return load(args.weights, device=args.device, precision=args.precision, engine=args.engine,
                strategy=args.strategy, model=args.model)


def _fuse(args) -> int:
    f = _fuser(args)
    vis, ir, out = _inputs(Path(args.vis)), _inputs(Path(args.ir)), Path(args.o)
    if len(vis) != len(ir):
        raise InputError(f"{args.vis} has {len(vis)} images but {args.ir} has {len(ir)}")
    many = len(vis) > 1 or out.is_dir() or not out.suffix
    if many:
        out.mkdir(parents=True, exist_ok=True)
    for v, i in zip(vis, ir):
        V, I = _read(v, cv2.IMREAD_COLOR), _read(i, cv2.IMREAD_GRAYSCALE)
        if V.shape[:2] != I.shape[:2]:
            V = cv2.resize(V, (I.shape[1], I.shape[0]), interpolation=cv2.INTER_AREA)
            print(f"note: {v.name} resized to the IR size {I.shape[1]}x{I.shape[0]} (assumed registered)")
        dst = out / f"{v.stem}.png" if many else out
        cv2.imwrite(str(dst), f.fuse(V, I))
        print(dst)
    return 0


def _clear(args) -> int:
    f = _fuser(args)
    vis, out = _inputs(Path(args.vis)), Path(args.o)
    irs = _inputs(Path(args.ir)) if args.ir else [None] * len(vis)
    if len(irs) != len(vis):
        raise InputError(f"--ir {args.ir}: {len(irs)} images for {len(vis)} VIS images")
    many = len(vis) > 1 or not out.suffix
    if many:
        out.mkdir(parents=True, exist_ok=True)
    for v, i in zip(vis, irs):
        dst = out / f"{v.stem}.png" if many else out
        ir = None if i is None else _read(i, cv2.IMREAD_GRAYSCALE)
        cv2.imwrite(str(dst), f.clear(_read(v, cv2.IMREAD_COLOR), ir))
        print(dst)
    return 0


def _evaluate(args) -> int:
    from . import load
    from .evaluate import run
    from .api import MODEL_FILES
    fusers, files = {}, {}
    for m in args.models:
        fusers[m] = load(args.weights, model=m)
        files[m] = Path(args.weights) / MODEL_FILES[m]
    for spec in args.compare or []:
        name, _, path = spec.partition("=")
        if not path:
            raise LMFusionError(f"--compare {spec!r}: expected NAME=PATH.safetensors")
        fusers[name], files[name] = load(path), Path(path)
    if args.resolution_scale > 1:  # the CPU real-time option: the first model at reduced resolution
        m = args.models[0]
        name = f"{m} at 1/{args.resolution_scale}"
        fusers[name] = load(args.weights, model=m, engine_options={"resolution_scale": args.resolution_scale})
        files[name] = files[m]
    run(fusers, files, Path(args.out), sots_limit=args.sots_limit, limit=args.limit)
    print((Path(args.out) / "results.md").read_text())
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", default="weights", help="weights folder or .safetensors file")
    p.add_argument("--model", default="default", choices=["default", "paper"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16"])
    p.add_argument("--engine", default="torch")
    p.add_argument("--strategy", default=None, help="fusion strategy (default: the model's)")


def register(sub) -> None:
    f = sub.add_parser("fuse", help="fuse registered VIS/IR images (files or folders)")
    f.add_argument("--vis", required=True)
    f.add_argument("--ir", required=True)
    f.add_argument("-o", required=True, help="output file, or folder for several")
    _common(f)
    f.set_defaults(fn=_fuse)
    c = sub.add_parser("clear", help="remove smoke from visible images")
    c.add_argument("--vis", required=True)
    c.add_argument("--ir", help="the registered IR image(s): help the smoke model find the smoke")
    c.add_argument("-o", required=True)
    _common(c)
    c.set_defaults(fn=_clear)
    e = sub.add_parser("evaluate", help="quality tables + image grid vs the baselines")
    e.add_argument("--weights", default="weights")
    e.add_argument("--models", nargs="+", default=["default"], choices=["default", "paper"])
    e.add_argument("--out", default="docs/eval")
    e.add_argument("--limit", type=int, default=None, help="use the first N test pairs")
    e.add_argument("--sots-limit", type=int, default=None, help="use the first N SOTS pairs")
    e.add_argument("--compare", nargs="*", metavar="NAME=PATH", help="more weights files to evaluate beside")
    e.add_argument("--resolution-scale", type=int, default=2,
                   help="also evaluate the first model at 1/N resolution (the CPU real-time option); 1 = no")
    e.set_defaults(fn=_evaluate)
