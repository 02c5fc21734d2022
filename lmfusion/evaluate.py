"""Evaluation: smoke removal, the smoke map and fusion quality, beside classical baselines.

    python -m lmfusion evaluate --out docs/eval [--compare previous=path/to/old.safetensors]

Writes ``<out>/results.md`` (Markdown tables), ``<out>/results.json`` and ``<out>/grid.png``
(rows of smoky VIS | IR | t | clear | fused | each baseline).

With-reference rows (a clean twin exists):
- SOTS-indoor (50 hazy/clear pairs, evaluation only): Y PSNR/SSIM of clear(hazy), VIS alone.
- RoadScene test split (index % 10 == 0) with synthetic smoke (seed = 1000 + index), with IR:
  clear(smoky VIS, smoky IR) vs the clean VIS, per smoke density (thin / medium / thick by the
  true mean t), the estimated t against the true t, and the fusion metrics of F(smoky VIS,
  smoky IR) computed against the clean VIS and IR, with pair-by-pair counts.
- The same pairs without smoke: clear(clean) vs itself (leave clean alone), and fusion.
Baselines: the dark channel prior with a guided filter for clear(); the average and the
Laplacian pyramid for fuse().
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
DENSITY = (("thin", 0.6, 1.01), ("medium", 0.4, 0.6), ("thick", 0.0, 0.4))  # by the true mean t


def y_of(img: np.ndarray) -> np.ndarray:
    return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2YCrCb)[..., 0]


@dataclass
class SmokyPair:
    name: str
    vis_clean: np.ndarray   # HxWx3 BGR uint8
    vis_smoky: np.ndarray
    ir_clean: np.ndarray    # HxW uint8
    ir_smoky: np.ndarray
    t: np.ndarray | None = None  # the true transmission, HxW float32

    @property
    def density(self) -> str:
        m = 1.0 if self.t is None else float(self.t.mean())
        return next(name for name, lo, hi in DENSITY if lo <= m < hi)


def smoky_pairs(pairs: list[D.Pair], seed: int, cfg: SmokeConfig = EVAL_SMOKE) -> list[SmokyPair]:
    out = []
    u8 = lambda a: np.clip(a * 255 + 0.5, 0, 255).astype(np.uint8)
    for i, p in enumerate(pairs):
        vis, ir = D.load_roadscene_pair(p)
        s = add_smoke(vis.astype(np.float32) / 255, np.random.default_rng(seed + i), cfg,
                      ir=ir.astype(np.float32) / 255, force_smoke=True)
        out.append(SmokyPair(p.name, vis, u8(s.smoky), ir, u8(s.ir), s.transmission))
    return out


def smoky_test_pairs(limit: int | None = None) -> list[SmokyPair]:
    return smoky_pairs(D.roadscene_pairs("test")[:limit], 1000)


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


Clearer = Callable[[np.ndarray, np.ndarray | None], np.ndarray]


def clear_methods(fusers: dict[str, Fuser]) -> dict[str, Clearer]:
    """The smoke removers to compare: the input itself, the dark channel prior, each model."""
    m: dict[str, Clearer] = {"input (no processing)": lambda v, i: v,
                             "dark channel prior (He 2009 + guided filter)": lambda v, i: baselines.dehaze_dcp(v)}
    for name, f in fusers.items():
        m[f"clear() {name}"] = lambda v, i, f=f: f.clear(v, i)
    return m


def eval_clear(methods: dict[str, Clearer], sots_limit: int | None, pairs: list[SmokyPair]) -> dict:
    """Y PSNR/SSIM per method: SOTS from VIS alone; our smoke with IR, per density; clean frames."""
    sots = D.sots_pairs()[:sots_limit]
    hazy = [D.read_color(p.vis) for p in sots]
    clear = [y_of(D.read_color(p.ir)) for p in sots]
    res: dict[str, dict[str, float]] = {}
    for name, fn in methods.items():
        out_sots = [y_of(fn(h, None)) for h in hazy]
        out_smoke = [y_of(fn(p.vis_smoky, p.ir_smoky)) for p in pairs]
        r = {"SOTS PSNR": np.mean([M.psnr(c, o) for c, o in zip(clear, out_sots)]),
             "SOTS SSIM": np.mean([M.ssim(c, o) for c, o in zip(clear, out_sots)])}
        ps = [M.psnr(y_of(p.vis_clean), o) for p, o in zip(pairs, out_smoke)]
        r["smoke PSNR"] = np.mean(ps)
        r["smoke SSIM"] = np.mean([M.ssim(y_of(p.vis_clean), o) for p, o in zip(pairs, out_smoke)])
        for d, _, _ in DENSITY:
            sel = [v for p, v in zip(pairs, ps) if p.density == d]
            r[f"{d} PSNR"] = np.mean(sel) if sel else float("nan")
        r["clean PSNR"] = np.mean([min(M.psnr(y_of(p.vis_clean), y_of(fn(p.vis_clean, p.ir_clean))), 99.0)
                                   for p in pairs])
        res[name] = r
    return {k: {kk: float(vv) for kk, vv in v.items()} for k, v in res.items()}


def eval_smoke_map(fusers: dict[str, Fuser], pairs: list[SmokyPair]) -> dict:
    """The estimated t against the true t: MAE and Pearson correlation, pooled over pixels."""
    res = {}
    for name, f in fusers.items():
        if f.smoke is None:
            continue
        mae, est_all, true_all = [], [], []
        for p in pairs:
            t = f.smoke_map(p.vis_smoky, p.ir_smoky)
            mae.append(float(np.abs(t - p.t).mean()))
            est_all.append(t[::4, ::4].ravel()), true_all.append(p.t[::4, ::4].ravel())
        e, tr = np.concatenate(est_all), np.concatenate(true_all)
        res[name] = {"t MAE": float(np.mean(mae)), "t correlation": float(np.corrcoef(e, tr)[0, 1])}
    return res


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
    """Fusion metrics of F(VIS, IR) against the clean VIS (and the IR), per method: the mean
    over pairs, the mean per smoke density, and the per-pair rows (key "pairs")."""
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
        res[name] = {**_mean(rows), "ms/pair": 1000 * float(np.median(secs)), "pairs": rows}
        if smoky:
            for d, _, _ in DENSITY:
                sel = [r for p, r in zip(pairs, rows) if p.density == d]
                if sel:
                    res[name][f"{d} Qabf"] = float(np.mean([r["Qabf"] for r in sel]))
                    res[name][f"{d} SSIM(F,VIS)"] = float(np.mean([r["SSIM(F,VIS)"] for r in sel]))
    return res


def ahead_counts(res: dict) -> dict[str, dict[str, int]]:
    """Per method: pairs whose SSIM(F,VIS) beats the average's and whose Qabf beats the
    Laplacian's, and pairs ahead on both."""
    avg, lap = res["average"]["pairs"], res["laplacian"]["pairs"]
    out = {}
    for name, r in res.items():
        if name in ("average", "laplacian"):
            continue
        s = [a["SSIM(F,VIS)"] > b["SSIM(F,VIS)"] for a, b in zip(r["pairs"], avg)]
        q = [a["Qabf"] > b["Qabf"] for a, b in zip(r["pairs"], lap)]
        out[name] = {"SSIM > average": sum(s), "Qabf > Laplacian": sum(q),
                     "both": sum(x and y for x, y in zip(s, q)), "pairs": len(s)}
    return out


def make_grid(methods: dict[str, Callable], clearer: Fuser | None, pairs: list[SmokyPair],
              path: Path, rows: int = 4, height: int = 200) -> None:
    """Rows of smoky VIS | IR | t (when the model has a smoke model) | clear | each method."""
    tiles = []
    with_t = clearer is not None and clearer.smoke is not None
    for p in pairs[:rows]:
        row = [p.vis_smoky, cv2.cvtColor(p.ir_smoky, cv2.COLOR_GRAY2BGR)]
        if with_t:
            t = clearer.smoke_map(p.vis_smoky, p.ir_smoky)
            row.append(cv2.applyColorMap((t * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS))
        if clearer is not None:
            row.append(clearer.clear(p.vis_smoky, p.ir_smoky))
        for fn in methods.values():
            f = fn(p.vis_smoky, p.ir_smoky)
            row.append(f if f.ndim == 3 else cv2.cvtColor(f, cv2.COLOR_GRAY2BGR))
        tile_w = round(height * 4 / 3)  # one cell size for every image, so the columns line up
        tiles.append(np.hstack([cv2.resize(t, (tile_w, height), interpolation=cv2.INTER_AREA) for t in row]))
    labels = (["smoky VIS", "IR"] + (["t (model)"] if with_t else []) + (["clear()"] if clearer is not None else [])
              + list(methods.keys()))
    width, w0 = tiles[0].shape[1], tiles[0].shape[1] // len(labels)
    head = np.zeros((28, width, 3), np.uint8)
    for k, lab in enumerate(labels):
        cv2.putText(head, lab[:28], (4 + k * w0, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.vstack([head, *tiles]))


def _table(title: str, rows: dict[str, dict[str, float]], fmt: str = "{:.3f}") -> str:
    rows = {k: {c: v for c, v in r.items() if c != "pairs"} for k, r in rows.items()}
    cols = list(next(iter(rows.values())).keys())
    out = [f"### {title}", "", "| | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, r in rows.items():
        out.append(f"| {name} | " + " | ".join(fmt.format(r[c]) if c in r else "" for c in cols) + " |")
    return "\n".join(out) + "\n"


def run(fusers: dict[str, Fuser], weights: dict[str, Path], out: Path,
        sots_limit: int | None = None, limit: int | None = None) -> dict:
    """Evaluate each named Fuser (its weights file in ``weights``) and write the report."""
    t0 = time.time()
    pairs = smoky_test_pairs(limit)
    results: dict = {"clear": eval_clear(clear_methods(fusers), sots_limit, pairs)}
    results["smoke_map"] = eval_smoke_map(fusers, pairs)
    results["reconstruction"] = {n: eval_reconstruction(w) for n, w in weights.items()}
    methods: dict[str, Callable] = {"average": baselines.fuse_average, "laplacian": baselines.fuse_laplacian}
    for n, f in fusers.items():
        methods[f"LMFusion {n} ({f.strategy})"] = f.fuse
    results["fusion_smoky"] = eval_fusion(methods, pairs, smoky=True)
    results["fusion_clean"] = eval_fusion(methods, pairs, smoky=False)
    results["ahead_smoky"] = ahead_counts(results["fusion_smoky"])
    results["density_counts"] = {d: sum(p.density == d for p in pairs) for d, _, _ in DENSITY}
    out.mkdir(parents=True, exist_ok=True)
    make_grid(methods, next(iter(fusers.values()), None), pairs, out / "grid.png")
    n_sots = len(D.sots_pairs()[:sots_limit])
    ahead = "\n".join(f"- {k}: SSIM(F,VIS) above the average's on {v['SSIM > average']}/{v['pairs']}, "
                      f"Qabf above the Laplacian's on {v['Qabf > Laplacian']}/{v['pairs']}, both on "
                      f"{v['both']}/{v['pairs']}" for k, v in results["ahead_smoky"].items())
    dens = ", ".join(f"{d} {n}" for d, n in results["density_counts"].items())
    md = [f"# LMFusion evaluation\n\nRoadScene test split: {len(pairs)} pairs (index % 10 == 0; smoke "
          f"density by the true mean t: {dens}); SOTS-indoor: {n_sots} pairs. Generated by "
          f"`python -m lmfusion evaluate` in {(time.time() - t0) / 60:.1f} min.\n",
          _table("Smoke removal, Y channel (PSNR dB / SSIM against the clean image; SOTS from VIS "
                 "alone, smoke with IR)", results["clear"]),
          _table("Smoke map: estimated t against the true t (smoky test split)", results["smoke_map"])
          if results["smoke_map"] else "",
          _table("Autoencoder reconstruction on the test split (dB)", results["reconstruction"]),
          _table("Fusion of smoky VIS + IR, metrics against the clean VIS", results["fusion_smoky"]),
          "Pair by pair (smoky):\n\n" + ahead + "\n",
          _table("Fusion of clean VIS + IR", results["fusion_clean"]),
          "Fusion metrics: EN, SD, SF, AG of F; MI = MI(V,F)+MI(I,F); VIF = VIFp(V,F)+VIFp(I,F); "
          "Qabf(V,I,F); SSIM = (SSIM(F,V)+SSIM(F,I))/2; SSIM(F,VIS) alone. V is the clean VIS.\n",
          "![grid](grid.png)\n"]
    (out / "results.md").write_text("\n".join(md))
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return results
