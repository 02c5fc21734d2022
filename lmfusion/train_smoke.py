"""Train the smoke model (SmokeNet) with direct supervision: our smoke synthesis knows t and A.

    python -m lmfusion train smoke --out runs/smoke --steps 3000
    python -m lmfusion train smoke --out runs/ft --init weights/lmfusion.safetensors --steps 800 --lr 5e-4

Data: clean colour VIS with its IR (RoadScene train split, less the validation slice; VIFB) and
gray VIS with IR (TNO), smoke drawn per sample by ``lmfusion.smoke.add_smoke`` (``TRAIN_SMOKE``:
every smoke kind, and region-depth haze over the image's own regions); a third of the samples
drop the IR so the model also works from VIS alone. Each clean image first gets a random
contrast, gamma and saturation (``augment``): without it the model learned "high local contrast
means clear air" from the few scene types here and left high-contrast hazy scenes (indoor rooms)
untouched. Validation: the RoadScene train pairs with index % 10 == 5, never trained on. The
test split and SOTS are not touched here.
Loss: L1 on t, L1 on the airlight A, and L1 on the dehazed image J against the clean image.
Checkpoints every ``ckpt_every`` steps to <out>/smoke_last.safetensors (and smoke_<step>, to
choose from); rerunning the command resumes. ``--init`` starts from a model file's SmokeNet.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from safetensors.torch import load_file, save_file

from . import data as D
from .smoke import KINDS, SCENE_KIND, SmokeConfig, add_smoke
from .smoke_model import SmokeNet, SmokeNetConfig, dehaze

# region-depth haze twice as often as each other kind: it is the one that looks like indoor haze
TRAIN_SMOKE = SmokeConfig(p_clean=0.25, tau_max=(0.1, 3.0), kinds=KINDS + (SCENE_KIND, SCENE_KIND))
VAL_SMOKE = SmokeConfig(p_clean=0.0, tau_max=(0.5, 2.5))  # as the evaluation's smoke
VAL_HAZE = SmokeConfig(p_clean=0.0, kinds=("depth", "uniform"), tau_max=(0.3, 2.0),
                       airlight=(0.7, 1.0), p_dark_smoke=0.0, airlight_variation=0.0)
# haze the way indoor haze sets are made (RESIDE: grey airlight 0.7-1.0, t = exp(-beta * depth), no
# noise), over a pseudo-depth that follows the image's regions
VAL_SCENE_HAZE = SmokeConfig(p_clean=0.0, kinds=(SCENE_KIND,), tau_max=(0.8, 3.0), airlight=(0.7, 1.0),
                             p_dark_smoke=0.0, airlight_variation=0.0, noise_std=(0.0, 0.0))


def is_validation(index: int) -> bool:
    """RoadScene train-split pairs kept out of smoke-model training (index in the sorted list)."""
    return index % 10 == 5


def load_pairs(max_side: int = 320) -> tuple[list, list]:
    """-> (train, val): lists of (vis BGR uint8, ir gray uint8) at most ``max_side`` long."""
    train, val = [], []
    root = D.data_root()
    for i, p in enumerate(D.roadscene_pairs("all", root)):
        if i % 10 == 0:
            continue  # the test split
        vis, ir = D.load_roadscene_pair(p)
        pair = (D._limit_side(vis, max_side), D._limit_side(ir, max_side))
        (val if is_validation(i) else train).append(pair)
    for name in sorted((root / "vifb" / "vis").iterdir()):
        vis, ir = D.read_color(name), D.read_gray(root / "vifb" / "ir" / name.name)
        train.append((D._limit_side(vis, max_side), D._limit_side(cv2.resize(ir, vis.shape[1::-1]), max_side)))
    for d in sorted({p.parent for p in (root / "tno").rglob("*") if p.suffix.lower() in D.IMAGE_EXTS}):
        files = sorted(p for p in d.iterdir() if p.suffix.lower() in D.IMAGE_EXTS)
        vis = [p for p in files if "vis" in p.stem.lower() or p.stem.endswith("_r") or p.stem.startswith("1_")]
        ir = [p for p in files if p.stem.lower().startswith("ir") or p.stem.startswith("2_")]
        if len(vis) == 1 and len(ir) == 1:
            v, r = D.read_gray(vis[0]), D.read_gray(ir[0])
            if v.shape == r.shape:
                train.append((cv2.cvtColor(D._limit_side(v, max_side), cv2.COLOR_GRAY2BGR), D._limit_side(r, max_side)))
    return train, val


def augment(rgb: np.ndarray, rng: np.random.Generator, gain: tuple[float, float] = (0.7, 2.2)) -> np.ndarray:
    """Random contrast (gain around the mean), gamma and saturation of a float RGB (H,W,3) image."""
    m = rgb.mean((0, 1), keepdims=True)
    out = np.clip((rgb - m) * rng.uniform(*gain) + m, 0, 1) ** rng.uniform(0.7, 1.4)
    gray = out.mean(2, keepdims=True)
    return np.clip(gray + (out - gray) * rng.uniform(0.5, 1.5), 0, 1).astype(np.float32)


def make_sample(vis: np.ndarray, ir: np.ndarray, rng: np.random.Generator, cfg: SmokeConfig,
                crop: int | None = None, force: bool = False, gain: tuple[float, float] | None = None):
    """One synthetic training pair -> dict of float32 arrays: smoky RGB (3,H,W), ir (1,H,W),
    clean RGB (3,H,W), t (1,H,W)."""
    rgb = vis[..., ::-1].astype(np.float32) / 255
    irf = ir.astype(np.float32) / 255
    if crop is not None:
        stack = D.random_crop(np.dstack([rgb, irf]), crop, rng)
        rgb, irf = stack[..., :3], stack[..., 3]
    if gain is not None:
        rgb = augment(rgb, rng, gain)
    s = add_smoke(rgb, rng, cfg, ir=irf, force_smoke=force)
    chw = lambda a: np.ascontiguousarray(a.transpose(2, 0, 1) if a.ndim == 3 else a[None])
    return {"smoky": chw(s.smoky), "ir": chw(s.ir), "clean": chw(rgb), "t": chw(s.transmission),
            "a": np.array([[[s.airlight]]], np.float32)}


def batch(samples: list[dict]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.stack([s[k] for s in samples])) for k in samples[0]}


def val_sets(val: list, seed: int = 2000) -> dict[str, list[dict]]:
    """Validation samples: the evaluation's smoke (with IR) and SOTS-like depth haze (no IR)."""
    smoke = [make_sample(v, i, np.random.default_rng(seed + k), VAL_SMOKE, force=True) for k, (v, i) in enumerate(val)]
    haze = [make_sample(v, i, np.random.default_rng(seed + 500 + k), VAL_HAZE, force=True) for k, (v, i) in enumerate(val)]
    # the same haze over the scenes at 1.8x their contrast: rooms and other high-contrast scenes
    hc = [make_sample(v, i, np.random.default_rng(seed + 500 + k), VAL_HAZE, force=True, gain=(1.8, 1.8))
          for k, (v, i) in enumerate(val)]
    scene = [make_sample(v, i, np.random.default_rng(seed + 800 + k), VAL_SCENE_HAZE, force=True)
             for k, (v, i) in enumerate(val)]
    scene_hc = [make_sample(v, i, np.random.default_rng(seed + 800 + k), VAL_SCENE_HAZE, force=True, gain=(1.8, 1.8))
                for k, (v, i) in enumerate(val)]
    clean = [{**s, "smoky": s["clean"], "t": np.ones_like(s["t"])} for s in smoke]
    return {"smoke+IR": smoke, "haze, VIS only": haze, "haze, high contrast, VIS only": hc,
            "region-depth haze, VIS only": scene, "region-depth haze, high contrast, VIS only": scene_hc,
            "clean": clean}


def y_psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Y PSNR (dB) of two (3,H,W) RGB tensors in [0, 1], at 8 bits."""
    w = torch.tensor([0.299, 0.587, 0.114])[:, None, None]
    ya = torch.round((a * w).sum(0) * 255)
    yb = torch.round((b * w).sum(0) * 255)
    mse = float(((ya - yb) ** 2).mean())
    return 10 * np.log10(255 ** 2 / max(mse, 1e-10))


@torch.no_grad()
def validate(net: SmokeNet, sets: dict[str, list[dict]]) -> dict[str, dict[str, float]]:
    """Per set: Y PSNR of J and of the input against clean, MAE of t."""
    net.eval()
    res = {}
    for name, samples in sets.items():
        ps, p_in, mae = [], [], []
        for s in samples:
            x = torch.from_numpy(s["smoky"])[None]
            ir = None if "VIS only" in name else torch.from_numpy(s["ir"])[None]
            t, a = net(x, ir)
            j = dehaze(x, t, a, net.cfg.t0)[0]
            c = torch.from_numpy(s["clean"])
            ps.append(y_psnr(j, c))
            p_in.append(y_psnr(x[0], c))
            mae.append(float((t[0] - torch.from_numpy(s["t"])).abs().mean()))
        res[name] = {"input dB": float(np.mean(p_in)), "J dB": float(np.mean(ps)), "t MAE": float(np.mean(mae))}
    net.train()
    return res


@dataclass
class TrainSmokeConfig:
    steps: int = 2500
    batch: int = 8
    crop: int = 192
    lr: float = 2e-3
    p_no_ir: float = 0.35
    j_weight: float = 1.0
    a_weight: float = 3.0                    # L1 on the airlight (the synthesis knows it)
    ckpt_every: int = 200
    seed: int = 0
    gain: tuple[float, float] = (0.7, 2.2)   # contrast augmentation range (``augment``)


def save_smoke(net: SmokeNet, path: Path, meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().float().contiguous() for k, v in net.state_dict().items()}, str(tmp),
              metadata={"format": "smokenet", "meta": json.dumps(meta)})
    tmp.replace(path)


def train(out: Path, cfg: TrainSmokeConfig = TrainSmokeConfig(), net_cfg: SmokeNetConfig = SmokeNetConfig(),
          resume: bool = False, init: Path | None = None, log=print) -> SmokeNet:
    """Train SmokeNet into ``out``; ``resume`` continues <out>/smoke_last; otherwise ``init`` (a
    model weights file) gives the starting SmokeNet, for fine-tuning."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    train_pairs, val_pairs = load_pairs()
    sets = val_sets(val_pairs)
    net = SmokeNet(net_cfg)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    start = 0
    last = out / "smoke_last.safetensors"
    if resume and last.exists():
        net.load_state_dict(load_file(str(last)))
        state = json.loads((out / "smoke_last.json").read_text())
        start = state["step"]
        rng = np.random.default_rng(cfg.seed + start)
    elif init is not None:
        from .weights import load_model
        net.load_state_dict(load_model(init)[0].smoke.state_dict())
        log(f"smoke model: starting from the SmokeNet of {init}")
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + np.cos(np.pi * min(1.0, (s + start) / cfg.steps))))
    log(f"smoke model: {len(train_pairs)} training pairs, {len(val_pairs)} validation; start at step {start}")
    log(json.dumps(validate(net, sets)))
    t0 = time.time()
    for step in range(start, cfg.steps):
        smp = [make_sample(*train_pairs[rng.integers(len(train_pairs))], rng, TRAIN_SMOKE, cfg.crop, gain=cfg.gain)
               for _ in range(cfg.batch)]
        b = batch(smp)
        drop = torch.from_numpy(rng.random(cfg.batch) < cfg.p_no_ir)
        t_hat_ir, a_ir = net(b["smoky"], b["ir"])
        t_hat_no, a_no = net(b["smoky"], None)
        m = drop[:, None, None, None].float()
        t_hat = m * t_hat_no + (1 - m) * t_hat_ir
        a_hat = m[..., :1, :1] * a_no + (1 - m[..., :1, :1]) * a_ir
        j = dehaze(b["smoky"], t_hat, a_hat, net_cfg.t0)
        has_smoke = (b["t"].amin((1, 2, 3)) < 0.99).float()   # A means nothing where there is no smoke
        a_err = ((a_hat - b["a"]).abs().mean((1, 2, 3)) * has_smoke).mean()
        loss = (t_hat - b["t"]).abs().mean() + cfg.j_weight * (j - b["clean"]).abs().mean() + cfg.a_weight * a_err
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 50 == 0:
            log(f"step {step + 1} loss {float(loss.detach()):.4f} {time.time() - t0:.0f}s")
        if (step + 1) % cfg.ckpt_every == 0 or step + 1 == cfg.steps:
            save_smoke(net, last, {"step": step + 1})
            save_smoke(net, out / f"smoke_{step + 1}.safetensors", {"step": step + 1})   # to choose from
            (out / "smoke_last.json").write_text(json.dumps({"step": step + 1}))
            log(f"val step {step + 1}: " + json.dumps(validate(net, sets)))
    return net


def assemble(base: Path, smoke_ckpt: Path, out: Path, strategy: str = "transmission",
             provenance: dict | None = None) -> Path:
    """A full model file: the autoencoder of ``base`` (a weights file), the trained SmokeNet of
    ``smoke_ckpt`` as the mapping network, and ``strategy`` as its fusion rule."""
    import dataclasses
    from .networks import LMFusionNet
    from .weights import load_model, save_model
    base_net, base_prov = load_model(base)
    cfg = dataclasses.replace(base_net.cfg, mapping="smoke", strategy=strategy)
    net = LMFusionNet(cfg)
    net.encoder.load_state_dict(base_net.encoder.state_dict())
    net.decoder.load_state_dict(base_net.decoder.state_dict())
    net.smoke.load_state_dict(load_file(str(smoke_ckpt)))
    save_model(net, out, {"autoencoder": base_prov.get("stage1", base_prov), **(provenance or {})})
    return out
