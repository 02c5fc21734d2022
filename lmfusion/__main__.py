"""lmfusion command line.

    python -m lmfusion fuse --vis VIS --ir IR -o OUT          # files or folders
    python -m lmfusion clear --vis VIS -o OUT                 # smoke removal only
    python -m lmfusion train stage1 --config configs/train/stage1.yaml
    python -m lmfusion train stage2 --config configs/train/stage2_paper.yaml
    python -m lmfusion train smoke --out runs/smoke --steps 2500   # the smoke model (SmokeNet)
    python -m lmfusion train smoke --out runs/ft --init weights/lmfusion.safetensors --steps 800 --lr 5e-4
    python -m lmfusion evaluate --out docs/eval
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.cli import run_command

from .errors import LMFusionError


def _train(args: argparse.Namespace) -> int:
    if args.stage == "smoke":
        return _train_smoke(args)
    if not args.config:
        raise LMFusionError(f"train {args.stage}: --config is required")
    from .train import Trainer, TrainConfig
    cfg = TrainConfig.from_yaml(Path(args.config), steps=args.steps, out=args.out)
    want = {"stage1": 1, "stage2": 2}[args.stage]
    if cfg.stage != want:
        raise LMFusionError(f"{args.config}: stage is {cfg.stage}, but 'train {args.stage}' was asked for")
    metrics = Trainer(cfg).run()
    print("[train] done: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
    print(f"[train] weights: {cfg.out_dir / 'model.safetensors'}")
    return 0


def _train_smoke(args: argparse.Namespace) -> int:
    from .train_smoke import TrainSmokeConfig, assemble, train
    out = Path(args.out or "runs/smoke")
    cfg = TrainSmokeConfig(**({"steps": args.steps} if args.steps else {}), **({"lr": args.lr} if args.lr else {}))
    train(out, cfg, resume=True, init=Path(args.init) if args.init else None)
    path = assemble(Path(args.base), out / "smoke_last.safetensors", out / "model.safetensors",
                    provenance={"smoke_training": {"steps": cfg.steps, "batch": cfg.batch}})
    print(f"[train] weights: {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lmfusion", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train stage 1 (autoencoder), stage 2 (LMF) or the smoke model; resumes")
    t.add_argument("stage", choices=["stage1", "stage2", "smoke"])
    t.add_argument("--config", help="training recipe (stage1/stage2)")
    t.add_argument("--base", default="weights/lmfusion.safetensors",
                   help="smoke: the weights file whose autoencoder the new model keeps")
    t.add_argument("--steps", type=int, help="override the config's steps")
    t.add_argument("--lr", type=float, help="smoke: peak learning rate (default 2e-3)")
    t.add_argument("--init", help="smoke: fine-tune the SmokeNet of this weights file (when not resuming)")
    t.add_argument("--out", help="override the output folder")
    t.set_defaults(fn=_train)
    from . import cli_commands  # fuse / clear / evaluate
    cli_commands.register(sub)
    args = ap.parse_args(argv)
    return run_command(args.fn, args, (LMFusionError,))


if __name__ == "__main__":
    sys.exit(main())
