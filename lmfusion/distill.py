"""Distillation: train a slimmer student network to reproduce a teacher Fuser's outputs.

    python -m lmfusion.distill --teacher weights/lmfusion.safetensors --student fast.json \\
        --steps 4000 --out weights/lmfusion_fast.safetensors        # after the main training

    from lmfusion.distill import DistillConfig, distill
    student, log = distill(teacher_fuser, student_cfg, pairs, DistillConfig(steps=4000), out=path)

Why: the full model cannot run at frame rate on a CPU; a student of the same architecture with
narrower layers and a coarser LMF trunk can (bench/bench_model.py measures the candidates). The
teacher is the shipped Fuser, so the student learns the teacher's whole behaviour (de-smoking and
fusion) from unlabelled registered VIS/IR pairs with synthetic smoke, and the teacher can run on
any engine (ONNX Runtime makes the teacher's forward passes about twice as cheap on a CPU).

Loss on each batch of smoky (VIS-Y, IR) crops: L1 + ssim_weight * (1 - SSIM) between the student's
and the teacher's fused Y, plus clear_weight times the same between their ``clear`` outputs of
the smoky VIS (keeps the student's smoke removal honest on VIS alone). Adam, linear warm-up and
cosine decay as lmfusion.train. When the student's autoencoder has the teacher's shapes, it starts
from (and may freeze) the teacher's encoder and decoder, so only LMF has to be learnt.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .config import ModelConfig, preset
from .data import random_crop
from .errors import ConfigError
from .losses import ssim
from .networks import STRATEGIES, LMFusionNet
from .smoke import SmokeConfig, add_smoke
from .weights import save_model


@dataclass(frozen=True)
class DistillConfig:
    steps: int = 4000            # optimizer steps
    batch: int = 8               # crops per step
    crop: int = 128              # crop side, px (a multiple of both models' size multiple)
    lr: float = 1e-3             # peak learning rate (Adam)
    warmup: int = 50             # linear warm-up steps
    min_lr_ratio: float = 0.02   # cosine decays to lr * this
    ssim_weight: float = 1.0     # lambda of (1 - SSIM) beside L1
    clear_weight: float = 0.5    # weight of the clear(VIS) term (0 = fused output only)
    init_autoencoder: bool = True    # start from the teacher's encoder/decoder if shapes match
    freeze_autoencoder: bool = False  # keep them fixed (only when initialised from the teacher)
    smoke: SmokeConfig = field(default_factory=SmokeConfig)
    val_batches: int = 4         # fixed held-out batches for the agreement PSNR
    log_every: int = 100         # steps between log lines
    threads: int = 0             # torch threads (0 = leave as is)
    seed: int = 0


def _lr_at(cfg: DistillConfig, step: int) -> float:
    warm = min(1.0, (step + 1) / max(cfg.warmup, 1))
    cos = 0.5 * (1 + math.cos(math.pi * min(step, cfg.steps) / max(cfg.steps, 1)))
    return cfg.lr * warm * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cos)


def smoky_batch(pairs: Sequence[tuple[np.ndarray, np.ndarray]], cfg: DistillConfig,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random co-located crops of registered (VIS gray, IR) uint8 pairs with the same synthetic
    smoke over both -> (vis_y, ir_y), each (B, 1, crop, crop) float32 in [0, 1]."""
    vs, irs = [], []
    for k in rng.integers(0, len(pairs), cfg.batch):
        vis, ir = pairs[k]
        if vis.shape != ir.shape:
            raise ConfigError(f"distill pair {k}: VIS {vis.shape} and IR {ir.shape} differ "
                              f"(expected registered gray pairs of one size)")
        both = random_crop(np.dstack([vis, ir]), cfg.crop, rng)  # one crop for both: aligned
        s = add_smoke(both[..., 0].astype(np.float32) / 255, rng, cfg.smoke,
                      ir=both[..., 1].astype(np.float32) / 255)
        vs.append(s.smoky)
        irs.append(s.ir)
    return np.stack(vs)[:, None].astype(np.float32), np.stack(irs)[:, None].astype(np.float32)


def _loss(pred: torch.Tensor, target: torch.Tensor, w_ssim: float) -> torch.Tensor:
    return F.l1_loss(pred, target) + w_ssim * (1 - ssim(pred, target))


def _fuse_unclamped(net: LMFusionNet, vis_y: torch.Tensor, ir_y: torch.Tensor) -> torch.Tensor:
    """LMFusionNet.forward without the final clamp to [0, 1].

    The clamp has zero gradient outside [0, 1], so a freshly initialised student whose output
    starts below 0 would never move; the loss must see the raw decoder output.
    """
    B = vis_y.shape[0]
    z = net.encoder(torch.cat([vis_y, ir_y], dim=0))  # (2B, C, H, W)
    if net.cfg.lmf_on_ir:
        z = net.lmf(z)
        zv, zi = z[:B], z[B:]
    else:
        zv, zi = net.lmf(z[:B]), z[B:]
    return net.decoder(STRATEGIES[net.strategy](zv, zi))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def _copy_autoencoder(teacher_net: LMFusionNet | None, student: LMFusionNet) -> bool:
    if teacher_net is None:
        return False
    for part in ("encoder", "decoder"):
        t, s = getattr(teacher_net, part).state_dict(), getattr(student, part).state_dict()
        if t.keys() != s.keys() or any(t[k].shape != s[k].shape for k in t):
            return False
    student.encoder.load_state_dict(teacher_net.encoder.state_dict())
    student.decoder.load_state_dict(teacher_net.decoder.state_dict())
    return True


def distill(teacher, student_cfg: ModelConfig, pairs: Sequence[tuple[np.ndarray, np.ndarray]],
            cfg: DistillConfig = DistillConfig(), out: Path | None = None,
            log: Callable[[str], None] = print) -> tuple[LMFusionNet, list[dict]]:
    """Train ``LMFusionNet(student_cfg)`` against ``teacher`` (an lmfusion Fuser: its engine and
    strategy are used as they are). ``pairs``: registered (VIS gray, IR) uint8 images.

    Returns (student in eval mode, log rows {step, loss, lr, agreement_psnr?}); writes the student
    to ``out`` (safetensors, provenance naming the teacher) when given.
    Raises ConfigError for a crop that is not a multiple of either model's size multiple.
    """
    t_mult = getattr(teacher, "multiple", 1)
    student = LMFusionNet(student_cfg)
    for m in (t_mult, student.size_multiple):
        if cfg.crop % m:
            raise ConfigError(f"distill crop {cfg.crop}: expected a multiple of {m} (the models' size multiple)")
    if not pairs:
        raise ConfigError("distill: no training pairs given")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    engine = teacher.engine
    copied = cfg.init_autoencoder and _copy_autoencoder(getattr(engine, "model", None), student)
    frozen = copied and cfg.freeze_autoencoder
    if frozen:
        for p in [*student.encoder.parameters(), *student.decoder.parameters()]:
            p.requires_grad_(False)
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    log(f"distill: teacher {teacher.name} -> student {student_cfg.name} "
        f"({sum(p.numel() for p in params)} trained parameters; autoencoder "
        f"{'copied and frozen' if frozen else 'copied' if copied else 'from scratch'})")

    val_rng = np.random.default_rng(cfg.seed + 1)  # fixed held-out batches, same every run
    val = [smoky_batch(pairs, cfg, val_rng) for _ in range(cfg.val_batches)]
    val_targets = [engine.fuse(v, i, teacher.strategy) for v, i in val]

    def agreement() -> float:
        student.eval()
        with torch.no_grad():
            got = [student(torch.from_numpy(v), torch.from_numpy(i)).numpy() for v, i in val]
        student.train()
        return float(np.mean([_psnr(g, t) for g, t in zip(got, val_targets)]))

    rows: list[dict] = []
    t0 = time.time()
    student.train()
    for step in range(cfg.steps):
        lr = _lr_at(cfg, step)
        for g in opt.param_groups:
            g["lr"] = lr
        v, i = smoky_batch(pairs, cfg, rng)
        target = torch.from_numpy(engine.fuse(v, i, teacher.strategy))  # (B, 1, c, c)
        vt, it = torch.from_numpy(v), torch.from_numpy(i)
        loss = _loss(_fuse_unclamped(student, vt, it), target, cfg.ssim_weight)
        if cfg.clear_weight:
            pred_clear = student.decoder(student.lmf(student.encoder(vt)))  # unclamped, as above
            loss = loss + cfg.clear_weight * _loss(pred_clear, torch.from_numpy(engine.clear(v)),
                                                   cfg.ssim_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        row = {"step": step + 1, "loss": loss.item(), "lr": lr}
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            row["agreement_psnr"] = agreement()
            log(f"distill step {step + 1}/{cfg.steps}: loss {row['loss']:.4f}, student vs teacher "
                f"{row['agreement_psnr']:.2f} dB, {time.time() - t0:.0f} s")
        rows.append(row)
    student.eval()
    if out is not None:
        final = next((r["agreement_psnr"] for r in reversed(rows) if "agreement_psnr" in r), None)
        save_model(student, Path(out), provenance={
            "distilled_from": teacher.name, "teacher_provenance": getattr(teacher, "provenance", {}),
            "distill_config": json.loads(json.dumps(dataclasses.asdict(cfg), default=str)),
            "pairs": len(pairs), "wall_s": round(time.time() - t0, 1),
            "agreement_psnr_db": final})
    return student, rows


def roadscene_training_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    """RoadScene train split as registered (VIS gray, IR) pairs (needs ../shared/data)."""
    import cv2

    from . import data as D
    return [(cv2.cvtColor(v, cv2.COLOR_BGR2GRAY), i)
            for v, i in (D.load_roadscene_pair(p) for p in D.roadscene_pairs("train"))]


def main(argv: list[str] | None = None) -> None:
    from .api import load
    ap = argparse.ArgumentParser(description="Distil a student preset from a trained teacher.")
    ap.add_argument("--teacher", default="weights/lmfusion.safetensors", help="teacher weights file")
    ap.add_argument("--teacher-engine", default="onnxruntime", choices=["torch", "onnxruntime"])
    ap.add_argument("--student", required=True,
                    help="a preset name from lmfusion.config.PRESETS, or a JSON file of a ModelConfig")
    ap.add_argument("--out", required=True, help="student weights file (.safetensors)")
    ap.add_argument("--steps", type=int, default=DistillConfig.steps)
    ap.add_argument("--batch", type=int, default=DistillConfig.batch)
    ap.add_argument("--crop", type=int, default=DistillConfig.crop)
    ap.add_argument("--lr", type=float, default=DistillConfig.lr)
    ap.add_argument("--freeze-autoencoder", action="store_true")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    p = Path(args.student)
    student_cfg = (ModelConfig.from_dict(json.loads(p.read_text()), where=str(p)) if p.suffix == ".json"
                   else preset(args.student))
    teacher = load(args.teacher, engine=args.teacher_engine)
    cfg = DistillConfig(steps=args.steps, batch=args.batch, crop=args.crop, lr=args.lr,
                        freeze_autoencoder=args.freeze_autoencoder, threads=args.threads)
    distill(teacher, student_cfg, roadscene_training_pairs(), cfg, out=Path(args.out))


if __name__ == "__main__":
    main()
