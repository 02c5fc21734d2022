"""Two-stage training.

stage 1: the autoencoder on clean gray images of both modalities; loss = L1 + ssim_weight*(1-SSIM).
stage 2: LMF with the encoder (and decoder) frozen, on (smoky, clean) latent pairs;
         loss = L1 + (1 - MS-SSIM) on latents (+ optional L1 on the decoded Y); cosine decay.

Resumable: ``<out>/checkpoint.safetensors`` holds model, optimizer and RNG state; rerunning the
same command resumes. ``<out>/loss_log.csv`` and ``<out>/val_log.csv`` log progress;
``<out>/model.safetensors`` is the weights file in the shipped format.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from . import data as D
from common.schema import build

from .config import ConfigError, preset
from .losses import ms_ssim, ssim
from .networks import LMFusionNet
from .optim import PiecewiseOptimizer
from .smoke import SmokeConfig, add_smoke
from .weights import load_state_into, save_model


@dataclass
class TrainConfig:
    name: str = "run"              # run name; outputs go to out/
    stage: int = 1                 # 1 = autoencoder, 2 = LMF
    model: str = "default"         # model preset (lmfusion.config.PRESETS)
    steps: int = 2000              # optimizer steps
    batch: int = 8                 # crops per step
    crop: int = 128                # crop side, px
    optimizer: str = "adam"        # piecewise | adam | adamw
    lr: float = 1e-3               # peak learning rate
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    warmup: int = 50               # linear warm-up steps
    min_lr_ratio: float = 0.02     # cosine decays to lr * this
    ssim_weight: float = 1.0       # stage 1: lambda of (1 - SSIM)
    msssim_scales: int = 3         # stage 2: MS-SSIM scales (3 fit 96-128 px crops)
    pixel_weight: float = 0.0      # stage 2: weight of L1 on the decoded Y (0 = paper)
    pixel_loss: str = "l1"         # stage 2: l1 (paper) | rmse: the latent and decoded-Y terms as
                                   # root-mean-square error, whose minimiser is the conditional
                                   # mean rather than the median: where a frame may be clean or
                                   # smoky, L1's median answer is "leave it", RMSE's corrects part-way
    global_lr_mult: float = 1.0    # stage 2: lr multiplier of LMF's small global-affine MLP
    smoke_kinds: tuple[str, ...] = ("turbulent", "plume", "uniform", "depth")
    p_clean: float = 0.2           # stage 2: fraction of clean -> clean (identity) pairs
    tau_max: tuple[float, float] = (0.2, 3.0)  # stage 2: peak optical depth range
    airlight: tuple[float, float] = (0.55, 1.0)  # stage 2: grey level of the scattered light
    p_dark_smoke: float = 0.1      # stage 2: fraction of dark (sooty) smoke, airlight 0.2-0.5
    images: str = "all"            # all: both modalities (stage 1); visible: VIS only (stage 2:
                                   # IR frames have no true black, so in them a lifted black
                                   # level is not a smoke cue and teaches the LMF to ignore it)
    p_stretch: float = 0.0         # stage 2: fraction of clean crops contrast-stretched (1st/99th
                                   # percentile to 0/255) before smoke: the clean data sets are
                                   # dim (median 1st percentile 81/255), so without this the LMF
                                   # never sees a full-range scene under haze
    init_lmf: str = ""             # stage 2: start the LMF from this weights file (fine-tune)
    seed: int = 0
    init: str = ""                 # stage 2: stage-1 weights file (encoder + decoder)
    out: str = ""                  # output folder (default runs/<name>)
    val_every: int = 200           # steps between validations
    ckpt_every: int = 100          # steps between checkpoints
    val_images: int = 12           # RoadScene test-split images used for validation
    val_crop: int = 256            # centre crop of each validation image, px
    threads: int = 0               # torch threads (0 = torch default)
    max_minutes: float = 0.0       # stop (with a checkpoint) after this wall time; 0 = no limit

    @classmethod
    def from_yaml(cls, path: Path, **overrides: Any) -> "TrainConfig":
        raw = yaml.safe_load(Path(path).read_text()) or {}
        raw.update({k: v for k, v in overrides.items() if v is not None})
        cfg = build(cls, raw, str(path), error=ConfigError)
        if cfg.stage not in (1, 2):
            raise ConfigError(f"{path}: stage: expected 1 or 2, got {cfg.stage!r}")
        if cfg.optimizer not in ("piecewise", "adam", "adamw"):
            raise ConfigError(f"{path}: optimizer: expected piecewise, adam or adamw, got {cfg.optimizer!r}")
        if cfg.pixel_loss not in ("l1", "rmse"):
            raise ConfigError(f"{path}: pixel_loss: expected l1 or rmse, got {cfg.pixel_loss!r}")
        if cfg.images not in ("all", "visible"):
            raise ConfigError(f"{path}: images: expected all or visible, got {cfg.images!r}")
        if cfg.stage == 2 and not cfg.init:
            raise ConfigError(f"{path}: init: stage 2 needs the stage-1 weights file")
        return cfg

    @property
    def out_dir(self) -> Path:
        return Path(self.out or f"runs/{self.name}")


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "piecewise":
        return PiecewiseOptimizer(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


def lr_at(cfg: TrainConfig, step: int) -> float:
    warm = min(1.0, (step + 1) / max(cfg.warmup, 1))
    cos = 0.5 * (1 + math.cos(math.pi * min(step, cfg.steps) / max(cfg.steps, 1)))
    return cfg.lr * warm * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cos)


def to_tensor(batch: list[np.ndarray]) -> torch.Tensor:
    """list of (H, W) uint8 or float [0,1] -> (B, 1, H, W) float32 in [0, 1]."""
    arr = np.stack(batch).astype(np.float32)
    if batch[0].dtype == np.uint8:
        arr /= 255.0
    return torch.from_numpy(arr)[:, None]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = F.mse_loss(a.clamp(0, 1), b.clamp(0, 1)).item()
    return 10 * math.log10(1.0 / max(mse, 1e-12))


# ---------------------------------------------------------------------------------------------
class Trainer:
    def __init__(self, cfg: TrainConfig, images: list[np.ndarray] | None = None,
                 val_images: list[np.ndarray] | None = None):
        self.cfg = cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.model = LMFusionNet(preset(cfg.model))
        if cfg.stage == 2:
            load_state_into(self.model.encoder, Path(cfg.init), "encoder.")
            load_state_into(self.model.decoder, Path(cfg.init), "decoder.")
            for p in list(self.model.encoder.parameters()) + list(self.model.decoder.parameters()):
                p.requires_grad_(False)
            if cfg.init_lmf:
                load_state_into(self.model.lmf, Path(cfg.init_lmf), "lmf.")
            self.trained = self.model.lmf
        else:
            self.trained = torch.nn.ModuleList([self.model.encoder, self.model.decoder])
        named = list(self.trained.named_parameters())
        groups = [{"params": [p for n, p in named if "global_affine" not in n], "lr_mult": 1.0},
                  {"params": [p for n, p in named if "global_affine" in n], "lr_mult": cfg.global_lr_mult}]
        self.opt = make_optimizer(cfg, [g for g in groups if g["params"]])
        self.rng = np.random.default_rng(cfg.seed)
        self.smoke = SmokeConfig(kinds=tuple(cfg.smoke_kinds), p_clean=cfg.p_clean, tau_max=tuple(cfg.tau_max),
                                 airlight=tuple(cfg.airlight), p_dark_smoke=cfg.p_dark_smoke)
        if images is None:
            images = D.visible_training_images() if cfg.images == "visible" else D.training_images()
        self.images = images
        self.val = val_images if val_images is not None else self._default_val()
        self.step, self.elapsed = 0, 0.0
        self.out = cfg.out_dir
        self.out.mkdir(parents=True, exist_ok=True)

    def _default_val(self) -> list[np.ndarray]:
        import cv2
        out = []
        for p in D.roadscene_pairs("test")[: self.cfg.val_images]:
            vis, ir = D.load_roadscene_pair(p)
            out.append(cv2.cvtColor(vis, cv2.COLOR_BGR2GRAY))
            if self.cfg.stage == 1:
                out.append(ir)
        return out

    # -- batches ---------------------------------------------------------------------------
    def _crops(self) -> list[np.ndarray]:
        idx = self.rng.integers(0, len(self.images), self.cfg.batch)
        crops = [D.random_crop(self.images[i], self.cfg.crop, self.rng) for i in idx]
        return [D.stretch_contrast(c) if self.rng.random() < self.cfg.p_stretch else c for c in crops]

    def _smoke_pairs(self, clean: list[np.ndarray], rng: np.random.Generator, force: bool = False):
        smoky = [add_smoke(c.astype(np.float32) / 255, rng, self.smoke, force_smoke=force).smoky for c in clean]
        return to_tensor(smoky), to_tensor(clean)

    # -- losses ----------------------------------------------------------------------------
    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        m, c = self.model, self.cfg
        if c.stage == 1:
            rec = m.decoder(m.encoder(x))
            return F.l1_loss(rec, x) + c.ssim_weight * (1 - ssim(rec, x))
        with torch.no_grad():
            z_s, z_c = m.encoder(x), m.encoder(y)
        pred = m.lmf(z_s)
        dist = F.l1_loss if c.pixel_loss == "l1" else (lambda a, b: F.mse_loss(a, b).add(1e-12).sqrt())
        loss = dist(pred, z_c) + (1 - ms_ssim(pred, z_c, scales=c.msssim_scales))
        if c.pixel_weight:
            loss = loss + c.pixel_weight * dist(m.decoder(pred), y)
        return loss

    # -- validation ------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        self.model.eval()
        s = self.cfg.val_crop
        crops = []
        for img in self.val:
            h, w = img.shape
            cs = min(s, h - h % 8, w - w % 8)
            y0, x0 = (h - cs) // 2, (w - cs) // 2
            crops.append(img[y0:y0 + cs, x0:x0 + cs])
        out: dict[str, list[float]] = {}
        for i, c in enumerate(crops):
            clean = to_tensor([c])
            if self.cfg.stage == 1:
                out.setdefault("val_psnr_recon", []).append(psnr(self.model.reconstruct(clean), clean))
                out.setdefault("val_loss", []).append(self.loss(clean).item())
                continue
            smoky, _ = self._smoke_pairs([c], np.random.default_rng(1000 + i), force=True)
            out.setdefault("val_loss", []).append(self.loss(smoky, clean).item())
            out.setdefault("val_psnr_smoky", []).append(psnr(smoky, clean))
            out.setdefault("val_psnr_clear_smoky", []).append(psnr(self.model.clear(smoky), clean))
            out.setdefault("val_psnr_clear_clean", []).append(psnr(self.model.clear(clean), clean))
        self.model.train()
        return {k: float(np.mean(v)) for k, v in out.items()}

    # -- checkpoints -----------------------------------------------------------------------
    @property
    def ckpt_path(self) -> Path:
        return self.out / "checkpoint.safetensors"

    def save_checkpoint(self) -> None:
        tensors = {f"model.{k}": v.detach().contiguous() for k, v in self.model.state_dict().items()}
        sd = self.opt.state_dict()
        scalars: dict[str, Any] = {}
        for idx, st in sd["state"].items():
            for k, v in st.items():
                if torch.is_tensor(v):
                    tensors[f"opt.{idx}.{k}"] = v.contiguous()
                else:
                    scalars[f"{idx}.{k}"] = v
        meta = {"step": str(self.step), "elapsed": str(self.elapsed),
                "rng": json.dumps(self.rng.bit_generator.state), "opt_scalars": json.dumps(scalars),
                "train_config": json.dumps(dataclasses.asdict(self.cfg))}
        tmp = self.ckpt_path.with_suffix(".tmp")
        save_file(tensors, str(tmp), metadata=meta)
        tmp.replace(self.ckpt_path)

    def try_resume(self) -> bool:
        if not self.ckpt_path.exists():
            return False
        from safetensors import safe_open
        with safe_open(str(self.ckpt_path), framework="pt") as f:
            meta = f.metadata()
        t = load_file(str(self.ckpt_path))
        self.model.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")})
        sd = self.opt.state_dict()
        state: dict[int, dict[str, Any]] = {}
        for k, v in t.items():
            if k.startswith("opt."):
                _, idx, name = k.split(".", 2)
                state.setdefault(int(idx), {})[name] = v
        for key, v in json.loads(meta["opt_scalars"]).items():
            idx, name = key.split(".", 1)
            state.setdefault(int(idx), {})[name] = v
        sd["state"] = state
        self.opt.load_state_dict(sd)
        self.step, self.elapsed = int(meta["step"]), float(meta["elapsed"])
        self.rng.bit_generator.state = json.loads(meta["rng"])
        return True

    def export(self, metrics: dict[str, float]) -> Path:
        prov = {"training_commit": git_commit(), "stage": self.cfg.stage, "steps": self.step,
                "wall_minutes": round(self.elapsed / 60, 1), "hardware": platform.processor() or platform.machine(),
                "torch_threads": torch.get_num_threads(), "train_config": dataclasses.asdict(self.cfg),
                "data": "RoadScene train split (index % 10 != 0), TNO (no smoke scenes), TNO sequences, "
                        "VIFB, from ../shared/data; never LLVIP or SOTS",
                "validation": metrics}
        path = self.out / "model.safetensors"
        save_model(self.model, path, prov)
        return path

    def _keep_best(self, metrics: dict[str, float]) -> None:
        """Stage 2: write best.safetensors whenever the validation score improves, so a run that
        drifts later (fine-tuning can) still leaves its best weights. The score is the mean of
        the smoky and the clean clear() PSNR: removing smoke and leaving clean frames alone."""
        if self.cfg.stage != 2 or "val_psnr_clear_smoky" not in metrics:
            return
        score = 0.5 * (metrics["val_psnr_clear_smoky"] + min(metrics["val_psnr_clear_clean"], 45.0))
        best = self.out / "best.json"
        prev = json.loads(best.read_text())["score"] if best.exists() else -1e9
        if score > prev:
            save_model(self.model, self.out / "best.safetensors",
                       {"steps": self.step, "validation": metrics, "train_config": dataclasses.asdict(self.cfg),
                        "training_commit": git_commit()})
            best.write_text(json.dumps({"score": score, "step": self.step, **metrics}))

    # -- loop ------------------------------------------------------------------------------
    def run(self, until: int | None = None) -> dict[str, float]:
        """Train to cfg.steps (or stop at step ``until`` with a checkpoint); returns val metrics."""
        c = self.cfg
        resumed = self.try_resume()
        print(f"[train] {c.name}: stage {c.stage}, model {c.model}, {len(self.images)} images, "
              f"{'resumed at step ' + str(self.step) if resumed else 'from scratch'} -> {self.out}", flush=True)
        log = open(self.out / "loss_log.csv", "a", newline="")
        vlog = open(self.out / "val_log.csv", "a", newline="")
        lw, vw = csv.writer(log), None
        if not resumed:
            lw.writerow(["step", "elapsed_s", "loss", "lr"])
        metrics: dict[str, float] = {}
        self.model.train()
        bar = tqdm(total=c.steps, initial=self.step, desc=f"{c.name}", mininterval=5, dynamic_ncols=True)
        t_start = time.perf_counter() - self.elapsed
        try:
            while self.step < c.steps:
                lr = lr_at(c, self.step)
                for g in self.opt.param_groups:
                    g["lr"] = lr * g.get("lr_mult", 1.0)
                crops = self._crops()
                if c.stage == 1:
                    loss = self.loss(to_tensor(crops))
                else:
                    loss = self.loss(*self._smoke_pairs(crops, self.rng))
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
                self.step += 1
                self.elapsed = time.perf_counter() - t_start
                lw.writerow([self.step, f"{self.elapsed:.1f}", f"{loss.item():.5f}", f"{lr:.3g}"])
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.2g}")
                last = self.step == c.steps
                if self.step % c.val_every == 0 or last:
                    metrics = self.validate()
                    if vw is None:
                        vw = csv.DictWriter(vlog, ["step", "elapsed_s", *metrics])
                        if vlog.tell() == 0:
                            vw.writeheader()
                    vw.writerow({"step": self.step, "elapsed_s": round(self.elapsed, 1),
                                 **{k: round(v, 4) for k, v in metrics.items()}})
                    vlog.flush()
                    bar.write(f"[val] step {self.step}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
                    self._keep_best(metrics)
                if self.step % c.ckpt_every == 0 or last:
                    log.flush()
                    self.save_checkpoint()
                    self.export(metrics)
                if c.max_minutes and self.elapsed > c.max_minutes * 60:
                    bar.write(f"[train] wall-time budget of {c.max_minutes} min reached at step {self.step}")
                    self.save_checkpoint()
                    break
                if until is not None and self.step >= until:
                    self.save_checkpoint()
                    break
        finally:
            bar.close()
            log.close()
            vlog.close()
        if not metrics:
            metrics = self.validate()
        self.export(metrics)
        return metrics
