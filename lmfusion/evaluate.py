"""Evaluation: smoke removal, reconstruction and fusion quality, beside classical baselines.

    python -m lmfusion evaluate --weights weights --out docs/eval

Writes ``<out>/results.md`` (Markdown tables), ``<out>/results.json`` and ``<out>/grid.png``
(rows of smoky VIS | IR | average | Laplacian | LMFusion | clear(VIS)).

With-reference rows (a clean twin exists):
- SOTS-indoor (50 hazy/clear pairs, evaluation only): Y PSNR/SSIM of clear(hazy) vs clear.
- RoadScene test split (index % 10 == 0), clean VIS: clear(clean) vs itself (leave clean alone).
- RoadScene test split with synthetic smoke (seed = 1000 + index): clear(smoky) vs clean, and
  the fusion metrics of F(smoky VIS, smoky IR) computed against the clean VIS.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from . import baselines, data as D, metrics as M
from .api import Fuser
from .smoke import SmokeConfig, add_smoke

EVAL_SMOKE = SmokeConfig(p_clean=0.0, tau_max=(0.5, 2.5))  # every test image gets smoke


def y_of(img: np.ndarray) -> np.ndarray:
    return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2YCrCb)[..., 0]


@dataclass
class SmokyPair:
    name: str
    vis_clean: np.ndarray   # HxWx3 BGR uint8
    vis_smoky: np.ndarray
    ir_clean: np.ndarray    # HxW uint8
    ir_smoky: np.ndarray


def smoky_test_pairs(limit: int | None = None) -> list[SmokyPair]:
    out = []
    for i, p in enumerate(D.roadscene_pairs("test")[:limit]):
        vis, ir = D.load_roadscene_pair(p)
        s = add_smoke(vis.astype(np.float32) / 255, np.random.default_rng(1000 + i), EVAL_SMOKE,
                      ir=ir.astype(np.float32) / 255, force_smoke=True)
        u8 = lambda a: np.clip(a * 255 + 0.5, 0, 255).astype(np.uint8)
        out.append(SmokyPair(p.name, vis, u8(s.smoky), ir, u8(s.ir)))
    return out


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def eval_clear(fusers: dict[str, Fuser], sots_limit: int | None, pairs: list[SmokyPair]) -> dict:
    res: dict[str, dict[str, float]] = {}
    sots = D.sots_pairs()[:sots_limit]
    hazy = [D.read_color(p.vis) for p in sots]
    clear = [D.read_color(p.ir) for p in sots]
    res["input (no processing)"] = {
        "SOTS PSNR": np.mean([M.psnr(y_of(c), y_of(h)) for h, c in zip(hazy, clear)]),
        "SOTS SSIM": np.mean([M.ssim(y_of(c), y_of(h)) for h, c in zip(hazy, clear)]),
        "smoke PSNR": np.mean([M.psnr(y_of(p.vis_clean), y_of(p.vis_smoky)) for p in pairs]),
        "smoke SSIM": np.mean([M.ssim(y_of(p.vis_clean), y_of(p.vis_smoky)) for p in pairs]),
        "clean PSNR": float("inf"),
    }
    for name, f in fusers.items():
        out_sots = [y_of(f.clear(h)) for h in hazy]
        out_smoke = [y_of(f.clear(p.vis_smoky)) for p in pairs]
        out_clean = [y_of(f.clear(p.vis_clean)) for p in pairs]
        res[f"clear() {name}"] = {
            "SOTS PSNR": np.mean([M.psnr(y_of(c), o) for c, o in zip(clear, out_sots)]),
            "SOTS SSIM": np.mean([M.ssim(y_of(c), o) for c, o in zip(clear, out_sots)]),
            "smoke PSNR": np.mean([M.psnr(y_of(p.vis_clean), o) for p, o in zip(pairs, out_smoke)]),
            "smoke SSIM": np.mean([M.ssim(y_of(p.vis_clean), o) for p, o in zip(pairs, out_smoke)]),
            "clean PSNR": np.mean([M.psnr(y_of(p.vis_clean), o) for p, o in zip(pairs, out_clean)]),
        }
    return {k: {kk: float(vv) for kk, vv in v.items()} for k, v in res.items()}


def eval_reconstruction(weights: Path) -> dict[str, float]:
    """Autoencoder PSNR (Y) on the RoadScene test split, VIS-Y and IR, full images."""
    import torch
    from .weights import load_model
    model, _ = load_model(weights)
    vis_p, ir_p = [], []
    with torch.inference_mode():
        for p in D.roadscene_pairs("test"):
            vis, ir = D.load_roadscene_pair(p)
            for img, acc in ((y_of(vis), vis_p), (ir, ir_p)):
                x = torch.from_numpy(img.astype(np.float32) / 255)[None, None]
                rec = model.reconstruct(x)[0, 0].numpy() * 255
                acc.append(M.psnr(img.astype(np.float64), np.clip(rec, 0, 255)))
    return {"VIS-Y PSNR": float(np.mean(vis_p)), "IR PSNR": float(np.mean(ir_p))}


def eval_fusion(methods: dict[str, Callable], pairs: list[SmokyPair], smoky: bool) -> dict:
    """Fusion metrics of F(VIS, IR) against the clean VIS (and the IR), per method, mean over pairs."""
    res = {}
    for name, fn in methods.items():
        rows, secs = [], []
        for p in pairs:
            vis, ir = (p.vis_smoky, p.ir_smoky) if smoky else (p.vis_clean, p.ir_clean)
            t0 = time.perf_counter()
            fused = fn(vis, ir)
            secs.append(time.perf_counter() - t0)
            r = M.fusion_metrics(p.vis_clean, p.ir_clean, fused)
            r["SSIM(F,VIS)"] = M.ssim(y_of(p.vis_clean), y_of(fused))
            rows.append(r)
        res[name] = {**_mean(rows), "ms/pair": 1000 * float(np.median(secs))}
    return res


def make_grid(methods: dict[str, Callable], clearer: Fuser | None, pairs: list[SmokyPair],
              path: Path, rows: int = 4, height: int = 200) -> None:
    tiles = []
    for p in pairs[:rows]:
        row = [p.vis_smoky, cv2.cvtColor(p.ir_smoky, cv2.COLOR_GRAY2BGR)]
        for fn in methods.values():
            f = fn(p.vis_smoky, p.ir_smoky)
            row.append(f if f.ndim == 3 else cv2.cvtColor(f, cv2.COLOR_GRAY2BGR))
        if clearer is not None:
            row.append(clearer.clear(p.vis_smoky))
        tile_w = round(height * 4 / 3)  # one cell size for every image, so the columns line up
        tiles.append(np.hstack([cv2.resize(t, (tile_w, height), interpolation=cv2.INTER_AREA) for t in row]))
    labels = ["smoky VIS", "IR", *methods.keys()] + (["clear(VIS)"] if clearer is not None else [])
    width, w0 = tiles[0].shape[1], tiles[0].shape[1] // len(labels)
    head = np.zeros((28, width, 3), np.uint8)
    for k, lab in enumerate(labels):
        cv2.putText(head, lab, (4 + k * w0, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.vstack([head, *tiles]))


def _table(title: str, rows: dict[str, dict[str, float]], fmt: str = "{:.3f}") -> str:
    cols = list(next(iter(rows.values())).keys())
    out = [f"### {title}", "", "| | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, r in rows.items():
        out.append(f"| {name} | " + " | ".join(fmt.format(r[c]) for c in cols) + " |")
    return "\n".join(out) + "\n"


def run(fusers: dict[str, Fuser], weights: dict[str, Path], out: Path,
        sots_limit: int | None = None, limit: int | None = None) -> dict:
    """Evaluate each named Fuser (its weights file in ``weights``) and write the report."""
    t0 = time.time()
    pairs = smoky_test_pairs(limit)
    results: dict = {"clear": eval_clear(fusers, sots_limit, pairs)}
    results["reconstruction"] = {n: eval_reconstruction(w) for n, w in weights.items()}
    methods: dict[str, Callable] = {"average": baselines.fuse_average, "laplacian": baselines.fuse_laplacian}
    for n, f in fusers.items():
        methods[f"LMFusion {n} ({f.strategy})"] = f.fuse
        if f.strategy != "average":
            methods[f"LMFusion {n} (average)"] = lambda v, i, f=f: f.fuse(v, i, strategy="average")
    results["fusion_smoky"] = eval_fusion(methods, pairs, smoky=True)
    results["fusion_clean"] = eval_fusion(methods, pairs, smoky=False)
    out.mkdir(parents=True, exist_ok=True)
    grid_methods = {k: v for k, v in methods.items() if "(average)" not in k or "paper" in k}
    make_grid(grid_methods, next(iter(fusers.values()), None), pairs, out / "grid.png")
    n_sots = len(D.sots_pairs()[:sots_limit])
    md = [f"# LMFusion evaluation\n\nRoadScene test split: {len(pairs)} pairs (index % 10 == 0); "
          f"SOTS-indoor: {n_sots} pairs. Generated by `python -m lmfusion evaluate` in "
          f"{(time.time() - t0) / 60:.1f} min.\n",
          _table("Smoke removal, Y channel (PSNR dB / SSIM against the clean image)", results["clear"]),
          _table("Autoencoder reconstruction on the test split (dB)", results["reconstruction"]),
          _table("Fusion of smoky VIS + IR, metrics against the clean VIS", results["fusion_smoky"]),
          _table("Fusion of clean VIS + IR", results["fusion_clean"]),
          "Fusion metrics: EN, SD, SF, AG of F; MI = MI(V,F)+MI(I,F); VIF = VIFp(V,F)+VIFp(I,F); "
          "Qabf(V,I,F); SSIM = (SSIM(F,V)+SSIM(F,I))/2; SSIM(F,VIS) alone. V is the clean VIS.\n",
          "![grid](grid.png)\n"]
    (out / "results.md").write_text("\n".join(md))
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return results
