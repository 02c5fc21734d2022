"""Does the paper's piecewise optimizer make stage-2 training more efficient? Measure it.

Same budget (steps), same seed, same data stream, the paper's stage-2 recipe; only the optimizer
changes. Logs validation loss against step and wall time, writes a plot and a Markdown report.

    python bench/studies/optimizer_study.py --init runs/stage1/model.safetensors --steps 200 --out docs/optimizer_study
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lmfusion import data as D  # noqa: E402
from lmfusion.train import Trainer, TrainConfig  # noqa: E402

ARMS = {  # name -> (optimizer, lr, betas, weight_decay)
    "piecewise lr1e-3 (paper)": ("piecewise", 1e-3, (0.9, 0.99), 0.0),
    "piecewise lr1e-4 (DESIGN default)": ("piecewise", 1e-4, (0.9, 0.99), 0.0),
    "adam lr1e-3": ("adam", 1e-3, (0.9, 0.999), 0.0),
    "adamw lr1e-3 wd1e-2": ("adamw", 1e-3, (0.9, 0.999), 1e-2),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/train/stage2_paper.yaml")
    ap.add_argument("--init", default="runs/stage1/model.safetensors")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--val-every", type=int, default=25)
    ap.add_argument("--val-images", type=int, default=6)
    ap.add_argument("--crop", type=int, default=64, help="px; smaller than the recipe's 96 to fit the CPU budget")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--out", default="docs/optimizer_study")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = TrainConfig.from_yaml(Path(args.config), init=args.init)
    images = D.training_images()  # loaded once: every arm sees the same stream (same seed)
    curves: dict[str, list[dict]] = {}
    for arm in args.arms:
        opt, lr, betas, wd = ARMS[arm]
        slug = arm.split(" (")[0].replace(" ", "_")
        cfg = dataclasses.replace(base, name=f"opt_{slug}", optimizer=opt, lr=lr, betas=betas, crop=args.crop, batch=args.batch,
                                  weight_decay=wd, steps=args.steps, val_every=args.val_every,
                                  ckpt_every=10 ** 9, val_images=args.val_images, max_minutes=0,
                                  out=str(Path("runs/optimizer_study") / slug))
        for f in ("loss_log.csv", "val_log.csv", "checkpoint.safetensors"):
            (cfg.out_dir / f).unlink(missing_ok=True)   # a study arm always starts fresh
        tr = Trainer(cfg, images=images)
        tr.val = tr.val[: args.val_images]
        first = tr.validate()
        tr.run()
        rows = [{"step": 0, "elapsed_s": 0.0, **first}]
        with open(cfg.out_dir / "val_log.csv") as fh:
            rows += [{k: float(v) for k, v in r.items()} for r in csv.DictReader(fh)]
        curves[arm] = rows
        (out / f"val_{slug}.csv").write_text((cfg.out_dir / "val_log.csv").read_text())
    plot(curves, out / "optimizer_study.png")
    report(curves, args, out / "README.md")
    print((out / "README.md").read_text())
    return 0


def plot(curves: dict[str, list[dict]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for arm, rows in curves.items():
        axes[0].plot([r["step"] for r in rows], [r["val_loss"] for r in rows], label=arm)
        axes[1].plot([r["elapsed_s"] / 60 for r in rows], [r["val_loss"] for r in rows], label=arm)
        axes[2].plot([r["step"] for r in rows], [r["val_psnr_clear_smoky"] for r in rows], label=arm)
    axes[0].set(xlabel="step", ylabel="validation loss (L1 + 1-MS-SSIM, latents)")
    axes[1].set(xlabel="wall time (min)", ylabel="validation loss")
    axes[2].set(xlabel="step", ylabel="PSNR of clear(smoky) vs clean, dB")
    for a in axes:
        a.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def report(curves: dict[str, list[dict]], args, path: Path) -> None:
    lines = ["# Stage-2 optimizer study: piecewise vs Adam vs AdamW", "",
             f"Paper stage-2 recipe (`{args.config}`) at {args.batch} crops of {args.crop} px, {args.steps} steps each, same seed and data "
             f"stream, validation on {args.val_images} RoadScene test-split crops with fixed synthetic smoke "
             "every %d steps. Command: `python bench/studies/optimizer_study.py --steps %d --val-every %d`." % (args.val_every, args.steps, args.val_every),
             "", "| optimizer | final val loss | best val loss | step of best | clear(smoky) dB | clear(clean) dB | s/step |",
             "|---|---|---|---|---|---|---|"]
    for arm, rows in curves.items():
        best = min(rows, key=lambda r: r["val_loss"])
        last = rows[-1]
        lines.append(f"| {arm} | {last['val_loss']:.4f} | {best['val_loss']:.4f} | {int(best['step'])} | "
                     f"{last['val_psnr_clear_smoky']:.2f} | {last['val_psnr_clear_clean']:.2f} | "
                     f"{last['elapsed_s'] / max(last['step'], 1):.2f} |")
    lines += ["", "![curves](optimizer_study.png)", ""]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
