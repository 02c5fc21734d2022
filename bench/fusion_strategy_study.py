"""Fusion strategies against the baselines: Qabf and SSIM, smoky and clean inputs.

    python bench/fusion_strategy_study.py [--weights weights/lmfusion.safetensors] [--pairs 12]

Tuning data: RoadScene *train* pairs (never the test split the evaluation reports), each with
synthetic smoke from the evaluation's smoke config (other seeds). For each strategy the VIS and
IR latents (after LMF) are computed once and fused in latent space, then decoded. Metrics as in
``python -m lmfusion evaluate``: Qabf(V, I, F) and SSIM = (SSIM(F, V) + SSIM(F, I)) / 2 with V
the *clean* VIS. A strategy "wins" when it beats the average baseline's SSIM and the Laplacian
baseline's Qabf at once (the model issue's criterion). Prints one Markdown table per input kind.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmfusion import baselines, data as D, metrics as M  # noqa: E402
from lmfusion.evaluate import EVAL_SMOKE, y_of  # noqa: E402
from lmfusion.networks import STRATEGIES, fuse_detail_soft  # noqa: E402
from lmfusion.smoke import add_smoke  # noqa: E402
from lmfusion.weights import load_model  # noqa: E402

CANDIDATES = {
    "average": STRATEGIES["average"],
    "detail (hard max-abs)": STRATEGIES["detail"],
    **{f"detail_soft p{p} mix {m}": (lambda a, b, p=p, m=m: fuse_detail_soft(a, b, power=p, mix=m))
       for p in (2, 4) for m in (1.0, 0.8, 0.6, 0.4)},
}


def u8(a: np.ndarray) -> np.ndarray:
    return np.clip(a * 255 + 0.5, 0, 255).astype(np.uint8)


def score(v_clean: np.ndarray, ir: np.ndarray, fused_y: np.ndarray) -> tuple[float, float]:
    return M.qabf(v_clean, ir, fused_y), 0.5 * (M.ssim(fused_y, v_clean) + M.ssim(fused_y, ir))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default="weights/lmfusion.safetensors")
    ap.add_argument("--pairs", type=int, default=12, help="RoadScene train pairs, spread over the split")
    args = ap.parse_args()
    torch.set_num_threads(1)
    net, _ = load_model(Path(args.weights))
    net.eval()
    train = D.roadscene_pairs("train")
    pairs = train[:: max(1, len(train) // args.pairs)][: args.pairs]
    t0 = time.perf_counter()
    for kind in ("smoky", "clean"):
        rows: dict[str, list[tuple[float, float]]] = {"average baseline": [], "laplacian baseline": []}
        rows.update({k: [] for k in CANDIDATES})
        for i, p in enumerate(pairs):
            vis, ir = D.load_roadscene_pair(p)
            s = add_smoke(vis.astype(np.float32) / 255, np.random.default_rng(5000 + i), EVAL_SMOKE,
                          ir=ir.astype(np.float32) / 255, force_smoke=True)
            v_in, i_in = (u8(s.smoky), u8(s.ir)) if kind == "smoky" else (vis, ir)
            vc = y_of(vis)
            rows["average baseline"].append(score(vc, ir, y_of(baselines.fuse_average(v_in, i_in))))
            rows["laplacian baseline"].append(score(vc, ir, y_of(baselines.fuse_laplacian(v_in, i_in))))
            h, w = vc.shape
            m = net.size_multiple
            pad = lambda y: np.pad(y.astype(np.float32) / 255, ((0, (-h) % m), (0, (-w) % m)), mode="reflect")
            with torch.no_grad():
                z = net.lmf(net.encoder(torch.from_numpy(np.stack([pad(y_of(v_in)), pad(i_in)]))[:, None]))
                for name, fn in CANDIDATES.items():
                    fy = net.decoder(fn(z[:1], z[1:])).clamp(0, 1)[0, 0, :h, :w].numpy()
                    rows[name].append(score(vc, ir, u8(fy)))
        avg_ssim = np.mean([r[1] for r in rows["average baseline"]])
        lap_qabf = np.mean([r[0] for r in rows["laplacian baseline"]])
        print(f"\n### {kind} VIS + IR, {len(pairs)} RoadScene train pairs ({Path(args.weights).name})\n")
        print("| | Qabf | SSIM | beats both baselines |\n|---|---|---|---|")
        for name, r in rows.items():
            q, ss = np.mean([x[0] for x in r]), np.mean([x[1] for x in r])
            win = "yes" if (q > lap_qabf and ss > avg_ssim and "baseline" not in name) else ""
            print(f"| {name} | {q:.4f} | {ss:.4f} | {win} |")
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
